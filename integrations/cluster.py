"""Cluster access contract: namespaces with quota and access, pull secrets, manifests, resources (Kubernetes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from integrations.resources import ExternalResource


@dataclass(frozen=True)
class Quota:
    cpu: str = "4"
    memory: str = "8Gi"
    pods: int = 50


@dataclass(frozen=True)
class NamespaceSpec:
    """A namespace for one application environment, with everything that makes it usable."""

    name: str
    owner: str
    labels: dict[str, str]
    team_group: str
    quota: Quota = field(default_factory=Quota)
    pull_secret_ref: str = ""


@dataclass(frozen=True)
class WorkloadSummary:
    kind: str
    name: str
    namespace: str
    ready: int = 0
    desired: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ClusterAccess(Protocol):
    system: str

    def find_namespace(self, name: str) -> ExternalResource | None: ...

    def ensure_namespace(self, spec: NamespaceSpec) -> ExternalResource:
        """Create or converge the namespace, its quota, limits, role binding and pull secret."""
        ...

    def delete_namespace(self, name: str) -> None: ...

    def apply(self, namespace: str, manifests: list[dict[str, Any]]) -> list[ExternalResource]: ...

    def list_workloads(self, namespace: str) -> list[WorkloadSummary]: ...
