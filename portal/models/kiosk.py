"""Kiosk tokens: read-only links that open team boards on a wall screen without a login session.

Like personal access tokens, only a SHA-256 of the token is kept; the token is shown once, when an admin
makes it, as part of the kiosk URL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.account import Team, User
from portal.models.base import UTCDateTime, utcnow

kiosk_token_teams = Table(
    "kiosk_token_teams",
    db.metadata,
    Column("kiosk_token_id", ForeignKey("kiosk_tokens.id", ondelete="CASCADE"), primary_key=True),
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
)


class KioskToken(db.Model):
    __tablename__ = "kiosk_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the whole token
    prefix: Mapped[str] = mapped_column(String(12))  # its first characters, to tell tokens apart
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # The teams whose boards the token may show, and no others.
    teams: Mapped[list[Team]] = relationship(secondary=kiosk_token_teams, order_by=Team.name)
    created_by: Mapped[User | None] = relationship()

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def __repr__(self) -> str:
        return f"<KioskToken {self.prefix}… {self.name}>"
