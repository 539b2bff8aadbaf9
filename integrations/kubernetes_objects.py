"""The objects that make a team namespace, as the portal applies them, and how it reads them back.

Every object the portal writes carries ``app.kubernetes.io/managed-by: developer-portal`` and the
ownership marker: the annotation ``portal.dev/owner: <owner>`` (authoritative, any string) and the
label of the same name when the owner is a valid label value (so that ``kubectl -l`` finds them).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from integrations.cluster import NamespaceSpec, PullSecret, WorkloadSummary

MANAGED_BY = "app.kubernetes.io/managed-by"
PORTAL = "developer-portal"
OWNER = "portal.dev/owner"
PULL_SECRET_LABEL = "portal.dev/pull-secret"
QUOTA_NAME = "portal-quota"
LIMITS_NAME = "portal-limits"
BINDING_NAME = "portal-team"
RBAC = "rbac.authorization.k8s.io"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def owner_of(obj: dict[str, Any] | None) -> str | None:
    """The portal's ownership marker on ``obj``, or None when the portal did not write it."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(OWNER) or None


def markers(owner: str) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations that say the portal manages an object for ``owner``."""
    labels = {MANAGED_BY: PORTAL}
    if len(owner) <= 63 and _LABEL_VALUE.match(owner):
        labels[OWNER] = owner
    return labels, {OWNER: owner}


def _object(api_version: str, kind: str, name: str, spec: NamespaceSpec, body: dict[str, Any] | None = None,
            namespaced: bool = True, labels: dict[str, str] | None = None) -> dict[str, Any]:
    marker_labels, annotations = markers(spec.owner)
    metadata: dict[str, Any] = {"name": name, "labels": {**(labels or {}), **marker_labels},
                                "annotations": annotations}
    if namespaced:
        metadata["namespace"] = spec.name
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **(body or {})}


def namespace(spec: NamespaceSpec) -> dict[str, Any]:
    return _object("v1", "Namespace", spec.name, spec, namespaced=False, labels=spec.labels)


def resource_quota(spec: NamespaceSpec) -> dict[str, Any]:
    q = spec.quota
    return _object("v1", "ResourceQuota", QUOTA_NAME, spec, {"spec": {"hard": {
        "requests.cpu": q.cpu, "requests.memory": q.memory, "limits.cpu": q.limits_cpu,
        "limits.memory": q.limits_memory, "pods": str(q.pods),
    }}})


def limit_range(spec: NamespaceSpec) -> dict[str, Any]:
    lim = spec.limits
    return _object("v1", "LimitRange", LIMITS_NAME, spec, {"spec": {"limits": [{
        "type": "Container",
        "defaultRequest": {"cpu": lim.default_request_cpu, "memory": lim.default_request_memory},
        "default": {"cpu": lim.default_limit_cpu, "memory": lim.default_limit_memory},
    }]}})


def role_binding(spec: NamespaceSpec, role: str) -> dict[str, Any]:
    """The team's group bound to the ClusterRole ``role`` in this namespace only."""
    return _object(f"{RBAC}/v1", "RoleBinding", BINDING_NAME, spec, {
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": spec.team_group}]})


def pull_secret(spec: NamespaceSpec, ps: PullSecret) -> dict[str, Any]:
    """The ``kubernetes.io/dockerconfigjson`` Secret; encoded the same way each time, so re-applying is a no-op."""
    auth = base64.b64encode(f"{ps.username}:{ps.password}".encode()).decode()
    config = {"auths": {ps.server: {"username": ps.username, "password": ps.password, "auth": auth}}}
    encoded = base64.b64encode(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).decode()
    return _object("v1", "Secret", ps.name, spec, {"type": "kubernetes.io/dockerconfigjson",
                                                   "data": {".dockerconfigjson": encoded}},
                   labels={PULL_SECRET_LABEL: "true"})


def pull_secret_selector() -> str:
    return f"{MANAGED_BY}={PORTAL},{PULL_SECRET_LABEL}=true"


def attributes(spec: NamespaceSpec, cluster: str, role: str) -> dict[str, str]:
    """What the portal records about a namespace it converged."""
    q = spec.quota
    return {"cluster": cluster, "team_group": spec.team_group, "role": role,
            "quota.cpu": q.cpu, "quota.memory": q.memory, "quota.pods": str(q.pods),
            "quota.limits_cpu": q.limits_cpu, "quota.limits_memory": q.limits_memory,
            "pull_secret": spec.pull_secret.name if spec.pull_secret else ""}


def workload(kind: str, obj: dict[str, Any]) -> WorkloadSummary:
    """A Deployment, StatefulSet or DaemonSet as ready/desired pods and its images."""
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
    if kind == "DaemonSet":
        desired, ready = status.get("desiredNumberScheduled", 0), status.get("numberReady", 0)
        updated, available = status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0)
    else:
        desired, ready = spec.get("replicas", 1), status.get("readyReplicas", 0)
        updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return WorkloadSummary(kind=kind, name=meta["name"], namespace=meta.get("namespace", ""),
                           ready=ready or 0, desired=desired or 0, details={
                               "images": [c.get("image", "") for c in containers],
                               "updated": updated or 0, "available": available or 0,
                               "generation": meta.get("generation", 0),
                               "observed_generation": status.get("observedGeneration", 0)})
