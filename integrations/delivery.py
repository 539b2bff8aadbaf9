"""Delivery contract: GitOps projects and applications (Argo CD, the built-in deployer).

Per team a project limits where its applications may deploy from and to; per
application environment an application deploys a chart path of the team's
deployment repository, with that environment's values file, into a namespace
of the team's cluster, syncing automatically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from integrations.cluster import ClusterTarget
from integrations.resources import ExternalResource


@dataclass(frozen=True)
class Destination:
    server: str  # the cluster's API URL as the deployer knows it
    namespace: str  # a namespace, or a glob such as ``dev-*``


@dataclass(frozen=True)
class DeliveryProjectSpec:
    """The team's project: ``source_repos`` and ``destinations`` are all it may use."""

    name: str
    owner: str
    description: str = ""
    source_repos: tuple[str, ...] = ()
    destinations: tuple[Destination, ...] = ()


@dataclass(frozen=True)
class DeliverySpec:
    name: str
    owner: str
    project: str
    repository_url: str
    path: str  # the chart's folder in the repository
    values_file: str  # relative to the repository's root, e.g. values-dev.yaml
    cluster: str  # the destination cluster's API URL
    namespace: str
    revision: str = "main"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryEvent:
    revision: str
    deployed_at: str
    image: str = ""
    id: int = 0


@dataclass(frozen=True)
class DeliveryStatus:
    sync: str  # Synced, OutOfSync, Unknown
    health: str  # Healthy, Progressing, Degraded, Suspended, Missing, Unknown
    operation: str = ""  # the last operation's phase: Running, Succeeded, Failed, Error, Terminating
    message: str = ""
    revision: str = ""  # the revision the application is synced to
    history: list[DeliveryEvent] = field(default_factory=list)
    reconciled_at: str = ""
    operation_started_at: str = ""
    operation_finished_at: str = ""
    images: tuple[str, ...] = ()


@runtime_checkable
class Delivery(Protocol):
    system: str

    def find_project(self, name: str) -> ExternalResource | None: ...

    def ensure_project(self, spec: DeliveryProjectSpec) -> ExternalResource: ...

    def delete_project(self, name: str) -> None: ...

    def find_cluster(self, name: str) -> ExternalResource | None: ...

    def register_cluster(self, target: ClusterTarget, owner: str) -> ExternalResource:
        """Make a team cluster known to the deployer (Argo CD: a cluster Secret); idempotent."""
        ...

    def delete_cluster(self, name: str) -> None: ...

    def find_application(self, name: str) -> ExternalResource | None: ...

    def ensure_application(self, spec: DeliverySpec) -> ExternalResource:
        """Create or update the application so that it matches ``spec``."""
        ...

    def delete_application(self, name: str) -> None: ...

    def status(self, name: str) -> DeliveryStatus: ...

    def sync(self, name: str) -> None: ...

    def refresh(self, name: str) -> None: ...
