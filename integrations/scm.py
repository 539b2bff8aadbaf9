"""Source control contract: repositories, files, commits, webhooks (GitLab, the built-in Git host)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from integrations.resources import ExternalResource


@dataclass(frozen=True)
class Member:
    """A portal user who should have access: ``role`` is ``maintainer`` or ``developer``."""

    username: str
    role: str = "developer"


@dataclass(frozen=True)
class RepositorySpec:
    """A repository to create: ``path`` is ``<group>/<name>``, unique in the system."""

    group: str
    name: str
    description: str
    owner: str
    default_branch: str = "main"
    files: dict[str, bytes] = field(default_factory=dict)
    commit_message: str = "Initial commit"
    members: tuple[Member, ...] = ()

    @property
    def path(self) -> str:
        return f"{self.group}/{self.name}"


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str
    author: str
    url: str = ""


@dataclass(frozen=True)
class WebhookSpec:
    repository_id: str
    url: str
    secret: str
    owner: str
    events: tuple[str, ...] = ("push",)


@runtime_checkable
class SourceControl(Protocol):
    system: str

    def find_repository(self, path: str) -> ExternalResource | None: ...

    def create_repository(self, spec: RepositorySpec) -> ExternalResource:
        """Create the repository with ``spec.files`` as its first commit (one commit, not one per file)."""
        ...

    def delete_repository(self, external_id: str) -> None:
        """Remove it; NotFound when it is already gone."""
        ...

    def commit_files(self, external_id: str, branch: str, files: dict[str, bytes], message: str) -> Commit: ...

    def read_file(self, external_id: str, ref: str, path: str) -> bytes: ...

    def head(self, external_id: str, branch: str) -> Commit:
        """The commit at the tip of ``branch``; NotFound when the repository or the branch is missing."""
        ...

    def find_webhook(self, repository_id: str, url: str) -> ExternalResource | None: ...

    def create_webhook(self, spec: WebhookSpec) -> ExternalResource: ...

    def delete_webhook(self, repository_id: str, external_id: str) -> None: ...
