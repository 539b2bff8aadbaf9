"""CI server contract: jobs, builds, console logs (Jenkins, the built-in runner)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from integrations.resources import ExternalResource


@dataclass(frozen=True)
class JobSpec:
    """A pipeline job for one application: ``folder/name``, building from ``repository_url``."""

    folder: str
    name: str
    repository_url: str
    owner: str
    credentials_id: str = ""
    branch: str = "main"
    script_path: str = "Jenkinsfile"
    parameters: tuple[str, ...] = ("COMMIT", "IMAGE_TAG")

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}"


class BuildState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Build:
    job: str
    number: int | None
    state: BuildState
    url: str = ""
    duration_ms: int | None = None
    queue_id: str = ""
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConsoleChunk:
    """Part of a build's console from offset ``start``; ``next_start`` continues it while ``more``."""

    text: str
    next_start: int
    more: bool


@runtime_checkable
class CIServer(Protocol):
    system: str

    def find_job(self, path: str) -> ExternalResource | None: ...

    def create_job(self, spec: JobSpec) -> ExternalResource: ...

    def delete_job(self, path: str) -> None: ...

    def trigger_build(self, path: str, parameters: dict[str, str]) -> Build: ...

    def get_build(self, build: Build) -> Build:
        """The current state of a build, following a queued one to its number."""
        ...

    def console(self, path: str, number: int, start: int = 0) -> ConsoleChunk: ...
