"""The provisioning engine against the contract fakes, jobs run inline: retries, stops, resumes, deletes."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Application, ApplicationResource, Orphan, ProvisioningRun, RunKind, RunState, StepState
from portal.services.applications import NewApplication, create_application
from tests.factories import ProjectFactory
from tests.provisioning_support import (
    FAKE_PROVIDERS,
    FAST,
    STEP_CREATES,
    STEP_NAMES,
    app_named,
    assert_fully_provisioned,
    assert_nothing_left,
    latest_run,
    owned,
)
from tests.support import HTMX


@pytest.fixture
def app_overrides():
    return {**FAKE_PROVIDERS, **FAST}




@pytest.fixture
def shop(app):
    return ProjectFactory(name="shop")


def create(client, name="cart"):
    return client.post("/t/dev/shop/apps", data={"name": name, "template": "python-web"})


def test_creating_an_application_provisions_every_step_once(login, dev_member, shop, world):
    c = login(dev_member)
    assert create(c).status_code == 302
    app = app_named("cart")
    run = latest_run(app.id)
    assert run.state == RunState.SUCCEEDED and run.kind == RunKind.CREATE
    assert [s.name for s in run.steps] == STEP_NAMES
    assert all(s.state == StepState.SUCCEEDED and s.attempts == 1 for s in run.steps)
    assert app.state == "ready"
    assert_fully_provisioned(world, app.uid)
    names = {r.step: r.name for r in db.session.scalars(select(ApplicationResource))}
    assert names["source_repository"] == "dev/shop-cart"
    assert names["deployment_repository"] == "dev/shop-cart-deploy"
    assert names["namespace:dev"] == "dev-shop-cart-dev" and names["namespace:prod"] == "dev-shop-cart-prod"
    assert names["delivery_project"] == "dev"
    page = c.get("/t/dev/shop/cart")
    assert "Run #" in page.text and "succeeded" in page.text and "shop-cart-deploy" in page.text


@pytest.mark.parametrize("step", STEP_NAMES)
def test_two_transient_failures_then_success(login, dev_member, shop, world, step):
    op, skip, _ = STEP_CREATES[step]
    world.fail(op, "transient", times=2, skip=skip)
    create(login(dev_member))
    app = app_named("cart")
    run = latest_run(app.id)
    assert run.state == RunState.SUCCEEDED
    failing = next(s for s in run.steps if s.name == step)
    assert failing.attempts == 3
    assert sum("transient error, retrying" in line for line in failing.log) == 2
    assert all(s.attempts == 1 for s in run.steps if s.name != step)
    assert_fully_provisioned(world, app.uid)


@pytest.mark.parametrize("step", STEP_NAMES)
def test_permanent_failure_stops_at_the_step_and_retry_completes(login, dev_member, shop, world, step):
    op, skip, kind = STEP_CREATES[step]
    world.fail(op, "permanent", times=None, skip=skip, message="project quota exceeded")
    c = login(dev_member)
    create(c)
    app = app_named("cart")
    run = latest_run(app.id)
    index = STEP_NAMES.index(step)
    assert run.state == RunState.FAILED and app.state == "failed"
    assert [s.state for s in run.steps[:index]] == [StepState.SUCCEEDED] * index
    failed = run.steps[index]
    assert failed.state == StepState.FAILED and failed.attempts == 1
    assert "project quota exceeded" in failed.last_error and "project quota exceeded" in run.error
    later = run.steps[index + 1:]
    assert all(s.state == StepState.PENDING and s.attempts == 0 for s in later)
    made = {STEP_CREATES[s.name][2] for s in run.steps[:index + 1]}
    for s in later:  # untouched: nothing of theirs exists outside (kinds an earlier step also makes aside)
        _, _, later_kind = STEP_CREATES[s.name]
        if later_kind not in made:
            assert not owned(world, later_kind, app.uid)
    panel = c.get("/t/dev/shop/cart/provisioning", headers=HTMX)
    assert panel.status_code == 286  # the run is over: polling stops
    assert "project quota exceeded" in panel.text and "Retry from the failed step" in panel.text

    world.clear_failures()
    resp = c.post(f"/t/dev/shop/cart/runs/{run.id}/retry", headers=HTMX)
    assert resp.status_code == 200
    run = latest_run(app.id)
    assert run.state == RunState.SUCCEEDED
    assert run.steps[index].attempts == 2
    assert_fully_provisioned(world, app.uid)


def test_rate_limited_waits_and_auth_failure_stops(login, dev_member, shop, world):
    world.fail("ci.create_job", "rate_limited", times=1)
    world.fail("registry.create_repository", "auth", times=None, message="401 Unauthorized")
    create(login(dev_member))
    run = latest_run(app_named("cart").id)
    steps = {s.name: s for s in run.steps}
    assert steps["ci_job"].state == StepState.SUCCEEDED and steps["ci_job"].attempts == 2
    assert steps["image_repository"].state == StepState.FAILED
    assert "401 Unauthorized" in run.error


def test_transient_errors_past_the_budget_fail_the_step(login, dev_member, shop, world, app):
    world.fail("cluster.ensure_namespace", "transient", times=None, message="connection refused")
    create(login(dev_member))
    run = latest_run(app_named("cart").id)
    step = next(s for s in run.steps if s.name == "namespace:dev")
    assert step.state == StepState.FAILED
    assert step.attempts == app.config["PORTAL"].provisioning_attempts
    assert "gave up after 4 attempts" in step.last_error and "connection refused" in step.last_error


def test_something_with_our_name_that_is_not_ours_is_never_adopted(login, dev_member, shop, world):
    world.seed("repository", "dev/shop-cart", owner=None)
    create(login(dev_member))
    run = latest_run(app_named("cart").id)
    assert run.state == RunState.FAILED
    assert "refusing to adopt it" in run.steps[0].last_error
    assert world.creations("repository") == 0


def test_a_thing_created_before_a_crash_is_adopted_not_duplicated(login, dev_member, shop, world, app):
    world.crash("ci.create_job", when="after")
    # RQ records the "dead" job as failed, as it does when a work horse dies; the run keeps its lease.
    create_application(dev_member, "dev", "shop", NewApplication("cart", "python-web"))
    application = app_named("cart")
    run = latest_run(application.id)
    assert run.state == RunState.RUNNING  # the "process" died holding the lease
    _expire_lease(run)
    from jobs.provisioning import sweep

    assert sweep() == [run.id]  # the sweeper hands it to a (here: inline) worker
    run = latest_run(application.id)
    assert run.state == RunState.SUCCEEDED
    ci = next(s for s in run.steps if s.name == "ci_job")
    assert ci.attempts == 2 and ci.refs["adopted"] is True
    assert_fully_provisioned(world, application.uid)


def _expire_lease(run: ProvisioningRun) -> None:
    from datetime import timedelta

    from portal.models.base import utcnow

    run.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()


def test_delete_runs_the_chain_backwards_and_removes_everything(login, dev_member, dev_maintainer, shop, world):
    create(login(dev_member))
    application = app_named("cart")
    uid, app_id = application.uid, application.id
    resp = login(dev_maintainer).post("/t/dev/shop/cart/delete")
    assert resp.status_code == 302
    assert app_named("cart") is None
    run = db.session.scalar(select(ProvisioningRun).where(ProvisioningRun.kind == RunKind.DELETE))
    assert run.state == RunState.SUCCEEDED and run.application_id is None
    assert [s.name for s in run.steps] == list(reversed(STEP_NAMES))
    assert all(s.state == StepState.COMPENSATED for s in run.steps)
    assert_nothing_left(world, uid)
    assert db.session.scalar(select(func.count(ApplicationResource.id)).where(
        ApplicationResource.application_id == app_id)) == 0


def test_what_a_delete_cannot_remove_becomes_an_orphan(login, dev_member, dev_maintainer, shop, world):
    create(login(dev_member))
    uid = app_named("cart").uid
    world.fail("registry.delete_repository", "auth", times=None, message="403 Forbidden")
    m = login(dev_maintainer)
    m.post("/t/dev/shop/cart/delete")
    assert app_named("cart") is None
    orphan = db.session.scalar(select(Orphan))
    assert orphan.step == "image_repository" and "403 Forbidden" in orphan.error
    assert orphan.application_label == "dev/shop/cart"
    assert_nothing_left(world, uid, {orphan.external_id})
    assert set(owned(world, "image_repository", uid)) == {orphan.external_id}
    page = m.get("/orphans")
    assert "dev/shop/cart" in page.text and "403 Forbidden" in page.text
    # Once the cause is fixed, the orphan can be removed from the page.
    world.clear_failures()
    assert m.post(f"/orphans/{orphan.id}/retry", headers=HTMX).status_code == 200
    assert_nothing_left(world, uid)
    db.session.refresh(orphan)
    assert orphan.resolution == "removed"


def test_delete_finds_what_a_crash_left_unrecorded(login, dev_member, dev_maintainer, shop, world):
    world.crash("registry.create_repository", when="after")
    # RQ records the "dead" job as failed, as it does when a work horse dies; the run keeps its lease.
    create_application(dev_member, "dev", "shop", NewApplication("cart", "python-web"))
    application = app_named("cart")
    uid = application.uid
    run = latest_run(application.id)
    run.cancel_requested = True  # cancelled while its worker was dead
    _expire_lease(run)
    from jobs.provisioning import sweep

    sweep()
    assert latest_run(application.id).state == RunState.CANCELLED
    login(dev_maintainer).post("/t/dev/shop/cart/delete")
    assert app_named("cart") is None
    assert_nothing_left(world, uid)  # the image repository was found by name and removed


def test_cancel_then_delete_waits_for_the_run_then_deletes(login, dev_member, dev_maintainer, shop, world):
    world.crash("cluster.ensure_namespace", when="before")
    # RQ records the "dead" job as failed, as it does when a work horse dies; the run keeps its lease.
    create_application(dev_member, "dev", "shop", NewApplication("cart", "python-web"))
    application = app_named("cart")
    uid = application.uid
    run = latest_run(application.id)
    assert login(dev_maintainer).post("/t/dev/shop/cart/delete").status_code == 302
    db.session.refresh(application)
    assert application.state == "deleting"  # the delete waits for the running run to stop
    _expire_lease(latest_run(application.id))
    from jobs.provisioning import sweep

    sweep()
    assert app_named("cart") is None
    db.session.refresh(run)
    assert run.state == RunState.CANCELLED
    assert_nothing_left(world, uid)


def test_reconcile_recreates_what_went_missing(login, dev_member, shop, world):
    c = login(dev_member)
    create(c)
    application = app_named("cart")
    job_id = next(iter(owned(world, "job", application.uid)))
    world.remove("job", job_id)  # someone deleted the CI job by hand
    assert c.post("/t/dev/shop/cart/reconcile", headers=HTMX).status_code == 200
    run = latest_run(application.id)
    assert run.kind == RunKind.UPDATE and run.state == RunState.SUCCEEDED
    assert len(owned(world, "job", application.uid)) == 1
    assert len(owned(world, "repository", application.uid)) == 2  # the rest adopted, not duplicated


def test_one_active_run_per_application_is_enforced_by_the_database(app, dev_member, shop, world):
    from sqlalchemy.exc import IntegrityError

    from portal.services.provisioning.runs import new_run

    application = create_application(dev_member, "dev", "shop", NewApplication("cart", "python-web"))
    first = new_run(application, RunKind.UPDATE, dev_member)
    db.session.commit()
    second = new_run(application, RunKind.UPDATE, dev_member)
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    assert first.state == RunState.QUEUED and second not in db.session


def test_cancel_and_retry_buttons_answer_conflicts_clearly(login, dev_member, shop, world):
    c = login(dev_member)
    create(c)
    run = latest_run(app_named("cart").id)
    resp = c.post(f"/t/dev/shop/cart/runs/{run.id}/cancel", headers=HTMX)
    assert resp.status_code == 409 and "in progress can be cancelled" in resp.text
    resp = c.post(f"/t/dev/shop/cart/runs/{run.id}/retry", headers=HTMX)
    assert resp.status_code == 409


def test_concurrent_creates_of_one_name_make_one_application_and_one_run(app, login, dev_member, shop, world,
                                                                        db_backend):
    rounds, statuses = 5, []
    for i in range(rounds):
        barrier = threading.Barrier(2)
        results: list[int] = []
        clients = [login(dev_member), login(dev_member)]
        for client in clients:
            client.csrf_token()  # sign the session now, not in the threads

        def post(client, name=f"twin-{i}"):
            with app.app_context():
                barrier.wait()
                results.append(create(client, name).status_code)

        threads = [threading.Thread(target=post, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses.append(sorted(results))
    assert statuses == [[302, 422]] * rounds
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Application.id))) == rounds
    assert db.session.scalar(select(func.count(ProvisioningRun.id))) == rounds
    assert world.creations("repository") == 2 * rounds


def test_an_unrecorded_thing_that_cannot_be_removed_is_still_reported(login, dev_member, dev_maintainer, shop,
                                                                       world):
    world.crash("ci.create_job", when="after")  # the job exists, the portal never recorded it
    create_application(dev_member, "dev", "shop", NewApplication("cart", "python-web"))
    application = app_named("cart")
    uid = application.uid
    run = latest_run(application.id)
    run.cancel_requested = True
    _expire_lease(run)
    from jobs.provisioning import sweep

    sweep()
    world.fail("ci.delete_job", "auth", times=None, message="403 Forbidden")
    login(dev_maintainer).post("/t/dev/shop/cart/delete")
    assert app_named("cart") is None
    orphan = db.session.scalar(select(Orphan))
    assert orphan is not None and orphan.step == "ci_job" and "403 Forbidden" in orphan.error
    assert_nothing_left(world, uid, {orphan.external_id})


def test_every_attempt_at_a_step_is_counted_in_the_metrics_with_its_outcome(login, dev_member, shop, world):
    from prometheus_client import REGISTRY

    def count(step: str, outcome: str) -> float:
        return REGISTRY.get_sample_value("portal_provisioning_step_duration_seconds_count",
                                         {"step": step, "outcome": outcome}) or 0.0

    before = {(step, outcome): count(step, outcome) for step in ("ci_job", "source_repository")
              for outcome in ("retrying", "succeeded")}
    op, skip, _ = STEP_CREATES["ci_job"]
    world.fail(op, "transient", times=2, skip=skip)
    create(login(dev_member))
    assert latest_run(app_named("cart").id).state == RunState.SUCCEEDED
    assert count("ci_job", "retrying") == before["ci_job", "retrying"] + 2
    assert count("ci_job", "succeeded") == before["ci_job", "succeeded"] + 1
    assert count("source_repository", "succeeded") == before["source_repository", "succeeded"] + 1
    assert count("source_repository", "retrying") == before["source_repository", "retrying"]
