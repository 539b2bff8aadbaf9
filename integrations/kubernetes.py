"""Kubernetes as the portal's team clusters: a namespace per application environment, with its quota,
container defaults, the team's access and the image pull secret; manifests applied into it; its workloads.

Decisions, and why:

- **Server-side apply, one field manager.** Every object is applied (``application/apply-patch+yaml``)
  by the field manager ``developer-portal`` (the connector's ``field_manager``), with the whole of what
  the portal wants in each body and nothing else. Applying the same spec again writes nothing (the
  objects keep their resourceVersion); a changed spec converges; a field the portal stops sending is
  removed. Conflicts are forced: the bodies hold only fields the portal owns, and a person's
  ``kubectl edit`` of those fields is drift that the next run puts back.
- **Ownership marker.** The annotation ``portal.dev/owner: <owner>`` (plus the label of the same name
  and ``app.kubernetes.io/managed-by: developer-portal``). A namespace without this owner's marker is
  never touched: ``ensure_namespace`` raises Conflict before writing anything, and ``delete_namespace``
  refuses a namespace with no portal marker at all (and deletes with the uid and resourceVersion it
  checked as preconditions, so a namespace re-created meanwhile is not deleted).
- **The team's access.** A RoleBinding ``portal-team`` of the group ``spec.team_group`` to the ClusterRole
  ``edit`` in the namespace only. Creating it needs ``bind`` on that ClusterRole (RBAC's escalation
  check); ``check()`` asks for ``bind`` explicitly, so a portal identity that holds edit's permissions
  without ``bind`` is reported as missing it, although the API server would let it through.
- **Pull secret, and the default ServiceAccount left alone.** The Secret is written; the namespace's
  ``default`` ServiceAccount is not patched: the applications' Helm chart creates its own ServiceAccount
  and puts ``imagePullSecrets`` in the pod template, and patching the ``default`` ServiceAccount would
  need more rights and a fight over a list the service-account controller also writes. A pull secret
  the spec no longer names (renamed, or dropped) is deleted, so no stale credential stays behind.
- **A namespace being deleted** cannot be converged: ``ensure_namespace`` answers Unavailable (transient),
  and succeeds once the namespace controller has removed it.
- **Connections.** The connector keeps one client per cluster (by name and API URL); new credentials for
  that cluster replace its client. Every request waits at most ``timeout`` seconds.

API: https://kubernetes.io/docs/reference/using-api/server-side-apply/,
https://kubernetes.io/docs/reference/access-authn-authz/rbac/#privilege-escalation-prevention-and-bootstrapping,
https://kubernetes.io/docs/reference/kubernetes-api/authorization-resources/self-subject-access-review-v1/.
"""

from __future__ import annotations

import threading
from typing import Any

from integrations import kubernetes_objects as objects
from integrations.cluster import ClusterCheck, ClusterTarget, NamespaceSpec, WorkloadSummary
from integrations.errors import Conflict, InvalidRequest, NotFound, Unavailable
from integrations.kubernetes_api import SYSTEM, Kind, KubernetesAPI, fingerprint
from integrations.resources import ExternalResource

TEAM_ROLE = "edit"
WORKLOADS = tuple(Kind("apps/v1", kind, f"{kind.lower()}s", namespaced=True)
                  for kind in ("Deployment", "StatefulSet", "DaemonSet"))
_NAMESPACE = Kind("v1", "Namespace", "namespaces", namespaced=False)
_SECRET = Kind("v1", "Secret", "secrets", namespaced=True)
_NAMESPACE_KINDS = (  # applied in this order, after the Namespace itself
    (Kind("v1", "ResourceQuota", "resourcequotas", True), objects.resource_quota),
    (Kind("v1", "LimitRange", "limitranges", True), objects.limit_range),
    (Kind(f"{objects.RBAC}/v1", "RoleBinding", "rolebindings", True),
     lambda spec: objects.role_binding(spec, TEAM_ROLE)),
)
# What the portal does, and the access reviews (verb, API group, resource, name) that must all allow it.
# Namespaced resources are asked about in every namespace: the portal's namespaces do not exist yet.
# "create" is create and patch: a server-side apply that creates an object is authorized as both.
PERMISSIONS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "read namespaces": (("get", "", "namespaces", ""),),
    "create namespaces": (("create", "", "namespaces", ""), ("patch", "", "namespaces", "")),
    "delete namespaces": (("delete", "", "namespaces", ""),),
    "create resourcequotas": (("create", "", "resourcequotas", ""), ("patch", "", "resourcequotas", "")),
    "create limitranges": (("create", "", "limitranges", ""), ("patch", "", "limitranges", "")),
    "create rolebindings": (("create", objects.RBAC, "rolebindings", ""),
                            ("patch", objects.RBAC, "rolebindings", "")),
    "manage pull secrets": tuple((verb, "", "secrets", "") for verb in ("create", "patch", "list", "delete")),
    f"bind clusterrole {TEAM_ROLE}": (("bind", objects.RBAC, "clusterroles", TEAM_ROLE),),
    "list workloads": tuple(("list", "apps", plural, "") for plural in ("deployments", "statefulsets", "daemonsets")),
}


class KubernetesCluster:
    """The ClusterAccess contract on one Kubernetes API server."""

    system = SYSTEM

    def __init__(self, target: ClusterTarget, timeout: float, field_manager: str = objects.PORTAL):
        self.name = target.name
        self.field_manager = field_manager
        self.api = KubernetesAPI.of(target, timeout)
        self.api_url = self.api.api_url
        self.fingerprint = fingerprint(target)

    def __repr__(self) -> str:
        return f"KubernetesCluster(name={self.name!r}, api_url={self.api_url!r})"

    def close(self) -> None:
        self.api.close()

    # --- the contract ----------------------------------------------------------------------------

    def check(self) -> ClusterCheck:
        """The server's version, and whether the portal's identity may do each thing the portal does."""
        version = self.api.request("GET", "/version").get("gitVersion", "")
        reviews = {review: self._allowed(*review) for reviews in PERMISSIONS.values() for review in reviews}
        return ClusterCheck(version=version, permissions={
            what: all(reviews[review] for review in needed) for what, needed in PERMISSIONS.items()})

    def find_namespace(self, name: str) -> ExternalResource | None:
        found = self.api.get(_NAMESPACE.path(name))
        if found is None:
            return None
        return self._resource(name, objects.owner_of(found), {
            "cluster": self.name, "phase": (found.get("status") or {}).get("phase", "")})

    def ensure_namespace(self, spec: NamespaceSpec) -> ExternalResource:
        """Create or converge the namespace, its quota, limits, role binding and pull secret.

        Conflict, before anything is written, when the namespace exists without ``spec.owner``'s marker.
        """
        existing = self.api.get(_NAMESPACE.path(spec.name))
        if existing is not None:
            owner = objects.owner_of(existing)
            if owner != spec.owner:
                held = f"it belongs to {owner}" if owner else "it carries no portal marker"
                raise Conflict(SYSTEM, f"namespace {spec.name} exists and is not managed by the portal for this "
                                       f"application ({held}); refusing to adopt it", status=409)
            if (existing.get("status") or {}).get("phase") == "Terminating":
                raise Unavailable(SYSTEM, f"namespace {spec.name} is being deleted; try again once it is gone")
        applied = self.api.apply(_NAMESPACE.path(spec.name), objects.namespace(spec), self.field_manager)
        for kind, build in _NAMESPACE_KINDS:
            manifest = build(spec)
            self.api.apply(kind.path(manifest["metadata"]["name"], spec.name), manifest, self.field_manager)
        self._converge_pull_secret(spec)
        return self._resource(spec.name, objects.owner_of(applied),
                              objects.attributes(spec, self.name, TEAM_ROLE))

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace the portal made (everything in it goes with it); NotFound when it is gone."""
        found = self.api.get(_NAMESPACE.path(name))
        if found is None:
            raise NotFound(SYSTEM, f"namespace {name} not found", status=404)
        if objects.owner_of(found) is None:
            raise Conflict(SYSTEM, f"namespace {name} is not managed by the portal; refusing to delete it",
                           status=409)
        meta = found["metadata"]
        self.api.request("DELETE", _NAMESPACE.path(name), body={
            "apiVersion": "v1", "kind": "DeleteOptions",
            "preconditions": {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}})

    def apply(self, namespace: str, manifests: list[dict[str, Any]]) -> list[ExternalResource]:
        """Server-side apply each manifest into ``namespace``; all are checked before any is applied."""
        kinds = [self._kind_for(namespace, m) for m in manifests]
        applied = []
        for kind, manifest in zip(kinds, manifests):
            name = manifest["metadata"]["name"]
            body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
            result = self.api.apply(kind.path(name, namespace), body, self.field_manager)
            meta = result.get("metadata") or {}
            applied.append(ExternalResource(
                system=SYSTEM, kind=kind.kind, external_id=f"{namespace}/{kind.kind}/{name}", name=name,
                url=self.api_url + kind.path(name, namespace), attributes={
                    "apiVersion": kind.api_version, "uid": meta.get("uid", ""),
                    "resourceVersion": meta.get("resourceVersion", "")}))
        return applied

    def list_workloads(self, namespace: str) -> list[WorkloadSummary]:
        """The namespace's Deployments, StatefulSets and DaemonSets: ready and desired pods, images."""
        if self.api.get(_NAMESPACE.path(namespace)) is None:
            raise NotFound(SYSTEM, f"namespace {namespace} not found", status=404)
        workloads = []
        for kind in WORKLOADS:
            listed = self.api.request("GET", kind.path(namespace=namespace))
            workloads += [objects.workload(kind.kind, item) for item in listed.get("items", [])]
        return sorted(workloads, key=lambda w: (w.kind, w.name))

    # --- internals -------------------------------------------------------------------------------

    def _allowed(self, verb: str, group: str, resource: str, name: str) -> bool:
        attributes = {"verb": verb, "group": group, "resource": resource, **({"name": name} if name else {})}
        review = self.api.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes}})
        return bool((review.get("status") or {}).get("allowed"))

    def _converge_pull_secret(self, spec: NamespaceSpec) -> None:
        """Apply the pull secret the spec names, and delete the ones it no longer names."""
        wanted = spec.pull_secret
        if wanted is not None:
            self.api.apply(_SECRET.path(wanted.name, spec.name), objects.pull_secret(spec, wanted),
                           self.field_manager)
        listed = self.api.request("GET", _SECRET.path(namespace=spec.name),
                                  query=[("labelSelector", objects.pull_secret_selector())])
        for stale in listed.get("items", []):
            meta = stale["metadata"]
            if (wanted is None or meta["name"] != wanted.name) and objects.owner_of(stale) == spec.owner:
                try:
                    self.api.request("DELETE", _SECRET.path(meta["name"], spec.name))
                except NotFound:
                    pass  # removed meanwhile: what we wanted

    def _kind_for(self, namespace: str, manifest: Any) -> Kind:
        """Where ``manifest`` goes; InvalidRequest when it is malformed, cluster-wide or for another namespace."""
        if not isinstance(manifest, dict):
            raise InvalidRequest(SYSTEM, "a manifest is a mapping", status=422)
        meta = manifest.get("metadata") or {}
        if not manifest.get("apiVersion") or not manifest.get("kind") or not meta.get("name"):
            raise InvalidRequest(SYSTEM, "a manifest needs apiVersion, kind and metadata.name", status=422)
        what = f"{manifest['kind']}/{meta['name']}"
        if meta.get("namespace", namespace) != namespace:
            raise InvalidRequest(SYSTEM, f"{what} names namespace {meta['namespace']}, not {namespace}", status=400)
        kind = self.api.kind(manifest["apiVersion"], manifest["kind"])
        if not kind.namespaced:
            raise InvalidRequest(SYSTEM, f"{what} is cluster-wide; only namespaced objects go into {namespace}",
                                 status=400)
        return kind

    def _resource(self, name: str, owner: str | None, attributes: dict[str, str]) -> ExternalResource:
        return ExternalResource(system=SYSTEM, kind="namespace", external_id=name, name=name,
                                url=f"{self.api_url}{_NAMESPACE.path(name)}", owner=owner, attributes=attributes)


class KubernetesConnector:
    """The ClusterConnector contract: a ``KubernetesCluster`` per registered cluster, its client reused."""

    system = SYSTEM

    def __init__(self, timeout: float, field_manager: str = objects.PORTAL):
        self.timeout = timeout
        self.field_manager = field_manager
        self._clusters: dict[tuple[str, str], KubernetesCluster] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> "KubernetesConnector":
        """The connector the portal builds from its Settings (``PORTAL_HTTP_TIMEOUT``)."""
        return cls(timeout=settings.http_timeout)

    def __repr__(self) -> str:
        return f"KubernetesConnector(timeout={self.timeout!r}, field_manager={self.field_manager!r})"

    def connect(self, target: ClusterTarget) -> KubernetesCluster:
        """The cluster ``target`` names; the same client as last time unless its credentials changed."""
        key = (target.name, target.api_url)
        with self._lock:
            cluster = self._clusters.get(key)
            if cluster is not None and cluster.fingerprint == fingerprint(target):
                return cluster
            fresh = KubernetesCluster(target, self.timeout, self.field_manager)
            self._clusters[key] = fresh
        if cluster is not None:
            cluster.close()  # its credentials were replaced; this only drops its pooled connections
        return fresh

    def close(self) -> None:
        with self._lock:
            clusters, self._clusters = list(self._clusters.values()), {}
        for cluster in clusters:
            cluster.close()
