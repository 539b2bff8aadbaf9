"""The fake Nexus' Docker endpoint: ``/v2`` in front of a real registry, as Nexus is with path-based routing.

``/v2/<repository>/<image>/...`` is checked (authentication, the repository's privileges) and passed to the
registry behind, keeping the full name. A manifest pushed through it becomes a component of the fake
Nexus (image name, tag as version), which deletes the manifest upstream when the component is deleted.
``docker_auth="bearer"`` answers as the Docker Bearer Token Realm does: 401 with a ``Bearer`` challenge,
tokens from ``/v2/token`` for Basic credentials. Tag lists honour ``n`` and ``last`` and send ``Link``, as
the distribution specification says (the registry behind may ignore them).

Sources: https://help.sonatype.com/en/docker-authentication.html (Bearer Token Realm),
https://distribution.github.io/distribution/spec/api/ and .../spec/auth/token/.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from typing import TYPE_CHECKING

import requests
from flask import Flask, Response, request

if TYPE_CHECKING:
    from tests.fakes.nexus_server import FakeNexus

BASIC_REALM = 'BASIC realm="Sonatype Nexus Repository Manager"'
_V2_PATH = re.compile(r"(.+?)/(tags|manifests|blobs)(?:/(.*))?")
_PASSED_HEADERS = ("Content-Type", "Accept", "Content-Range", "Range")
_RETURNED_HEADERS = ("Content-Type", "Docker-Content-Digest", "Docker-Upload-UUID", "Range", "Location",
                     "Docker-Distribution-Api-Version")


class DockerFront:
    """The ``/v2`` routes of ``nexus``, passed to its ``registry_url`` and authenticated as its ``docker_auth`` says."""

    def __init__(self, nexus: FakeNexus):
        self.nexus = nexus
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._upstream = requests.Session()

    def register(self, app: Flask) -> None:
        app.add_url_rule("/v2/token", "token", self._token)
        app.add_url_rule("/v2/", "v2_base", self._v2_base)
        app.add_url_rule("/v2/<path:path>", "v2", self._v2,
                         methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])

    def delete_manifest(self, name: str, digest: str) -> None:
        """Delete the manifest ``digest`` of image ``name`` (``<repository>/<image>``) in the registry behind."""
        if self.nexus.registry_url:
            self._upstream.delete(f"{self.nexus.registry_url}/v2/{name}/manifests/{digest}", timeout=10)

    def close(self) -> None:
        self._upstream.close()

    # --- routes ------------------------------------------------------------------------------------

    def _token(self) -> Response:
        if (user := self.nexus.basic_user()) is None:
            return unauthorized()
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = user
        return _json({"token": token, "access_token": token})

    def _v2_base(self) -> Response:
        if self._user() is None:
            return self._challenge("")
        return _json({})

    def _v2(self, path: str) -> Response:
        registry_url = self.nexus.registry_url
        if registry_url is None:
            return _registry_error(404, "UNSUPPORTED", "this fake Nexus has no registry behind it")
        found = _V2_PATH.fullmatch(path)
        name, kind, reference = found.groups() if found else (path, "", "")
        repository, _, image = name.partition("/")
        if (user := self._user()) is None:
            return self._challenge(f"repository:{name}")
        if repository not in self.nexus.repositories:
            return _registry_error(404, "NAME_UNKNOWN", "repository name not known to registry")
        if not self.nexus.may_view(user, repository):
            return _registry_error(403, "DENIED", "requested access to the resource is denied")
        if request.method == "GET" and kind == "tags":
            return self._tags(name)
        upstream = self._upstream.request(
            request.method, f"{registry_url}/v2/{path}", params=request.args, data=request.get_data(),
            headers={h: request.headers[h] for h in _PASSED_HEADERS if h in request.headers}, timeout=30)
        if request.method == "PUT" and kind == "manifests" and upstream.status_code == 201 \
                and not reference.startswith("sha256:"):
            self.nexus.add_component(repository, image, reference, upstream.headers.get("Docker-Content-Digest"))
        headers = {h: upstream.headers[h] for h in _RETURNED_HEADERS if h in upstream.headers}
        if "Location" in headers:
            headers["Location"] = headers["Location"].replace(registry_url, self.nexus.url)
        return Response(upstream.content, upstream.status_code, headers)

    def _tags(self, name: str) -> Response:
        upstream = self._upstream.get(f"{self.nexus.registry_url}/v2/{name}/tags/list", timeout=30)
        if upstream.status_code != 200:
            return Response(upstream.content, upstream.status_code, {"Content-Type": "application/json"})
        tags = sorted(upstream.json().get("tags") or [])
        last, n = request.args.get("last"), request.args.get("n", type=int)
        if last:
            tags = [t for t in tags if t > last]
        headers = {}
        if n is not None and len(tags) > n:
            tags = tags[:n]
            headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
        return Response(json.dumps({"name": name, "tags": tags}), 200, headers,
                        mimetype="application/json")

    # --- authentication ----------------------------------------------------------------------------

    def _user(self) -> str | None:
        if self.nexus.docker_auth == "basic":
            return self.nexus.basic_user()
        header = request.headers.get("Authorization", "")
        with self._lock:
            return self._tokens.get(header[len("Bearer "):]) if header.startswith("Bearer ") else None

    def _challenge(self, scope: str) -> Response:
        if self.nexus.docker_auth == "basic":
            header = BASIC_REALM
        else:
            realm = f"{self.nexus.url}/v2/token"
            action = "pull" if request.method in ("GET", "HEAD") else "pull,push"
            header = f'Bearer realm="{realm}",service="{realm}"' + (f',scope="{scope}:{action}"' if scope else "")
        response = _registry_error(401, "UNAUTHORIZED", "access to the requested resource is not authorized")
        response.headers["WWW-Authenticate"] = header
        return response


def unauthorized() -> Response:
    """Nexus' answer to a request without valid credentials."""
    return Response(status=401, headers={"WWW-Authenticate": BASIC_REALM})


def _json(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")


def _registry_error(status: int, code: str, message: str) -> Response:
    return _json({"errors": [{"code": code, "message": message, "detail": None}]}, status)
