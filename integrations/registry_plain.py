"""Any Docker Registry v2 server as the image registry (the CNCF distribution server, the embedded mode's).

Such a registry manages no repositories, accounts or permissions: an image repository comes into being
with its first push. So:

- ``create_repository`` changes nothing in the registry; it records the repository and its owner marker
  in ``<state_dir>/repositories.json``, which is where ``find_repository`` reads the owner. An image
  pushed there without such a record is reported with no owner, so the portal will not adopt it.
- ``delete_repository`` deletes each manifest of the image (``DELETE /v2/<name>/manifests/<digest>``,
  which the server must allow: ``storage.delete.enabled``) and forgets the record. The registry frees the
  blobs later, with its garbage collector (``registry garbage-collect``).
- There are no accounts: ``credentials`` names the server with no user and no secret, and
  ``ensure_robot`` returns an empty account. Pushes and pulls are anonymous, so such a registry belongs
  on a network only the runner and the clusters reach.

Tags and digests come from the Registry v2 API (``registry_v2``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from integrations import http
from integrations.errors import Conflict, InvalidRequest, NotFound, Unavailable
from integrations.registry import ImageTag, RegistryCredentials, RobotAccount
from integrations.registry_v2 import RegistryV2
from integrations.resources import ExternalResource

SYSTEM = "registry"
# The distribution spec's repository name: path components of lowercase alphanumerics and separators.
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")


class PlainRegistry:
    """The ``ImageRegistry`` contract on a Registry v2 server at ``url``, with ownership kept in ``state_dir``."""

    system = SYSTEM

    def __init__(self, url: str, state_dir: Path, timeout: float, retries: int, verify: bool, ca_bundle: str,
                 username: str = "", password: str = ""):
        if "://" not in url:
            raise ValueError(f"the registry's URL needs its scheme (http:// or https://), not {url!r}")
        self.url = url.rstrip("/")
        self.host = urlsplit(self.url).netloc
        self.state_dir = Path(state_dir)
        credentials = (username, password) if username else None
        self.session = http.session(verify, ca_bundle, retries, system=SYSTEM)
        self.registry = RegistryV2(self.url, self.session, SYSTEM, credentials, timeout)

    @classmethod
    def from_settings(cls, settings: Any) -> "PlainRegistry":
        """The adapter the portal builds from its Settings: the registry the built-in runner pushes to
        (PORTAL_RUNNER_REGISTRY, a URL), its records under PORTAL_RUNNER_ROOT."""
        return cls(url=settings.runner_registry, state_dir=Path(settings.runner_root) / "registry",
                   timeout=settings.http_timeout, retries=settings.http_retries, verify=settings.tls_verify,
                   ca_bundle=settings.ca_bundle)

    def __repr__(self) -> str:
        return f"PlainRegistry(url={self.url!r})"

    def close(self) -> None:
        self.session.close()

    # --- the contract ----------------------------------------------------------------------------

    def find_repository(self, name: str) -> ExternalResource | None:
        """The repository if it is recorded (with its owner) or has images (with none); else None."""
        recorded = self._records().get(_checked(name))
        if recorded is not None:
            return self._resource(name, recorded["owner"])
        return self._resource(name, None) if self._tags(name) else None

    def create_repository(self, name: str, owner: str) -> ExternalResource:
        """Record the repository for ``owner`` (adopted when it is theirs already); the first push makes it."""
        _checked(name)
        with self._recording() as records:
            recorded = records.get(name)
            if recorded is None:
                if self._tags(name):
                    raise Conflict(SYSTEM, f"image repository {name} has images the portal did not record: "
                                           "not adopted", status=409)
                records[name] = {"owner": owner}
            elif recorded["owner"] != owner:
                raise Conflict(SYSTEM, f"image repository {name} exists and is not owned by {owner} "
                                       f"(owner: {recorded['owner']})", status=409)
        return self._resource(name, owner)

    def delete_repository(self, name: str) -> None:
        """Delete every manifest of the image and forget it; NotFound when it was never recorded."""
        _checked(name)
        with self._recording() as records:
            if name not in records:
                raise NotFound(SYSTEM, f"image repository {name} not found", status=404)
            digests = dict.fromkeys(self.registry.digest(name, tag) for tag in self._tags(name))
            for digest in digests:
                try:
                    self.registry.request("DELETE", f"/v2/{name}/manifests/{digest}")
                except NotFound:
                    pass  # deleted meanwhile, or through another tag of the same manifest
            del records[name]

    def credentials(self, team: str) -> RegistryCredentials:
        """The server alone: a plain registry has no accounts, so there is no user and no secret."""
        return RegistryCredentials(server=self.host, username="", secret_ref="")

    def list_tags(self, repository: str) -> list[ImageTag]:
        """Each tag with its manifest digest, sorted by tag; none for a recorded repository not pushed to yet."""
        tags = self._tags(repository)
        if not tags and repository not in self._records():
            raise NotFound(SYSTEM, f"image repository {repository} not found", status=404)
        return sorted((ImageTag(repository=repository, tag=t, digest=self.registry.digest(repository, t))
                       for t in tags), key=lambda t: t.tag)

    def image_name(self, repository: str) -> str:
        return f"{self.host}/{_checked(repository)}"

    def ensure_robot(self, team: str, owner: str) -> RobotAccount:
        """An empty account: a plain registry has none to create, and takes anonymous pushes and pulls."""
        return RobotAccount(server=self.host, username="", password="")

    # --- inside ----------------------------------------------------------------------------------

    def _tags(self, name: str) -> list[str]:
        """The image's tags; none when the registry does not know the name (404 NAME_UNKNOWN)."""
        try:
            return self.registry.tags(_checked(name))
        except NotFound:
            return []

    def _resource(self, name: str, owner: str | None) -> ExternalResource:
        return ExternalResource(system=SYSTEM, kind="image_repository", external_id=name, name=name, owner=owner,
                                url=f"{self.url}/v2/{name}/tags/list", attributes={"image": self.image_name(name)})

    @property
    def _records_file(self) -> Path:
        return self.state_dir / "repositories.json"

    def _records(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self._records_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    @contextmanager
    def _recording(self) -> Iterator[dict[str, dict[str, str]]]:
        """The records, to change under a lock held across processes; written back (whole) if no error."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with open(self.state_dir / ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                records = self._records()
                yield records
                staging = self.state_dir / f".repositories.{uuid.uuid4().hex[:8]}"
                staging.write_text(json.dumps(records, indent=2, sort_keys=True), encoding="utf-8")
                os.replace(staging, self._records_file)
        except OSError as exc:
            raise Unavailable(SYSTEM, f"the records under {self.state_dir} cannot be written: "
                                      f"{exc.strerror or exc}") from exc


def _checked(name: str) -> str:
    if not _REPOSITORY.fullmatch(name) or len(name) > 255:
        raise InvalidRequest(SYSTEM, f"{name!r} is not an image repository name", status=400)
    return name
