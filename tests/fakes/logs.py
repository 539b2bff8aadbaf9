"""A fake log store: the lines a test put in the world with ``FakeWorld.add_log_lines``, queried and tailed."""

from __future__ import annotations

from typing import Any

from integrations.errors import InvalidRequest
from integrations.logs import LogLine, LogPage, LogQuery
from tests.fakes.base import FakeProvider, operation
from tests.fakes.world import from_micros, micros


class FakeLogStore(FakeProvider):
    """A log search engine like Elasticsearch, over the lines stored per namespace.

    Lines sort by timestamp, then by the order they were added; ``LogLine.sort``
    and the cursors are ``(microseconds since the epoch, sequence number)``.
    ``since`` is inclusive and ``until`` exclusive; ``text`` matches a part of
    the message, ignoring case. A query without namespaces reads nothing.
    """

    contract, system = "logs", "fake-logs"

    @operation
    def query(self, query: LogQuery, before: tuple | None = None) -> LogPage:
        """The newest ``limit`` lines older than ``before``, oldest first; the cursor is set while older lines remain."""
        lines = self._matching(query)
        if before is not None:
            lines = [line for line in lines if line.sort < tuple(before)]
        page = lines[-query.limit:]
        cursor = page[0].sort if len(lines) > len(page) else None
        return LogPage(lines=page, cursor=cursor, notes=self._notes(query))

    @operation
    def tail(self, query: LogQuery, after: tuple | None) -> LogPage:
        """The oldest ``limit`` lines newer than ``after`` (the newest ``limit`` when ``after`` is None).

        The cursor is the last line returned, or ``after`` when there is nothing new, so that
        following cursors returns each line exactly once.
        """
        lines = self._matching(query)
        if after is None:
            page = lines[-query.limit:]
        else:
            page = [line for line in lines if line.sort > tuple(after)][:query.limit]
        cursor = page[-1].sort if page else (tuple(after) if after is not None else None)
        return LogPage(lines=page, cursor=cursor, notes=self._notes(query))

    @operation
    def forward(self, query: LogQuery, after: tuple | None = None) -> LogPage:
        """The oldest ``limit`` lines of the range newer than ``after`` (from its start when None)."""
        lines = self._matching(query)
        if after is not None:
            lines = [line for line in lines if line.sort > tuple(after)]
        page = lines[:query.limit]
        cursor = page[-1].sort if page else (tuple(after) if after is not None else None)
        return LogPage(lines=page, cursor=cursor, notes=self._notes(query))

    def _matching(self, query: LogQuery) -> list[LogLine]:
        if query.limit < 1:
            raise InvalidRequest(self.system, f"limit must be at least 1, not {query.limit}", status=400)
        since = micros(query.since) if query.since else None
        until = micros(query.until) if query.until else None
        text = query.text.lower()
        lines = []
        for namespace in dict.fromkeys(query.namespaces):
            for raw in self.world.log_lines(namespace):
                if _wanted(raw, query, since, until, text):
                    lines.append(_line(namespace, raw))
        return sorted(lines, key=lambda line: line.sort)

    def _notes(self, query: LogQuery) -> list[str]:
        return [] if query.namespaces else ["no namespaces to read: nothing is shown"]


def _wanted(raw: dict[str, Any], query: LogQuery, since: int | None, until: int | None, text: str) -> bool:
    return ((since is None or raw["ts"] >= since) and (until is None or raw["ts"] < until)
            and (not text or text in raw["message"].lower())
            and (not query.pods or raw["pod"] in query.pods)
            and (not query.containers or raw["container"] in query.containers)
            and (not query.streams or raw["stream"] in query.streams))


def _line(namespace: str, raw: dict[str, Any]) -> LogLine:
    return LogLine(timestamp=from_micros(raw["ts"]), message=raw["message"], namespace=namespace, pod=raw["pod"],
                   container=raw["container"], stream=raw["stream"], sort=(raw["ts"], raw["seq"]))
