"""Shared by the provisioning tests: the fake providers' settings, which call each step makes, and checks
that the outside world holds exactly what it should."""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import Application, ProvisioningRun, Team
from portal.services.provisioning.chain import chain
from tests.fakes.world import FakeWorld

FAKE_PROVIDERS = {
    kind: f"tests.fakes.providers:{cls}.from_settings"
    for kind, cls in (("scm", "FakeSourceControl"), ("ci", "FakeCIServer"), ("registry", "FakeImageRegistry"),
                      ("cluster", "FakeClusterAccess"), ("delivery", "FakeDelivery"), ("logs", "FakeLogStore"))
} | {"environments": "dev,prod", "build_on_create": False}  # builds are tested by themselves
ENVIRONMENTS = ("dev", "prod")
FAST = {"provisioning_backoff": 0.01, "provisioning_backoff_max": 0.05, "provisioning_attempts": 4,
        "provisioning_lease": 1.5, "provisioning_sweep_interval": 0.3}

# The call that creates each step's thing, how many earlier calls of it to let through, and the kind it makes.
STEP_CREATES = {
    "source_repository": ("scm.create_repository", 0, "repository"),
    "deployment_repository": ("scm.create_repository", 1, "repository"),
    "source_webhook": ("scm.create_webhook", 0, "webhook"),
    "ci_job": ("ci.create_job", 0, "job"),
    "image_repository": ("registry.create_repository", 0, "image_repository"),
    "delivery_project": ("delivery.ensure_project", 0, "delivery_project"),
    "namespace:dev": ("cluster.ensure_namespace", 0, "namespace"),
    "delivery_application:dev": ("delivery.ensure_application", 0, "delivery_application"),
    "namespace:prod": ("cluster.ensure_namespace", 1, "namespace"),
    "delivery_application:prod": ("delivery.ensure_application", 1, "delivery_application"),
}
STEP_NAMES = [s.name for s in chain(ENVIRONMENTS)]
EXPECTED_KINDS = {"repository": 2, "webhook": 1, "job": 1, "image_repository": 1, "delivery_project": 1,
                  "namespace": 2, "delivery_application": 2}
TEAM_SHARED = {"delivery_project"}  # one per team, kept while another application of the team uses it


def bind_clusters() -> None:
    """A registered cluster for each seeded team, as an admin would bind them (the fakes connect to any)."""
    from portal.models import Cluster

    for team in ("dev", "ops"):
        db.session.add(Cluster(name=f"{team}-cluster", api_url=f"https://{team}.cluster.invalid:6443",
                               teams=[Team.by_name(team)]))
    db.session.commit()


def owned(world: FakeWorld, kind: str, uid: str) -> dict[str, dict]:
    """What of ``kind`` belongs to the application ``uid``: for team-shared kinds, its team's, while it exists."""
    owner = uid
    if kind in TEAM_SHARED:
        app = db.session.scalar(select(Application).where(Application.uid == uid))
        if app is None:
            return {}
        owner = f"team-{app.team.name}"
    return {i: rec for i, rec in world.objects(kind).items() if rec.get("owner") == owner}


def assert_fully_provisioned(world: FakeWorld, uid: str) -> None:
    """Every thing of the application exists once, and was created once."""
    for kind, n in EXPECTED_KINDS.items():
        mine = owned(world, kind, uid)
        assert len(mine) == n, f"{kind}: {len(mine)} owned, expected {n}"
        for name, count in world.creations_by_name(kind).items():
            assert count == 1, f"{kind} {name} created {count} times"


def assert_nothing_left(world: FakeWorld, uid: str, orphan_ids: set[str] = frozenset()) -> None:
    """Nothing of the application remains outside, except what is reported as an orphan."""
    for kind in EXPECTED_KINDS:
        left = set(owned(world, kind, uid)) - set(orphan_ids)
        assert not left, f"{kind} left behind and not reported: {left}"


def latest_run(app_id: int) -> ProvisioningRun:
    db.session.expire_all()
    return db.session.scalar(select(ProvisioningRun).where(ProvisioningRun.application_id == app_id)
                             .order_by(ProvisioningRun.id.desc()))


def app_named(name: str) -> Application | None:
    db.session.expire_all()
    return db.session.scalar(select(Application).where(Application.name == name))


def dev() -> Team:
    return Team.by_name("dev")


def push_to_default_branch(app, application: Application, sha: str, message: str = "", author: str = "Dana",
                           pushed_by: str = ""):
    """Deliver GitLab's push event for ``sha`` on main of the application's source repository, as GitLab does
    (https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events); jobs run inline in the
    tests, so the build (and what follows it) is over when this returns. Returns the build."""
    import json
    import uuid

    from portal.models import ApplicationResource, Build
    from portal.services.hooks import webhook_secret

    source = ApplicationResource.of(application.id, "source_repository")
    event = {"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": sha, "after": sha,
             "user_username": pushed_by, "project_id": int(source.external_id),
             "commits": [{"id": sha, "message": message or f"change {sha[:4]}", "author": {"name": author},
                          "url": ""}]}
    resp = app.test_client().post("/hooks/gitlab", data=json.dumps(event), headers={
        "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": webhook_secret(application.uid),
        "X-Gitlab-Event-UUID": str(uuid.uuid4()), "Content-Type": "application/json"})
    assert resp.status_code == 202, resp.text
    db.session.expire_all()
    return db.session.scalar(select(Build).order_by(Build.id.desc()))
