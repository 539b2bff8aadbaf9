"""Projects (owned by one team) and the applications in them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.account import Team, User
from portal.models.base import UTCDateTime, utcnow


class Project(db.Model):
    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("team_id", "name"),
        # Target of the applications' (project_id, team_id) key, which keeps their team right.
        UniqueConstraint("id", "team_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    team: Mapped[Team] = relationship()
    created_by: Mapped[User | None] = relationship()
    applications: Mapped[list["Application"]] = relationship(
        back_populates="project", order_by="Application.name"
    )


class Application(db.Model):
    __tablename__ = "applications"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        ForeignKeyConstraint(
            ["project_id", "team_id"], ["projects.id", "projects.team_id"], ondelete="RESTRICT",
            name="fk_applications_project_team",
        ),
        # The list pages sort a team's applications by name and filter by it.
        Index("ix_applications_team_id_name", "team_id", "name"),
        Index("ix_applications_team_id_created_at", "team_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(index=True)
    # Denormalised from the project so that a team's application list is one indexed query;
    # the composite foreign key above makes a mismatch impossible.
    team_id: Mapped[int] = mapped_column()
    name: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text, default="")
    template: Mapped[str] = mapped_column(String(40))
    # A stable identity written on everything provisioned for it, so that only what is ours is adopted.
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: uuid.uuid4().hex)
    # Where provisioning stands: new, provisioning, ready, failed, cancelled, deleting.
    state: Mapped[str] = mapped_column(String(20), default="new")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="applications", foreign_keys=[project_id])
    team: Mapped[Team] = relationship(
        primaryjoin="Application.team_id == Team.id", foreign_keys=[team_id], viewonly=True
    )
    created_by: Mapped[User | None] = relationship()
