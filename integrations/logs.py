"""Log store contract: query and tail an application's logs (Elasticsearch, OpenSearch, the pod log API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class LogQuery:
    """What to read. ``namespaces`` is set by the portal's service from what the user may see, never by the user."""

    namespaces: tuple[str, ...]
    since: datetime | None = None
    until: datetime | None = None
    text: str = ""
    pods: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    limit: int = 200


@dataclass(frozen=True)
class LogLine:
    timestamp: datetime
    message: str
    namespace: str
    pod: str
    container: str
    stream: str = "stdout"
    level: str = ""
    highlighted: str = ""  # the message with matches between log_search.MARK_START and MARK_END, if any
    sort: tuple = ()


@dataclass(frozen=True)
class LogPage:
    lines: list[LogLine]
    cursor: tuple | None = None
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class LogStore(Protocol):
    system: str

    def query(self, query: LogQuery, before: tuple | None = None) -> LogPage:
        """The newest ``limit`` lines matching, older than ``before`` when given (load older)."""
        ...

    def tail(self, query: LogQuery, after: tuple | None) -> LogPage:
        """Lines newer than ``after``, in order, each exactly once."""
        ...
