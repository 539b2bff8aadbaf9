"""What the portal's Argo CD objects look like, and how an Application's status reads: no I/O here.

Everything is Argo CD's declarative setup
(https://argo-cd.readthedocs.io/en/stable/operator-manual/declarative-setup/): an AppProject per team,
a cluster Secret per team cluster, an Application per application environment, all in Argo CD's
namespace of the central cluster, applied server-side by ``integrations.argocd``.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
from collections.abc import Callable
from typing import Any

import yaml

from integrations.cluster import ClusterTarget
from integrations.delivery import DeliveryEvent, DeliveryProjectSpec, DeliverySpec, DeliveryStatus
from integrations.errors import InvalidRequest

SYSTEM = "argocd"
API_VERSION = "argoproj.io/v1alpha1"
MANAGED_BY = "app.kubernetes.io/managed-by"
PORTAL = "developer-portal"
OWNER = "portal.dev/owner"
SECRET_TYPE = "argocd.argoproj.io/secret-type"
REFRESH = "argocd.argoproj.io/refresh"
# Deleting the Application makes Argo CD delete what it deployed first
# (https://argo-cd.readthedocs.io/en/stable/user-guide/app_deletion/#about-the-deletion-finalizer).
FINALIZER = "resources-finalizer.argocd.argoproj.io"
# Teams must not change their own quota and defaults through Argo CD: the portal sets them on the namespace.
BLACKLIST = ({"group": "", "kind": "ResourceQuota"}, {"group": "", "kind": "LimitRange"})
SYNC_OPTIONS = ("CreateNamespace=false", "ServerSideApply=true")


def _metadata(name: str, namespace: str, owner: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {**(labels or {}), MANAGED_BY: PORTAL},
            "annotations": {OWNER: owner}}


def owner_of(obj: dict[str, Any]) -> str | None:
    """The portal's ownership marker of an object, or None when the portal did not make it."""
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(OWNER)


def project_manifest(spec: DeliveryProjectSpec, namespace: str) -> dict[str, Any]:
    """The team's AppProject: its repositories and destinations only, no cluster-scoped resources."""
    return {
        "apiVersion": API_VERSION, "kind": "AppProject", "metadata": _metadata(spec.name, namespace, spec.owner),
        "spec": {
            "description": spec.description,
            "sourceRepos": list(spec.source_repos),
            "destinations": [{"server": d.server, "namespace": d.namespace} for d in spec.destinations],
            "clusterResourceWhitelist": [],  # empty: no cluster-scoped resource may be deployed
            "namespaceResourceBlacklist": [dict(kind) for kind in BLACKLIST],
        },
    }


def value_file(spec: DeliverySpec) -> str:
    """The environment's values file as Argo CD wants it: relative to the chart's folder, not the repository."""
    return posixpath.relpath(spec.values_file, spec.path.strip("/") or ".")


def application_manifest(spec: DeliverySpec, namespace: str) -> dict[str, Any]:
    """The application environment's Application: the chart at ``path``, synced automatically and pruned."""
    metadata = _metadata(spec.name, namespace, spec.owner, spec.labels)
    metadata["finalizers"] = [FINALIZER]
    return {
        "apiVersion": API_VERSION, "kind": "Application", "metadata": metadata,
        "spec": {
            "project": spec.project,
            "source": {"repoURL": spec.repository_url, "path": spec.path, "targetRevision": spec.revision,
                       "helm": {"valueFiles": [value_file(spec)]}},
            "destination": {"server": spec.cluster, "namespace": spec.namespace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "syncOptions": list(SYNC_OPTIONS)},
        },
    }


def sync_operation(application: dict[str, Any], username: str) -> dict[str, Any]:
    """The ``operation`` Argo CD's API server writes for a sync: the app's revision and sync options, pruning.

    https://argo-cd.readthedocs.io/en/stable/user-guide/sync-kubectl/ ; the API server's Sync
    (server/application/application.go) copies the sync options and retry strategy of the spec.
    """
    spec = application.get("spec") or {}
    policy = spec.get("syncPolicy") or {}
    sync: dict[str, Any] = {"revision": (spec.get("source") or {}).get("targetRevision") or "HEAD", "prune": True}
    if policy.get("syncOptions"):
        sync["syncOptions"] = policy["syncOptions"]
    operation: dict[str, Any] = {"initiatedBy": {"username": username}, "sync": sync}
    if policy.get("retry"):
        operation["retry"] = policy["retry"]
    return operation


def cluster_secret_name(name: str) -> str:
    return f"cluster-{name}"


def cluster_secret(target: ClusterTarget, owner: str, namespace: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The cluster Secret Argo CD reads a cluster from, and what may be shown of it (never the credentials).

    Format: https://argo-cd.readthedocs.io/en/stable/operator-manual/declarative-setup/#clusters
    (``name``, ``server``, and ``config`` holding ``bearerToken`` or client certificate data, and
    ``tlsClientConfig`` with base64 PEM).
    """
    server, config = cluster_config(target)
    metadata = _metadata(cluster_secret_name(target.name), namespace, owner, {SECRET_TYPE: "cluster"})
    data = {"name": target.name, "server": server, "config": json.dumps(config, sort_keys=True)}
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata,
              "data": {k: _b64(v.encode()) for k, v in data.items()}}
    tls = config["tlsClientConfig"]
    shown = {"server": server, "secret": metadata["name"], "namespace": namespace,
             "auth": "bearer-token" if "bearerToken" in config else "client-certificate",
             "insecure": str(tls["insecure"]).lower(), "ca": "yes" if "caData" in tls else "no"}
    return secret, shown


def cluster_config(target: ClusterTarget) -> tuple[str, dict[str, Any]]:
    """(server, config) of a target given by URL, CA and token, or by a kubeconfig with embedded credentials."""
    if target.kubeconfig:
        return _from_kubeconfig(target)
    if not target.token:
        raise InvalidRequest(SYSTEM, f"cluster {target.name} has neither a token nor a kubeconfig")
    if not target.api_url:
        raise InvalidRequest(SYSTEM, f"cluster {target.name} has no API URL")
    tls: dict[str, Any] = {"insecure": not target.verify}
    if target.ca_pem:
        tls["caData"] = _b64(target.ca_pem.encode())
    return target.api_url, {"bearerToken": target.token, "tlsClientConfig": tls}


def _from_kubeconfig(target: ClusterTarget) -> tuple[str, dict[str, Any]]:
    """Server, CA and token or client certificate of the kubeconfig's current context.

    Argo CD cannot read files of the portal's machine, so credentials must be embedded (``*-data``
    fields, as ``kubectl config view --flatten --raw`` writes them); exec plugins are refused too.
    """
    def invalid(why: str) -> InvalidRequest:
        return InvalidRequest(SYSTEM, f"kubeconfig of cluster {target.name}: {why}")

    try:
        doc = yaml.safe_load(target.kubeconfig)
    except yaml.YAMLError as exc:
        raise invalid(f"not YAML ({type(exc).__name__})") from None  # the text holds credentials: no echo
    if not isinstance(doc, dict):
        raise invalid("not a kubeconfig")

    def named(section: str, name: str | None) -> dict[str, Any]:
        items = doc.get(section) or []
        found = next((i for i in items if name is None or i.get("name") == name), None)
        if found is None:
            raise invalid(f"no {section[:-1]} named {name!r}" if name else f"no {section[:-1]}")
        return found.get(section[:-1]) or {}

    context = named("contexts", doc.get("current-context") or None)
    cluster, user = named("clusters", context.get("cluster")), named("users", context.get("user"))
    if "certificate-authority" in cluster or any(
            k in user for k in ("client-certificate", "client-key", "tokenFile", "exec", "auth-provider")):
        raise invalid("credentials in files or plugins cannot be used: embed them "
                      "(kubectl config view --flatten --raw)")
    tls: dict[str, Any] = {"insecure": bool(cluster.get("insecure-skip-tls-verify")) or not target.verify}
    if cluster.get("certificate-authority-data"):
        tls["caData"] = _pem_data(cluster["certificate-authority-data"], invalid)
    config: dict[str, Any] = {"tlsClientConfig": tls}
    if user.get("token"):
        config["bearerToken"] = user["token"]
    elif user.get("client-certificate-data") and user.get("client-key-data"):
        tls["certData"] = _pem_data(user["client-certificate-data"], invalid)
        tls["keyData"] = _pem_data(user["client-key-data"], invalid)
    else:
        raise invalid("its user has neither a token nor a client certificate and key")
    server = target.api_url or cluster.get("server") or ""
    if not server:
        raise invalid("no server URL")
    return server, config


def _pem_data(value: str, invalid: Callable[[str], InvalidRequest]) -> str:
    try:
        return _b64(base64.b64decode(value, validate=True))  # normalised: no line breaks
    except (binascii.Error, ValueError):
        raise invalid("a *-data field is not base64") from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def delivery_status(application: dict[str, Any]) -> DeliveryStatus:
    """An Application's ``.status`` as the contract's DeliveryStatus; Unknown where Argo CD has said nothing yet.

    Fields: https://argo-cd.readthedocs.io/en/stable/operator-manual/application.yaml and the CRD's
    schema (``status.sync``, ``health``, ``operationState``, ``history``, ``summary``, ``reconciledAt``).
    """
    status = application.get("status") or {}
    sync, health = status.get("sync") or {}, status.get("health") or {}
    operation = status.get("operationState") or {}
    errors = [f"{c.get('type')}: {c.get('message')}" for c in status.get("conditions") or []
              if str(c.get("type", "")).endswith("Error")]
    message = "; ".join(m for m in (operation.get("message"), health.get("message"), *errors) if m)
    history = [DeliveryEvent(revision=h.get("revision") or "", deployed_at=h.get("deployedAt") or "",
                             id=int(h.get("id") or 0)) for h in status.get("history") or []]
    return DeliveryStatus(
        sync=sync.get("status") or "Unknown", health=health.get("status") or "Unknown",
        operation=operation.get("phase") or "", message=message, revision=sync.get("revision") or "",
        history=history, reconciled_at=status.get("reconciledAt") or "",
        operation_started_at=operation.get("startedAt") or "", operation_finished_at=operation.get("finishedAt") or "",
        images=tuple((status.get("summary") or {}).get("images") or ()),
    )
