"""Sonatype Nexus Repository 3 as the image registry: one Docker hosted repository per team.

The portal's image repository ``<team>/<app-slug>`` is the image ``<app-slug>`` inside the team's Docker
hosted repository ``docker-<team>``, created by the first application of the team and adopted by the next
ones; it is never deleted by the portal (other applications of the team live in it).

Decisions, and why:

- **Write policy ``allow_once``.** Image tags are short commit SHAs: one commit, one image. Refusing to
  redeploy a tag keeps a tag meaning the same bytes forever, which is what a deployment history and a
  rollback rely on. The price: a pipeline re-run for the same commit must skip the push when the tag
  exists (or use its own tag). ``write_policy="allow"`` is there for installations that want moving tags.
- **Where ``docker_url`` reaches a team repository.** No port connector is created: Nexus caps them (about
  20) and the portal has one ``docker_url`` for every team. The portal assumes the first path segment
  routes to the repository: with ``docker_routing="path"`` (the default), Nexus' path-based routing,
  where the image is ``<docker host>/docker-<team>/<app-slug>``; with ``docker_routing="proxy"``, a
  reverse proxy that maps ``/v2/<team>/...`` to the repository ``docker-<team>``, the image being
  ``<docker host>/<team>/<app-slug>``. ``http_port`` is for an installation that gives each repository
  a connector anyway (one Nexus per team, say).
- **Ownership marker.** Nexus has no per-image object and repositories have no free-text field. The
  portal therefore records each image repository as a content selector ``portal-<team>-<app-slug>``
  (matching the image's paths, usable later to scope privileges to it) whose description is
  ``portal-owner: <owner>``. ``find_repository`` reads the owner there. Images pushed into a team
  repository without such a selector are reported with no owner, so the portal will not adopt them.
- **Robots.** A role ``portal-<team>-docker`` (``nx-repository-view-docker-docker-<team>-*``: pull and
  push) whose description carries the owner marker, and a local user ``portal-<team>-robot`` holding it.

Deleting an image repository deletes the image's components (one per tag) and its selector; Nexus frees
the blobs later, with its "Docker - Delete unused manifests and images" and "Compact blob store" tasks.

REST API: https://help.sonatype.com/en/repositories-api.html, .../security-management-api.html,
.../search-api.html, .../components-api.html, .../content-selectors.html (help.sonatype.com/en).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from integrations import http
from integrations.errors import Conflict, IntegrationError, InvalidRequest, NotFound
from integrations.registry import ImageTag, RegistryCredentials, RobotAccount
from integrations.registry_v2 import RegistryV2, check
from integrations.resources import ExternalResource

log = logging.getLogger(__name__)

SYSTEM = "nexus"
API = "/service/rest/v1"
MARKER = "portal-owner: "
WRITE_POLICIES = ("allow", "allow_once", "deny")
ROUTINGS = ("path", "proxy")


class NexusImageRegistry:
    """The ``ImageRegistry`` contract on Nexus 3: team repositories, per-image selectors, team robots, tags."""

    system = SYSTEM

    def __init__(self, url: str, user: str, password: str, docker_url: str, timeout: float, retries: int,
                 verify: bool, ca_bundle: str, *, blob_store: str = "default", write_policy: str = "allow_once",
                 docker_routing: str = "path", http_port: int | None = None, page_size: int = 100):
        if not url or not docker_url:
            raise ValueError("Nexus needs its URL and the URL of its Docker endpoint")
        if write_policy not in WRITE_POLICIES or docker_routing not in ROUTINGS:
            raise ValueError(f"write_policy is one of {WRITE_POLICIES}, docker_routing one of {ROUTINGS}")
        self.url = url.rstrip("/")
        self.user = user
        self.docker_url = docker_url.rstrip("/")
        self.docker_host = urlsplit(self.docker_url).netloc
        self.timeout = timeout
        self.blob_store = blob_store
        self.write_policy = write_policy
        self.docker_routing = docker_routing
        self.http_port = http_port
        self.session = http.session(verify, ca_bundle, retries, auth=requests.auth.HTTPBasicAuth(user, password),
                                    system=SYSTEM)
        self.registry = RegistryV2(self.docker_url, self.session, SYSTEM, (user, password), timeout, page_size)

    @classmethod
    def from_settings(cls, settings: Any) -> "NexusImageRegistry":
        """The adapter the portal builds from its Settings (``PORTAL_NEXUS_*``, ``PORTAL_HTTP_*``, TLS)."""
        return cls(url=settings.nexus_url, user=settings.nexus_user, password=settings.nexus_password,
                   docker_url=settings.nexus_docker_url or settings.nexus_url, timeout=settings.http_timeout,
                   retries=settings.http_retries, verify=settings.tls_verify, ca_bundle=settings.ca_bundle)

    def __repr__(self) -> str:
        return f"NexusImageRegistry(url={self.url!r}, user={self.user!r}, docker_url={self.docker_url!r})"

    def close(self) -> None:
        self.session.close()

    # --- the contract ----------------------------------------------------------------------------

    def find_repository(self, name: str) -> ExternalResource | None:
        """The image repository if its team repository exists and the image is recorded or has been pushed."""
        team, image = _split(name)
        if self._get(f"/repositories/docker/hosted/{team_repository(team)}") is None:
            return None
        selector = self._get(f"/security/content-selectors/{selector_name(team, image)}")
        if selector is not None:
            return self._resource(name, _owner(selector.get("description")))
        if next(self._components(team_repository(team), image), None) is not None:
            return self._resource(name, None)  # pushed outside the portal: nobody's to adopt
        return None

    def create_repository(self, name: str, owner: str) -> ExternalResource:
        """Ensure the team repository (created once, adopted after), then record the image for ``owner``."""
        team, image = _split(name)
        self._ensure_team_repository(team)
        path = f"/security/content-selectors/{selector_name(team, image)}"
        body = {"name": selector_name(team, image), "description": MARKER + owner,
                "expression": f'format == "docker" and path =^ "/v2/{image}/"'}
        selector = self._create_once(path, "/security/content-selectors", body)
        recorded = _owner(selector.get("description"))
        if recorded != owner:
            raise Conflict(SYSTEM, f"image repository {name} exists and is not owned by {owner} (owner: {recorded})",
                           status=409)
        return self._resource(name, owner)

    def delete_repository(self, name: str) -> None:
        """Delete every component (tag) of the image and its selector; the team repository stays."""
        team, image = _split(name)
        repository = team_repository(team)
        if self._get(f"/repositories/docker/hosted/{repository}") is None:
            raise NotFound(SYSTEM, f"repository {repository} not found", status=404)
        # Collected before deleting: a continuation token may not survive the deletion of its page.
        ids = [c["id"] for c in self._components(repository, image)]
        for component_id in ids:
            self._delete(f"/components/{quote(component_id, safe='')}")
        selector_gone = not self._delete(f"/security/content-selectors/{selector_name(team, image)}")
        if selector_gone and not ids:
            raise NotFound(SYSTEM, f"image repository {name} not found", status=404)
        log.info("nexus: deleted image %s from %s (%d components)", image, repository, len(ids))

    def credentials(self, team: str) -> RegistryCredentials:
        return RegistryCredentials(server=self.docker_host, username=robot_user(team),
                                   secret_ref=f"registry-robot-{team}")

    def list_tags(self, repository: str) -> list[ImageTag]:
        """Tags through the Registry v2 API at ``docker_url``, each with its manifest digest, sorted by tag."""
        name = self.registry_name(repository)
        # No tags: an image the portal recorded and nothing was pushed to yet, or no image at all.
        try:
            tags = self.registry.tags(name)
        except NotFound:
            if self.find_repository(repository) is None:
                raise
            return []
        if not tags and self.find_repository(repository) is None:
            raise NotFound(SYSTEM, f"image repository {repository} not found", status=404)
        return sorted((ImageTag(repository=repository, tag=t, digest=self.registry.digest(name, t)) for t in tags),
                      key=lambda t: t.tag)

    def ensure_robot(self, team: str, owner: str) -> RobotAccount:
        """The team's role and robot user, created or converged; a fresh password each call, returned once."""
        self._ensure_team_repository(team)
        role_id, user_id = robot_role(team), robot_user(team)
        role = {"id": role_id, "name": role_id, "description": MARKER + owner, "roles": [],
                "privileges": [f"nx-repository-view-docker-{team_repository(team)}-*"]}
        found = self._get(f"/security/roles/{role_id}")
        if found is None:
            self._send("POST", "/security/roles", json=role)
            log.info("nexus: created role %s", role_id)
        elif _owner(found.get("description")) != owner:
            raise Conflict(SYSTEM, f"role {role_id} exists and is not owned by {owner} "
                                   f"(owner: {_owner(found.get('description'))})", status=409)
        elif sorted(found.get("privileges") or []) != role["privileges"] or found.get("roles"):
            self._send("PUT", f"/security/roles/{role_id}", json=role)
        password = secrets.token_urlsafe(32)
        user = self._find_user(user_id)
        if user is None:
            self._send("POST", "/security/users", json={
                "userId": user_id, "firstName": "Portal robot", "lastName": team,
                "emailAddress": f"{user_id}@portal.invalid", "password": password, "status": "active",
                "roles": [role_id]})
            log.info("nexus: created robot user %s", user_id)
        elif role_id not in (user.get("roles") or []):
            raise Conflict(SYSTEM, f"user {user_id} exists without role {role_id}: not the portal's robot", status=409)
        else:
            self._send("PUT", f"/security/users/{user_id}/change-password", data=password.encode(),
                       headers={"Content-Type": "text/plain"})
            log.info("nexus: reset the password of robot user %s", user_id)
        return RobotAccount(server=self.docker_host, username=user_id, password=password)

    # --- names -----------------------------------------------------------------------------------

    def image_name(self, repository: str) -> str:
        return f"{self.docker_host}/{self.registry_name(repository)}"

    def registry_name(self, repository: str) -> str:
        """The image's name on ``docker_url``: what follows ``/v2/`` and the docker host in image references."""
        team, image = _split(repository)
        return f"{team_repository(team)}/{image}" if self.docker_routing == "path" else f"{team}/{image}"

    def _resource(self, name: str, owner: str | None) -> ExternalResource:
        team, image = _split(name)
        return ExternalResource(
            system=SYSTEM, kind="image_repository", external_id=name, name=name, owner=owner,
            url=f"{self.url}/#browse/browse:{team_repository(team)}",
            attributes={"nexus_repository": team_repository(team), "content_selector": selector_name(team, image),
                        "image": self.image_name(name)})

    # --- Nexus ------------------------------------------------------------------------------------

    def _ensure_team_repository(self, team: str) -> None:
        name = team_repository(team)
        docker: dict[str, Any] = {"v1Enabled": False, "forceBasicAuth": True}
        if self.http_port:
            docker["httpPort"] = self.http_port
        self._create_once(f"/repositories/docker/hosted/{name}", "/repositories/docker/hosted", {
            "name": name, "online": True, "docker": docker,
            "storage": {"blobStoreName": self.blob_store, "strictContentTypeValidation": True,
                        "writePolicy": self.write_policy},
        })

    def _create_once(self, path: str, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        """The object at ``path``; created from ``body`` when missing, re-read when a concurrent create won."""
        found = self._get(path)
        if found is not None:
            return found
        try:
            self._send("POST", collection, json=body)
            log.info("nexus: created %s", path)
        except (InvalidRequest, Conflict):  # Nexus answers 400 "already exists" to the loser of a race
            if self._get(path) is None:
                raise
        created = self._get(path)
        if created is None:
            raise IntegrationError(SYSTEM, f"{path} was created but cannot be read back")
        return created

    def _components(self, repository: str, image: str) -> Iterator[dict[str, Any]]:
        """The image's components, following ``continuationToken`` page after page."""
        params: dict[str, str] = {"repository": repository, "format": "docker", "name": image}
        while True:
            page = self._send("GET", "/search", params=params).json()
            for item in page.get("items") or []:
                if item.get("name") == image and item.get("repository") == repository:
                    yield item
            token = page.get("continuationToken")
            if not token:
                return
            params = {**params, "continuationToken": token}

    def _find_user(self, user_id: str) -> dict[str, Any] | None:
        users = self._send("GET", "/security/users", params={"userId": user_id, "source": "default"}).json()
        return next((u for u in users if u.get("userId") == user_id), None)  # userId is a prefix search

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return self._send("GET", path).json()
        except NotFound:
            return None

    def _delete(self, path: str) -> bool:
        """Whether there was something to delete."""
        try:
            self._send("DELETE", path)
            return True
        except NotFound:
            return False

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, f"{self.url}{API}{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise http.transport_error(SYSTEM, exc, self.timeout) from exc
        return check(SYSTEM, response)


def team_repository(team: str) -> str:
    return f"docker-{team}"


def selector_name(team: str, image: str) -> str:
    return f"portal-{team}-{image}"


def robot_role(team: str) -> str:
    return f"portal-{team}-docker"


def robot_user(team: str) -> str:
    return f"portal-{team}-robot"


def _split(name: str) -> tuple[str, str]:
    team, _, image = name.partition("/")
    if not team or not image or "/" in image:
        raise InvalidRequest(SYSTEM, f"image repository {name!r} is not <team>/<image>", status=400)
    return team, image


def _owner(description: str | None) -> str | None:
    """The owner recorded in a description's ``portal-owner:`` line, or None."""
    for line in (description or "").splitlines():
        if line.startswith(MARKER):
            return line[len(MARKER):].strip() or None
    return None
