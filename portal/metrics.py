"""Prometheus metrics of the portal: what each process measures, and what is read from Redis at scrape time.

Measured where it happens (histograms in this process):
``portal_http_request_duration_seconds{endpoint,method,status}``: each request until its response starts (a
streamed body is not timed), by the Flask endpoint name of its route (``none`` when no route matched, so that a
scanner's paths cannot add series) and status class (2xx).
``portal_job_duration_seconds{job,outcome}``: each RQ job run through ``jobs.in_app_context``, by job function.
``portal_provisioning_step_duration_seconds{step,outcome}``: each provisioning step (``observe_step``).
``portal_integration_request_duration_seconds{system,outcome}`` and ``portal_integration_errors_total``:
each call to an outside system, measured in ``integrations.http`` (``observe_integration`` is re-exported).

Read at scrape time, so that every web process answers the same: ``portal_rq_jobs{queue,state}`` (queued,
started, deferred, scheduled, failed), ``portal_cluster_cache_heartbeat_age_seconds{cluster}`` and
``portal_cluster_cache_sync_age_seconds{cluster,kind}`` (+Inf when a kind was never in sync), and
``portal_redis_up`` (0 when Redis did not answer, and then neither of the others is there).

Several processes: gunicorn's workers each measure their own requests. When ``PROMETHEUS_MULTIPROC_DIR`` names
an empty folder before the process starts (the Helm chart sets it, on an emptyDir), prometheus_client keeps
the values in files there and ``/metrics`` adds up every process's. Job and step figures are measured in the
worker processes, so they are in the worker pods' folder, not the web's: there ``flask metrics-server`` (a
sidecar in the chart) serves them, and the worker folds each ended work horse's files into its own
(``fold_process``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from redis import Redis, RedisError
from rq import Queue

from integrations.cluster_cache import PREFIX as CACHE_PREFIX
from integrations.cluster_cache import ClusterCache
from integrations.http import observe as observe_integration
from portal.config import prometheus_multiproc_dir

__all__ = ["exposition", "fold_process", "init_app", "observe_integration", "observe_job", "observe_step", "timed_job"]

LONG_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Histogram("portal_http_request_duration_seconds", "Time to answer a request, by route endpoint.",
                     ["endpoint", "method", "status"])
JOBS = Histogram("portal_job_duration_seconds", "Time an RQ job ran, by job function and outcome.",
                 ["job", "outcome"], buckets=LONG_BUCKETS)
STEPS = Histogram("portal_provisioning_step_duration_seconds", "Time a provisioning step took, by step and outcome.",
                  ["step", "outcome"], buckets=LONG_BUCKETS)


def observe_step(step: str, outcome: str, seconds: float) -> None:
    """Count one provisioning step (``outcome``: a small fixed set, such as done, retry, failed)."""
    STEPS.labels(step=step, outcome=outcome).observe(seconds)


def observe_job(job: str, outcome: str, seconds: float) -> None:
    """Count one job run: ``job`` is the function's dotted name, ``outcome`` succeeded or failed."""
    JOBS.labels(job=job, outcome=outcome).observe(seconds)


@contextlib.contextmanager
def timed_job(job: str) -> Iterator[None]:
    """Measure the job run inside: failed when it raises (the exception goes on), else succeeded."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        yield
        outcome = "succeeded"
    finally:
        observe_job(job, outcome, time.perf_counter() - started)


def init_app(app: Flask) -> None:
    """Measure every request of ``app``."""
    folder = prometheus_multiproc_dir()
    if folder:
        # An emptyDir mounted over /tmp hides the image's folder: without it, the first figure written would
        # fail the request, job or call it measures.
        Path(folder).mkdir(parents=True, exist_ok=True)

    @app.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def observe_request(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            endpoint = request.url_rule.endpoint if request.url_rule is not None else "none"
            method = request.method if request.method in METHODS else "other"
            REQUESTS.labels(endpoint=endpoint, method=method, status=f"{response.status_code // 100}xx").observe(
                time.perf_counter() - started)
        return response


def exposition(redis: Redis | None, queues: list[str]) -> bytes:
    """The text of a scrape: this process's (or, in multi-process mode, every process's) measurements, then
    the figures read from ``redis`` now (none without it: a worker pod's scrape leaves them to the web's)."""
    if values.ValueClass is values.MutexValue:
        from prometheus_client import REGISTRY as measured
    else:
        measured = CollectorRegistry()
        MultiProcessCollector(measured)
    if redis is None:
        return generate_latest(measured)
    read_now = CollectorRegistry(auto_describe=False)
    read_now.register(RedisCollector(redis, queues))
    return generate_latest(measured) + generate_latest(read_now)


def fold_process(directory: str, pid: int, into: str) -> None:
    """Add an ended process's counters and histograms to the folder's ``into`` files and remove its own.

    RQ forks a work horse per job, and in multi-process mode each horse leaves files named by its pid: a
    worker would pile up one set per job. The worker folds each horse's into its own after the job, so the
    folder holds a few files whatever the number of jobs, and the sums a scrape reads stay the same. The
    horse's files are renamed out of the scrape's sight first, so that no scrape counts a value twice; a
    worker dying in between loses that one job's figures."""
    for kind in ("counter", "histogram", "summary"):
        path = os.path.join(directory, f"{kind}_{pid}.db")
        folding = path + ".folding"
        try:
            os.rename(path, folding)
        except FileNotFoundError:
            continue
        total = MmapedDict(os.path.join(directory, f"{kind}_{into}.db"))
        try:
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(folding):
                before, _ = total.read_value(key)
                total.write_value(key, before + value, timestamp)
        finally:
            total.close()
        os.remove(folding)
    mark_process_dead(pid, directory)  # its live gauges


class RedisCollector:
    """The RQ queues' depths and the cluster cache's freshness, read from Redis at each scrape."""

    def __init__(self, redis: Redis, queues: list[str]):
        self.redis = redis
        self.queues = queues

    def collect(self):
        up = GaugeMetricFamily("portal_redis_up", "Whether Redis answered this scrape (1) or not (0).")
        try:
            families = [self._queues(), *self._cluster_cache()]
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _queues(self) -> GaugeMetricFamily:
        jobs = GaugeMetricFamily("portal_rq_jobs", "Jobs of each RQ queue, by state (queued: waiting for a worker).",
                                 labels=["queue", "state"])
        pipe = self.redis.pipeline(transaction=False)
        asked = []
        for name in self.queues:
            queue = Queue(name, connection=self.redis)
            pipe.llen(queue.key)
            asked.append((name, "queued"))
            for state, registry in (("started", queue.started_job_registry), ("deferred", queue.deferred_job_registry),
                                    ("scheduled", queue.scheduled_job_registry), ("failed", queue.failed_job_registry)):
                pipe.zcard(registry.key)  # not registry.count, which would clean the registry up as it counts
                asked.append((name, state))
        for (name, state), count in zip(asked, pipe.execute()):
            jobs.add_metric([name, state], count)
        return jobs

    def _cluster_cache(self) -> list[GaugeMetricFamily]:
        heartbeat = GaugeMetricFamily("portal_cluster_cache_heartbeat_age_seconds",
                                      "Seconds since the watcher of a cluster last said it is alive.", labels=["cluster"])
        synced = GaugeMetricFamily("portal_cluster_cache_sync_age_seconds",
                                   "Seconds since the cache of a kind was last known to match the API server "
                                   "(+Inf: never).", labels=["cluster", "kind"])
        now = time.time()
        for cluster in sorted(self._cached_clusters()):
            status = ClusterCache(self.redis, cluster).status()
            heartbeat.add_metric([cluster], max(0.0, now - status.heartbeat) if status.heartbeat else float("inf"))
            for kind, kind_status in sorted(status.kinds.items()):
                age = now - kind_status.synced_at if kind_status.synced_at else float("inf")
                synced.add_metric([cluster, kind], max(0.0, age))
        return [heartbeat, synced]

    def _cached_clusters(self) -> set[str]:
        head, tail = f"{CACHE_PREFIX}:", ":status"
        found = set()
        for key in self.redis.scan_iter(match=f"{head}*{tail}", count=1000):
            cluster = key.decode()[len(head):-len(tail)]
            if cluster and ":" not in cluster:  # not a namespace called "status" inside a cluster's keys
                found.add(cluster)
        return found
