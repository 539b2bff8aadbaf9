"""The registry of Kubernetes clusters and which teams deploy to them (admins only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from portal.errors import NotFound, ValidationFailed
from portal.extensions import db
from portal.models import Cluster, Team, User
from portal.services import audit
from portal.services.access import require_admin
from portal.services.naming import label_errors

MAX_CLUSTER = 40


@dataclass(frozen=True)
class ClusterInput:
    name: str
    api_url: str
    credentials_ref: str = ""
    is_central: bool = False
    team_names: list[str] = field(default_factory=list)


def list_clusters(actor: User) -> list[Cluster]:
    require_admin(actor)
    return list(db.session.scalars(select(Cluster).order_by(Cluster.name)))


def _validate(data: ClusterInput, existing: Cluster | None) -> tuple[dict[str, list[str]], list[Team]]:
    errors: dict[str, list[str]] = {}
    if existing is None:
        if e := label_errors(data.name.strip(), MAX_CLUSTER):
            errors["name"] = e
        elif db.session.scalar(select(Cluster.id).where(Cluster.name == data.name.strip())):
            errors["name"] = ["A cluster with this name is registered already."]
    url = urlsplit(data.api_url.strip())
    if url.scheme not in ("https", "http") or not url.hostname:
        errors["api_url"] = ["An http(s) URL of the API server, for example https://10.0.0.1:6443."]
    elif len(data.api_url) > 255:
        errors["api_url"] = ["At most 255 characters."]
    if len(data.credentials_ref) > 255:
        errors["credentials_ref"] = ["At most 255 characters."]
    teams = list(db.session.scalars(select(Team).where(Team.name.in_(data.team_names))))
    if len(teams) != len(set(data.team_names)):
        errors["team_names"] = ["Unknown team."]
    return errors, teams


def _apply(cluster: Cluster, data: ClusterInput, teams: list[Team]) -> None:
    cluster.api_url = data.api_url.strip()
    cluster.credentials_ref = data.credentials_ref.strip()
    cluster.teams = teams
    if data.is_central and not cluster.is_central:
        # One central cluster: the one where Argo CD runs.
        db.session.execute(update(Cluster).where(Cluster.is_central.is_(True)).values(is_central=False))
    cluster.is_central = data.is_central


def register_cluster(actor: User, data: ClusterInput) -> Cluster:
    require_admin(actor)
    errors, teams = _validate(data, None)
    if errors:
        raise ValidationFailed(errors)
    cluster = Cluster(name=data.name.strip())
    _apply(cluster, data, teams)
    db.session.add(cluster)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ValidationFailed({"name": ["A cluster with this name is registered already."]}) from None
    audit.record(actor, "cluster.registered", "cluster", cluster.name, cluster.id,
                 teams=[t.name for t in teams], central=cluster.is_central)
    db.session.commit()
    return cluster


def get_cluster(actor: User, name: str) -> Cluster:
    require_admin(actor)
    cluster = db.session.scalar(select(Cluster).where(Cluster.name == name))
    if cluster is None:
        raise NotFound("No such cluster.")
    return cluster


def update_cluster(actor: User, name: str, data: ClusterInput) -> Cluster:
    cluster = get_cluster(actor, name)
    errors, teams = _validate(data, cluster)
    if errors:
        raise ValidationFailed(errors)
    _apply(cluster, data, teams)
    audit.record(actor, "cluster.updated", "cluster", cluster.name, cluster.id,
                 teams=[t.name for t in teams], central=cluster.is_central)
    db.session.commit()
    return cluster


def delete_cluster(actor: User, name: str) -> None:
    cluster = get_cluster(actor, name)
    audit.record(actor, "cluster.deleted", "cluster", cluster.name, cluster.id)
    db.session.delete(cluster)
    db.session.commit()
