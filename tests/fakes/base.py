"""What the fakes share: the rules around every call, and resources built from the world's records."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

from integrations.errors import Conflict, NotFound
from integrations.resources import ExternalResource
from tests.fakes.world import FakeWorld

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound="FakeProvider")


def operation(method: Callable[Concatenate[F, P], R]) -> Callable[Concatenate[F, P], R]:
    """Run the world's rules for ``<contract>.<method>`` around the method: before it, and once its effect is stored."""

    @functools.wraps(method)
    def call(self: F, /, *args: P.args, **kwargs: P.kwargs) -> R:
        op = f"{self.contract}.{method.__name__}"
        self.world.enter(op)
        result = method(self, *args, **kwargs)
        self.world.leave(op)
        return result

    return call


class FakeProvider:
    """What every fake shares: its world, its system name, resources built from stored records."""

    contract: ClassVar[str]
    system: str

    def __init__(self, world: FakeWorld):
        self.world = world

    @classmethod
    def from_settings(cls: type[F], settings: Any) -> F:
        """The factory the portal calls with its Settings: a world on ``settings.redis_url``."""
        return cls(FakeWorld(settings.redis_url))

    def _resource(self, kind: str, external_id: str, record: dict[str, Any]) -> ExternalResource:
        attributes = _flatten({k: v for k, v in record.items() if k not in ("name", "owner", "url")})
        return ExternalResource(system=self.system, kind=kind, external_id=external_id, name=record["name"],
                                url=record.get("url", ""), owner=record.get("owner"), attributes=attributes)

    def _find(self, kind: str, key: str) -> ExternalResource | None:
        found = self.world.find(kind, key)
        return self._resource(kind, *found) if found else None

    def _create(self, kind: str, key: str, record: dict[str, Any], mode: str = "create") -> ExternalResource:
        return self._store(kind, key, record, mode)[0]

    def _store(self, kind: str, key: str, record: dict[str, Any], mode: str) -> tuple[ExternalResource, bool]:
        """Store a record: (its resource, whether it was created). Conflict when the key or the owner forbids."""
        status, external_id, stored = self.world.store(kind, key, record, mode=mode)
        if status == 0:
            raise Conflict(self.system, f"{kind} {key} exists already", status=409)
        if status == -1:
            raise Conflict(self.system, f"{kind} {key} exists and is not owned by {record['owner']} "
                                        f"(owner: {stored.get('owner')})", status=409)
        return self._resource(kind, external_id, stored), status == 1

    def _existing(self, kind: str, external_id: str) -> dict[str, Any]:
        record = self.world.get(kind, external_id)
        if record is None:
            raise self._not_found(kind, external_id)
        return record

    def _delete(self, kind: str, external_id: str) -> dict[str, Any]:
        record = self.world.remove(kind, external_id)
        if record is None:
            raise self._not_found(kind, external_id)
        return record

    def _not_found(self, kind: str, what: str) -> NotFound:
        return NotFound(self.system, f"{kind} {what} not found", status=404)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Attributes as the contract wants them, strings only: nested dicts become ``outer.inner`` keys."""
    flat: dict[str, str] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        elif v is not None:
            flat[f"{prefix}{k}"] = ",".join(map(str, v)) if isinstance(v, list) else str(v)
    return flat
