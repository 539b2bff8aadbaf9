"""The engine: executes a run's steps in order, resumably, under a lease.

A worker first claims the run with a lease in the database (an atomic UPDATE),
keeps it alive with a heartbeat while it works, and commits after every step.
If the worker dies, the lease expires and the sweeper hands the run to another
worker, which resumes at the first step not yet done; steps look for what they
would create before creating it, so nothing is made twice. Transient errors
are retried with exponential backoff and jitter; permanent ones stop the run at
that step with the system's message.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

from flask import current_app
from rq.timeouts import JobTimeoutException

from jobs.worker import stop_requested
from portal.metrics import observe_step
from sqlalchemy import func, or_, select, update

from integrations.errors import IntegrationError, NotFound, RateLimited
from integrations.resources import ExternalResource
from integrations.scm import Member
from portal.extensions import db
from portal.models import (
    Application,
    ApplicationResource,
    Cluster,
    Membership,
    MembershipStatus,
    Orphan,
    ProvisioningRun,
    ProvisioningStep,
    RunKind,
    Role,
    RunState,
    StepState,
    User,
)
from portal.models.base import utcnow
from portal.services.hooks import webhook_secret
from portal.services.clusters import cluster_target, team_cluster
from portal.services.secrets import has_secret, read_secret, store_secret
from portal.services.team_resources import team_quota
from portal.services.naming import ResourceNames
from portal.services.provisioning.chain import step_for
from portal.services.provisioning.steps import Step, StepContext
from portal.services.providers import current_providers

log = logging.getLogger(__name__)
MAX_LOG_LINES = 200
INLINE_WAIT_LIMIT = 5.0  # longer waits free the worker and come back through the scheduler


class NotOurs(IntegrationError):
    """Something with our deterministic name exists but carries no marker of ours: never adopt it."""


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def backoff(cycle_attempt: int, base: float, cap: float, rng: random.Random = random.Random()) -> float:
    """Full-jitter exponential backoff: uniform in [base/2, min(cap, base * 2**(n-1))]."""
    ceiling = min(cap, base * (2 ** max(0, cycle_attempt - 1)))
    return rng.uniform(min(base / 2, ceiling), ceiling)


class Heartbeat:
    """Keeps the run's lease alive from a thread while a step talks to a slow system."""

    def __init__(self, run_id: int, owner: str, lease: float):
        self.run_id, self.owner, self.lease = run_id, owner, lease
        self.engine = db.engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{run_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                with self.engine.begin() as conn:
                    conn.execute(update(ProvisioningRun).where(
                        ProvisioningRun.id == self.run_id, ProvisioningRun.lease_owner == self.owner
                    ).values(lease_expires_at=utcnow() + timedelta(seconds=self.lease)))
            except Exception:  # a missed beat only shortens the lease; the next one retries
                log.warning("lease heartbeat of run %s failed", self.run_id, exc_info=True)


def claim(run_id: int, owner: str, lease: float) -> bool:
    """Take the run's lease if it is free, expired, or already ours. Atomic across processes."""
    now = utcnow()
    result = db.session.execute(
        update(ProvisioningRun)
        .where(
            ProvisioningRun.id == run_id,
            ProvisioningRun.state.in_([RunState.QUEUED, RunState.RUNNING]),
            or_(ProvisioningRun.lease_owner.is_(None), ProvisioningRun.lease_expires_at < now,
                ProvisioningRun.lease_owner == owner),
        )
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease), state=RunState.RUNNING)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount == 1


def release(run: ProvisioningRun) -> None:
    run.lease_owner = None
    run.lease_expires_at = None


def _append_log(step: ProvisioningStep, message: str) -> None:
    line = f"{utcnow():%H:%M:%S} {message}"
    step.log = [*(step.log or []), line][-MAX_LOG_LINES:]


def step_context(app: Application | None, providers: Any, step: ProvisioningStep | None = None) -> StepContext:
    """What a step may know and use: the application's names and resources, the team's members, secrets,
    cluster and quota. Without an application (an orphan's removal) only the outside systems are there."""
    settings = current_app.config["PORTAL"]
    connections: dict[str, Any] = {}

    def target(name: str):
        cluster = db.session.scalar(select(Cluster).where(Cluster.name == name))
        if cluster is None:
            raise NotFound("portal", f"cluster {name!r} is not registered (any more)")
        return cluster_target(cluster)

    def connect(name: str):
        if name not in connections:
            connections[name] = providers.get("cluster").connect(target(name))
        return connections[name]

    common = dict(public_url=settings.public_url, providers=providers, has_secret=has_secret,
                  read_secret=read_secret, connect_cluster=connect, cluster_target=target)
    if app is None:
        return StepContext(owner="", names=None, description="", template="", **common)  # type: ignore[arg-type]
    known = {
        r.step: ExternalResource(system=r.system, kind=r.kind, external_id=r.external_id, name=r.name, url=r.url,
                                 owner=app.uid, attributes=dict(r.attributes or {}))
        for r in db.session.scalars(select(ApplicationResource).where(ApplicationResource.application_id == app.id))
    }
    bound = team_cluster(app.team_id)
    quota, limits = team_quota(app.team)
    others = db.session.scalar(select(func.count()).select_from(Application).where(
        Application.team_id == app.team_id, Application.id != app.id))
    return StepContext(
        owner=app.uid,
        names=ResourceNames(app.team.name, app.project.name, app.name),
        description=app.description,
        template=app.template,
        known=known,
        log=(lambda msg: _append_log(step, msg)) if step is not None else (lambda msg: None),
        members=team_members(app.team_id),
        webhook_secret=webhook_secret(app.uid),
        keep_secret=lambda name, value, username: store_secret(name, value, app.team_id, username),
        cluster_name=bound.name if bound else "",
        quota=quota, limits=limits, other_team_applications=others or 0,
        **common,
    )


def team_members(team_id: int) -> tuple[Member, ...]:
    """The team's active members as the Git host should know them: maintainers maintain, members develop."""
    rows = db.session.execute(select(User.username, Membership.role).join(Membership, Membership.user_id == User.id)
                              .where(Membership.team_id == team_id, Membership.status == MembershipStatus.ACTIVE)
                              .order_by(User.username)).all()
    return tuple(Member(username, "maintainer" if role == Role.MAINTAINER else "developer") for username, role in rows)


def execute_run(run_id: int, owner: str | None = None) -> str:
    """Work on a run until it ends or must wait. Returns what happened: finished, deferred, released (the worker
    is stopping; the run is queued again for another), busy or gone."""
    settings = current_app.config["PORTAL"]
    owner = owner or worker_identity()
    if not claim(run_id, owner, settings.provisioning_lease):
        return "busy"
    run = db.session.get(ProvisioningRun, run_id)
    if run is None:
        return "gone"
    if run.started_at is None:
        run.started_at = utcnow()
    providers = current_providers()
    with Heartbeat(run_id, owner, settings.provisioning_lease):
        while True:
            db.session.refresh(run)
            if run.cancel_requested:
                return finish_run(run, RunState.CANCELLED, "Cancelled on request.")
            step = next((s for s in run.steps if s.state in (StepState.PENDING, StepState.RUNNING)), None)
            if step is None:
                return _complete(run)
            if stop_requested():  # the worker is shutting down: the next step is another worker's
                release(run)
                run.state = RunState.QUEUED
                db.session.commit()
                from jobs.provisioning import enqueue_run

                enqueue_run(run.id)
                log.info("run %s released at step %s: the worker is stopping", run.id, step.name)
                return "released"
            wait = _seconds_until(step)
            if wait > 0:
                if wait > INLINE_WAIT_LIMIT and settings.rq_async:
                    release(run)
                    run.state = RunState.QUEUED
                    run.wake_at = step.next_attempt_at
                    db.session.commit()
                    from jobs.provisioning import schedule_run

                    schedule_run(run.id, wait)
                    return "deferred"
                time.sleep(wait)
                continue
            outcome = _attempt(run, step, providers, settings)
            if outcome == "stop":
                return "finished"


def _seconds_until(step: ProvisioningStep) -> float:
    if step.next_attempt_at is None:
        return 0.0
    return max(0.0, (step.next_attempt_at - utcnow()).total_seconds())


def _attempt(run: ProvisioningRun, step: ProvisioningStep, providers: Any, settings) -> str:
    """One attempt at one step; commits its outcome and counts it in the metrics. Returns 'next' or 'stop'."""
    started = time.monotonic()
    outcome = "crashed"  # unless the attempt ends below: a job timeout, a killed horse
    try:
        result = _attempt_once(run, step, providers, settings)
        outcome = "retrying" if step.state == StepState.PENDING else step.state.value  # succeeded, skipped, failed
        return result
    finally:
        observe_step(step.name, outcome, time.monotonic() - started)


def _attempt_once(run: ProvisioningRun, step: ProvisioningStep, providers: Any, settings) -> str:
    app = db.session.get(Application, run.application_id) if run.application_id else None
    definition = step_for(step.name)
    step.state = StepState.RUNNING
    step.attempts += 1
    step.cycle_attempts += 1
    step.started_at = step.started_at or utcnow()
    step.next_attempt_at = None
    if step.attempts > 1:
        _append_log(step, f"attempt {step.attempts}")
    db.session.commit()
    try:
        if app is None:
            raise NotFound("portal", "the application no longer exists")
        ctx = step_context(app, providers, step)
        if run.kind == RunKind.DELETE:
            _remove(run, step, definition, ctx, app)
        else:
            _provide(step, definition, ctx, app)
    except IntegrationError as exc:
        return _failed_attempt(run, step, exc, settings)
    except JobTimeoutException:
        raise  # the job's time is up: the lease lapses and another worker resumes this step
    except Exception as exc:  # a bug, not the outside system: stop and say so, without internals
        log.exception("provisioning step %s of run %s crashed", step.name, run.id)
        return _failed_attempt(run, step, IntegrationError("portal", f"internal error ({type(exc).__name__})"),
                               settings, permanent=True)
    step.finished_at = utcnow()
    step.last_error = ""
    db.session.commit()
    return "next"


def _provide(step: ProvisioningStep, definition: Step, ctx: StepContext, app: Application) -> None:
    provider = ctx.provider(definition.kind)
    if provider is None:
        step.state = StepState.SKIPPED
        _append_log(step, f"skipped: no {definition.kind} provider is configured (PORTAL_{definition.kind.upper()})")
        return
    if definition.needs and definition.needs not in ctx.known:
        step.state = StepState.SKIPPED
        _append_log(step, f"skipped: nothing from step {definition.needs} to attach to")
        return
    reason = definition.unavailable(ctx)
    if reason:
        step.state = StepState.SKIPPED
        _append_log(step, f"skipped: {reason}")
        return
    found = definition.find(ctx)
    if found is not None and found.owner != definition.owner(ctx):
        raise NotOurs(found.system, f"{found.kind} {found.name!r} exists but was not created by the portal for "
                                    "this application; refusing to adopt it. Remove or rename it, then retry.")
    if found is not None and not definition.converge:
        resource, adopted = found, True
        _append_log(step, f"found {found.kind} {found.name} ({found.external_id}), ours: adopted")
    else:
        resource, adopted = definition.create(ctx), False
        _append_log(step, f"{'converged' if found else 'created'} {resource.kind} {resource.name} ({resource.external_id})")
    for warning in resource.warnings:
        _append_log(step, f"warning: {warning}")
    definition.complete(ctx, resource)
    _record(app, definition, resource, adopted)
    step.refs = {"system": resource.system, "kind": resource.kind, "id": resource.external_id,
                 "name": resource.name, "url": resource.url, "adopted": adopted}
    step.state = StepState.SUCCEEDED


def _record(app: Application, definition: Step, resource: ExternalResource, adopted: bool) -> ApplicationResource:
    row = ApplicationResource.of(app.id, definition.name)
    if row is None:
        row = ApplicationResource(application_id=app.id, step=definition.name, adopted=adopted)
        db.session.add(row)
    row.system, row.kind, row.external_id = resource.system, resource.kind, resource.external_id
    row.name, row.url, row.attributes = resource.name, resource.url, dict(resource.attributes)
    return row


def _remove(run: ProvisioningRun, step: ProvisioningStep, definition: Step, ctx: StepContext,
            app: Application) -> None:
    """Remove what the step created: the recorded resource, or one found by name that is ours."""
    row = ApplicationResource.of(app.id, definition.name)
    provider = ctx.provider(definition.kind)
    if provider is None:
        if row is not None:
            _orphan(run, step, row, f"no {definition.kind} provider is configured any more")
        step.state = StepState.SKIPPED if row is None else StepState.FAILED
        _append_log(step, "nothing to remove" if row is None else "cannot remove: provider not configured")
        return
    target = ctx.known.get(definition.name)
    if target is None and (not definition.needs or definition.needs in ctx.known) and not definition.unavailable(ctx):
        found = definition.find(ctx)  # created, but the worker died before recording it
        target = found if found is not None and found.owner == definition.owner(ctx) else None
        if target is not None:
            # Recorded before removal, so that if removal fails it is reported as an orphan.
            row = _record(app, definition, target, adopted=True)
            db.session.commit()
    if target is None:
        step.state = StepState.SKIPPED
        _append_log(step, "nothing to remove")
        return
    try:
        definition.delete(ctx, target)
        _append_log(step, f"removed {target.kind} {target.name} ({target.external_id})")
    except NotFound:
        _append_log(step, f"{target.kind} {target.name} was already gone")
    if row is not None:
        db.session.delete(row)
    step.state = StepState.COMPENSATED


def _orphan(run: ProvisioningRun, step: ProvisioningStep, row: ApplicationResource, error: str) -> None:
    """Report a recorded resource that could not be removed; it leaves the application's list."""
    db.session.add(Orphan(
        team_id=run.team_id, run_id=run.id, application_label=run.application_label, step=step.name,
        system=row.system, kind=row.kind, external_id=row.external_id, name=row.name, url=row.url or "",
        attributes=dict(row.attributes or {}), error=error,
    ))
    db.session.delete(row)


def _failed_attempt(run: ProvisioningRun, step: ProvisioningStep, exc: IntegrationError, settings,
                    permanent: bool = False) -> str:
    db.session.rollback()  # drop whatever the attempt half-did in our session
    run = db.session.get(ProvisioningRun, run.id)
    step = db.session.get(ProvisioningStep, step.id)
    message = str(exc)
    step.last_error = message
    retry = exc.transient and not permanent and step.cycle_attempts < settings.provisioning_attempts
    if retry:
        delay = backoff(step.cycle_attempts, settings.provisioning_backoff, settings.provisioning_backoff_max)
        if isinstance(exc, RateLimited) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        step.state = StepState.PENDING
        step.next_attempt_at = utcnow() + timedelta(seconds=delay)
        _append_log(step, f"transient error, retrying in {delay:.1f} s: {message}")
        db.session.commit()
        return "next"
    if exc.transient:
        message = f"gave up after {step.cycle_attempts} attempts: {message}"
    step.state = StepState.FAILED
    step.last_error = message
    step.finished_at = utcnow()
    _append_log(step, f"failed: {message}")
    if run.kind == RunKind.DELETE:
        # A delete never stops half-way: what cannot be removed is reported as an orphan.
        row = ApplicationResource.of(run.application_id, step.name)
        if row is not None:
            _orphan(run, step, row, message)
        db.session.commit()
        return "next"
    finish_run(run, RunState.FAILED, f"{step_for(step.name).label}: {message}")
    return "stop"


def _complete(run: ProvisioningRun) -> str:
    if run.kind == RunKind.DELETE and run.application_id is not None:
        app = db.session.get(Application, run.application_id)
        if app is not None:  # everything outside is gone or reported: the application goes too
            db.session.delete(app)
    finish_run(run, RunState.SUCCEEDED, "")
    return "finished"


def finish_run(run: ProvisioningRun, state: RunState, error: str) -> str:
    from portal.services.provisioning.runs import after_run, enqueue_run

    run.state = state
    run.error = error
    run.finished_at = utcnow()
    release(run)
    for s in run.steps:
        if s.state == StepState.RUNNING:
            s.state = StepState.PENDING
    follow_up = after_run(run)
    db.session.commit()
    if follow_up is not None:
        enqueue_run(follow_up)
    if state == RunState.SUCCEEDED and run.kind == RunKind.CREATE and run.application_id is not None:
        from portal.services.builds import build_first_commit

        build_first_commit(run.application_id)
    return "finished"


def sweep_stalled_runs() -> list[int]:
    """Runs whose worker died (lease expired) or that were queued but lost from Redis: resume them."""
    settings = current_app.config["PORTAL"]
    now = utcnow()
    overdue = now - timedelta(seconds=settings.provisioning_lease)
    ids = list(db.session.scalars(select(ProvisioningRun.id).where(
        or_(
            (ProvisioningRun.state == RunState.RUNNING)
            & or_(ProvisioningRun.lease_expires_at < now, ProvisioningRun.lease_owner.is_(None)),
            (ProvisioningRun.state == RunState.QUEUED) & (ProvisioningRun.wake_at < overdue),
        )
    ).order_by(ProvisioningRun.id)))
    db.session.commit()
    return ids
