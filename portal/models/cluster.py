"""Registered Kubernetes clusters and the teams that deploy to them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Column, ForeignKey, Index, String, Table, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.account import Team
from portal.models.base import UTCDateTime, utcnow

cluster_teams = Table(
    "cluster_teams",
    db.metadata,
    Column("cluster_id", ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True),
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
)


class Cluster(db.Model):
    __tablename__ = "clusters"
    # At most one central cluster (where Argo CD runs), enforced by the database.
    __table_args__ = (
        Index("uq_clusters_one_central", "is_central", unique=True,
              sqlite_where=text("is_central"), postgresql_where=text("is_central")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    api_url: Mapped[str] = mapped_column(String(255))
    # The name of the stored secret (encrypted) holding the token or kubeconfig, never the credentials.
    credentials_ref: Mapped[str] = mapped_column(String(255), default="")
    auth_kind: Mapped[str] = mapped_column(String(20), default="")  # token | kubeconfig | "" (none yet)
    ca_pem: Mapped[str] = mapped_column(Text, default="")  # the API server's CA: public, shown back
    verify_tls: Mapped[bool] = mapped_column(Boolean, default=True)
    # The last connection check: when, the server's version, missing permissions, or the error.
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    check_result: Mapped[dict] = mapped_column(JSON, default=dict)
    is_central: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    teams: Mapped[list[Team]] = relationship(secondary=cluster_teams, order_by=Team.name)
