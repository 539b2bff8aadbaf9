"""Cluster access contract: namespaces with quota and access, pull secrets, manifests, resources (Kubernetes).

A ``ClusterConnector`` (the configured provider) connects to one registered
cluster at a time, given its ``ClusterTarget``; the ``ClusterAccess`` it
returns works on that cluster only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from integrations.resources import ExternalResource


@dataclass(frozen=True)
class ClusterTarget:
    """How to reach one cluster: its API URL and CA, and a bearer token or a whole kubeconfig (never logged)."""

    name: str
    api_url: str
    ca_pem: str = ""
    token: str = field(default="", repr=False)
    kubeconfig: str = field(default="", repr=False)
    verify: bool = True


@dataclass(frozen=True)
class Quota:
    """The namespace's ResourceQuota: requests and limits of CPU and memory, and a number of pods."""

    cpu: str = "4"
    memory: str = "8Gi"
    pods: int = 50
    limits_cpu: str = "8"
    limits_memory: str = "16Gi"


@dataclass(frozen=True)
class Limits:
    """The namespace's LimitRange: what a container gets when its manifest says nothing."""

    default_request_cpu: str = "100m"
    default_request_memory: str = "128Mi"
    default_limit_cpu: str = "500m"
    default_limit_memory: str = "512Mi"


@dataclass(frozen=True)
class PullSecret:
    """A ``kubernetes.io/dockerconfigjson`` Secret named ``name`` for pulling from ``server``."""

    name: str
    server: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class NamespaceSpec:
    """A namespace for one application environment, with everything that makes it usable."""

    name: str
    owner: str
    labels: dict[str, str]
    team_group: str  # the Kubernetes group of the team's people, bound to the namespace
    quota: Quota = field(default_factory=Quota)
    limits: Limits = field(default_factory=Limits)
    pull_secret: PullSecret | None = None


@dataclass(frozen=True)
class WorkloadSummary:
    kind: str
    name: str
    namespace: str
    ready: int = 0
    desired: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterCheck:
    """What a connection check found: the server's version, and each permission the portal needs."""

    version: str
    permissions: dict[str, bool] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return [what for what, allowed in self.permissions.items() if not allowed]


@runtime_checkable
class ClusterAccess(Protocol):
    system: str

    def check(self) -> ClusterCheck: ...

    def find_namespace(self, name: str) -> ExternalResource | None: ...

    def ensure_namespace(self, spec: NamespaceSpec) -> ExternalResource:
        """Create or converge the namespace, its quota, limits, role binding and pull secret.

        Conflict when a namespace of that name exists without this owner's marker: it is never adopted.
        """
        ...

    def delete_namespace(self, name: str) -> None: ...

    def apply(self, namespace: str, manifests: list[dict[str, Any]]) -> list[ExternalResource]: ...

    def list_workloads(self, namespace: str) -> list[WorkloadSummary]: ...


@runtime_checkable
class ClusterConnector(Protocol):
    system: str

    def connect(self, target: ClusterTarget) -> ClusterAccess: ...
