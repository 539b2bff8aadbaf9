"""Open team boards polling the portal, as kiosks and browser tabs do, and what that costs the cluster: the
load side of benchmarks/resources.py."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

from benchmarks.cluster_load import api_reads, cpu_seconds
from integrations.cluster_cache import ClusterCache
from integrations.cluster_objects import WATCHED
from integrations.kubernetes_api import KubernetesAPI
from testbed.cluster import Cluster

HTMX = {"HX-Request": "true"}
# The resources the cache watches, as the API server names them in its metrics.
RESOURCES = {w.kind.plural for w in WATCHED}
READS = ("LIST", "GET", "WATCH")


class WebRequests:
    """The requests this web process sends to API servers, counted where the portal sends them
    (``KubernetesAPI.request``: the direct LIST fallback and its usage reads). Instrumentation, for the benchmark."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()
        original = KubernetesAPI.request

        def request(api, *args, **kwargs):
            with self._lock:
                self.count += 1
            return original(api, *args, **kwargs)

        KubernetesAPI.request = request


@dataclass
class Window:
    """What ``seconds`` of open boards cost: the API servers' requests, the web process's own, the watcher's watches
    resumed and lists (None: no watcher), the polls due and their server times, the polls that failed, and the CPU
    cores the control plane and this web process used on average."""

    seconds: float
    requests: Counter
    web_requests: int
    watcher: tuple[int, int] | None
    due: int
    times: list[float]
    failed: int
    cluster_cores: float
    web_cores: float


def watcher_work(cache: ClusterCache | None) -> tuple[int, int]:
    """Watches resumed and lists made so far by the watcher, from the status it writes."""
    kinds = cache.status().kinds.values() if cache is not None else ()
    return sum(k.resumes for k in kinds), sum(k.relists for k in kinds)


def dashboards(clients: list, url: str, every: float, window: float, cluster: Cluster, slots: int,
               web: WebRequests, cache: ClusterCache | None) -> Window:
    """``clients`` polling ``url`` every ``every`` seconds each, staggered, served by ``slots`` request threads (the
    web tier), measured over ``window`` seconds after one interval of warm-up."""
    stop, lock, tier = threading.Event(), threading.Lock(), threading.BoundedSemaphore(slots)
    polls: list[tuple[float, float, bool]] = []  # (when it ended, its server time, whether it succeeded)

    def poll(client, offset: float) -> None:
        due = time.monotonic() + offset
        while not stop.wait(max(0.0, due - time.monotonic())):
            while not tier.acquire(timeout=0.5):  # waiting for a request thread of the web tier
                if stop.is_set():
                    return
            try:
                start = time.perf_counter()
                try:
                    ok = client.get(url, headers=HTMX).status_code == 200
                except Exception:  # noqa: BLE001 - counted, not fatal: the load goes on
                    ok = False
                took = (time.perf_counter() - start) * 1000
            finally:
                tier.release()
            with lock:
                polls.append((time.monotonic(), took, ok))
            due = max(due + every, time.monotonic())  # a poll that came late does not make the next one early

    threads = [threading.Thread(target=poll, args=(c, every * i / len(clients)), daemon=True)
               for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    try:
        stop.wait(every + 1)  # every board is polling
        pids = [p.proc.pid for p in cluster.processes]
        before, sent, work, begin = api_reads(cluster), web.count, watcher_work(cache), time.monotonic()
        cpu, web_cpu = cpu_seconds(pids), time.process_time()
        stop.wait(window)
        cpu, web_cpu = cpu_seconds(pids) - cpu, time.process_time() - web_cpu
        after, sent, end = api_reads(cluster), web.count - sent, time.monotonic()
        work = tuple(b - a for a, b in zip(work, watcher_work(cache)))  # as of its heartbeats (every 2 s)
    finally:
        stop.set()
        for t in threads:
            t.join()  # the polls under way end (out of the next window)
    window_polls = [(took, ok) for at, took, ok in polls if begin <= at <= end]
    return Window(end - begin, after - before, sent, work if cache is not None else None,
                  round(len(clients) * (end - begin) / every), [took for took, ok in window_polls if ok],
                  sum(not ok for _, ok in window_polls), cpu / (end - begin), web_cpu / (end - begin))


def per_minute(counts: Counter, seconds: float) -> dict[str, float]:
    """Read requests per minute on the watched resources: by verb, metrics.k8s.io apart, and all requests."""
    per_minute = 60.0 / seconds
    mine = {k: v for k, v in counts.items() if k[1] in RESOURCES and k[2] in READS}
    out = {verb: sum(v for (g, _, vb), v in mine.items() if vb == verb and g != "metrics.k8s.io") * per_minute
           for verb in READS}
    out["usage"] = sum(v for (g, _, _), v in mine.items() if g == "metrics.k8s.io") * per_minute
    out["counted"] = sum(mine.values()) * per_minute
    out["everything"] = sum(counts.values()) * per_minute
    return out
