"""What users do with provisioning: start, watch, retry, cancel, reconcile, delete, and deal with orphans."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.errors import Conflict, NotFound, PermissionDenied
from portal.extensions import db
from portal.models import Application, Orphan, ProvisioningRun, ProvisioningStep, RunKind, RunState, StepState, User
from portal.models.base import utcnow
from portal.services import audit
from portal.services.access import is_maintainer, require_maintainer, require_visible, visible_team_ids
from portal.services.provisioning.chain import chain, environments_of, step_for


@dataclass(frozen=True)
class ProvisioningView:
    run: ProvisioningRun | None
    can_retry: bool
    can_cancel: bool
    can_reconcile: bool

    @property
    def active(self) -> bool:
        return self.run is not None and self.run.state.active


def new_run(app: Application, kind: RunKind, actor: User | None) -> ProvisioningRun:
    """Add a run with its steps to the session (the caller commits, then calls enqueue_run)."""
    steps = chain(environments_of(current_app.config["PORTAL"]))
    steps = list(reversed(steps)) if kind == RunKind.DELETE else list(steps)
    run = ProvisioningRun(
        application_id=app.id, application_label=f"{app.team.name}/{app.project.name}/{app.name}",
        team_id=app.team_id, kind=kind, state=RunState.QUEUED, requested_by_id=actor.id if actor else None,
        requested_by_name=actor.username if actor else "portal", wake_at=utcnow(),
    )
    run.steps = [ProvisioningStep(position=i, name=s.name, state=StepState.PENDING, log=[], refs={})
                 for i, s in enumerate(steps)]
    app.state = "deleting" if kind == RunKind.DELETE else "provisioning"
    db.session.add(run)
    return run


def enqueue_run(run_id: int) -> None:
    from jobs.provisioning import enqueue_run as enqueue

    enqueue(run_id)


def latest_run(app_id: int) -> ProvisioningRun | None:
    return db.session.scalar(select(ProvisioningRun).where(ProvisioningRun.application_id == app_id)
                             .order_by(ProvisioningRun.id.desc()).limit(1))


def provisioning_view(actor: User, app: Application) -> ProvisioningView:
    require_visible(actor, app.team_id, "application")
    run = latest_run(app.id)
    deleting = app.state == "deleting"
    return ProvisioningView(
        run=run,
        can_retry=run is not None and run.state in (RunState.FAILED, RunState.CANCELLED) and not deleting,
        can_cancel=run is not None and run.state.active and run.kind != RunKind.DELETE and not run.cancel_requested,
        can_reconcile=(run is None or not run.state.active) and not deleting,
    )


def _run_of(actor: User, app: Application, run_id: int) -> ProvisioningRun:
    require_visible(actor, app.team_id, "application")
    run = db.session.get(ProvisioningRun, run_id)
    if run is None or run.application_id != app.id:
        raise NotFound("No such provisioning run.")
    return run


def _commit_active(what: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:  # the partial unique index: another run became active meanwhile
        db.session.rollback()
        raise Conflict(f"Another provisioning run of this application is in progress; {what} later.") from None


def retry_run(actor: User, app: Application, run_id: int) -> ProvisioningRun:
    """Resume a failed or cancelled run from its first unfinished step, with a fresh retry budget."""
    run = _run_of(actor, app, run_id)
    latest = latest_run(app.id)
    if latest is None or latest.id != run.id or run.state not in (RunState.FAILED, RunState.CANCELLED) \
            or app.state == "deleting":
        raise Conflict("Only the latest run, once failed or cancelled, can be retried.")
    for step in run.steps:
        if step.state in (StepState.FAILED, StepState.PENDING, StepState.RUNNING):
            step.state, step.cycle_attempts, step.next_attempt_at = StepState.PENDING, 0, None
            step.finished_at = None
    run.state, run.error, run.cancel_requested, run.finished_at = RunState.QUEUED, "", False, None
    run.wake_at = utcnow()
    app.state = "provisioning"
    audit.record(actor, "provisioning.retried", "application", run.application_label, app.id, app.team_id,
                 run=run.id)
    _commit_active("retry")
    enqueue_run(run.id)
    return run


def cancel_run(actor: User, app: Application, run_id: int) -> ProvisioningRun:
    """Stop a run after its current step. What was created stays, for a retry or a delete to deal with."""
    run = _run_of(actor, app, run_id)
    if not run.state.active or run.kind == RunKind.DELETE:
        raise Conflict("Only a create or update run in progress can be cancelled.")
    run.cancel_requested = True
    audit.record(actor, "provisioning.cancelled", "application", run.application_label, app.id, app.team_id,
                 run=run.id)
    if run.state == RunState.QUEUED and run.lease_owner is None:
        from portal.services.provisioning.engine import finish_run

        finish_run(run, RunState.CANCELLED, "Cancelled on request.")
    db.session.commit()
    return run


def reconcile(actor: User, app: Application) -> ProvisioningRun:
    """Run the chain again: every step finds what exists, converges it, and recreates what went missing."""
    require_visible(actor, app.team_id, "application")
    if not provisioning_view(actor, app).can_reconcile:
        raise Conflict("A provisioning run is in progress.")
    run = new_run(app, RunKind.UPDATE, actor)
    audit.record(actor, "provisioning.reconciled", "application", run.application_label, app.id, app.team_id)
    _commit_active("reconcile")
    enqueue_run(run.id)
    return run


def request_delete(actor: User, app: Application) -> ProvisioningRun | None:
    """Delete the application by running the chain backwards. An active run is cancelled first."""
    require_maintainer(actor, app.team_id, "delete applications")
    label = f"{app.team.name}/{app.project.name}/{app.name}"
    run = latest_run(app.id)
    audit.record(actor, "application.deleted", "application", label, app.id, app.team_id)
    if run is not None and run.state.active:
        if run.kind == RunKind.DELETE:
            raise Conflict("This application is being deleted already.")
        run.cancel_requested = True
        app.state = "deleting"  # the delete run starts when the current run stops
        db.session.commit()
        return None
    delete_run = new_run(app, RunKind.DELETE, actor)
    _commit_active("delete")
    enqueue_run(delete_run.id)
    return delete_run


def after_run(run: ProvisioningRun) -> int | None:
    """Called by the engine as a run ends, in its transaction: the application's state follows.

    Returns the id of a delete run to enqueue once committed, when a delete waited for this run.
    """
    if run.kind == RunKind.DELETE or run.application_id is None:
        return None
    app = db.session.get(Application, run.application_id)
    if app is None:
        return None
    if app.state == "deleting":
        db.session.flush()  # the finished run leaves the active set before the delete run joins it
        follow = new_run(app, RunKind.DELETE, None)
        follow.requested_by_name = run.requested_by_name
        db.session.flush()
        return follow.id
    app.state = {RunState.SUCCEEDED: "ready", RunState.FAILED: "failed"}.get(run.state, "cancelled")
    return None


def list_orphans(actor: User, include_resolved: bool = False) -> list[Orphan]:
    query = select(Orphan).order_by(Orphan.created_at.desc())
    visible = visible_team_ids(actor)
    if visible is not None:
        query = query.where(Orphan.team_id.in_(visible))
    if not include_resolved:
        query = query.where(Orphan.resolved_at.is_(None))
    return list(db.session.scalars(query))


def _orphan(actor: User, orphan_id: int) -> Orphan:
    orphan = db.session.get(Orphan, orphan_id)
    if orphan is None:
        raise NotFound("No such orphan.")
    require_visible(actor, orphan.team_id, "orphan")
    if not is_maintainer(actor, orphan.team_id):
        raise PermissionDenied("Only a maintainer of the team or an admin may deal with orphans.")
    if orphan.resolved_at is not None:
        raise Conflict("This orphan was dealt with already.")
    return orphan


def retry_orphan_removal(actor: User, orphan_id: int) -> Orphan:
    """Try again to remove an orphan from its system (after its cause was fixed)."""
    from integrations.errors import IntegrationError, NotFound as GoneAlready
    from integrations.resources import ExternalResource
    from portal.services.provisioning.engine import step_context
    from portal.services.providers import current_providers

    orphan = _orphan(actor, orphan_id)
    definition = step_for(orphan.step)
    providers = current_providers()
    if providers.get(definition.kind) is None:
        raise Conflict(f"No {definition.kind} provider is configured; it cannot be removed from here.")
    ctx = step_context(None, providers)
    target = ExternalResource(system=orphan.system, kind=orphan.kind, external_id=orphan.external_id,
                              name=orphan.name, attributes=dict(orphan.attributes or {}))
    try:
        definition.delete(ctx, target)
    except GoneAlready:
        pass
    except IntegrationError as exc:
        orphan.error = str(exc)
        db.session.commit()
        raise Conflict(f"Still cannot remove it: {exc}") from None
    orphan.resolved_at, orphan.resolution = utcnow(), "removed"
    audit.record(actor, "orphan.removed", orphan.kind, orphan.name, orphan.id, orphan.team_id, system=orphan.system)
    db.session.commit()
    return orphan


def dismiss_orphan(actor: User, orphan_id: int) -> Orphan:
    """Mark an orphan as dealt with outside the portal."""
    orphan = _orphan(actor, orphan_id)
    orphan.resolved_at, orphan.resolution = utcnow(), "dismissed"
    audit.record(actor, "orphan.dismissed", orphan.kind, orphan.name, orphan.id, orphan.team_id, system=orphan.system)
    db.session.commit()
    return orphan
