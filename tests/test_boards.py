"""The team board: who may see which team's board (users, kiosk tokens), the health badge rules, the latest
build and deployments of each application, the cluster's figures, and a constant number of queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event

from portal.errors import NotFound
from portal.extensions import db
from portal.models import Build, BuildState, Deployment, DeploymentState, Team
from portal.models.base import utcnow
from portal.services import boards, kiosks
from portal.services.boards import Badge, DeploymentFacts, application_badge, environment_badge
from portal.services.resources import Freshness, NamespaceSummaries, NamespaceSummary, QuotaUse
from tests.factories import ApplicationFactory, ClusterFactory, ProjectFactory

HEALTHY, PROGRESSING, DEGRADED, UNKNOWN, NOT_DEPLOYED = (
    Badge.HEALTHY, Badge.PROGRESSING, Badge.DEGRADED, Badge.UNKNOWN, Badge.NOT_DEPLOYED)
GI = 1024 ** 3


def facts(state: str = "healthy", sync: str = "Synced", health: str = "Healthy") -> DeploymentFacts:
    return DeploymentFacts(1, DeploymentState(state), sync, health, "abc", utcnow())


def pods(ready: int, total: int, problems: int = 0) -> NamespaceSummary:
    return NamespaceSummary("ns", pods_ready=ready, pods_total=total, problems=problems)


@pytest.mark.parametrize("deployment,figures,expected", [
    (None, pods(3, 3), NOT_DEPLOYED),
    (facts(), pods(3, 3), HEALTHY),
    # Healthy needs every piece of evidence: the cluster's figures, and pods.
    (facts(), None, UNKNOWN),
    (facts(), pods(0, 0), UNKNOWN),
    (facts(health="Missing"), pods(3, 3), UNKNOWN),
    (facts(health="Suspended"), pods(1, 1), UNKNOWN),
    # Anything in motion.
    (facts(), pods(2, 3), PROGRESSING),
    (facts("committed", "", ""), None, PROGRESSING),
    (facts("synced", "Synced", "Progressing"), pods(0, 1), PROGRESSING),
    (facts(sync="OutOfSync"), pods(3, 3), PROGRESSING),
    # Any sign of failure wins over everything else.
    (facts(), pods(2, 3, problems=1), DEGRADED),
    (facts("committed", "", ""), pods(0, 1, problems=1), DEGRADED),
    (facts("failed", "Synced", "Healthy"), pods(3, 3), DEGRADED),
    (facts("timed_out", "Synced", "Progressing"), None, DEGRADED),
    (facts("degraded", "Synced", "Degraded"), pods(3, 3), DEGRADED),
    (facts(health="Degraded"), pods(3, 3), DEGRADED),
])
def test_environment_badge(deployment, figures, expected):
    assert environment_badge(deployment, figures) == expected


@pytest.mark.parametrize("badges,expected", [
    ([HEALTHY, DEGRADED, NOT_DEPLOYED], DEGRADED),
    ([HEALTHY, PROGRESSING, UNKNOWN], PROGRESSING),
    ([HEALTHY, UNKNOWN, NOT_DEPLOYED], UNKNOWN),
    ([HEALTHY, NOT_DEPLOYED, NOT_DEPLOYED], HEALTHY),
    ([NOT_DEPLOYED, NOT_DEPLOYED], NOT_DEPLOYED),
    ([], NOT_DEPLOYED),
])
def test_an_application_shows_its_most_alarming_environment(badges, expected):
    assert application_badge(badges) == expected


# --- data ------------------------------------------------------------------------------------------

def add_build(app, number: int, state=BuildState.SUCCEEDED, minutes_ago: int = 0) -> None:
    db.session.add(Build(application_id=app.id, number=number, commit_sha=f"{number:08d}" + "a" * 32, state=state,
                         created_at=utcnow() - timedelta(minutes=minutes_ago)))


def add_deployment(app, number: int, environment: str, state=DeploymentState.HEALTHY, sync="Synced",
                   health="Healthy") -> None:
    db.session.add(Deployment(application_id=app.id, number=number, environment=environment, kind="deploy",
                              image_repository="registry.invalid/x", image_tag=f"t{number}", state=state,
                              sync_status=sync, health_status=health, deploy_commit="d" * 40))


def make_apps(team: str, count: int, project_name: str = "shop") -> list:
    project = ProjectFactory(name=project_name, team=Team.by_name(team))
    apps = [ApplicationFactory(project=project, name=f"app-{i:03d}", state="ready") for i in range(count)]
    for app in apps:
        add_build(app, 1, BuildState.FAILED, 10)
        add_build(app, 2, BuildState.SUCCEEDED, 5)
        add_deployment(app, 1, "dev", DeploymentState.SUPERSEDED)
        add_deployment(app, 2, "dev")
        add_deployment(app, 3, "staging", DeploymentState.FAILED, health="Degraded")
    db.session.commit()
    return apps


@pytest.fixture
def figures(monkeypatch):
    """Cluster figures for the board: every namespace asked for has 2 of 2 pods ready and some quota."""
    calls = []

    def namespace_summaries(cluster, namespaces):
        calls.append((cluster.name if cluster is not None else None, list(namespaces)))
        quota = (QuotaUse("requests.cpu", 0.5, 2.0, "500m", "2"), QuotaUse("requests.memory", GI, 4 * GI, "1Gi", "4Gi"))
        return NamespaceSummaries(
            by_namespace={ns: NamespaceSummary(ns, 2, 2, 0, quota) for ns in namespaces},
            freshness=Freshness("cache", age_seconds=4.2))

    monkeypatch.setattr(boards, "namespace_summaries", namespace_summaries)
    return calls


# --- who sees what ---------------------------------------------------------------------------------

def test_a_member_sees_their_team_s_board_and_no_other(dev_member, ops_member, admin):
    make_apps("dev", 1)
    assert boards.team_board(dev_member, "dev").team_name == "dev"
    with pytest.raises(NotFound):
        boards.team_board(ops_member, "dev")
    with pytest.raises(NotFound):
        boards.team_board(dev_member, "no-such-team")
    assert boards.team_board(admin, "dev").rows[0].name == "app-000"
    assert boards.team_board(admin, "ops").rows == ()


def test_a_kiosk_token_sees_only_the_teams_it_was_made_for(admin):
    make_apps("dev", 1)
    new = kiosks.create_kiosk_token(admin, "hall", ["dev"])
    viewer = kiosks.resolve(new.secret)
    assert boards.team_board(viewer, "dev").rows[0].name == "app-000"
    with pytest.raises(NotFound):
        boards.team_board(viewer, "ops")
    kiosks.revoke_kiosk_token(admin, new.token.id)
    assert kiosks.resolve(new.secret) is None  # and without a viewer there is no board to ask for


# --- what the board says ---------------------------------------------------------------------------

def test_rows_hold_the_latest_build_and_deployment_of_each_environment(admin):
    make_apps("dev", 2)
    board = boards.team_board(admin, "dev")
    assert board.environments == ("dev", "staging", "prod")
    assert [(r.project, r.name) for r in board.rows] == [("shop", "app-000"), ("shop", "app-001")]
    row = board.rows[0]
    assert (row.build.number, row.build.state) == (2, BuildState.SUCCEEDED)
    dev, staging, prod = row.environments
    assert (dev.deployment.number, dev.deployment.state) == (2, DeploymentState.HEALTHY)
    assert (staging.deployment.number, staging.deployment.state) == (3, DeploymentState.FAILED)
    assert prod.deployment is None and prod.badge == NOT_DEPLOYED
    assert dev.namespace == "dev-shop-app-000-dev"
    # No cluster figures today: healthy cannot be claimed, failures still show.
    assert board.freshness.source == "unavailable" and dev.pods is None and row.pods is None
    assert (dev.badge, staging.badge, row.badge) == (UNKNOWN, DEGRADED, DEGRADED)
    assert board.freshness_text.startswith("cluster figures unavailable")
    assert board.counts == {DEGRADED: 2}


def test_cluster_figures_give_pods_badges_and_the_team_s_quota(admin, figures):
    ClusterFactory(name="dev-cluster", teams=[Team.by_name("dev")])
    apps = make_apps("dev", 2)
    add_deployment(apps[0], 4, "prod")
    db.session.commit()
    board = boards.team_board(admin, "dev")
    # One call for the team's cluster, with every namespace of every application and environment.
    assert len(figures) == 1 and figures[0][0] == "dev-cluster"
    assert sorted(figures[0][1]) == sorted(f"dev-shop-app-00{i}-{env}" for i in (0, 1)
                                           for env in ("dev", "staging", "prod"))
    row = board.rows[0]
    assert [c.badge for c in row.environments] == [HEALTHY, DEGRADED, HEALTHY]
    assert row.pods == (6, 6)
    assert board.freshness_text == "figures from the cluster cache, 4 s old"
    quota = {q.resource: q for q in board.quota}
    assert (quota["requests.cpu"].used, quota["requests.cpu"].hard) == (3.0, 12.0)  # six namespaces
    assert (quota["requests.memory"].used_text, quota["requests.memory"].hard_text) == ("6 GiB", "24 GiB")
    assert quota["requests.cpu"].fraction == 0.25


def test_the_number_of_queries_does_not_grow_with_the_applications(admin, figures):
    viewer = kiosks.resolve(kiosks.create_kiosk_token(admin, "hall", ["dev"]).secret)
    ClusterFactory(name="dev-cluster", teams=[Team.by_name("dev")])
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    def queries_for_board(actor) -> int:
        db.session.expire_all()
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            board = boards.team_board(actor, "dev")
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert board.rows
        return len(statements)

    make_apps("dev", 2, "small")
    few = (queries_for_board(viewer), queries_for_board(admin))
    make_apps("dev", 20, "large")
    many = (queries_for_board(viewer), queries_for_board(admin))
    assert few == many, f"{few} queries for 2 applications, {many} for 22"
    assert max(many) <= 6, statements


# --- the pages -------------------------------------------------------------------------------------

def test_the_board_page_and_its_polled_fragment(login, dev_member):
    make_apps("dev", 1)
    client = login(dev_member)
    page = client.get("/teams/dev/board")
    assert page.status_code == 200 and "<html" in page.text and "app-000" in page.text
    assert 'href="/t/dev/shop/app-000"' in page.text  # the normal board links to the application
    assert 'hx-trigger="every 20s"' in page.text and 'hx-swap="outerHTML"' in page.text
    assert 'hx-get="/teams/dev/board?every=20"' in page.text
    fragment = client.get("/teams/dev/board?every=5", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "Vary" in fragment.headers and "HX-Request" in fragment.headers["Vary"]
    assert fragment.text.lstrip().startswith('<section id="board"') and "<html" not in fragment.text
    assert 'hx-trigger="every 5s"' in fragment.text and "hx-request='{\"timeout\": 4000}'" in fragment.text
    # The interval stays within bounds whatever the URL says.
    assert 'hx-trigger="every 2s"' in client.get("/teams/dev/board?every=0").text
    assert 'hx-trigger="every 20s"' in client.get("/teams/dev/board?every=soon").text


def test_the_team_page_and_the_dashboard_link_to_the_board(login, dev_member):
    client = login(dev_member)
    assert 'href="/teams/dev/board"' in client.get("/teams/dev").text
    assert 'href="/teams/dev/board"' in client.get("/").text


def test_another_team_s_board_is_not_found(login, ops_member):
    make_apps("dev", 1)
    resp = login(ops_member).get("/teams/dev/board")
    assert resp.status_code == 404 and "app-000" not in resp.text


def test_kiosk_mode_of_the_board_page(login, dev_member):
    make_apps("dev", 1)
    page = login(dev_member).get("/teams/dev/board?kiosk=1")
    assert page.status_code == 200 and 'class="kiosk"' in page.text and "kiosk.js" in page.text
    assert 'hx-get="/teams/dev/board?kiosk=1&amp;every=20"' in page.text
    assert 'href="/t/dev/shop/app-000"' not in page.text  # nothing to click on a wall


def test_on_a_wall_what_needs_someone_comes_first(login, dev_member, figures):
    project = ProjectFactory(name="shop")
    fine = ApplicationFactory(project=project, name="a-fine")
    broken = ApplicationFactory(project=project, name="z-broken")
    add_deployment(fine, 1, "dev")
    add_deployment(broken, 1, "dev", DeploymentState.FAILED)
    db.session.commit()
    client = login(dev_member)
    page = client.get("/teams/dev/board").text
    assert page.index("a-fine") < page.index("z-broken")  # by project and name
    kiosk = client.get("/teams/dev/board?kiosk=1").text
    assert kiosk.index("z-broken") < kiosk.index("a-fine")  # degraded first
    assert "1 degraded" in kiosk and "1 healthy" in kiosk


def no_inline_script(text: str) -> bool:
    import re

    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", text, re.S)
    handlers = re.findall(r"\son[a-z]+\s*=", text)
    return all("src=" in attrs and not body.strip() for attrs, body in scripts) and not handlers


def test_a_kiosk_url_opens_without_a_session_and_cycles_through_its_teams(app, admin):
    make_apps("dev", 1)
    make_apps("ops", 1, "tools")
    secret = kiosks.create_kiosk_token(admin, "hall", ["dev", "ops"]).secret
    client = app.test_client()
    first = client.get(f"/kiosk/{secret}")
    assert first.status_code == 200 and "Dev" in first.text and "shop" in first.text and "tools" not in first.text
    assert first.headers["Cache-Control"] == "no-store" and first.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in first.headers  # no session is made for a wall screen
    assert f'hx-get="/kiosk/{secret}?team=1&amp;every=20"' in first.text and "team 1 of 2" in first.text
    assert no_inline_script(first.text)
    second = client.get(f"/kiosk/{secret}?team=1&every=30", headers={"HX-Request": "true"})
    assert second.status_code == 200 and second.text.lstrip().startswith('<section id="board"')
    assert "tools" in second.text and "shop" not in second.text and "team 2 of 2" in second.text
    assert f'hx-get="/kiosk/{secret}?team=0&amp;every=30"' in second.text
    assert 'hx-trigger="every 30s"' in second.text
    assert "HX-Request" in second.headers["Vary"]
    assert "tools" in client.get(f"/kiosk/{secret}?team=3").text  # any index wraps round
    assert "shop" in client.get(f"/kiosk/{secret}?team=x").text


def test_a_bad_or_revoked_kiosk_token_is_a_plain_404(app, admin):
    make_apps("dev", 1)
    new = kiosks.create_kiosk_token(admin, "hall", ["dev"])
    client = app.test_client()
    for url in ("/kiosk/nope", "/kiosk/kiosk_" + "A" * 43, f"/kiosk/{new.secret}x"):
        resp = client.get(url)
        assert resp.status_code == 404 and "app-000" not in resp.text and "hall" not in resp.text
    kiosks.revoke_kiosk_token(admin, new.token.id)
    for headers in ({}, {"HX-Request": "true"}):
        resp = client.get(f"/kiosk/{new.secret}", headers=headers)
        assert resp.status_code == 404 and "app-000" not in resp.text and 'id="board"' not in resp.text


def test_a_failing_kiosk_board_logs_no_token(app, admin, monkeypatch, caplog):
    secret = kiosks.create_kiosk_token(admin, "hall", ["dev"]).secret

    def broken(viewer, team_name):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(boards, "team_board", broken)
    resp = app.test_client().get(f"/kiosk/{secret}")
    assert resp.status_code == 500 and secret not in resp.text
    assert "the kiosk board failed" in caplog.text and secret not in caplog.text
    assert all(secret not in str(record.args) for record in caplog.records)


def test_cluster_figures_and_their_age_show_on_the_board(login, dev_member, monkeypatch):
    make_apps("dev", 1)

    def stale(cluster, namespaces):
        return NamespaceSummaries({ns: NamespaceSummary(ns, 1, 2) for ns in namespaces},
                                  Freshness("cache", age_seconds=95, stale=True))

    monkeypatch.setattr(boards, "namespace_summaries", stale)
    text = login(dev_member).get("/teams/dev/board?every=10").text
    assert "figures from the cluster cache, 95 s old (stale)" in text and "<strong>Stale:</strong>" in text
    assert ">3/6<" in text  # pods over the three environments


def test_fresh_figures_are_not_called_stale(login, dev_member, figures):
    make_apps("dev", 1)
    text = login(dev_member).get("/teams/dev/board").text
    assert "figures from the cluster cache, 4 s old" in text and "Stale:" not in text
    assert "requests.cpu" in text and "1.5 cores / 6 cores" in text

