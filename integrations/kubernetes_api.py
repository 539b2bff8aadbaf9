"""The Kubernetes REST API as the portal speaks it: one request function over the official client's transport.

The official client builds the connection (TLS, bearer token, client certificates, kubeconfig auth plugins);
this module sends every request through one place so that each one honours the timeout, asks for JSON and
has its failure translated into ``integrations.errors`` with the API server's own ``Status.message``, the
request it answered and its HTTP status. Both Kubernetes-speaking adapters use it: the team clusters'
(``integrations.kubernetes``) and Argo CD's, whose objects live in the central cluster (``integrations.argocd``);
each names its own system in the errors and in the metrics (``integrations.http.observe``).
Resources named by apiVersion and kind are looked up in the server's discovery documents, kept in memory
for the life of the connection (the dynamic client's discoverer would write a cache file shared by every
process and cluster on the host, and sends its discovery requests without a timeout).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from integrations import http
from integrations.cluster import ClusterTarget
from integrations.errors import (
    AuthFailed, IntegrationError, InvalidRequest, NotFound, Unavailable,
)

SYSTEM = "kubernetes"
APPLY = "application/apply-patch+yaml"
# What the API server says, in a 500, when server-side apply cannot type the patch against the schema:
# the request is wrong and will stay wrong, whatever the status says.
_TYPED_PATCH = ("failed to create typed patch object", "failed to create typed live object",
                "failed to convert new object")


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API: its plural resource name and whether it is namespaced."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, name: str = "", namespace: str = "") -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        return f"{base}/{self.plural}" + (f"/{quote(name, safe='')}" if name else "")


def fingerprint(target: ClusterTarget) -> str:
    """A digest of everything that makes a connection: a changed credential gives another one."""
    material = "\0".join((target.api_url, target.ca_pem, target.token, target.kubeconfig, str(target.verify)))
    return hashlib.sha256(material.encode()).hexdigest()


def api_client(target: ClusterTarget, pool_size: int = 0) -> k8s.ApiClient:
    """An ApiClient for ``target``: its kubeconfig, or its API URL, CA and bearer token; ``pool_size`` connections
    kept open (0: the client's default), as many as the threads that use it at once."""
    configuration = k8s.Configuration()
    if pool_size:
        configuration.connection_pool_maxsize = pool_size
    if target.kubeconfig:
        try:
            document = yaml.safe_load(target.kubeconfig)
            k8s_config.load_kube_config_from_dict(document, client_configuration=configuration,
                                                  persist_config=False)
        except (yaml.YAMLError, ConfigException, TypeError, KeyError, ValueError) as exc:
            # The loader's messages can quote the document: say only what kind of problem it was.
            raise InvalidRequest(SYSTEM, f"the kubeconfig of cluster {target.name!r} cannot be used "
                                         f"({type(exc).__name__})") from None
    else:
        if not target.api_url or not target.token:
            raise InvalidRequest(SYSTEM, f"cluster {target.name!r} needs a kubeconfig, or an API URL and a token")
        configuration.host = target.api_url.rstrip("/")
        configuration.api_key = {"BearerToken": target.token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        configuration.ca_cert_data = target.ca_pem or None  # None: the system's CAs
    configuration.verify_ssl = configuration.verify_ssl and target.verify
    # Failed connections are retried once; a request that was sent is not (a PATCH may have taken effect),
    # and a 429 or a 5xx goes back to the caller, who knows whether to try again.
    configuration.retries = urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0,
                                          backoff_factor=0.2, raise_on_status=False)
    return k8s.ApiClient(configuration)


def api_client_from_file(kubeconfig: str, retries: int, name: str, system: str = SYSTEM) -> k8s.ApiClient:
    """An ApiClient from the kubeconfig file ``kubeconfig``, or ("") the in-cluster service account's, with
    the adapters' retry policy (``http.retry_policy``); IntegrationError of ``system`` when it cannot be made."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        where = f"the kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster service account"
        raise IntegrationError(system, f"cannot use {where} to reach cluster {name!r}: {exc}") from exc
    configuration.retries = http.retry_policy(retries)
    return k8s.ApiClient(configuration)


class KubernetesAPI:
    """Requests to one API server, with one timeout and one error translation; never shows its credentials.

    ``client`` is an ApiClient, or a factory of one called at the first request (and again after ``close()``),
    so that a client that cannot be made is the error of that request. ``name`` is the cluster's, ``system``
    the one the errors are of, and ``secrets`` are masked wherever the API server could echo them.
    """

    def __init__(self, client: k8s.ApiClient | Callable[[], k8s.ApiClient], timeout: float, name: str,
                 system: str = SYSTEM, api_url: str = "", secrets: Iterable[str] = ()):
        self.name = name
        self.system = system
        self.timeout = timeout
        self._make = None if isinstance(client, k8s.ApiClient) else client
        self._client = client if isinstance(client, k8s.ApiClient) else None
        self._api_url = api_url.rstrip("/")
        self._secrets = tuple(s for s in secrets if s)
        self._kinds: dict[str, dict[str, Kind]] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, target: ClusterTarget, timeout: float, pool_size: int = 0) -> "KubernetesAPI":
        """The API server of the cluster ``target``, its client made now (InvalidRequest when it cannot be)."""
        return cls(api_client(target, pool_size), timeout, target.name, api_url=target.api_url,
                   secrets=(target.token, target.kubeconfig))

    def __repr__(self) -> str:
        return f"KubernetesAPI(name={self.name!r}, api_url={self.api_url!r})"

    @property
    def client(self) -> k8s.ApiClient:
        with self._lock:
            if self._client is None:
                assert self._make is not None
                self._client = self._make()
            return self._client

    @property
    def api_url(self) -> str:
        """The API server's URL: the one given, else the client's host ("" until a factory's client is made)."""
        client = self._client
        return self._api_url or (client.configuration.host.rstrip("/") if client is not None else "")

    def close(self) -> None:
        """Close the client; a factory's is made again by the next request."""
        with self._lock:
            client = self._client
            if self._make is not None:
                self._client, self._kinds = None, {}
        if client is not None:
            client.close()

    def request(self, method: str, path: str, body: Any = None, query: list[tuple[str, Any]] | None = None,
                content_type: str = "application/json", secrets: Iterable[str] = ()) -> dict[str, Any]:
        """Send one request; the decoded JSON answer, or the error it means (``secrets`` masked in it too)."""
        data = self._send(method, path, body, query, content_type, "application/json", secrets)
        return json.loads(data) if data else {}

    def request_text(self, method: str, path: str, query: list[tuple[str, Any]] | None = None) -> str:
        """Send one request whose answer is text (a pod's log), or raise the error it means."""
        return self._send(method, path, None, query, "application/json", "text/plain, application/json",
                          ()).decode("utf-8", "replace")

    def _send(self, method: str, path: str, body: Any, query: list[tuple[str, Any]] | None, content_type: str,
              accept: str, secrets: Iterable[str]) -> bytes:
        client = self.client
        headers = {"Accept": accept, "Content-Type": content_type}
        serialized = client.param_serialize(method, path, query_params=list(query or []),
                                            header_params=headers, body=body, auth_settings=["BearerToken"])
        where = f"{method} {path}"
        started = time.perf_counter()
        try:
            response = client.call_api(*serialized, _request_timeout=self.timeout)
            data = response.read()
        except (urllib3.exceptions.HTTPError, ApiException, OSError) as exc:
            http.observe(self.system, http.outcome(None), time.perf_counter() - started)
            raise self._transport_error(exc, where) from exc
        http.observe(self.system, http.outcome(response.status), time.perf_counter() - started)
        if not 200 <= response.status <= 299:
            error = self._status_error(response.status, _status_message(data) or str(response.reason), where,
                                       response.headers, secrets)
            # The cause without the body, which may hold what ``secrets`` masks.
            raise error from ApiException(status=response.status, reason=response.reason)
        return data

    def open_stream(self, path: str, query: list[tuple[str, Any]], read_timeout: float) -> Any:
        """Start a streaming GET (a watch) and return the open urllib3 response, its status checked; the
        caller reads its lines and closes it. ``read_timeout`` bounds the silence between two chunks."""
        client = self.client
        serialized = client.param_serialize("GET", path, query_params=list(query),
                                            header_params={"Accept": "application/json"},
                                            auth_settings=["BearerToken"])
        where = f"GET {path} (watch)"
        started = time.perf_counter()  # until the answer's headers: the stream's length says nothing of the server
        try:
            response = client.call_api(*serialized, _request_timeout=(self.timeout, read_timeout)).response
        except (urllib3.exceptions.HTTPError, ApiException, OSError) as exc:
            http.observe(self.system, http.outcome(None), time.perf_counter() - started)
            raise self._transport_error(exc, where) from exc
        http.observe(self.system, http.outcome(response.status), time.perf_counter() - started)
        if not 200 <= response.status <= 299:
            data = response.read()
            response.release_conn()
            raise self._status_error(response.status, _status_message(data) or str(response.reason), where,
                                     response.headers, ()) from ApiException(status=response.status)
        return response

    def get(self, path: str, **query: Any) -> dict[str, Any] | None:
        """The object at ``path``, or None when there is none."""
        try:
            return self.request("GET", path, query=list(query.items()))
        except NotFound:
            return None

    def apply(self, path: str, manifest: dict[str, Any], field_manager: str,
              secrets: Iterable[str] = ()) -> dict[str, Any]:
        """Server-side apply of ``manifest`` at ``path`` by ``field_manager``, taking over conflicting fields."""
        return self.request("PATCH", path, body=manifest, content_type=APPLY, secrets=secrets,
                            query=[("fieldManager", field_manager), ("force", "true")])

    def kind(self, api_version: str, kind: str) -> Kind:
        """Where ``kind`` of ``api_version`` lives, from the server's discovery (asked again once on a miss,
        since a CRD may have been installed since)."""
        for refresh in (False, True):
            with self._lock:
                known = None if refresh else self._kinds.get(api_version)
            if known is None:
                known = self._discover(api_version)
                with self._lock:
                    self._kinds[api_version] = known
            if kind in known:
                return known[kind]
        raise InvalidRequest(self.system, f"{self.api_url} serves no kind {kind} in {api_version}", status=404)

    def _discover(self, api_version: str) -> dict[str, Kind]:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        document = self.get(path) or {}
        return {r["kind"]: Kind(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
                for r in document.get("resources", []) if "/" not in r["name"]}  # not subresources

    # --- errors ----------------------------------------------------------------------------------

    def _transport_error(self, exc: Exception, where: str) -> IntegrationError:
        reason = (getattr(exc, "reason", None) if isinstance(exc, urllib3.exceptions.MaxRetryError) else None) or exc
        if isinstance(reason, urllib3.exceptions.SSLError) or (
                isinstance(exc, ApiException) and "SSLError" in str(exc.reason)):  # how the client reports TLS
            return IntegrationError(self.system, f"TLS handshake with {self.api_url} failed ({where}): check the "
                                                 f"CA certificate of cluster {self.name!r} (or its verify setting)")
        # urllib3's NewConnectionError (refused, no route) is a ConnectTimeoutError too, for history's sake.
        timed_out = isinstance(reason, (urllib3.exceptions.TimeoutError, TimeoutError)) and not isinstance(
            reason, urllib3.exceptions.NewConnectionError)
        what = f"no answer within {self.timeout:g}s" if timed_out else f"cannot connect ({type(reason).__name__})"
        return Unavailable(self.system, f"cannot reach {self.api_url}: {what} ({where})")

    def _status_error(self, status: int, said: str, where: str, headers: Any,
                      secrets: Iterable[str]) -> IntegrationError:
        message = http.scrub(f"{said} ({where}, HTTP {status})", *self._secrets, *secrets)
        if status == 401:
            return AuthFailed(self.system, f"{self.api_url} rejected the credentials of cluster {self.name!r} "
                                           f"(expired or invalid): {message}", status)
        if status == 403 and "exceeded quota" in message:  # too big for the namespace's quota: retrying won't help
            return InvalidRequest(self.system, message, status)
        if status == 500 and any(marker in message for marker in _TYPED_PATCH):
            return InvalidRequest(self.system, message, status)
        return http.error_for_status(self.system, status, message, http.retry_after(headers or {}))


def _status_message(data: bytes) -> str:
    """The ``message`` (else ``reason``) of the API server's Status body, or the body itself when it is not one."""
    text = (data or b"").decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500]
    return str(body.get("message") or body.get("reason") or "") if isinstance(body, dict) else text[:500]
