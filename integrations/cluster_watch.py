"""List-then-watch of one cluster into the cluster cache, as Kubernetes' own informers do it.

Per kind, a thread lists every object (paginated, ``limit`` per page), writes the slim objects to the cache in
one transaction, then watches from the list's resourceVersion with bookmarks on. When the watch ends (its
``timeoutSeconds``, a dropped connection, an API server restart) it is resumed from the last resourceVersion
seen, so nothing is listed again; only when the API server answers ``410 Gone`` (the version was compacted
away) does the thread list again. Errors back off exponentially up to a minute. A usage thread reads
``metrics.k8s.io`` every ``usage_interval`` seconds (metrics cannot be watched) and a heartbeat thread writes
the status every ``heartbeat`` seconds. The requests a cluster gets depend on its churn and these intervals,
never on how many people are looking at pages.

API: https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes,
https://kubernetes.io/docs/reference/using-api/api-concepts/#watch-bookmarks,
https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from integrations.cluster_cache import ClusterCache, KindStatus
from integrations.cluster_objects import NAMESPACED, POD_METRICS, WATCHED, Slim, Watched, slim_pod_metrics
from integrations.errors import IntegrationError, NotFound
from integrations.kubernetes_api import KubernetesAPI

log = logging.getLogger(__name__)
PAGE = 500


class Expired(Exception):
    """The resourceVersion asked for is gone (410): list again."""


def list_all(api: KubernetesAPI, watched: Watched, namespace: str = "", page: int = PAGE,
             label_selector: str = "") -> tuple[list[dict[str, Any]], str]:
    """Every object of ``watched`` (in ``namespace``, or all), page by page; and the list's resourceVersion.
    A continue token that expired midway (410) starts the list again, as the API documentation says to."""
    while True:
        items: list[dict[str, Any]] = []
        token = ""
        try:
            while True:
                query: list[tuple[str, Any]] = [("limit", page)]
                if token:
                    query.append(("continue", token))
                if watched.field_selector:
                    query.append(("fieldSelector", watched.field_selector))
                if label_selector:
                    query.append(("labelSelector", label_selector))
                listed = api.request("GET", watched.kind.path(namespace=namespace), query=query)
                items += listed.get("items") or []
                meta = listed.get("metadata") or {}
                token = meta.get("continue") or ""
                if not token:
                    return items, meta.get("resourceVersion", "")
        except IntegrationError as exc:
            if exc.status != 410 or not token:
                raise


def group(watched: Watched, items: list[dict[str, Any]]) -> dict[str, dict[str, Slim]]:
    """Slim objects by namespace ("" for cluster-wide kinds) and name."""
    grouped: dict[str, dict[str, Slim]] = defaultdict(dict)
    for obj in items:
        meta = obj.get("metadata") or {}
        grouped[meta.get("namespace", "")][meta.get("name", "")] = watched.slim(obj)
    return dict(grouped)


class KindWatch:
    """The list-then-watch loop of one kind; ``run`` until ``stop`` is set."""

    def __init__(self, api: KubernetesAPI, cache: ClusterCache, watched: Watched, stop: threading.Event,
                 watch_seconds: int = 300, page: int = PAGE, resume_from: str = ""):
        self.api, self.cache, self.watched, self.stop = api, cache, watched, stop
        self.watch_seconds, self.page = watch_seconds, page
        self.status = KindStatus(resource_version=resume_from)
        self._response: Any = None
        self._lock = threading.Lock()

    def run(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            try:
                if not self.status.resource_version:
                    self.relist()
                self.watch()
                delay = 1.0
            except Expired:
                self.status.resource_version = ""  # compacted away: list again at once
            except (IntegrationError, OSError, ValueError) as exc:
                self.status.state, self.status.error = "error", str(exc)[:300]
                self.status.errors += 1
                log.warning("cluster cache %s %s: %s (retrying in %.0f s)", self.cache.cluster, self.watched.key,
                            self.status.error, delay)
                self.stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 60.0)

    def relist(self) -> None:
        self.status.state = "listing"
        items, version = list_all(self.api, self.watched, page=self.page)
        self.cache.replace(self.watched.key, group(self.watched, items))
        self.status.resource_version, self.status.objects = version, len(items)
        self.status.relists += 1
        self.status.synced_at = time.time()

    def watch(self) -> None:
        """One watch from the current resourceVersion until it ends; the next one resumes where it stopped."""
        query: list[tuple[str, Any]] = [
            ("watch", "true"), ("resourceVersion", self.status.resource_version), ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", int(self.watch_seconds * random.uniform(1.0, 1.2)))]  # spread the reconnections
        if self.watched.field_selector:
            query.append(("fieldSelector", self.watched.field_selector))
        try:
            response = self.api.open_stream(self.watched.kind.path(), query, read_timeout=self.watch_seconds * 1.2 + 30)
        except IntegrationError as exc:
            if exc.status == 410:
                raise Expired() from exc
            raise
        with self._lock:
            self._response = response
        if self.stop.is_set():
            response.shutdown()
        self.status.state, self.status.error = "watching", ""
        self.status.synced_at = time.time()
        try:
            for line in response:
                if line.strip():
                    self._event(json.loads(line))
        except Exception as exc:  # a connection dropped midway: resume from the last version seen
            if isinstance(exc, Expired):
                raise
            if not self.stop.is_set():
                log.info("cluster cache %s %s: watch dropped (%s), resuming at %s", self.cache.cluster,
                         self.watched.key, type(exc).__name__, self.status.resource_version)
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        self.status.resumes += 1

    def _event(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired()
            raise IntegrationError("kubernetes", f"watch error: {obj.get('message') or obj}", obj.get("code"))
        meta = obj.get("metadata") or {}
        if meta.get("resourceVersion"):
            self.status.resource_version = meta["resourceVersion"]
        self.status.synced_at = time.time()
        if kind == "BOOKMARK":
            return
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        if kind == "DELETED":
            self.cache.remove(self.watched.key, namespace, name)
        elif kind in ("ADDED", "MODIFIED"):
            self.cache.put(self.watched.key, namespace, name, self.watched.slim(obj))

    def drop(self) -> None:
        """Cut the open watch connection, as a network failure would (the loop resumes it)."""
        with self._lock:
            response = self._response
        if response is not None:
            response.shutdown()


class ClusterWatcher:
    """Every watched kind of one cluster, its pod usage and its heartbeat, on daemon threads."""

    def __init__(self, api: KubernetesAPI, cache: ClusterCache, watch_seconds: int = 300,
                 usage_interval: float = 15.0, heartbeat: float = 2.0, page: int = PAGE,
                 kinds: tuple[Watched, ...] = WATCHED):
        self.api, self.cache = api, cache
        self.usage_interval, self.heartbeat = usage_interval, heartbeat
        self.stop_event = threading.Event()
        saved = cache.status()
        if saved.api_url and saved.api_url != api.api_url:
            cache.clear()  # the name now points at another API server: nothing cached is about it
            saved = cache.status()
        # A restarted watcher resumes from the versions its predecessor reached (410 if too old: a relist).
        self.kinds = {w.key: KindWatch(api, cache, w, self.stop_event, watch_seconds, page,
                                       resume_from=saved.kinds[w.key].resource_version if w.key in saved.kinds
                                       and saved.kinds[w.key].synced_at else "")
                      for w in kinds}
        self.usage: dict[str, Any] = {"state": "starting", "at": 0.0, "message": ""}
        self._threads: list[threading.Thread] = []

    def start(self) -> "ClusterWatcher":
        self.write_status()  # readers know at once that a watcher is starting
        targets = [(f"watch-{key}", kind.run) for key, kind in self.kinds.items()]
        targets += [("usage", self._usage_loop), ("heartbeat", self._heartbeat_loop)]
        for name, target in targets:
            thread = threading.Thread(target=target, name=f"cache-{self.cache.cluster}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for kind in self.kinds.values():
            kind.drop()
        for thread in self._threads:
            thread.join(timeout)
        self.write_status()

    def write_status(self) -> None:
        now = time.time()
        for kind in self.kinds.values():
            if kind.status.state == "watching" and kind._response is not None:
                kind.status.synced_at = now  # an open watch with no events: nothing changed
        self.cache.write_status(self.api.api_url, {k: w.status for k, w in self.kinds.items()}, self.usage)

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.wait(self.heartbeat):
            try:
                self.write_status()
            except Exception as exc:  # Redis away: the next beat tries again
                log.warning("cluster cache %s: cannot write status: %s", self.cache.cluster, exc)

    def _usage_loop(self) -> None:
        while not self.stop_event.is_set():
            self.read_usage()
            self.stop_event.wait(self.usage_interval)

    def read_usage(self) -> None:
        """Pod usage from metrics.k8s.io, for every namespace; says so when the cluster does not serve it."""
        try:
            listed = self.api.request("GET", POD_METRICS.path())
        except NotFound:
            self.usage = {"state": "unavailable", "at": time.time(),
                          "message": "this cluster does not serve metrics.k8s.io (no metrics-server)"}
            return
        except IntegrationError as exc:
            self.usage = {"state": "unavailable", "at": time.time(), "message": str(exc)[:300]}
            return
        by_namespace: dict[str, dict[str, Slim]] = defaultdict(dict)
        for item in listed.get("items") or []:
            meta = item.get("metadata") or {}
            by_namespace[meta.get("namespace", "")][meta.get("name", "")] = slim_pod_metrics(item)
        self.cache.replace_usage(by_namespace, self.cache.namespaces("pods"))
        self.usage = {"state": "ok", "at": time.time(), "message": ""}


def list_namespace(api: KubernetesAPI, namespace: str, kinds: Sequence[str] = (),
                   page: int = PAGE) -> tuple[dict[str, list[Slim]], dict]:
    """The fallback when there is no cache: ``kinds`` (every namespaced kind when empty) of ``namespace``
    listed now, slimmed, and with pods their usage if metrics.k8s.io answers (``usage`` says whether)."""
    found: dict[str, list[Slim]] = {}
    for watched in NAMESPACED:
        if kinds and watched.key not in kinds:
            continue
        items, _ = list_all(api, watched, namespace=namespace, page=page)
        found[watched.key] = [watched.slim(obj) for obj in items]
    if "pods" not in found:
        return found, {"state": "ok", "at": time.time(), "message": ""}
    try:
        metrics = api.request("GET", POD_METRICS.path(namespace=namespace)).get("items") or []
        found["usage"] = [slim_pod_metrics(m) for m in metrics]
        usage = {"state": "ok", "at": time.time(), "message": ""}
    except IntegrationError as exc:
        found["usage"] = []
        usage = {"state": "unavailable", "at": time.time(),
                 "message": "this cluster does not serve metrics.k8s.io (no metrics-server)"
                 if isinstance(exc, NotFound) else str(exc)[:300]}
    return found, usage
