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
progress" is a Conflict, like the declarative sync finding an ``.operation`` already there.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from kubernetes import client as kube
from kubernetes import config as kubeconfig
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.util.retry import Retry

from integrations import http
from integrations.argocd_manifests import (
    API_VERSION, REFRESH, SYSTEM, application_manifest, cluster_secret, cluster_secret_name, delivery_status,
    owner_of, project_manifest, sync_operation,
)
from integrations.cluster import ClusterTarget
from integrations.delivery import DeliveryProjectSpec, DeliverySpec, DeliveryStatus
from integrations.errors import Conflict, IntegrationError, InvalidRequest, NotFound, Unavailable
from integrations.resources import ExternalResource

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
IN_PROGRESS = "another operation is already in progress"
KINDS = {"AppProject": "appprojects", "Application": "applications"}


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
        self._kube_api = kube_api
        self._client: kube.ApiClient | None = None
        self._lock = threading.Lock()
        self._token = token
        self._session: requests.Session | None = None
        if self.url and token:
            self._session = http.session(verify, ca_bundle, retries)
            self._session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_settings(cls, settings: Any) -> "ArgoCDDelivery":
        """The adapter the portal builds from its Settings (``PORTAL_DELIVERY=argocd``)."""
        return cls(kube_api=settings.argocd_kubeconfig, namespace=settings.argocd_namespace, url=settings.argocd_url,
                   token=settings.argocd_token, timeout=settings.http_timeout, retries=settings.http_retries,
                   verify=settings.tls_verify, ca_bundle=settings.ca_bundle)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        if self._session is not None:
            self._session.close()

    def __repr__(self) -> str:
        return f"ArgoCDDelivery(namespace={self.namespace!r}, url={self.url!r}, rest={self._session is not None})"

    # --- projects --------------------------------------------------------------------------------

    def find_project(self, name: str) -> ExternalResource | None:
        """The team's AppProject, or None; its owner is None when the portal did not make it."""
        found = self._find(self._path("AppProject", name))
        return self._project(found) if found else None

    def ensure_project(self, spec: DeliveryProjectSpec) -> ExternalResource:
        """Create or converge the AppProject ``spec.name``; Conflict when another owner has that name."""
        manifest = project_manifest(spec, self.namespace)
        return self._project(self._apply(self._path("AppProject", spec.name), manifest, spec.owner))

    def delete_project(self, name: str) -> None:
        """Delete the AppProject; NotFound when it is gone."""
        self._kube("DELETE", self._path("AppProject", name))

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
        found = self._find(self._secret_path(cluster_secret_name(name)))
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
        path = self._secret_path(secret["metadata"]["name"])
        # What an error message could echo of the credentials: the token, or the encoded data.
        self._apply(path, secret, owner, target.token, *secret["data"].values())
        return ExternalResource(system=SYSTEM, kind="cluster", external_id=shown["secret"], name=target.name,
                                url=self._cluster_url(shown["server"]), owner=owner, attributes=shown)

    def delete_cluster(self, name: str) -> None:
        """Delete the cluster Secret; NotFound when it is gone. Argo CD then forgets the cluster."""
        self._kube("DELETE", self._secret_path(cluster_secret_name(name)))

    def _cluster_url(self, server: str) -> str:
        return f"{self.url}/settings/clusters/{quote(server, safe='')}" if self.url and server else ""

    # --- applications ----------------------------------------------------------------------------

    def find_application(self, name: str) -> ExternalResource | None:
        """The Application, or None; its owner is None when the portal did not make it."""
        found = self._find(self._path("Application", name))
        return self._application(found) if found else None

    def ensure_application(self, spec: DeliverySpec) -> ExternalResource:
        """Create or converge the Application ``spec.name``; Conflict when another owner has that name."""
        manifest = application_manifest(spec, self.namespace)
        return self._application(self._apply(self._path("Application", spec.name), manifest, spec.owner))

    def delete_application(self, name: str) -> None:
        """Delete the Application; Argo CD deletes what it deployed, then the object (its finalizer).

        Until then the Application stays, with a deletionTimestamp. NotFound when it is gone.
        """
        self._kube("DELETE", self._path("Application", name))

    def status(self, name: str) -> DeliveryStatus:
        """The Application's sync, health, last operation and history as Argo CD last wrote them."""
        return delivery_status(self._kube("GET", self._path("Application", name)))

    def sync(self, name: str) -> None:
        """Ask Argo CD to sync the application to its revision now, pruning; it runs asynchronously.

        Conflict while another operation runs; InvalidRequest while the application is being deleted.
        """
        app = self._kube("GET", self._path("Application", name))
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
        self._kube("PATCH", self._path("Application", name), patch, content_type=MERGE,
                   query={"fieldManager": self.field_manager})

    def refresh(self, name: str) -> None:
        """Ask Argo CD to compare the application with its repository again now."""
        path = self._path("Application", name)
        if self._session is not None:
            project = self._kube("GET", path)["spec"].get("project") or "default"
            # Argo CD answers once its controller has refreshed the application (it waits for the
            # annotation to go), so a slow controller shows as a timeout here.
            self._rest("GET", f"/api/v1/applications/{quote(name, safe='')}",
                       params={"refresh": "normal", "project": project})
            return
        self._kube("PATCH", path, {"metadata": {"annotations": {REFRESH: "normal"}}}, content_type=MERGE,
                   query={"fieldManager": self.field_manager})

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

    def _path(self, kind: str, name: str) -> str:
        return f"/apis/{API_VERSION}/namespaces/{self.namespace}/{KINDS[kind]}/{name}"

    def _secret_path(self, name: str) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{name}"

    def _find(self, path: str) -> dict[str, Any] | None:
        try:
            return self._kube("GET", path)
        except NotFound:
            return None

    def _apply(self, path: str, manifest: dict[str, Any], owner: str, *secrets: str) -> dict[str, Any]:
        current = self._find(path)
        if current is not None and owner_of(current) != owner:
            raise Conflict(SYSTEM, f"{manifest['kind']} {manifest['metadata']['name']} exists and is not owned by "
                                   f"{owner} (owner: {owner_of(current) or 'none'})", 409)
        return self._kube("PATCH", path, manifest, content_type=APPLY, secrets=secrets,
                          query={"fieldManager": self.field_manager, "force": "true"})

    def _api(self) -> kube.ApiClient:
        with self._lock:
            if self._client is None:
                self._client = self._kube_api() if callable(self._kube_api) else self._new_client(self._kube_api)
            return self._client

    def _new_client(self, path: str) -> kube.ApiClient:
        configuration = kube.Configuration()
        try:
            if path:
                kubeconfig.load_kube_config(config_file=path, client_configuration=configuration)
            else:
                kubeconfig.load_incluster_config(client_configuration=configuration)
        except (ConfigException, OSError) as exc:
            where = f"the kubeconfig {path}" if path else "the in-cluster service account"
            raise IntegrationError(SYSTEM, f"cannot use {where} to reach the central cluster: {exc}") from exc
        # Reads are retried after a connection error or a 5xx; writes only when no connection was made.
        configuration.retries = Retry(total=self.retries, connect=self.retries, read=self.retries,
                                      status=self.retries, other=0, backoff_factor=0.2, raise_on_status=False,
                                      allowed_methods=http.IDEMPOTENT, status_forcelist=http.TRANSIENT_STATUSES,
                                      respect_retry_after_header=False)
        return kube.ApiClient(configuration)

    def _kube(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
              query: dict[str, str] | None = None, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
        api = self._api()
        request = api.param_serialize(method, path, query_params=list((query or {}).items()),
                                      header_params={"Accept": "application/json", "Content-Type": content_type},
                                      body=body, auth_settings=["BearerToken"])
        where = f"{method} {path}"
        try:
            response = api.call_api(*request, _request_timeout=self.timeout)
            response.read()
        except ApiException as exc:  # how the client reports a TLS failure
            raise IntegrationError(SYSTEM, f"TLS with the central cluster failed ({where})") from exc
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, urllib3.exceptions.SSLError):
                raise IntegrationError(SYSTEM, f"TLS with the central cluster failed ({where})") from exc
            # urllib3's NewConnectionError (refused, no route) is a ConnectTimeoutError too, for history's sake.
            timed_out = isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
                reason, urllib3.exceptions.NewConnectionError)
            what = f"no answer within {self.timeout:g}s" if timed_out else f"cannot connect ({type(reason).__name__})"
            raise Unavailable(SYSTEM, f"central cluster {api.configuration.host}: {what} ({where})") from exc
        if response.status >= 400:
            message = http.scrub(f"{_kube_message(response)} ({where}, HTTP {response.status})", self._token, *secrets)
            error = http.error_for_status(SYSTEM, response.status, message, http.retry_after(response.headers))
            raise error from ApiException(http_resp=response)
        return json.loads(response.data) if response.data else {}

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


def _kube_message(response: Any) -> str:
    """The API server's own message: a Status object's ``message``, else the start of the body."""
    try:
        body = json.loads(response.data)
        return str(body.get("message") or body.get("reason") or response.reason)
    except (ValueError, AttributeError):
        return (response.data or b"").decode("utf-8", "replace").strip()[:300] or str(response.reason)


def _argocd_message(response: requests.Response) -> str:
    """Argo CD's message: grpc-gateway's ``{"error": ..., "code": N, "message": ...}``, else the body's start."""
    try:
        body = response.json()
        return str(body.get("message") or body.get("error") or response.reason)
    except (ValueError, AttributeError):
        return response.text.strip()[:300] or str(response.reason)


def _decoded(value: str | None) -> str:
    return base64.b64decode(value).decode() if value else ""
