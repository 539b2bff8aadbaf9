"""The cluster cache in Redis: what the watchers saw of each cluster, read by every web process.

One hash per (cluster, kind, namespace) maps object names to slim objects (``integrations.cluster_objects``),
so a panel reads its namespace with one HGETALL per kind in a single round trip, whatever the cluster's size.
A set per kind names the namespaces that hold objects, so a relist can drop namespaces that emptied.
Per namespace, two sets name the pods that are not ready and those in trouble (``pod_problem``), written with
the pods themselves: a board summing a team's namespaces counts their pods (HLEN, SCARD) without reading one.
A status hash says, per kind, the resourceVersion the watch is at, when it was last known in sync, how many
times it relisted and resumed, and the last error; a heartbeat says the watcher process is alive. From these
a reader knows how fresh the figures are without asking the API server.

Keys: ``portal:cluster-cache:<cluster>:obj:<kind>:<namespace>``, ``...:namespaces:<kind>``, ``...:status``,
``...:usage:<namespace>``, ``...:pods-not-ready:<namespace>``, ``...:pods-problem:<namespace>``. Nothing here is
a secret: slim objects carry no Secret, env or annotation values. The status names the layout of the keys: a
cache written in another layout reads as never synced, so a watcher of this version lists everything again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from integrations.cluster_objects import BY_KEY, PodCounts, Slim, pod_problem

PREFIX = "portal:cluster-cache"
LAYOUT = "2"  # 2: with the pod flag sets
POD_FLAGS = {"not-ready": lambda pod: not pod["ready"], "problem": pod_problem}


@dataclass
class KindStatus:
    """Where the watch of one kind is; written by the watcher, read by everyone."""

    state: str = "starting"  # starting | listing | watching | error
    resource_version: str = ""
    synced_at: float = 0.0  # the last moment the cache is known to have matched the API server
    relists: int = 0
    resumes: int = 0
    errors: int = 0
    error: str = ""
    objects: int = 0


@dataclass(frozen=True)
class CacheStatus:
    """The freshness of one cluster's cache."""

    api_url: str = ""
    heartbeat: float = 0.0
    kinds: dict[str, KindStatus] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)  # state ok|unavailable, at, message

    def synced_at(self, kinds: Iterable[str] = ()) -> float:
        """When every one of ``kinds`` (all when empty) was last known in sync; 0 when one never was."""
        wanted = list(kinds) or list(BY_KEY)
        return min((self.kinds[k].synced_at if k in self.kinds else 0.0) for k in wanted)

    def age(self, now: float | None = None, kinds: Iterable[str] = ()) -> float | None:
        synced = self.synced_at(kinds)
        return None if not synced else max(0.0, (now or time.time()) - synced)


class ClusterCache:
    """Reading and writing one cluster's cache."""

    def __init__(self, redis: Redis, cluster: str):
        self.redis = redis
        self.cluster = cluster
        self._base = f"{PREFIX}:{cluster}"

    def _objects(self, kind: str, namespace: str) -> str:
        return f"{self._base}:obj:{kind}:{namespace}"

    def _namespaces(self, kind: str) -> str:
        return f"{self._base}:namespaces:{kind}"

    def _usage(self, namespace: str) -> str:
        return f"{self._base}:usage:{namespace}"

    def _flagged(self, flag: str, namespace: str) -> str:
        return f"{self._base}:pods-{flag}:{namespace}"

    @property
    def _status(self) -> str:
        return f"{self._base}:status"

    # --- writing (the watcher) -------------------------------------------------------------------

    def replace(self, kind: str, objects: dict[str, dict[str, Slim]]) -> None:
        """Make the cache of ``kind`` exactly ``objects`` (namespace → name → slim), atomically: after a relist."""
        old = {ns.decode() for ns in self.redis.smembers(self._namespaces(kind))}
        pipe = self.redis.pipeline(transaction=True)
        for namespace in old | set(objects):
            pipe.delete(self._objects(kind, namespace))
            if kind == "pods":
                pipe.delete(*(self._flagged(flag, namespace) for flag in POD_FLAGS))
            if objects.get(namespace):
                pipe.hset(self._objects(kind, namespace),
                          mapping={name: json.dumps(slim) for name, slim in objects[namespace].items()})
                if kind == "pods":
                    for flag, test in POD_FLAGS.items():
                        flagged = [name for name, pod in objects[namespace].items() if test(pod)]
                        if flagged:
                            pipe.sadd(self._flagged(flag, namespace), *flagged)
        pipe.delete(self._namespaces(kind))
        held = [ns for ns, items in objects.items() if items]
        if held:
            pipe.sadd(self._namespaces(kind), *held)
        pipe.execute()

    def put(self, kind: str, namespace: str, name: str, slim: Slim) -> None:
        pipe = self.redis.pipeline(transaction=kind == "pods")  # a pod and its flags change together
        pipe.hset(self._objects(kind, namespace), name, json.dumps(slim))
        pipe.sadd(self._namespaces(kind), namespace)
        if kind == "pods":
            for flag, test in POD_FLAGS.items():
                (pipe.sadd if test(slim) else pipe.srem)(self._flagged(flag, namespace), name)
        pipe.execute()

    def remove(self, kind: str, namespace: str, name: str) -> None:
        pipe = self.redis.pipeline(transaction=kind == "pods")
        pipe.hdel(self._objects(kind, namespace), name)
        if kind == "pods":
            for flag in POD_FLAGS:
                pipe.srem(self._flagged(flag, namespace), name)
        pipe.execute()

    def replace_usage(self, by_namespace: dict[str, dict[str, Slim]], namespaces: Iterable[str]) -> None:
        """Usage of the pods of every namespace in ``namespaces`` (those absent from ``by_namespace`` are emptied)."""
        pipe = self.redis.pipeline(transaction=True)
        for namespace in set(namespaces) | set(by_namespace):
            pipe.delete(self._usage(namespace))
            if by_namespace.get(namespace):
                pipe.hset(self._usage(namespace),
                          mapping={pod: json.dumps(m) for pod, m in by_namespace[namespace].items()})
        pipe.execute()

    def namespaces(self, kind: str = "pods") -> set[str]:
        return {ns.decode() for ns in self.redis.smembers(self._namespaces(kind))}

    def write_status(self, api_url: str, kinds: dict[str, KindStatus], usage: dict[str, Any] | None = None) -> None:
        mapping: dict[str, str] = {"api_url": api_url, "heartbeat": repr(time.time()), "layout": LAYOUT}
        mapping.update({f"kind:{k}": json.dumps(vars(s)) for k, s in kinds.items()})
        if usage is not None:
            mapping["usage"] = json.dumps(usage)
        self.redis.hset(self._status, mapping=mapping)

    def clear(self) -> None:
        """Forget everything about this cluster (it was removed, or now names another API server)."""
        keys = list(self.redis.scan_iter(f"{self._base}:*", count=1000))
        for start in range(0, len(keys), 500):
            self.redis.delete(*keys[start:start + 500])

    # --- reading (every viewer) ------------------------------------------------------------------

    def status(self) -> CacheStatus:
        raw = {k.decode(): v.decode() for k, v in self.redis.hgetall(self._status).items()}
        return _status(raw)

    def read(self, namespaces: Sequence[str], kinds: Sequence[str], usage: bool = False,
             pod_counts: bool = False) -> tuple[dict[str, dict[str, Any]], CacheStatus]:
        """``kinds`` (and pod usage) of each namespace, and the cache's status, in one round trip. With
        ``pod_counts``, a namespace's pods come as their ``PodCounts`` (under "pod_counts") instead of one by one:
        a summary of a thousand namespaces then decodes no pod at all."""
        counted = pod_counts and "pods" in kinds
        listed = [kind for kind in kinds if not (counted and kind == "pods")]
        pipe = self.redis.pipeline(transaction=False)
        for namespace in namespaces:
            for kind in listed:
                pipe.hvals(self._objects(kind, namespace))
            if usage:
                pipe.hvals(self._usage(namespace))
            if counted:
                pipe.hlen(self._objects("pods", namespace))
                pipe.scard(self._flagged("not-ready", namespace))
                pipe.scard(self._flagged("problem", namespace))
        pipe.hgetall(self._status)
        replies = iter(pipe.execute())
        found: dict[str, dict[str, Any]] = {}
        for namespace in namespaces:
            found[namespace] = {kind: [json.loads(v) for v in next(replies)] for kind in listed}
            if usage:
                found[namespace]["usage"] = [json.loads(v) for v in next(replies)]
            if counted:
                found[namespace]["pod_counts"] = PodCounts(total=next(replies), not_ready=next(replies),
                                                           problems=next(replies))
        raw = {k.decode(): v.decode() for k, v in next(replies).items()}
        return found, _status(raw)

    def _direct(self, namespace: str, kinds: Sequence[str]) -> str:
        return f"{self._base}:direct:{namespace}:{','.join(sorted(kinds))}"

    def direct(self, namespace: str, kinds: Sequence[str]) -> dict[str, Any] | None:
        """What a direct LIST of ``kinds`` in ``namespace`` found a moment ago, while it is shared."""
        raw = self.redis.get(self._direct(namespace, kinds))
        return json.loads(raw) if raw else None

    def keep_direct(self, namespace: str, kinds: Sequence[str], found: dict[str, Any], seconds: float) -> None:
        """Share a direct LIST with every viewer for ``seconds``, so that without a cache the API server is
        still asked once per namespace and interval, not once per open page."""
        self.redis.set(self._direct(namespace, kinds), json.dumps(found), px=max(1, int(seconds * 1000)))

    def cluster_wide(self, kind: str) -> list[Slim]:
        return [json.loads(v) for v in self.redis.hvals(self._objects(kind, ""))]


def _status(raw: dict[str, str]) -> CacheStatus:
    kinds = {}
    for key, value in raw.items():
        if key.startswith("kind:") and raw.get("layout") == LAYOUT:  # another layout: as if never synced
            try:
                kinds[key[5:]] = KindStatus(**json.loads(value))
            except (ValueError, TypeError):
                continue  # written by another version: as if not there
    try:
        usage = json.loads(raw.get("usage") or "{}")
        heartbeat = float(raw.get("heartbeat") or 0)
    except ValueError:
        usage, heartbeat = {}, 0.0
    return CacheStatus(api_url=raw.get("api_url", ""), heartbeat=heartbeat, kinds=kinds, usage=usage)
