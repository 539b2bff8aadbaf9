"""A client of the Docker Registry HTTP API v2 (the OCI distribution API), for any registry that speaks it.

Tags come from ``GET /v2/<name>/tags/list?n=<page>``, following ``Link: <...>; rel="next"`` until there is
none: servers that ignore ``n`` (Nexus in some versions, distribution 2.x) answer everything at once
without a Link, and that is the last page. A tag's digest is the ``Docker-Content-Digest`` of
``HEAD /v2/<name>/manifests/<tag>``, asked with the OCI and Docker manifest and index types so that the
registry answers with the digest it stores rather than a converted manifest.

Authentication: HTTP Basic sent up front, or the token flow when the registry answers 401 with
``WWW-Authenticate: Bearer realm=...,service=...,scope=...``: a token from the realm, then the request again.
Specifications: https://distribution.github.io/distribution/spec/api/ (listing tags, pagination) and
https://distribution.github.io/distribution/spec/auth/token/ (the token flow).

What every requests-based adapter needs lives here too, until a second one arrives: the session (TLS,
retries of idempotent requests) and the translation of HTTP answers and transport failures into
``integrations.errors``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from integrations.errors import (
    AuthFailed, Conflict, IntegrationError, InvalidRequest, NotFound, RateLimited, Unavailable,
)

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def http_session(auth: Any, verify: bool, ca_bundle: str, retries: int) -> requests.Session:
    """A session with ``auth`` (a requests auth or None), TLS as configured, and retries of idempotent requests.

    Connection errors and 5xx answers are retried ``retries`` times with a short backoff. POST is never
    retried: it may have created something before the answer was lost. 429 is not retried either, nor is a
    Retry-After slept through here: ``RateLimited.retry_after`` lets the caller schedule the next attempt.
    """
    session = requests.Session()
    session.auth = auth
    session.verify = ca_bundle or verify
    retry = Retry(total=retries, connect=retries, read=retries, status=retries, other=0,
                  allowed_methods=IDEMPOTENT, status_forcelist=(500, 502, 503, 504), backoff_factor=0.2,
                  respect_retry_after_header=False, raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def response_message(response: requests.Response) -> str:
    """The server's own words: Nexus' validation list, a registry's ``errors``, a JSON message, or the text."""
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return text[:300] if text and not text.startswith("<") else (response.reason or "")
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        body = body["errors"]
    if isinstance(body, list):
        parts = [str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e) for e in body]
        return "; ".join(p for p in parts if p)[:300]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body.get("detail") or body)[:300]
    return str(body)[:300]


def retry_after(response: requests.Response) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None when it says nothing."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def error_for(system: str, response: requests.Response) -> IntegrationError:
    """The error a failed answer means, with the server's own message and where it came from."""
    status = response.status_code
    where = f"{response.request.method} {urlsplit(response.url).path}" if response.request else response.url
    message = f"{response_message(response) or f'HTTP {status}'} ({where}: {status})"
    if status in (401, 403):
        return AuthFailed(system, message, status)
    if status == 404:
        return NotFound(system, message, status)
    if status == 409:
        return Conflict(system, message, status)
    if status in (400, 422):
        return InvalidRequest(system, message, status)
    if status == 429:
        return RateLimited(system, message, retry_after(response))
    if status >= 500:
        return Unavailable(system, message, status)
    return IntegrationError(system, message, status)


def check(system: str, response: requests.Response) -> requests.Response:
    """``response`` when it succeeded; otherwise its error, raised from requests' HTTPError."""
    try:
        response.raise_for_status()
    except requests.HTTPError as exc:
        raise error_for(system, response) from exc
    return response


def transport_error(system: str, exc: requests.RequestException, timeout: float) -> IntegrationError:
    """What a request that got no answer means: timeouts and refused connections are worth retrying later."""
    # Once urllib3's retries are spent, a read timeout arrives as a ConnectionError wrapping it.
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(exc, requests.Timeout) or isinstance(reason, urllib3.exceptions.ReadTimeoutError):
        return Unavailable(system, f"no answer within {timeout:g}s")
    if isinstance(exc, requests.exceptions.SSLError):
        return IntegrationError(system, "TLS handshake failed: check tls_verify and ca_bundle")
    if isinstance(exc, requests.ConnectionError):
        return Unavailable(system, f"cannot connect ({type(exc).__name__})")
    return IntegrationError(system, f"request failed ({type(exc).__name__})")


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str):
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class _Anonymous(requests.auth.AuthBase):
    """No credentials, overriding whatever the shared session carries."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class RegistryV2:
    """Tags and digests of images in one registry at ``base_url`` (scheme and host, no path)."""

    def __init__(self, base_url: str, session: requests.Session, system: str,
                 credentials: tuple[str, str] | None, timeout: float, page_size: int = 100):
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.system = system
        self.timeout = timeout
        self.page_size = page_size
        self._basic = requests.auth.HTTPBasicAuth(*credentials) if credentials else _Anonymous()
        self._auth: requests.auth.AuthBase = self._basic

    def __repr__(self) -> str:
        return f"RegistryV2({self.base_url!r})"

    def tags(self, name: str) -> list[str]:
        """Every tag of image ``name``, page after page, in the registry's order."""
        url: str | None = f"{self.base_url}/v2/{name}/tags/list?n={self.page_size}"
        tags: list[str] = []
        visited: set[str] = set()
        while url and url not in visited:  # a server repeating its Link must not loop us forever
            visited.add(url)
            response = self.request("GET", url)
            tags.extend(response.json().get("tags") or [])
            following = response.links.get("next", {}).get("url")
            url = urljoin(response.url, following) if following else None
        return list(dict.fromkeys(tags))

    def digest(self, name: str, reference: str) -> str:
        """The content digest of the manifest (or index) tagged ``reference``."""
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        url = f"{self.base_url}/v2/{name}/manifests/{reference}"
        digest = self.request("HEAD", url, headers=headers).headers.get("Docker-Content-Digest")
        if digest:
            return digest
        # Not every registry sends the header on HEAD; the digest of the bytes it serves is the same thing.
        return "sha256:" + hashlib.sha256(self.request("GET", url, headers=headers).content).hexdigest()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """A request to the registry (``url`` absolute, or a path such as ``/v2/...``) with its authentication:
        Basic, or a Bearer token fetched when the registry challenges for one. Raises on an error answer."""
        url = urljoin(self.base_url + "/", url)
        response = self._request(method, url, **kwargs)
        if response.status_code == 401:
            challenge = _challenge(response.headers.get("WWW-Authenticate", ""))
            if challenge.get("scheme") == "bearer" and challenge.get("realm"):
                self._auth = _Bearer(self._token(challenge))
                response = self._request(method, url, **kwargs)
        return check(self.system, response)

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, auth=self._auth, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise transport_error(self.system, exc, self.timeout) from exc

    def _token(self, challenge: dict[str, str]) -> str:
        params: dict[str, Any] = {"service": challenge.get("service", "")}
        if challenge.get("scope"):
            params["scope"] = challenge["scope"].split(" ")
        try:
            response = self.session.get(challenge["realm"], params=params, auth=self._basic, timeout=self.timeout)
        except requests.RequestException as exc:
            raise transport_error(self.system, exc, self.timeout) from exc
        body = check(self.system, response).json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthFailed(self.system, f"the token service at {challenge['realm']} returned no token")
        return token


def _challenge(header: str) -> dict[str, str]:
    """``Bearer realm="...",service="...",scope="..."`` as a dict with the lowercased ``scheme``."""
    scheme, _, params = header.strip().partition(" ")
    return {"scheme": scheme.lower(), **dict(_CHALLENGE_PARAM.findall(params))}
