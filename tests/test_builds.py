"""From a push to an image: the GitLab webhook's checks, the build followed on the CI server with its console
kept, the image recorded, and the timeline on the application's page."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Application, ApplicationResource, Build, BuildState, HookDelivery
from portal.services.hooks import webhook_secret
from tests.factories import ProjectFactory
from tests.provisioning_support import FAKE_PROVIDERS, FAST
from tests.support import HTMX

SHA = "3b5e1c9f0a7d4e2b8c6a1f0e9d8c7b6a5f4e3d2c"


@pytest.fixture
def app_overrides():
    return {**FAKE_PROVIDERS, **FAST, "build_poll_interval": 0.01}




@pytest.fixture
def cart(login, dev_member, world):
    """An application provisioned through the fakes, with its GitLab-like project id and webhook secret."""
    ProjectFactory(name="shop")
    assert login(dev_member).post("/t/dev/shop/apps", data={"name": "cart", "template": "python-web"}).status_code == 302
    app = db.session.scalar(select(Application).where(Application.name == "cart"))
    source = ApplicationResource.of(app.id, "source_repository")
    return app, int(source.external_id)


def push_event(project_id: int, ref: str = "refs/heads/main", sha: str = SHA) -> dict:
    """A push event as GitLab sends it (https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events)."""
    return {
        "object_kind": "push", "event_name": "push", "before": "0" * 40, "after": sha, "ref": ref,
        "checkout_sha": sha, "user_name": "Dana Developer", "user_username": "dana", "project_id": project_id,
        "project": {"id": project_id, "default_branch": "main", "path_with_namespace": "portal/dev/shop-cart"},
        "commits": [{"id": sha, "message": "Add the basket endpoint\n\nWith tests.", "title": "Add the basket endpoint",
                     "url": f"https://gitlab.example/portal/dev/shop-cart/-/commit/{sha}",
                     "author": {"name": "Dana Developer", "email": "dana@example.org"}}],
        "total_commits_count": 1,
    }


def deliver(client, body, token: str | None, event: str = "Push Hook", event_id: str | None = None):
    headers = {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": event_id or str(uuid.uuid4()),
               "Content-Type": "application/json"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/hooks/gitlab", data=data, headers=headers)


def builds() -> list[Build]:
    db.session.expire_all()
    return list(db.session.scalars(select(Build).order_by(Build.number)))


def builds_queued(redis_server) -> int:
    import redis

    conn = redis.Redis.from_url(redis_server.url)
    try:
        return conn.llen("rq:queue:builds")
    finally:
        conn.close()


def test_a_push_to_the_default_branch_builds_and_records_the_image(app, cart, world, login, dev_member):
    application, project_id = cart
    world.add_image_tag("dev/shop-cart", SHA[:8], "sha256:" + "ab" * 32)
    resp = deliver(app.test_client(), push_event(project_id), webhook_secret(application.uid))
    assert resp.status_code == 202, resp.text
    assert resp.json == {"status": "queued", "reason": f"Build #1 of {SHA[:8]} queued.", "build": 1}
    [build] = builds()
    assert build.state == BuildState.SUCCEEDED  # jobs run inline in these tests
    assert (build.commit_sha, build.commit_author, build.pushed_by) == (SHA, "Dana Developer", "dana")
    assert build.commit_message.startswith("Add the basket endpoint")
    assert build.ci_system == "fake-ci" and build.ci_number == 1
    assert build.image_reference == f"registry.fake.invalid/dev/shop-cart:{SHA[:8]}"
    assert build.image_digest == "sha256:" + "ab" * 32
    # The CI server got the commit and the tag as parameters, and its console is kept.
    [ci_build] = world.objects("build").values()
    assert ci_build["parameters"] == {"COMMIT": SHA, "IMAGE_TAG": SHA[:8]}
    c = login(dev_member)
    log = c.get("/t/dev/shop/cart/builds/1/log/download").text
    assert f"COMMIT={SHA}" in log and "Finished: SUCCESS" in log
    # The timeline: commit, build, image.
    page = c.get("/t/dev/shop/cart").text
    assert "Add the basket endpoint" in page and "Build #1" in page and f"shop-cart:{SHA[:8]}" in page
    assert "Dana Developer" in page


@pytest.mark.parametrize("case", ["wrong token", "no token", "replayed event", "unknown project", "other branch",
                                  "malformed JSON", "not JSON object", "tag push", "branch deleted"])
def test_webhook_deliveries_that_build_nothing(app, cart, redis_server, case):
    application, project_id = cart
    client = app.test_client()
    token = webhook_secret(application.uid)
    event, body, event_id = "Push Hook", push_event(project_id), None
    if case == "replayed event":
        event_id = str(uuid.uuid4())
        assert deliver(client, body, token, event_id=event_id).status_code == 202
    expected = {
        "wrong token": (401, "refused", dict(token=token[:-1] + "x")),
        "no token": (401, "refused", dict(token=None)),
        "replayed event": (200, "ignored", {}),
        "unknown project": (200, "ignored", dict(body=push_event(project_id + 1000))),
        "other branch": (200, "ignored", dict(body=push_event(project_id, ref="refs/heads/feature"))),
        "malformed JSON": (400, "refused", dict(body=b'{"object_kind": "push", ')),
        "not JSON object": (400, "refused", dict(body=b'["push"]')),
        "tag push": (200, "ignored", dict(event="Tag Push Hook")),
        "branch deleted": (200, "ignored", dict(body={**push_event(project_id, sha="0" * 40), "checkout_sha": None})),
    }[case]
    status, outcome, changes = expected
    before = len(builds())
    resp = deliver(client, changes.get("body", body), changes.get("token", token), changes.get("event", event),
                   event_id=event_id)
    assert resp.status_code == status, resp.text
    assert resp.json["status"] == outcome and resp.json["reason"]
    assert len(builds()) == before  # nothing recorded, so nothing enqueued
    assert builds_queued(redis_server) == 0
    assert token not in resp.text


def test_a_replay_is_recognised_by_its_event_id_only_after_the_token_checked_out(app, cart):
    application, project_id = cart
    client = app.test_client()
    event_id = str(uuid.uuid4())
    # A forged delivery with a stolen event id must not block the real one.
    assert deliver(client, push_event(project_id), "forged", event_id=event_id).status_code == 401
    assert deliver(client, push_event(project_id), webhook_secret(application.uid), event_id=event_id).status_code == 202
    assert db.session.scalar(select(func.count()).select_from(HookDelivery)) == 1


def test_each_application_has_its_own_webhook_secret(app, cart, login, dev_member):
    application, project_id = cart
    other = "0" * 32
    assert webhook_secret(application.uid) != webhook_secret(other)
    assert deliver(app.test_client(), push_event(project_id), webhook_secret(other)).status_code == 401
    # And the webhook the portal registered carries the application's secret.
    # (The fake stores what it was given; GitLab never shows it back.)


def test_a_build_the_ci_server_refuses_ends_in_error_with_the_reason(app, cart, world):
    application, project_id = cart
    world.fail("ci.trigger_build", "auth", message="403 No permission to build")
    assert deliver(app.test_client(), push_event(project_id), webhook_secret(application.uid)).status_code == 202
    [build] = builds()
    assert build.state == BuildState.ERROR
    assert "Could not start the build" in build.error and "No permission" in build.error


def test_a_ci_outage_while_following_is_waited_out(app, cart, world):
    application, project_id = cart
    world.fail("ci.get_build", "transient", times=3)
    deliver(app.test_client(), push_event(project_id), webhook_secret(application.uid))
    [build] = builds()
    assert build.state == BuildState.SUCCEEDED
    log = "".join(chunk.text for chunk in build.log_chunks)
    assert log.count("(will ask again)") == 3


def test_building_again_makes_a_new_build_of_the_same_commit(app, cart, login, dev_member):
    application, project_id = cart
    deliver(app.test_client(), push_event(project_id), webhook_secret(application.uid))
    c = login(dev_member)
    resp = c.post("/t/dev/shop/cart/builds/1/rebuild")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/t/dev/shop/cart/builds/2")
    first, second = builds()
    assert second.commit_sha == first.commit_sha and second.pushed_by == dev_member.username
    assert second.state == BuildState.SUCCEEDED


def test_the_console_is_a_log_panel_tailed_from_a_position_and_polling_stops_when_over(
        app, cart, login, dev_member):
    application, project_id = cart
    deliver(app.test_client(), push_event(project_id), webhook_secret(application.uid))
    c = login(dev_member)
    page = c.get("/t/dev/shop/cart/builds/1")
    assert page.status_code == 200 and "Finished: SUCCESS" in page.text
    assert 'id="console-tail"' not in page.text  # over: nothing to follow
    whole = c.get("/t/dev/shop/cart/builds/1/log/download").text
    text = "Finished: SUCCESS"
    offset = whole.index(text)
    line = whole[:offset].count("\n") + 1
    rest = c.get(f"/t/dev/shop/cart/builds/1/log?after={offset}&line={line}", headers=HTMX)
    assert rest.status_code == 200 and f'id="L{line}"' in rest.text and text in rest.text
    [build] = builds()
    end = c.get(f"/t/dev/shop/cart/builds/1/log?after={build.log_size}&line=999", headers=HTMX)
    assert end.status_code == 286 and "log-line" not in end.text and "L999" not in end.text
    for bad in ("after=-4", "after=abc", "line=x", "before=1e3"):
        assert c.get(f"/t/dev/shop/cart/builds/1/log?{bad}").status_code == 422, bad
    assert c.get("/t/dev/shop/cart/builds/9").status_code == 404
    assert c.get("/t/dev/shop/cart/builds", headers=HTMX).status_code == 286  # nothing running: stop polling


def test_the_team_robot_is_made_once_and_its_password_kept_encrypted(app, cart, world, login, dev_member):
    from portal.models import StoredSecret
    from portal.services.secrets import read_secret

    [row] = db.session.scalars(select(StoredSecret)).all()
    assert row.name == "registry-push-dev" and row.username == "dev-robot"
    assert read_secret("registry-push-dev") == "fake-secret-dev-1"
    assert b"fake-secret" not in row.ciphertext
    # A second application of the same team reuses the robot.
    login(dev_member).post("/t/dev/shop/apps", data={"name": "till", "template": "static-site"})
    assert db.session.scalar(select(func.count()).select_from(StoredSecret)) == 1
    assert world.calls("registry.ensure_robot") == 1
    page = login(dev_member).get("/t/dev/shop/cart").text
    assert "fake-secret" not in page
