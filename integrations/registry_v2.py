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

Also here, for the Nexus adapter that shares its session: reading a registry's or Nexus' own message out of
an error answer, and raising the error it means (``check``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from integrations import http
from integrations.errors import AuthFailed, IntegrationError

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


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


def error_for(system: str, response: requests.Response) -> IntegrationError:
    """The error a failed answer means, with the server's own message and where it came from."""
    status = response.status_code
    where = f"{response.request.method} {urlsplit(response.url).path}" if response.request else response.url
    message = f"{response_message(response) or f'HTTP {status}'} ({where}: {status})"
    return http.error_for_status(system, status, message, http.retry_after(response.headers))


def check(system: str, response: requests.Response) -> requests.Response:
    """``response`` when it succeeded; otherwise its error, raised from requests' HTTPError."""
    try:
        response.raise_for_status()
    except requests.HTTPError as exc:
        raise error_for(system, response) from exc
    return response


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
            raise http.transport_error(self.system, exc, self.timeout) from exc

    def _token(self, challenge: dict[str, str]) -> str:
        params: dict[str, Any] = {"service": challenge.get("service", "")}
        if challenge.get("scope"):
            params["scope"] = challenge["scope"].split(" ")
        try:
            response = self.session.get(challenge["realm"], params=params, auth=self._basic, timeout=self.timeout)
        except requests.RequestException as exc:
            raise http.transport_error(self.system, exc, self.timeout) from exc
        body = check(self.system, response).json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthFailed(self.system, f"the token service at {challenge['realm']} returned no token")
        return token


def _challenge(header: str) -> dict[str, str]:
    """``Bearer realm="...",service="...",scope="..."`` as a dict with the lowercased ``scheme``."""
    scheme, _, params = header.strip().partition(" ")
    return {"scheme": scheme.lower(), **dict(_CHALLENGE_PARAM.findall(params))}
