"""Image registry contract: repositories, credentials, tags (Nexus 3, any Registry v2 server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from integrations.resources import ExternalResource


@dataclass(frozen=True)
class RegistryCredentials:
    """Where images go and how to authenticate; ``secret_ref`` names the stored secret, never its value."""

    server: str
    username: str
    secret_ref: str


@dataclass(frozen=True)
class RobotAccount:
    """A team's machine account for CI pushes and cluster pulls.

    ``password`` is returned only by ``ensure_robot``, for the portal to keep
    encrypted; it is never logged or shown back.
    """

    server: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class ImageTag:
    repository: str
    tag: str
    digest: str = ""


@runtime_checkable
class ImageRegistry(Protocol):
    system: str

    def find_repository(self, name: str) -> ExternalResource | None: ...

    def create_repository(self, name: str, owner: str) -> ExternalResource: ...

    def delete_repository(self, name: str) -> None: ...

    def credentials(self, team: str) -> RegistryCredentials: ...

    def list_tags(self, repository: str) -> list[ImageTag]: ...

    def image_name(self, repository: str) -> str:
        """Where images of ``repository`` (``<team>/<app>``) are pushed and pulled: ``host[:port]/path``, no tag."""
        ...

    def ensure_robot(self, team: str, owner: str) -> RobotAccount:
        """Create (or adopt and reset the password of) the team's push/pull account; idempotent."""
        ...
