"""The registry of Kubernetes clusters and which teams deploy to them (admins only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from portal.errors import NotFound, ValidationFailed
from portal.extensions import db
from portal.models import Cluster, Team, User
from portal.services import audit
from portal.services.access import require_admin
from integrations.cluster import ClusterTarget
from integrations.errors import IntegrationError
from portal.models.base import utcnow
from portal.services.naming import label_errors
from portal.services.providers import current_providers
from portal.services.secrets import delete_secret, read_secret, store_secret

MAX_CLUSTER = 40


@dataclass(frozen=True)
class ClusterInput:
    """What an admin enters. ``token`` and ``kubeconfig`` are write-only: empty keeps what is stored."""

    name: str
    api_url: str
    is_central: bool = False
    team_names: list[str] = field(default_factory=list)
    ca_pem: str = ""
    token: str = field(default="", repr=False)
    kubeconfig: str = field(default="", repr=False)
    verify_tls: bool = True


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
    if data.token.strip() and data.kubeconfig.strip():
        errors["token"] = ["Give a token or a kubeconfig, not both."]
    if data.kubeconfig.strip():
        if problem := _kubeconfig_problem(data.kubeconfig):
            errors["kubeconfig"] = [problem]
    if data.ca_pem.strip():
        try:
            x509.load_pem_x509_certificate(data.ca_pem.strip().encode())
        except ValueError:
            errors["ca_pem"] = ["Not a PEM certificate (-----BEGIN CERTIFICATE----- ...)."]
    teams = list(db.session.scalars(select(Team).where(Team.name.in_(data.team_names))))
    if len(teams) != len(set(data.team_names)):
        errors["team_names"] = ["Unknown team."]
    return errors, teams


def _kubeconfig_problem(text: str) -> str | None:
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return "Not valid YAML."
    if not isinstance(config, dict) or not config.get("clusters") or not config.get("users"):
        return "A kubeconfig needs clusters, users and a context."
    return None


def _apply(cluster: Cluster, data: ClusterInput, teams: list[Team]) -> None:
    cluster.api_url = data.api_url.strip()
    cluster.ca_pem = data.ca_pem.strip()
    cluster.verify_tls = data.verify_tls
    cluster.teams = teams
    secret = data.token.strip() or data.kubeconfig.strip()
    if secret:  # empty keeps what is stored: credentials are never shown back to be re-entered
        cluster.auth_kind = "token" if data.token.strip() else "kubeconfig"
        cluster.credentials_ref = f"cluster-{cluster.name}"
        store_secret(cluster.credentials_ref, secret)
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
                 teams=[t.name for t in teams], central=cluster.is_central, credentials=bool(cluster.auth_kind))
    db.session.commit()
    return cluster


def ensure_cluster_from_command_line(data: ClusterInput) -> Cluster:
    """Register or update a cluster for an operator at the command line (`flask register-cluster`), as the
    one-machine demo does for its testbed clusters; validated and audited like the admin page."""
    existing = db.session.scalar(select(Cluster).where(Cluster.name == data.name.strip()))
    errors, teams = _validate(data, existing)
    if errors:
        raise ValidationFailed(errors)
    cluster = existing or Cluster(name=data.name.strip())
    _apply(cluster, data, teams)
    db.session.add(cluster)
    db.session.flush()
    audit.record(None, "cluster.updated" if existing else "cluster.registered", "cluster", cluster.name, cluster.id,
                 actor_name="command line", teams=[t.name for t in teams], credentials=bool(cluster.auth_kind))
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
                 teams=[t.name for t in teams], central=cluster.is_central,
                 credentials_changed=bool(data.token.strip() or data.kubeconfig.strip()))
    db.session.commit()
    return cluster


def delete_cluster(actor: User, name: str) -> None:
    cluster = get_cluster(actor, name)
    audit.record(actor, "cluster.deleted", "cluster", cluster.name, cluster.id)
    if cluster.credentials_ref:
        delete_secret(cluster.credentials_ref)
    db.session.delete(cluster)
    db.session.commit()


def cluster_target(cluster: Cluster) -> ClusterTarget:
    """How the adapters reach the cluster, with its credentials decrypted (never logged, never shown)."""
    secret = read_secret(cluster.credentials_ref) if cluster.credentials_ref else None
    return ClusterTarget(name=cluster.name, api_url=cluster.api_url, ca_pem=cluster.ca_pem,
                         token=secret or "" if cluster.auth_kind == "token" else "",
                         kubeconfig=secret or "" if cluster.auth_kind == "kubeconfig" else "",
                         verify=cluster.verify_tls)


def team_cluster(team_id: int) -> Cluster | None:
    """The cluster the team deploys to: the one bound to it (by name, when several are)."""
    return db.session.scalar(select(Cluster).join(Cluster.teams).where(Team.id == team_id).order_by(Cluster.name)
                             .limit(1))


def check_cluster(actor: User, name: str) -> Cluster:
    """Connect, read the server's version and check the portal's permissions; the result is kept and shown."""
    cluster = get_cluster(actor, name)
    connector = current_providers().cluster
    if connector is None:
        result = {"error": "No cluster provider is configured (PORTAL_CLUSTER)."}
    elif not cluster.auth_kind:
        result = {"error": "No credentials are stored for this cluster: give a token or a kubeconfig."}
    else:
        try:
            check = connector.connect(cluster_target(cluster)).check()
        except IntegrationError as exc:
            result = {"error": str(exc)}
        else:
            result = {"version": check.version, "missing": check.missing}
    cluster.checked_at = utcnow()
    cluster.check_result = result
    audit.record(actor, "cluster.checked", "cluster", cluster.name, cluster.id, ok=not result.get("error")
                 and not result.get("missing"))
    db.session.commit()
    return cluster
