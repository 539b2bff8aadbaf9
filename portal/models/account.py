"""People and teams: User, Team and the Membership between them."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import JSON, Boolean, Enum, ForeignKey, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow


class Role(str, enum.Enum):
    MEMBER = "member"
    MAINTAINER = "maintainer"


class MembershipStatus(str, enum.Enum):
    ACTIVE = "active"
    PENDING = "pending"


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    memberships: Mapped[list["Membership"]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    def active_team_ids(self) -> set[int]:
        return {m.team_id for m in self.memberships if m.status == MembershipStatus.ACTIVE}

    def membership_in(self, team_id: int) -> "Membership | None":
        return next((m for m in self.memberships if m.team_id == team_id), None)

    @property
    def is_pending(self) -> bool:
        """Signed up but not yet admitted to any team (and not an admin)."""
        return not self.is_admin and not self.active_team_ids()

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class Team(db.Model):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    # Quota and container defaults of every namespace of the team's applications (admins edit them);
    # keys of integrations.cluster.Quota and Limits, missing keys take their defaults.
    resource_defaults: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    memberships: Mapped[list["Membership"]] = relationship(
        back_populates="team", cascade="all, delete-orphan"
    )

    @classmethod
    def by_name(cls, name: str) -> "Team | None":
        return db.session.scalar(select(cls).where(cls.name == name))

    def __repr__(self) -> str:
        return f"<Team {self.name}>"


class Membership(db.Model):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "team_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(
        Enum(Role, name="membership_role", values_callable=lambda e: [m.value for m in e],
             validate_strings=True),
        default=Role.MEMBER,
    )
    status: Mapped[MembershipStatus] = mapped_column(
        Enum(MembershipStatus, name="membership_status", values_callable=lambda e: [m.value for m in e],
             validate_strings=True),
        default=MembershipStatus.ACTIVE,
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    team: Mapped[Team] = relationship(back_populates="memberships")
