"""The log store over the Kubernetes pod log API: for live following, and for clusters without central logging.

Every container of every pod in the query's namespaces is read with ``timestamps=true`` and merged by time.
A line's cursor is (timestamp, pod, container, n): n counts the lines of that container with the same
timestamp before it, so a tail that asks again from the cursor's second (``sinceTime`` has second precision)
drops exactly what it already had. ``previous=true`` reads the container that ran before a restart, which is
where a crash-looping pod's reason is. Text and level filters are applied here (``integrations.logs``'s
``mark_matches`` and ``level_of``: every word or, quoted, a phrase, ignoring case); the API server knows
nothing of them. The pod log API does not say which stream a line came from, so ``stream`` is empty.

API: https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#read-log-of-the-specified-pod
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta, timezone
from typing import Any

from integrations.errors import InvalidRequest, NotFound
from integrations.kubernetes_api import KubernetesAPI
from integrations.log_search import parse_timestamp
from integrations.logs import LogLine, LogPage, LogQuery, level_of, mark_matches


def normal_stamp(stamp: str) -> str:
    """An RFC 3339 timestamp with its fraction padded to nine digits, so that timestamps sort as text
    (the kubelet writes RFC3339Nano, which drops trailing zeros)."""
    head, dot, rest = stamp.partition(".")
    if not dot:
        return stamp.replace("Z", ".000000000Z")
    digits = rest.rstrip("Z")
    return f"{head}.{digits[:9].ljust(9, '0')}Z"


class PodLogStore:
    """The LogStore contract over one cluster's API server."""

    system = "kubernetes"

    def __init__(self, api: KubernetesAPI, max_lines_per_container: int = 5000):
        self.api = api
        self.max_lines = max_lines_per_container

    # --- the contract ----------------------------------------------------------------------------

    def query(self, query: LogQuery, before: tuple | None = None, previous: bool = False) -> LogPage:
        lines = self._read(query, since=query.since, previous=previous)
        if before:
            lines = [line for line in lines if line.sort < tuple(before)]
        lines = lines[-query.limit:]
        return LogPage(lines=lines, cursor=lines[0].sort if lines else before, notes=self._notes(query))

    def tail(self, query: LogQuery, after: tuple | None) -> LogPage:
        if after is None:
            page = self.query(query)
            return LogPage(page.lines, page.lines[-1].sort if page.lines else None, page.notes)
        since = parse_timestamp(after[0]) - timedelta(seconds=1)
        if query.since and query.since > since:
            since = query.since
        lines = [line for line in self._read(query, since=since) if line.sort > tuple(after)][:query.limit]
        return LogPage(lines=lines, cursor=lines[-1].sort if lines else after, notes=self._notes(query))

    def forward(self, query: LogQuery, after: tuple | None = None) -> LogPage:
        if after is not None:
            return self.tail(query, after)
        lines = self._read(query, since=query.since)[:query.limit]
        return LogPage(lines=lines, cursor=lines[-1].sort if lines else None, notes=self._notes(query))

    # --- internals -------------------------------------------------------------------------------

    @staticmethod
    def _notes(query: LogQuery) -> list[str]:
        if query.streams:
            return ["The pods' own logs do not say which stream a line came from: all streams are shown."]
        return []

    def _pods(self, namespace: str, query: LogQuery) -> list[tuple[str, list[str]]]:
        listed = self.api.request("GET", f"/api/v1/namespaces/{namespace}/pods")
        found = []
        for pod in listed.get("items") or []:
            name = (pod.get("metadata") or {}).get("name", "")
            if query.pods and name not in query.pods:
                continue
            containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
            found.append((name, [c for c in containers if not query.containers or c in query.containers]))
        return found

    def _read(self, query: LogQuery, since: datetime | None, previous: bool = False) -> list[LogLine]:
        streams = []
        for namespace in query.namespaces:
            for pod, containers in self._pods(namespace, query):
                for container in containers:
                    streams.append(self._container(namespace, pod, container, since, previous, query))
        merged = list(heapq.merge(*streams, key=lambda line: line.sort))
        if query.until:
            merged = [line for line in merged if line.timestamp <= query.until]
        return merged

    def _container(self, namespace: str, pod: str, container: str, since: datetime | None, previous: bool,
                   query: LogQuery) -> list[LogLine]:
        params: list[tuple[str, Any]] = [("container", container), ("timestamps", "true"),
                                         ("tailLines", self.max_lines)]
        if previous:
            params.append(("previous", "true"))
        if since:
            params.append(("sinceTime", since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")))
        try:
            text = self.api.request_text("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", query=params)
        except (NotFound, InvalidRequest):  # gone, not started, or no previous container: no lines
            return []
        lines, last, same = [], "", 0
        for raw in text.splitlines():
            stamp, _, message = raw.partition(" ")
            stamp = normal_stamp(stamp)
            same = same + 1 if stamp == last else 0
            last = stamp
            highlighted = mark_matches(query.text, message)
            level = level_of(message)
            if (query.text.strip() and not highlighted) or (query.levels and level not in query.levels):
                continue
            lines.append(LogLine(timestamp=parse_timestamp(stamp), message=message, namespace=namespace, pod=pod,
                                 container=container, stream="", level=level, highlighted=highlighted,
                                 sort=(stamp, pod, container, same)))
        return lines
