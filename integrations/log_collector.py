"""The built-in log collector: Fluent Bit's part, played for the portal's embedded mode on one machine.

It follows the pods of some namespaces of one cluster through the Kubernetes API and bulk-writes their lines
into a search store (``integrations.search_logs``) in the documents Fluent Bit's Kubernetes filter ships, so
that the log panel and its search read the same thing with or without a real Fluent Bit.

**Polling with sinceTime, not follow=true.** Every ``interval`` seconds the collector lists the pods of each
namespace and reads each started container's log from where it stopped (``sinceTime``, ``timestamps=true``),
at most ``chunk_bytes`` per read (``limitBytes``). One ``follow=true`` stream per container was not chosen:
- a stream breaks whenever the collector, the API server or the connection restarts, and must then be resumed
  from a time and de-duplicated exactly as a poll is; a poll is that resumption and nothing more;
- streams hold one connection and one thread per container all the time; polling holds one thread per cluster
  and sends one short request per container per interval, with memory bounded by a batch and a chunk.
``PodLogStore.tail`` is not reused, although it polls the same way: it reads the *newest* lines (``tailLines``),
right for a panel but losing the start of a burst, where ``limitBytes`` reads the oldest bytes after the
position so a burst is read over several reads; and its one cursor per query (the newest line of any container)
would skip what another container wrote meanwhile with earlier times: a collector needs one per container.
The price of polling: lines arrive up to ``interval`` late, and what a pod writes in its last interval is lost
if it is deleted before the next read (a terminating pod is still listed, and read, in its grace period).

**Each line once.** A container's position is (timestamp, n) of its last line written to the store, n
counting the lines of that container with the same timestamp before it (as ``PodLogStore`` counts them); a
read asks from the position's second (``sinceTime`` has second precision) and drops what is not after it.
Positions live in Redis, a hash per namespace of ``<pod>/<container>`` (``portal:log-collector:<cluster>:<ns>``),
and are saved only once the lines before them are written: a restarted collector resumes where the last one
stopped, losing nothing, and a line it writes again (written, then the collector died before saving) has the
same ``_id`` and replaces itself. A container first seen is read from ``backfill`` seconds ago. After a
container restarted, its previous instance's log is read first, for the lines of its last moments. Since a
read starts at a whole second, a second holding more than a chunk is read with a chunk doubled (up to
``max_chunk_bytes``); a container writing more than that within one second has the rest of that second
skipped, with a warning. A round reads at most ``chunks_per_round`` chunks of a container, so a busy one
delays the others by little; the next round goes on.

**Documents** are Fluent Bit's (CRI parser, ``Replace_Dots On``): ``@timestamp``, ``log``, ``kubernetes``
(``namespace_name``, ``pod_name``, ``pod_id``, ``container_name``, ``container_image``, ``host``: the node,
``labels`` with ``_`` for ``.`` in their keys), and the portal's tie-breaker ``log_id``:
``<n, 6 digits>-<sha256 of namespace/pod/container/timestamp/n>``, the same every time the line is read, and in
line order among lines of equal time. ``level`` is set when ``integrations.logs.level_of`` finds one: a JSON
``"level"`` (or lvl, severity) or a level word at the start of the line. ``stream`` is left out rather than
guessed: the log API merges stdout and stderr without saying which a line came from. Reading each stream apart
(``stream=Stdout``) would double the requests and needs the PodLogsQuerySplitStreams feature gate, which not
every cluster has on, and KWOK ignores it (both streams come back), so the testbed could not prove it.

API: https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#read-log-of-the-specified-pod
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from redis import Redis

from integrations.errors import AuthFailed, IntegrationError, InvalidRequest, NotFound, Unavailable
from integrations.kubernetes_api import KubernetesAPI
from integrations.log_search import parse_timestamp
from integrations.logs import level_of
from integrations.pod_logs import normal_stamp
from integrations.search_logs import SearchLogStore

log = logging.getLogger(__name__)
PREFIX = "portal:log-collector"
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


@dataclass(frozen=True)
class Position:
    """The last line of a container written to the store, and the restarts of the container it has read."""

    stamp: str  # normal_stamp's form, which sorts as text
    n: int
    restarts: int = 0

    def after(self, stamp: str, n: int) -> bool:
        return (stamp, n) > (self.stamp, self.n)


class Positions:
    """Where the collection of each container of one cluster stands, in Redis."""

    def __init__(self, redis: Redis, cluster: str):
        self.redis, self.cluster = redis, cluster

    def _key(self, namespace: str) -> str:
        return f"{PREFIX}:{self.cluster}:{namespace}"

    def load(self, namespace: str) -> dict[str, Position]:
        found = {}
        for key, raw in self.redis.hgetall(self._key(namespace)).items():
            stamp, n, restarts = json.loads(raw)
            found[key.decode() if isinstance(key, bytes) else key] = Position(stamp, n, restarts)
        return found

    def save(self, moved: dict[tuple[str, str], Position]) -> None:
        """``moved``: (namespace, ``pod/container``) → its new position."""
        by_namespace: dict[str, dict[str, str]] = {}
        for (namespace, key), p in moved.items():
            by_namespace.setdefault(self._key(namespace), {})[key] = json.dumps([p.stamp, p.n, p.restarts])
        if by_namespace:
            with self.redis.pipeline() as pipe:
                for name, mapping in by_namespace.items():
                    pipe.hset(name, mapping=mapping)
                pipe.execute()

    def drop(self, namespace: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.redis.hdel(self._key(namespace), *keys)

    def namespaces(self) -> set[str]:
        start = len(self._key(""))
        return {(k.decode() if isinstance(k, bytes) else k)[start:]
                for k in self.redis.scan_iter(match=self._key("*"), count=500)}

    def forget(self, namespaces: Iterable[str]) -> None:
        keys = [self._key(ns) for ns in namespaces]
        if keys:
            self.redis.delete(*keys)

    def clear(self) -> None:
        self.forget(self.namespaces())


@dataclass(frozen=True)
class Container:
    """One container of one pod, with what its documents say of the pod."""

    namespace: str
    pod: str
    name: str
    image: str = ""
    node: str = ""
    pod_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    started: bool = False

    @property
    def key(self) -> str:
        return f"{self.pod}/{self.name}"


def containers_of(pod: dict[str, Any]) -> list[Container]:
    """The init and app containers of a pod object; ``started`` when one has run, so it has a log."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    labels = {k.replace(".", "_"): v for k, v in (meta.get("labels") or {}).items()}
    found = []
    for kind, statuses in (("initContainers", "initContainerStatuses"), ("containers", "containerStatuses")):
        by_name = {s.get("name"): s for s in status.get(statuses) or []}
        for c in spec.get(kind) or []:
            s = by_name.get(c.get("name"), {})
            started = bool({"running", "terminated"} & set(s.get("state") or {})) or bool(
                (s.get("lastState") or {}).get("terminated"))
            found.append(Container(meta.get("namespace", ""), meta.get("name", ""), c.get("name", ""),
                                   c.get("image", ""), spec.get("nodeName", ""), meta.get("uid", ""), labels,
                                   int(s.get("restartCount") or 0), started))
    return found


def log_id(c: Container, stamp: str, n: int) -> str:
    digest = hashlib.sha256(f"{c.namespace}/{c.pod}/{c.name}/{stamp}/{n}".encode()).hexdigest()[:32]
    return f"{n:06d}-{digest}"


def document(c: Container, stamp: str, n: int, message: str) -> dict[str, Any]:
    """A line as Fluent Bit's Kubernetes filter ships it, with the portal's ``log_id`` (and ``level`` if known)."""
    doc: dict[str, Any] = {
        "@timestamp": stamp, "log": message, "log_id": log_id(c, stamp, n),
        "kubernetes": {"namespace_name": c.namespace, "pod_name": c.pod, "pod_id": c.pod_id,
                       "container_name": c.name, "container_image": c.image, "host": c.node, "labels": c.labels},
    }
    level = level_of(message)
    if level:
        doc["level"] = level
    return doc


@dataclass
class Round:
    """What one round over every namespace did."""

    lines: int = 0
    containers: int = 0  # containers with new lines
    refused: int = 0  # documents the store refused as malformed
    skipped: int = 0  # seconds skipped in containers writing more than the biggest chunk in one
    behind: int = 0  # containers with more to read than a round reads


class _Batch:
    """Documents to write and the positions they move to, saved once written; at most ``size`` per request."""

    def __init__(self, store: SearchLogStore, positions: Positions, size: int, done: Round, cluster: str):
        self.store, self.positions, self.size, self.done, self.cluster = store, positions, size, done, cluster
        self.documents: list[dict[str, Any]] = []
        self.moved: dict[tuple[str, str], Position] = {}

    def add(self, documents: list[dict[str, Any]], c: Container, position: Position) -> None:
        self.documents += documents
        self.moved[(c.namespace, c.key)] = position
        if len(self.documents) >= self.size:
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.documents), self.size):
            refused = self.store.write(self.documents[start:start + self.size])
            if refused:
                self.done.refused += len(refused)
                log.warning("log collector %s: the store refused %d lines, e.g. %s", self.cluster, len(refused),
                            refused[0])
        self.positions.save(self.moved)
        self.documents, self.moved = [], {}


class LogCollector:
    """Follows the pods of ``namespaces`` of one cluster into ``store``: ``collect`` does one round, ``start``
    runs rounds every ``interval`` seconds on a thread until ``stop``. ``namespaces`` may be replaced at any time."""

    def __init__(self, api: KubernetesAPI, store: SearchLogStore, positions: Positions,
                 namespaces: Iterable[str] = (), interval: float = 2.0, batch_size: int = 1000,
                 chunk_bytes: int = 256 * 1024, max_chunk_bytes: int = 8 * 1024 * 1024, backfill: float = 3600.0,
                 chunks_per_round: int = 8):
        self.api, self.store, self.positions = api, store, positions
        self.namespaces = frozenset(namespaces)
        self.interval, self.batch_size = interval, batch_size
        self.chunk_bytes, self.max_chunk_bytes = chunk_bytes, max(chunk_bytes, max_chunk_bytes)
        self.backfill, self.chunks_per_round = backfill, chunks_per_round
        self.stop_event = threading.Event()
        self.last_error = ""
        self.rounds = 0  # rounds done without error
        self._followed: frozenset[str] | None = None  # the namespaces whose positions were last cleaned up for
        self._thread: threading.Thread | None = None

    @property
    def cluster(self) -> str:
        return self.positions.cluster

    # --- running ---------------------------------------------------------------------------------

    def start(self) -> "LogCollector":
        self._thread = threading.Thread(target=self.run, name=f"log-collector-{self.cluster}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Rounds until ``stop_event`` is set; failed rounds back off exponentially up to a minute."""
        delay = self.interval
        while not self.stop_event.is_set():
            try:
                done = self.collect()
            except Exception as exc:  # noqa: BLE001 - a thread that dies is a cluster silently not collected
                self.last_error = str(exc)[:300]
                delay = min(max(delay, 1.0) * 2, 60.0)
                log.warning("log collector %s: %s (retrying in %.0f s)", self.cluster, self.last_error, delay,
                            exc_info=not isinstance(exc, IntegrationError))
            else:
                self.last_error, delay = "", self.interval
                self.rounds += 1
                if done.lines:
                    log.info("log collector %s: %d lines of %d containers", self.cluster, done.lines,
                             done.containers)
            self.stop_event.wait(delay)

    # --- one round -------------------------------------------------------------------------------

    def collect(self) -> Round:
        """Read every started container of every namespace from its position and write what is new."""
        done = Round()
        namespaces = self.namespaces
        if namespaces != self._followed:  # no longer followed: forget where it stood
            self.positions.forget(self.positions.namespaces() - namespaces)
            self._followed = namespaces
        batch = _Batch(self.store, self.positions, self.batch_size, done, self.cluster)
        for namespace in sorted(namespaces):
            try:
                listed = self.api.request("GET", f"/api/v1/namespaces/{namespace}/pods")
            except (Unavailable, AuthFailed):
                raise  # the whole cluster: end the round
            except IntegrationError as exc:
                log.warning("log collector %s: cannot list the pods of %s: %s", self.cluster, namespace, exc)
                continue
            containers = [c for pod in listed.get("items") or [] for c in containers_of(pod)]
            known = self.positions.load(namespace)
            for c in containers:
                if c.started:
                    self._follow(c, known.get(c.key), batch, done)
            self.positions.drop(namespace, set(known) - {c.key for c in containers})  # pods gone
        batch.flush()
        return done

    def _follow(self, c: Container, position: Position | None, batch: _Batch, done: Round) -> None:
        before = done.lines
        try:
            if position is not None and c.restarts > position.restarts:
                reached, more = self._drain(c, position, batch, done, previous=True)
                if more:
                    return  # the previous instance's log is not read to its end yet: the next round goes on
                position = Position(reached.stamp, reached.n, c.restarts) if reached else position
                batch.add([], c, position)
            self._drain(c, position, batch, done, previous=False)
        finally:
            done.containers += done.lines > before

    def _drain(self, c: Container, position: Position | None, batch: _Batch, done: Round,
               previous: bool) -> tuple[Position | None, bool]:
        """Read one log in chunks until its end or ``chunks_per_round``; the position reached, and whether more
        is left."""
        restarts = position.restarts if previous and position else c.restarts
        limit, reads = self.chunk_bytes, 0
        while reads < self.chunks_per_round:
            lines, cut, last_seen = self._read(c, position, previous, limit)
            if not lines and cut and limit < self.max_chunk_bytes:
                # The position's second alone fills a chunk (a read starts at a whole second): a bigger one.
                limit = min(2 * limit, self.max_chunk_bytes)
                continue
            reads += 1
            if lines:
                documents = [document(c, stamp, n, message) for stamp, n, message in lines]
                position = Position(lines[-1][0], lines[-1][1], restarts)
                batch.add(documents, c, position)
                done.lines += len(lines)
            elif cut and last_seen:  # even the biggest chunk holds no new line: skip the rest of that second
                second = parse_timestamp(last_seen[:19] + "Z") + timedelta(seconds=1)
                log.warning("log collector %s: %s/%s wrote more than %d bytes in one second at %s; the rest of "
                            "that second is skipped", self.cluster, c.namespace, c.key, limit, last_seen[:19])
                position = Position(normal_stamp(second.strftime("%Y-%m-%dT%H:%M:%SZ")), -1, restarts)
                batch.add([], c, position)
                done.skipped += 1
            if not cut:
                return position, False
        done.behind += 1
        return position, True

    def _read(self, c: Container, position: Position | None, previous: bool,
              limit: int) -> tuple[list[tuple[str, int, str]], bool, str]:
        """One read of at most ``limit`` bytes: the complete lines after ``position`` as (stamp, n, message),
        whether the read was cut short (more to read), and the last timestamp it held, cut line included."""
        if position is not None:
            since = position.stamp[:19] + "Z"
        else:
            since = (datetime.now(timezone.utc) - timedelta(seconds=self.backfill)).strftime("%Y-%m-%dT%H:%M:%SZ")
        query: list[tuple[str, Any]] = [("container", c.name), ("timestamps", "true"), ("sinceTime", since),
                                        ("limitBytes", limit)]
        if previous:
            query.append(("previous", "true"))
        try:
            text = self.api.request_text("GET", f"/api/v1/namespaces/{c.namespace}/pods/{c.pod}/log", query=query)
        except (NotFound, InvalidRequest):  # gone, not started, or no previous instance: no lines
            return [], False, ""
        # Bytes, not characters: what is not UTF-8 was decoded as U+FFFD, longer, so a cut is never missed.
        cut = len(text.encode()) >= limit
        raw = text.split("\n")
        piece = raw.pop() if cut else ""  # after the last newline: a line cut by the limit, or nothing
        lines, last, same = [], "", 0
        for line in raw:
            stamp, _, message = line.partition(" ")
            if not _STAMP.match(stamp):
                continue
            stamp = normal_stamp(stamp)
            same = same + 1 if stamp == last else 0
            last = stamp
            if position is None or position.after(stamp, same):
                lines.append((stamp, same, message))
        if _STAMP.match(piece):
            last = normal_stamp(piece.partition(" ")[0])
        return lines, cut, last
