"""Builds: a pushed commit, the CI build it started, its console log kept in the database, and the image
it produced; and the webhook deliveries already handled, so that a replayed event builds nothing."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow
from portal.models.provisioning import Timed, _enum


class BuildState(str, enum.Enum):
    QUEUED = "queued"  # recorded, the job not yet started
    TRIGGERED = "triggered"  # the CI server accepted it and holds it in its queue
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    ERROR = "error"  # the portal could not start or follow it

    @property
    def over(self) -> bool:
        return self in (BuildState.SUCCEEDED, BuildState.FAILED, BuildState.ABORTED, BuildState.ERROR)


class Build(Timed, db.Model):
    __tablename__ = "builds"
    __table_args__ = (
        UniqueConstraint("application_id", "number"),
        Index("ix_builds_application_id_created_at", "application_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # per application: 1, 2, 3...
    state: Mapped[BuildState] = mapped_column(_enum(BuildState, "build_state"), default=BuildState.QUEUED)
    # The commit, as the push event described it.
    commit_sha: Mapped[str] = mapped_column(String(64))
    commit_message: Mapped[str] = mapped_column(Text, default="")
    commit_author: Mapped[str] = mapped_column(String(200), default="")
    commit_url: Mapped[str] = mapped_column(String(500), default="")
    branch: Mapped[str] = mapped_column(String(200), default="")
    pushed_by: Mapped[str] = mapped_column(String(200), default="")
    # The CI server's side.
    ci_system: Mapped[str] = mapped_column(String(40), default="")
    ci_queue_id: Mapped[str] = mapped_column(String(80), default="")
    ci_number: Mapped[int | None] = mapped_column(Integer)
    ci_url: Mapped[str] = mapped_column(String(500), default="")
    log_size: Mapped[int] = mapped_column(Integer, default=0)  # characters of our log (console and portal notes)
    ci_console_offset: Mapped[int] = mapped_column(Integer, default=0)  # where the CI server's console is read up to
    # What it produced.
    image_repository: Mapped[str] = mapped_column(String(300), default="")  # host/path
    image_tag: Mapped[str] = mapped_column(String(128), default="")
    image_digest: Mapped[str] = mapped_column(String(100), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    log_chunks: Mapped[list["BuildLogChunk"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="BuildLogChunk.offset")

    @property
    def image_reference(self) -> str:
        return f"{self.image_repository}:{self.image_tag}" if self.image_repository and self.image_tag else ""

    @property
    def short_sha(self) -> str:
        return self.commit_sha[:8]


class BuildLogChunk(db.Model):
    """A piece of a build's console, at character ``offset`` of the whole: kept after the CI server forgets it."""

    __tablename__ = "build_log_chunks"
    __table_args__ = (UniqueConstraint("build_id", "offset"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    offset: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


class HookDelivery(db.Model):
    """A webhook event already handled, by the sender's event id (GitLab's X-Gitlab-Event-UUID)."""

    __tablename__ = "hook_deliveries"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(200), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class DeploymentState(str, enum.Enum):
    COMMITTED = "committed"  # the image is in the environment's values file; the deployer has not caught up
    SYNCED = "synced"  # the deployer applied that commit
    HEALTHY = "healthy"  # ... and the application is healthy with every pod ready
    DEGRADED = "degraded"
    FAILED = "failed"  # the deployer's sync failed
    TIMED_OUT = "timed_out"
    SUPERSEDED = "superseded"  # a newer deployment of the environment came before this one finished

    @property
    def over(self) -> bool:
        return self not in (DeploymentState.COMMITTED, DeploymentState.SYNCED)


class Deployment(db.Model):
    """An image put into one environment by a commit to the deployment repository: a deploy after a build,
    a rollback to an earlier image, or a promotion from the previous environment."""

    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("application_id", "number"),
        Index("ix_deployments_application_id_environment", "application_id", "environment", "number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    environment: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))  # deploy | rollback | promote
    state: Mapped[DeploymentState] = mapped_column(_enum(DeploymentState, "deployment_state"),
                                                   default=DeploymentState.COMMITTED)
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"))
    image_repository: Mapped[str] = mapped_column(String(300))
    image_tag: Mapped[str] = mapped_column(String(128))
    image_digest: Mapped[str] = mapped_column(String(100), default="")
    source_commit: Mapped[str] = mapped_column(String(64), default="")  # the source commit the image was built from
    deploy_commit: Mapped[str] = mapped_column(String(64), default="")  # the commit in the deployment repository
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    sync_status: Mapped[str] = mapped_column(String(40), default="")
    health_status: Mapped[str] = mapped_column(String(40), default="")
    pods: Mapped[str] = mapped_column(String(40), default="")  # "2/3 ready"
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    healthy_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def image_reference(self) -> str:
        return f"{self.image_repository}:{self.image_tag}"
