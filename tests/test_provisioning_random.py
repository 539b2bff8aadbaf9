"""Randomized: transient and permanent failures, crashes, retries, cancels, reconciles and deletes, mixed
by a seeded random generator (100 seeds). Whatever happened, the end is one of three consistent states:
fully provisioned with no duplicates, fully deleted with nothing left but reported orphans, or stopped
with a correct step-by-step account."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import select

from jobs.provisioning import sweep
from portal.extensions import db
from portal.models import Orphan, RunKind, RunState, StepState
from portal.models.base import utcnow
from portal.services.applications import NewApplication, create_application
from portal.services.provisioning import runs
from tests.factories import ProjectFactory
from tests.fakes.world import FakeWorld
from tests.provisioning_support import (
    EXPECTED_KINDS,
    bind_clusters,
    FAKE_PROVIDERS,
    FAST,
    STEP_CREATES,
    app_named,
    latest_run,
    owned,
)

SEEDS_PER_TEST = 10
OPS = sorted({op for op, _, _ in STEP_CREATES.values()} | {
    "scm.find_repository", "ci.find_job", "registry.delete_repository", "scm.delete_repository",
    "cluster.delete_namespace", "delivery.delete_application", "ci.delete_job",
})


@pytest.fixture
def app_overrides():
    return {**FAKE_PROVIDERS, **FAST, "provisioning_attempts": 3}


def inject(rng: random.Random, world: FakeWorld) -> None:
    for _ in range(rng.randint(0, 3)):
        op = rng.choice(OPS)
        roll = rng.random()
        if roll < 0.45:
            world.fail(op, "transient", times=rng.randint(1, 4))
        elif roll < 0.65:
            world.fail(op, rng.choice(["permanent", "auth"]), times=rng.choice([1, None]))
        else:
            world.crash(op, when=rng.choice(["before", "after"]))


def resume_dead_run(app_id: int) -> None:
    """What happens after a crash: the lease runs out, the sweeper hands the run to a worker."""
    run = latest_run(app_id)
    run.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    sweep()


def settle(name: str, world: FakeWorld, limit: int = 30) -> None:
    for _ in range(limit):
        app = app_named(name)
        if app is None or not latest_run(app.id).state.active:
            return
        resume_dead_run(app.id)
    raise AssertionError(f"{name} never settled")


def play(seed: int, member, maintainer, world: FakeWorld) -> None:
    rng = random.Random(seed)
    name = f"app-{seed}"
    world.reset()
    inject(rng, world)
    create_application(member, "dev", "shop", NewApplication(name, "python-web"))
    uid = app_named(name).uid
    for _ in range(rng.randint(2, 8)):
        app = app_named(name)
        if app is None:
            break
        run = latest_run(app.id)
        if rng.random() < 0.3:
            inject(rng, world)
        if run.state.active:  # a crash left it running
            action = rng.choices(["resume", "cancel", "delete"], weights=[6, 2, 1])[0]
            if action == "cancel" and run.kind != RunKind.DELETE:
                runs.cancel_run(member, app, run.id)
            elif action == "delete" and app.state != "deleting":
                runs.request_delete(maintainer, app)
            resume_dead_run(app.id)
        elif run.state in (RunState.FAILED, RunState.CANCELLED):
            action = rng.choices(["retry", "fix_and_retry", "delete", "wait"], weights=[3, 3, 1, 3])[0]
            if action == "fix_and_retry":
                world.clear_failures()
            if action in ("retry", "fix_and_retry") and app.state != "deleting":
                runs.retry_run(member, app, run.id)
            elif action == "delete":
                runs.request_delete(maintainer, app)
        else:
            action = rng.choices(["reconcile", "delete", "wait"], weights=[3, 1, 2])[0]
            if action == "reconcile":
                runs.reconcile(member, app)
            elif action == "delete":
                runs.request_delete(maintainer, app)
    ending = rng.random()
    if ending < 0.6:  # mostly the cause gets fixed in the end
        world.clear_failures()
    elif ending < 0.85 and (app := app_named(name)) is not None and not latest_run(app.id).state.active:
        # Or something breaks for good during a last run.
        op, skip, _ = STEP_CREATES[rng.choice(list(STEP_CREATES))]
        world.fail(op, "permanent", times=None, skip=skip)
        world.clear_failures("scm.find_repository")
        runs.reconcile(member, app)
    settle(name, world)
    check(name, uid, world)


def check(name: str, uid: str, world: FakeWorld) -> None:
    # No duplicates, ever: each thing was created at most once.
    for kind in EXPECTED_KINDS:
        for thing, count in world.creations_by_name(kind).items():
            assert count == 1, f"{kind} {thing} created {count} times"
    app = app_named(name)
    if app is None:  # deleted: nothing left behind unless reported
        orphans = {o.external_id for o in db.session.scalars(
            select(Orphan).where(Orphan.application_label == f"dev/shop/{name}"))}
        for kind in EXPECTED_KINDS:
            left = set(owned(world, kind, uid)) - orphans
            assert not left, f"{kind} left behind, not reported as orphan: {left}"
        return
    run = latest_run(app.id)
    states = [s.state for s in run.steps]
    if run.state == RunState.SUCCEEDED:
        assert set(states) == {StepState.SUCCEEDED}
        for kind, n in EXPECTED_KINDS.items():
            assert len(owned(world, kind, uid)) == n, kind
        return
    # Stopped: steps done in order, then at most one failed step with its reason, then untouched ones.
    assert run.state in (RunState.FAILED, RunState.CANCELLED), run.state
    done = 0
    while done < len(states) and states[done] == StepState.SUCCEEDED:
        done += 1
    rest = states[done:]
    if run.state == RunState.FAILED:
        assert rest and rest[0] == StepState.FAILED and run.steps[done].last_error and run.error
        rest = rest[1:]
    assert all(s == StepState.PENDING for s in rest), states
    for step in run.steps[:done]:
        _, _, kind = STEP_CREATES[step.name]
        assert owned(world, kind, uid), f"{step.name} succeeded but its {kind} is missing"
    if run.kind == RunKind.CREATE:
        made = {STEP_CREATES[s.name][2] for s in run.steps[:done + 1]}
        for step in run.steps[done + (run.state == RunState.FAILED):]:
            _, _, kind = STEP_CREATES[step.name]
            if kind not in made:  # some steps share a kind (two repositories, a namespace per environment)
                assert not owned(world, kind, uid), f"{step.name} never ran but its {kind} exists"


@pytest.mark.parametrize("chunk", range(100 // SEEDS_PER_TEST))
def test_random_mixes_of_failures_crashes_and_actions_end_consistent(app, redis_server, dev_member,
                                                                     dev_maintainer, chunk):
    ProjectFactory(name="shop")
    bind_clusters()
    world = FakeWorld(redis_server.url)
    try:
        for seed in range(chunk * SEEDS_PER_TEST, (chunk + 1) * SEEDS_PER_TEST):
            try:
                play(seed, dev_member, dev_maintainer, world)
            except AssertionError as exc:
                raise AssertionError(f"seed {seed}: {exc}") from exc
    finally:
        world.close()
