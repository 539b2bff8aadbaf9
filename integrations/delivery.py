"""Delivery contract: the GitOps application of one environment (Argo CD, the built-in deployer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from integrations.resources import ExternalResource


@dataclass(frozen=True)
class DeliverySpec:
    name: str
    owner: str
    project: str
    repository_url: str
    path: str
    values_file: str
    cluster: str
    namespace: str
    revision: str = "main"


@dataclass(frozen=True)
class DeliveryEvent:
    revision: str
    deployed_at: str
    image: str = ""


@dataclass(frozen=True)
class DeliveryStatus:
    sync: str
    health: str
    operation: str = ""
    message: str = ""
    revision: str = ""
    history: list[DeliveryEvent] = field(default_factory=list)


@runtime_checkable
class Delivery(Protocol):
    system: str

    def find_application(self, name: str) -> ExternalResource | None: ...

    def ensure_application(self, spec: DeliverySpec) -> ExternalResource:
        """Create or update the application so that it matches ``spec``."""
        ...

    def delete_application(self, name: str) -> None: ...

    def status(self, name: str) -> DeliveryStatus: ...

    def sync(self, name: str) -> None: ...
