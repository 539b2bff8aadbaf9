"""Shared by the provisioning tests: the fake providers' settings, which call each step makes, and checks
that the outside world holds exactly what it should."""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import Application, ProvisioningRun, Team
from portal.services.provisioning.steps import CHAIN
from tests.fakes.world import FakeWorld

FAKE_PROVIDERS = {
    kind: f"tests.fakes.providers:{cls}.from_settings"
    for kind, cls in (("scm", "FakeSourceControl"), ("ci", "FakeCIServer"), ("registry", "FakeImageRegistry"),
                      ("cluster", "FakeClusterAccess"), ("delivery", "FakeDelivery"), ("logs", "FakeLogStore"))
}
FAST = {"provisioning_backoff": 0.01, "provisioning_backoff_max": 0.05, "provisioning_attempts": 4,
        "provisioning_lease": 1.5, "provisioning_sweep_interval": 0.3}

# The call that creates each step's thing, how many earlier calls of it to let through, and the kind it makes.
STEP_CREATES = {
    "source_repository": ("scm.create_repository", 0, "repository"),
    "deployment_repository": ("scm.create_repository", 1, "repository"),
    "source_webhook": ("scm.create_webhook", 0, "webhook"),
    "ci_job": ("ci.create_job", 0, "job"),
    "image_repository": ("registry.create_repository", 0, "image_repository"),
    "namespace": ("cluster.ensure_namespace", 0, "namespace"),
    "delivery_application": ("delivery.ensure_application", 0, "delivery_application"),
}
STEP_NAMES = [s.name for s in CHAIN]
EXPECTED_KINDS = {"repository": 2, "webhook": 1, "job": 1, "image_repository": 1, "namespace": 1,
                  "delivery_application": 1}


def owned(world: FakeWorld, kind: str, uid: str) -> dict[str, dict]:
    return {i: rec for i, rec in world.objects(kind).items() if rec.get("owner") == uid}


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
