"""The Kubernetes REST API as the portal speaks it: one request function over the official client's transport.

The official client builds the connection (TLS, bearer token, client certificates, kubeconfig auth plugins);
this module sends every request through one place so that each one honours the timeout, asks for JSON and
has its failure translated into ``integrations.errors`` with the API server's own ``Status.message``.
Resources named by apiVersion and kind are looked up in the server's discovery documents, kept in memory
for the life of the connection (the dynamic client's discoverer would write a cache file shared by every
process and cluster on the host, and sends its discovery requests without a timeout).
"""

from __future__ import annotations

import hashlib
import json
import threading
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
    AuthFailed, IntegrationError, InvalidRequest, NotFound, RateLimited, Unavailable,
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


def api_client(target: ClusterTarget) -> k8s.ApiClient:
    """An ApiClient for ``target``: its kubeconfig, or its API URL, CA and bearer token."""
    configuration = k8s.Configuration()
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


class KubernetesAPI:
    """Requests to one API server, with one timeout and one error translation; never shows its credentials."""

    def __init__(self, target: ClusterTarget, timeout: float):
        self.name = target.name
        self.client = api_client(target)
        self.api_url = (target.api_url or self.client.configuration.host).rstrip("/")
        self.timeout = timeout
        self._secrets = tuple(s for s in (target.token, target.kubeconfig) if s)
        self._kinds: dict[str, dict[str, Kind]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KubernetesAPI(name={self.name!r}, api_url={self.api_url!r})"

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, body: Any = None, query: list[tuple[str, Any]] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        """Send one request; the decoded JSON answer, or the error it means."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = self.client.param_serialize(method, path, query_params=list(query or []),
                                                 header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            response = self.client.call_api(*serialized, _request_timeout=self.timeout)
            data = response.read()
        except (urllib3.exceptions.HTTPError, ApiException, OSError) as exc:
            raise self._transport_error(exc) from exc
        if not 200 <= response.status <= 299:
            raise self._status_error(response.status, data, response.headers)
        return json.loads(data) if data else {}

    def get(self, path: str, **query: Any) -> dict[str, Any] | None:
        """The object at ``path``, or None when there is none."""
        try:
            return self.request("GET", path, query=list(query.items()))
        except NotFound:
            return None

    def apply(self, path: str, manifest: dict[str, Any], field_manager: str) -> dict[str, Any]:
        """Server-side apply of ``manifest`` at ``path`` by ``field_manager``, taking over conflicting fields."""
        return self.request("PATCH", path, body=manifest, content_type=APPLY,
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
        raise InvalidRequest(SYSTEM, f"{self.api_url} serves no kind {kind} in {api_version}", status=404)

    def _discover(self, api_version: str) -> dict[str, Kind]:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        document = self.get(path) or {}
        return {r["kind"]: Kind(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
                for r in document.get("resources", []) if "/" not in r["name"]}  # not subresources

    # --- errors ----------------------------------------------------------------------------------

    def _transport_error(self, exc: Exception) -> IntegrationError:
        reason = getattr(exc, "reason", None) if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
        if isinstance(reason, urllib3.exceptions.SSLError) or (
                isinstance(exc, ApiException) and "SSLError" in str(exc.reason)):
            return IntegrationError(SYSTEM, f"TLS handshake with {self.api_url} failed: "
                                            "check the cluster's CA certificate (or its verify setting)")
        if isinstance(reason, (urllib3.exceptions.TimeoutError, TimeoutError)):
            return Unavailable(SYSTEM, f"cannot reach {self.api_url}: no answer within {self.timeout:g}s")
        return Unavailable(SYSTEM, f"cannot reach {self.api_url} ({type(reason or exc).__name__})")

    def _status_error(self, status: int, data: bytes, headers: Any) -> IntegrationError:
        message = self._scrub(_status_message(data) or f"HTTP {status}")
        if status == 401:
            return AuthFailed(SYSTEM, f"{self.api_url} rejected the credentials of cluster {self.name!r} "
                                      f"(expired or invalid): {message}", status)
        if status == 403 and "exceeded quota" in message:
            return InvalidRequest(SYSTEM, message, status)  # too big for the namespace's quota: retrying won't help
        if status == 429:
            return RateLimited(SYSTEM, message, http.retry_after(headers or {}), status)
        if status == 500 and any(marker in message for marker in _TYPED_PATCH):
            return InvalidRequest(SYSTEM, message, status)
        return http.error_for_status(SYSTEM, status, message)

    def _scrub(self, text: str) -> str:
        return http.scrub(text, *self._secrets)


def _status_message(data: bytes) -> str:
    """The ``message`` of the API server's Status body, or the body itself when it is not one."""
    text = (data or b"").decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500]
    return str(body.get("message") or "") if isinstance(body, dict) else text[:500]
