"""Argo CD as the deployer: projects, clusters and applications declared in the central cluster.

The portal never asks Argo CD's API server to create anything: it applies AppProjects, cluster
Secrets and Applications into Argo CD's namespace of the central cluster, server-side under its own
field manager (``developer-portal``), forcing conflicts (the portal owns these fields; applying the
same spec again changes nothing). Argo CD's controller picks them up. What the objects look like is
in ``integrations.argocd_manifests``.

Ownership: each object carries the annotation ``portal.dev/owner``. An object of the same name without
it, or with another owner, is never adopted: ``ensure_*`` and ``register_cluster`` answer Conflict.

``sync`` and ``refresh`` go through Argo CD's REST API when a URL and a token are configured
(https://argo-cd.readthedocs.io/en/stable/developer-guide/api-docs/): ``POST
/api/v1/applications/{name}/sync`` and ``GET /api/v1/applications/{name}?refresh=normal``, with
``Authorization: Bearer``. Without them, declaratively, as the API server itself does: ``sync`` sets
the Application's ``.operation`` (https://argo-cd.readthedocs.io/en/stable/user-guide/sync-kubectl/),
``refresh`` sets the annotation ``argocd.argoproj.io/refresh: normal``
(https://argo-cd.readthedocs.io/en/stable/user-guide/annotations-and-labels/).

Unknown applications and Argo CD's 403: without a project, Argo CD answers 403 "permission denied"
both for an application the token may not see and for one that does not exist, so as not to leak
names. The adapter therefore reads the Application from the central cluster first (NotFound when it
is not there) and passes its project to the REST call, for which Argo CD answers 404 when the
application is gone and 403 only when the token lacks the permission: a REST 403 is AuthFailed.

Errors of both APIs: 401/403 AuthFailed, 404 NotFound, 409 Conflict, 400/422 InvalidRequest,
429 RateLimited, 5xx and no answer Unavailable. Argo CD's 400 "another operation is already in
progress" is a Conflict, like the declarative sync finding an ``.operation`` already there. The central
cluster is spoken to, and its errors translated, by ``integrations.kubernetes_api``, as the team clusters are.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
from kubernetes import client as kube

from integrations import http
from integrations.argocd_manifests import (
    API_VERSION, REFRESH, SYSTEM, application_manifest, cluster_secret, cluster_secret_name, delivery_status,
    owner_of, project_manifest, sync_operation,
)
from integrations.cluster import ClusterTarget
from integrations.delivery import DeliveryProjectSpec, DeliverySpec, DeliveryStatus
from integrations.errors import Conflict, IntegrationError, InvalidRequest
from integrations.kubernetes_api import Kind, KubernetesAPI, api_client_from_file
from integrations.resources import ExternalResource

MERGE = "application/merge-patch+json"
IN_PROGRESS = "another operation is already in progress"
CENTRAL = "central"  # the name of the central cluster in the errors of its API
PROJECT = Kind(API_VERSION, "AppProject", "appprojects", namespaced=True)
APPLICATION = Kind(API_VERSION, "Application", "applications", namespaced=True)
SECRET = Kind("v1", "Secret", "secrets", namespaced=True)


class ArgoCDDelivery:
    """The Delivery contract on Argo CD, through the central cluster's API and, for sync and refresh, Argo CD's."""

    system = SYSTEM

    def __init__(self, kube_api: Callable[[], kube.ApiClient] | str = "", namespace: str = "argocd", url: str = "",
                 token: str = "", timeout: float = 10.0, retries: int = 2, verify: bool = True, ca_bundle: str = "",
                 field_manager: str = "developer-portal"):
        """``kube_api``: a factory of ApiClients of the central cluster, or a kubeconfig path ("" in-cluster).

        The client is made at the first call and closed by ``close()``.
        """
        self.namespace = namespace
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.field_manager = field_manager
        make = kube_api if callable(kube_api) else functools.partial(api_client_from_file, kube_api, retries,
                                                                     CENTRAL, SYSTEM)
        # The token is masked in the central cluster's messages too.
        self.central = KubernetesAPI(make, timeout, CENTRAL, system=SYSTEM, secrets=(token,))
        self._token = token
        self._session: requests.Session | None = None
        if self.url and token:
            self._session = http.session(verify, ca_bundle, retries, system=SYSTEM)
            self._session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_settings(cls, settings: Any) -> "ArgoCDDelivery":
        """The adapter the portal builds from its Settings (``PORTAL_DELIVERY=argocd``)."""
        return cls(kube_api=settings.argocd_kubeconfig, namespace=settings.argocd_namespace, url=settings.argocd_url,
                   token=settings.argocd_token, timeout=settings.http_timeout, retries=settings.http_retries,
                   verify=settings.tls_verify, ca_bundle=settings.ca_bundle)

    def close(self) -> None:
        self.central.close()
        if self._session is not None:
            self._session.close()

    def __repr__(self) -> str:
        return f"ArgoCDDelivery(namespace={self.namespace!r}, url={self.url!r}, rest={self._session is not None})"

    # --- projects --------------------------------------------------------------------------------

    def find_project(self, name: str) -> ExternalResource | None:
        """The team's AppProject, or None; its owner is None when the portal did not make it."""
        found = self.central.get(self._path(PROJECT, name))
        return self._project(found) if found else None

    def ensure_project(self, spec: DeliveryProjectSpec) -> ExternalResource:
        """Create or converge the AppProject ``spec.name``; Conflict when another owner has that name."""
        return self._project(self._apply(PROJECT, project_manifest(spec, self.namespace), spec.owner))

    def delete_project(self, name: str) -> None:
        """Delete the AppProject; NotFound when it is gone."""
        self.central.request("DELETE", self._path(PROJECT, name))

    def _project(self, obj: dict[str, Any]) -> ExternalResource:
        spec = obj.get("spec") or {}
        attributes = {"namespace": self.namespace, "description": spec.get("description") or "",
                      "source_repos": ",".join(spec.get("sourceRepos") or []),
                      "destinations": ",".join(f"{d.get('server')} {d.get('namespace')}"
                                               for d in spec.get("destinations") or [])}
        return self._resource("project", obj, f"/settings/projects/{obj['metadata']['name']}", attributes)

    # --- clusters --------------------------------------------------------------------------------

    def find_cluster(self, name: str) -> ExternalResource | None:
        """The cluster Secret of the team cluster ``name``, or None (never its credentials)."""
        found = self.central.get(self._path(SECRET, cluster_secret_name(name)))
        if not found:
            return None
        data = found.get("data") or {}
        server = _decoded(data.get("server"))
        return ExternalResource(system=SYSTEM, kind="cluster", external_id=found["metadata"]["name"],
                                name=_decoded(data.get("name")) or name, url=self._cluster_url(server),
                                owner=owner_of(found), attributes={"server": server, "namespace": self.namespace,
                                                                   "secret": found["metadata"]["name"]})

    def register_cluster(self, target: ClusterTarget, owner: str) -> ExternalResource:
        """Create or converge the Argo CD cluster Secret of ``target``; Conflict when another owner has its name."""
        secret, shown = cluster_secret(target, owner, self.namespace)
        # What an error message could echo of the credentials: the token, or the encoded data.
        self._apply(SECRET, secret, owner, target.token, *secret["data"].values())
        return ExternalResource(system=SYSTEM, kind="cluster", external_id=shown["secret"], name=target.name,
                                url=self._cluster_url(shown["server"]), owner=owner, attributes=shown)

    def delete_cluster(self, name: str) -> None:
        """Delete the cluster Secret; NotFound when it is gone. Argo CD then forgets the cluster."""
        self.central.request("DELETE", self._path(SECRET, cluster_secret_name(name)))

    def _cluster_url(self, server: str) -> str:
        return f"{self.url}/settings/clusters/{quote(server, safe='')}" if self.url and server else ""

    # --- applications ----------------------------------------------------------------------------

    def find_application(self, name: str) -> ExternalResource | None:
        """The Application, or None; its owner is None when the portal did not make it."""
        found = self.central.get(self._path(APPLICATION, name))
        return self._application(found) if found else None

    def ensure_application(self, spec: DeliverySpec) -> ExternalResource:
        """Create or converge the Application ``spec.name``; Conflict when another owner has that name."""
        return self._application(self._apply(APPLICATION, application_manifest(spec, self.namespace), spec.owner))

    def delete_application(self, name: str) -> None:
        """Delete the Application; Argo CD deletes what it deployed, then the object (its finalizer).

        Until then the Application stays, with a deletionTimestamp. NotFound when it is gone.
        """
        self.central.request("DELETE", self._path(APPLICATION, name))

    def status(self, name: str) -> DeliveryStatus:
        """The Application's sync, health, last operation and history as Argo CD last wrote them."""
        return delivery_status(self.central.request("GET", self._path(APPLICATION, name)))

    def sync(self, name: str) -> None:
        """Ask Argo CD to sync the application to its revision now, pruning; it runs asynchronously.

        Conflict while another operation runs; InvalidRequest while the application is being deleted.
        """
        path = self._path(APPLICATION, name)
        app = self.central.request("GET", path)
        if self._session is not None:
            self._rest("POST", f"/api/v1/applications/{quote(name, safe='')}/sync",
                       json={"name": name, "prune": True, "project": app["spec"].get("project") or "default"})
            return
        metadata = app["metadata"]
        if metadata.get("deletionTimestamp"):
            raise InvalidRequest(SYSTEM, f"application {name} is being deleted")
        if app.get("operation"):
            raise Conflict(SYSTEM, f"application {name}: {IN_PROGRESS}")
        # Argo CD's API server sets the operation and clears the last one's state in one update; the
        # resourceVersion makes this patch fail with 409 when something changed the Application meanwhile.
        patch: dict[str, Any] = {"metadata": {"resourceVersion": metadata["resourceVersion"]},
                                 "operation": sync_operation(app, self.field_manager)}
        if (app.get("status") or {}).get("operationState"):
            patch["status"] = {"operationState": None}
        self.central.request("PATCH", path, patch, content_type=MERGE, query=[("fieldManager", self.field_manager)])

    def refresh(self, name: str) -> None:
        """Ask Argo CD to compare the application with its repository again now."""
        path = self._path(APPLICATION, name)
        if self._session is not None:
            project = self.central.request("GET", path)["spec"].get("project") or "default"
            # Argo CD answers once its controller has refreshed the application (it waits for the
            # annotation to go), so a slow controller shows as a timeout here.
            self._rest("GET", f"/api/v1/applications/{quote(name, safe='')}",
                       params={"refresh": "normal", "project": project})
            return
        self.central.request("PATCH", path, {"metadata": {"annotations": {REFRESH: "normal"}}}, content_type=MERGE,
                             query=[("fieldManager", self.field_manager)])

    def _application(self, obj: dict[str, Any]) -> ExternalResource:
        spec = obj.get("spec") or {}
        source, destination = spec.get("source") or {}, spec.get("destination") or {}
        attributes = {"namespace": self.namespace, "project": spec.get("project") or "",
                      "repository_url": source.get("repoURL") or "", "path": source.get("path") or "",
                      "revision": source.get("targetRevision") or "",
                      "value_files": ",".join((source.get("helm") or {}).get("valueFiles") or []),
                      "cluster": destination.get("server") or "",
                      "destination_namespace": destination.get("namespace") or ""}
        return self._resource("application", obj, f"/applications/{self.namespace}/{obj['metadata']['name']}",
                              attributes)

    def _resource(self, kind: str, obj: dict[str, Any], link: str, attributes: dict[str, str]) -> ExternalResource:
        name = obj["metadata"]["name"]
        return ExternalResource(system=SYSTEM, kind=kind, external_id=name, name=name,
                                url=self.url + link if self.url else "", owner=owner_of(obj), attributes=attributes)

    # --- the central cluster's API ---------------------------------------------------------------

    def _path(self, kind: Kind, name: str) -> str:
        return kind.path(name, self.namespace)

    def _apply(self, kind: Kind, manifest: dict[str, Any], owner: str, *secrets: str) -> dict[str, Any]:
        """Server-side apply of ``manifest``, unless an object of its name is not ``owner``'s: Conflict."""
        path = self._path(kind, manifest["metadata"]["name"])
        current = self.central.get(path)
        if current is not None and owner_of(current) != owner:
            raise Conflict(SYSTEM, f"{manifest['kind']} {manifest['metadata']['name']} exists and is not owned by "
                                   f"{owner} (owner: {owner_of(current) or 'none'})", 409)
        return self.central.apply(path, manifest, self.field_manager, secrets)

    # --- Argo CD's REST API ----------------------------------------------------------------------

    def _rest(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        assert self._session is not None
        try:
            response = self._session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise http.transport_error(SYSTEM, exc, self.timeout) from exc
        if response.status_code >= 400:
            message = _argocd_message(response)
            text = http.scrub(f"{message} ({method} {path}, HTTP {response.status_code})", self._token)
            if response.status_code == 400 and IN_PROGRESS in message:
                raise Conflict(SYSTEM, text, 400) from requests.HTTPError(response=response)
            error = http.error_for_status(SYSTEM, response.status_code, text, http.retry_after(response.headers))
            raise error from requests.HTTPError(f"HTTP {response.status_code}", response=response)
        try:
            return response.json()
        except ValueError as exc:
            raise IntegrationError(SYSTEM, f"the answer to {method} {path} is not JSON") from exc


def _argocd_message(response: requests.Response) -> str:
    """Argo CD's message: grpc-gateway's ``{"error": ..., "code": N, "message": ...}``, else the body's start."""
    try:
        body = response.json()
        return str(body.get("message") or body.get("error") or response.reason)
    except (ValueError, AttributeError):
        return response.text.strip()[:300] or str(response.reason)


def _decoded(value: str | None) -> str:
    return base64.b64decode(value).decode() if value else ""
