"""A fake Nexus Repository 3 over real HTTP, for the adapter's tests: Nexus cannot run here.

It serves, under ``/service/rest/v1``, exactly the endpoints ``integrations.nexus`` uses, as the Nexus
REST documentation and the server's own OpenAPI description (``<nexus>/#admin/system/api``) describe
them: status codes, bodies, validation errors as a JSON list of ``{"id", "message"}``, other refusals as a
JSON string, HTTP Basic authentication (401 without it, 403 without the privilege).

With ``registry_url`` it is also the Docker endpoint of its repositories, in front of that real registry
(``tests.fakes.docker_front``): a manifest pushed through it becomes a component (image name, tag as
version) that the search finds and whose deletion deletes the manifest upstream.

``fail_next`` injects faults (status, headers, body, delay) ahead of everything else, like a proxy would.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import uuid
from typing import Any, Callable

from flask import Flask, Response, request
from werkzeug.wrappers import Request

from tests.fakes.docker_front import DockerFront, unauthorized
from tests.fakes.http_server import FakeHTTPServer

REST = "/service/rest/v1"
_NAME = re.compile(r"[a-zA-Z0-9\-][a-zA-Z0-9_.\-]*")


def admin_only(handler: Callable[..., Response]) -> Callable[..., Response]:
    """The REST endpoints the portal calls need ``nx-all``: 401 without valid credentials, 403 without it."""

    @functools.wraps(handler)
    def checked(self: "FakeNexus", *args: Any, **kwargs: Any) -> Response:
        user = self.basic_user()
        if user is None:
            return unauthorized()
        if "nx-all" not in self._privileges(user):
            return Response(status=403)
        return handler(self, *args, **kwargs)

    return checked


class FakeNexus(FakeHTTPServer):
    """State in memory; ``start()`` serves it on 127.0.0.1 in a daemon thread, ``stop()`` ends it."""

    thread_name = "fake-nexus"

    def __init__(self, user: str = "admin", password: str = "admin123", *, registry_url: str | None = None,
                 docker_auth: str = "basic", page_size: int = 50):
        super().__init__()
        self.registry_url = registry_url.rstrip("/") if registry_url else None
        self.docker_auth = docker_auth
        self.page_size = page_size
        self.repositories: dict[str, dict[str, Any]] = {}
        self.selectors: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, dict[str, Any]] = {"nx-admin": {
            "id": "nx-admin", "source": "default", "name": "nx-admin", "description": "Administrator Role",
            "readOnly": True, "privileges": ["nx-all"], "roles": []}}
        self.users: dict[str, dict[str, Any]] = {user: {
            "userId": user, "firstName": "Administrator", "lastName": "User", "emailAddress": "admin@example.org",
            "source": "default", "status": "active", "readOnly": False, "roles": ["nx-admin"], "externalRoles": [],
            "password": password}}
        self.components: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._continuations: dict[str, tuple[tuple[str, ...], int]] = {}
        self.docker = DockerFront(self)
        self.app = self._build_app()

    def stop(self) -> None:
        super().stop()
        self.docker.close()  # its session to the registry behind

    # --- test controls -------------------------------------------------------------------------

    def add_component(self, repository: str, name: str, version: str, digest: str | None = None) -> str:
        """A component as a push through ``/v2`` records it (``digest``: its manifest upstream), or as if
        pushed without going through ``/v2`` (no digest, no manifest upstream); its id."""
        with self._lock:
            for component_id, c in self.components.items():
                if (c["repository"], c["name"], c["version"]) == (repository, name, version):
                    c["digest"] = digest
                    return component_id
            raw = f"{repository}:{uuid.uuid4().hex}".encode()
            component_id = base64.urlsafe_b64encode(raw).decode().rstrip("=")
            self.components[component_id] = {"id": component_id, "repository": repository, "format": "docker",
                                             "group": None, "name": name, "version": version, "assets": [],
                                             "digest": digest}
            return component_id

    def password_of(self, user_id: str) -> str:
        return self.users[user_id]["password"]

    def count(self, method: str, path_regex: str) -> int:
        return sum(1 for m, p in self.calls if m == method and re.search(path_regex, p))

    # --- the application -----------------------------------------------------------------------

    def received(self, request: Request) -> None:
        self.calls.append((request.method, request.path))

    def respond(self, request: Request) -> Flask:
        return self.app

    def _build_app(self) -> Flask:
        app = Flask("fake_nexus")
        route = app.add_url_rule

        # Repositories API, https://help.sonatype.com/en/repositories-api.html: a format and type specific
        # GET (200 DockerHostedApiRepository, 404) and POST (201, no body; 400 validation errors).
        route(f"{REST}/repositories/docker/hosted/<name>", "get_repository", self._get_repository)
        route(f"{REST}/repositories/docker/hosted", "create_repository", self._create_repository, methods=["POST"])
        # Security Management API, content selectors, https://help.sonatype.com/en/security-management-api.html
        # and https://help.sonatype.com/en/content-selectors.html: GET 200 {name, type, description,
        # expression}, POST 204, DELETE 204.
        route(f"{REST}/security/content-selectors/<name>", "selector", self._selector, methods=["GET", "DELETE"])
        route(f"{REST}/security/content-selectors", "create_selector", self._create_selector, methods=["POST"])
        # Security Management API, roles (same page): GET 200 RoleXOResponse, POST 200 RoleXOResponse, PUT 204
        # (409 when the body's id is not the path's).
        route(f"{REST}/security/roles/<role_id>", "role", self._role, methods=["GET", "PUT"])
        route(f"{REST}/security/roles", "create_role", self._create_role, methods=["POST"])
        # Security Management API, users (same page): GET ?userId (a prefix) &source, POST 200 ApiUser,
        # PUT {userId}/change-password with a text/plain body, 204.
        route(f"{REST}/security/users", "users", self._users, methods=["GET", "POST"])
        route(f"{REST}/security/users/<user_id>/change-password", "change_password", self._change_password,
              methods=["PUT"])
        # Search API, https://help.sonatype.com/en/search-api.html: {items, continuationToken}, pages of 50.
        route(f"{REST}/search", "search", self._search)
        # Components API, https://help.sonatype.com/en/components-api.html: DELETE 204, 404, 422 malformed id.
        route(f"{REST}/components/<component_id>", "delete_component", self._delete_component, methods=["DELETE"])
        self.docker.register(app)
        return app

    # --- REST ----------------------------------------------------------------------------------

    @admin_only
    def _get_repository(self, name: str) -> Response:
        repo = self.repositories.get(name)
        return _json(repo) if repo else _message(404, "Repository not found")

    @admin_only
    def _create_repository(self) -> Response:
        body = request.get_json(silent=True) or {}
        storage, docker = body.get("storage") or {}, body.get("docker") or {}
        errors = _name_errors(body.get("name"), "name")
        if storage.get("blobStoreName") != "default":
            errors.append(("storage.blobStoreName", f"Blob store '{storage.get('blobStoreName')}' does not exist"))
        if str(storage.get("writePolicy", "")).lower() not in ("allow", "allow_once", "deny"):
            errors.append(("storage.writePolicy", "must be one of allow, allow_once, deny"))
        for flag in ("v1Enabled", "forceBasicAuth"):
            if not isinstance(docker.get(flag), bool):
                errors.append((f"docker.{flag}", "may not be null"))
        with self._lock:
            if body.get("name") in self.repositories:
                errors.append(("*", f"Repository {body['name']} already exists"))
            port = docker.get("httpPort")
            if port and any(r["docker"].get("httpPort") == port for r in self.repositories.values()):
                errors.append(("docker.httpPort", f"Port {port} is already in use"))
            if errors:
                return _validation(errors)
            self.repositories[body["name"]] = {
                "name": body["name"], "format": "docker", "type": "hosted", "online": body.get("online", True),
                "url": f"{request.host_url}repository/{body['name']}",
                "storage": {**storage, "writePolicy": storage["writePolicy"].lower()},
                "cleanup": None, "component": {"proprietaryComponents": False},
                "docker": {"v1Enabled": docker["v1Enabled"], "forceBasicAuth": docker["forceBasicAuth"],
                           "httpPort": docker.get("httpPort"), "httpsPort": None, "subdomain": None},
            }
        return Response(status=201)

    @admin_only
    def _selector(self, name: str) -> Response:
        with self._lock:
            if name not in self.selectors:
                return _message(404, "Content selector not found")
            if request.method == "DELETE":
                del self.selectors[name]
                return Response(status=204)
            return _json(self.selectors[name])

    @admin_only
    def _create_selector(self) -> Response:
        body = request.get_json(silent=True) or {}
        errors = _name_errors(body.get("name"), "name")
        if not body.get("expression"):
            errors.append(("expression", "may not be empty"))
        with self._lock:
            if body.get("name") in self.selectors:
                errors.append(("name", f"A content selector named '{body['name']}' already exists"))
            if errors:
                return _validation(errors)
            self.selectors[body["name"]] = {"name": body["name"], "type": "csel",
                                            "description": body.get("description") or "",
                                            "expression": body["expression"]}
        return Response(status=204)

    @admin_only
    def _role(self, role_id: str) -> Response:
        with self._lock:
            if role_id not in self.roles:
                return _message(404, f"Role '{role_id}' not found")
            if request.method == "GET":
                return _json(self.roles[role_id])
            body = request.get_json(silent=True) or {}
            if body.get("id") != role_id:
                return _message(409, f"The Role id '{body.get('id')}' does not match the id used in the path "
                                     f"'{role_id}'.")
            if self.roles[role_id]["readOnly"]:
                return _message(400, f"Role '{role_id}' is read only")
            self.roles[role_id].update(name=body.get("name") or role_id, description=body.get("description") or "",
                                       privileges=list(body.get("privileges") or []),
                                       roles=list(body.get("roles") or []))
        return Response(status=204)

    @admin_only
    def _create_role(self) -> Response:
        body = request.get_json(silent=True) or {}
        errors = _name_errors(body.get("id"), "id") + ([] if body.get("name") else [("name", "may not be empty")])
        with self._lock:
            if body.get("id") in self.roles:
                errors.append(("*", f"Role '{body['id']}' already exists, use a unique roleId"))
            if errors:
                return _validation(errors)
            role = {"id": body["id"], "source": "default", "name": body["name"],
                    "description": body.get("description") or "", "readOnly": False,
                    "privileges": list(body.get("privileges") or []), "roles": list(body.get("roles") or [])}
            self.roles[body["id"]] = role
        return _json(role)

    @admin_only
    def _users(self) -> Response:
        if request.method == "GET":
            prefix = request.args.get("userId", "")
            with self._lock:
                found = [_public(u) for uid, u in sorted(self.users.items()) if uid.startswith(prefix)]
            return _json(found)
        body = request.get_json(silent=True) or {}
        errors = _name_errors(body.get("userId"), "userId")
        for field in ("firstName", "lastName", "emailAddress", "password"):
            if not body.get(field):
                errors.append((field, "may not be empty"))
        if body.get("status") not in ("active", "locked", "disabled", "changepassword"):
            errors.append(("status", "may not be null"))
        with self._lock:
            unknown = [r for r in body.get("roles") or [] if r not in self.roles]
            if not body.get("roles") or unknown:
                errors.append(("roles", f"Unable to locate roles: {unknown}" if unknown else "may not be empty"))
            if body.get("userId") in self.users:
                errors.append(("*", f"User '{body['userId']}' already exists"))
            if errors:
                return _validation(errors)
            user = {"userId": body["userId"], "firstName": body["firstName"], "lastName": body["lastName"],
                    "emailAddress": body["emailAddress"], "source": "default", "status": body["status"],
                    "readOnly": False, "roles": list(body["roles"]), "externalRoles": [], "password": body["password"]}
            self.users[body["userId"]] = user
        return _json(_public(user))

    @admin_only
    def _change_password(self, user_id: str) -> Response:
        if request.mimetype != "text/plain":
            return Response(status=415)
        password = request.get_data(as_text=True)
        with self._lock:
            if user_id not in self.users:
                return _message(404, f"User '{user_id}' not found.")
            if not password:
                return _message(400, "Password was not supplied in the body of the request")
            self.users[user_id]["password"] = password
        return Response(status=204)

    def _search(self) -> Response:
        if (user := self.basic_user()) is None:
            return unauthorized()
        repository, name = request.args.get("repository", ""), request.args.get("name")
        if not self.may_view(user, repository):
            return Response(status=403)
        query = (repository, request.args.get("format", ""), name or "")
        with self._lock:
            start = 0
            if token := request.args.get("continuationToken"):
                if self._continuations.get(token, ((), 0))[0] != query:
                    return _validation([("continuationToken", "Invalid continuation token")])
                start = self._continuations[token][1]
            matching = [_public(c) for c in sorted(self.components.values(), key=lambda c: c["id"])
                        if c["repository"] == repository and (name is None or c["name"] == name)]
            page = matching[start:start + self.page_size]
            token = None
            if start + self.page_size < len(matching):
                token = secrets.token_hex(16)
                self._continuations[token] = (query, start + self.page_size)
        return _json({"items": page, "continuationToken": token})

    @admin_only
    def _delete_component(self, component_id: str) -> Response:
        try:
            base64.urlsafe_b64decode(component_id + "=" * (-len(component_id) % 4)).decode()
        except ValueError:
            return _message(422, "Malformed ID")
        with self._lock:
            component = self.components.pop(component_id, None)
        if component is None:
            return _message(404, "Component not found")
        if component["digest"]:
            self.docker.delete_manifest(f"{component['repository']}/{component['name']}", component["digest"])
        return Response(status=204)

    # --- who may do what ---------------------------------------------------------------------

    def basic_user(self) -> str | None:
        """The user whose valid Basic credentials the request carries, or None."""
        auth = request.authorization
        if auth is None or auth.type != "basic":
            return None
        with self._lock:
            user = self.users.get(auth.username or "")
            ok = user is not None and user["status"] == "active" and secrets.compare_digest(
                user["password"].encode(), (auth.password or "").encode())
        return auth.username if ok else None

    def _privileges(self, user: str) -> set[str]:
        with self._lock:
            return {p for r in self.users[user]["roles"] for p in self.roles.get(r, {}).get("privileges", [])}

    def may_view(self, user: str, repository: str) -> bool:
        privileges = self._privileges(user)
        return "nx-all" in privileges or f"nx-repository-view-docker-{repository}-*" in privileges


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")


def _message(status: int, text: str) -> Response:
    """A refusal as Nexus words most of them: a JSON string."""
    return _json(text, status)


def _validation(errors: list[tuple[str, str]]) -> Response:
    """400 with Nexus' validation body: a list of ValidationErrorXO ``{"id", "message"}``."""
    return _json([{"id": field, "message": message} for field, message in errors], 400)


def _name_errors(value: Any, field: str) -> list[tuple[str, str]]:
    if not value:
        return [(field, "may not be empty")]
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        return [(field, "Only letters, digits, underscores(_), hyphens(-), and dots(.) are allowed and may not "
                        "start with underscore or dot.")]
    return []


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("password", "digest")}
