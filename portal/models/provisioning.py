"""Provisioning: runs of ordered steps that bring an application's outside resources into being
(or remove them), what each step created, and what could not be removed."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint, select, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e], validate_strings=True,
                native_enum=False, length=20)


class RunKind(str, enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class RunState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in (RunState.QUEUED, RunState.RUNNING)


ACTIVE_STATES = ("queued", "running")


class StepState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    COMPENSATED = "compensated"  # removed again by a delete run


class Timed:
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return ((self.finished_at or utcnow()) - self.started_at).total_seconds()


class ExternalThing:
    """Which thing, in which outside system, a step made."""

    step: Mapped[str] = mapped_column(String(40))
    system: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(String(500), default="")
    attributes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class ProvisioningRun(Timed, db.Model):
    __tablename__ = "provisioning_runs"
    __table_args__ = (
        # At most one active run per application, whatever the number of web processes and workers.
        Index("uq_provisioning_runs_one_active", "application_id", unique=True,
              sqlite_where=text("state IN ('queued', 'running')"),
              postgresql_where=text("state IN ('queued', 'running')")),
        Index("ix_provisioning_runs_lease", "state", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="SET NULL"), index=True
    )
    # Kept so that the history of a deleted application still reads well.
    application_label: Mapped[str] = mapped_column(String(120))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    kind: Mapped[RunKind] = mapped_column(_enum(RunKind, "run_kind"))
    state: Mapped[RunState] = mapped_column(_enum(RunState, "run_state"), default=RunState.QUEUED)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requested_by_name: Mapped[str] = mapped_column(String(40))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(Text, default="")
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a queued run is due to be picked up (at once, or after a retry delay); the sweeper
    # re-enqueues queued runs long past it, in case their job was lost with Redis.
    wake_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    steps: Mapped[list["ProvisioningStep"]] = relationship(
        back_populates="run", order_by="ProvisioningStep.position", cascade="all, delete-orphan"
    )


class ProvisioningStep(Timed, db.Model):
    __tablename__ = "provisioning_steps"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("provisioning_runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(40))
    state: Mapped[StepState] = mapped_column(_enum(StepState, "step_state"), default=StepState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts since the run was last started or retried: the budget for transient errors.
    cycle_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    refs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    log: Mapped[list[str]] = mapped_column(JSON, default=list)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    run: Mapped[ProvisioningRun] = relationship(back_populates="steps")


class ApplicationResource(ExternalThing, db.Model):
    """What exists in an outside system for an application: the delete run's list of things to remove."""

    __tablename__ = "application_resources"
    __table_args__ = (
        UniqueConstraint("application_id", "step"),
        # The webhook finds the application of a repository by the system's id for it.
        Index("ix_application_resources_system_external_id", "system", "external_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    adopted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @classmethod
    def of(cls, application_id: int | None, step: str) -> "ApplicationResource | None":
        """What the application has on record for this step (``source_repository``, ``ci_job``...), if anything."""
        if application_id is None:
            return None
        return db.session.scalar(select(cls).where(cls.application_id == application_id, cls.step == step))


class Orphan(ExternalThing, db.Model):
    """Something a delete run could not remove: reported, never forgotten, until removed or dismissed."""

    __tablename__ = "orphans"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("provisioning_runs.id", ondelete="SET NULL"))
    application_label: Mapped[str] = mapped_column(String(120))
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str] = mapped_column(String(20), default="")  # removed | dismissed
