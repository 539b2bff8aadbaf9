"""Keeping the cluster cache: one watcher per registered cluster, in the process ``flask watch-clusters`` runs.

Every ``refresh`` seconds the registry of clusters is read again: a new cluster gets a watcher, a cluster
whose API URL or credentials changed gets a new one, and a removed cluster's watcher is stopped and its
cache cleared. Several such processes may run (say, one per replica of a Deployment): each keeps the whole
cache and Redis holds the last write, so only pay for one unless you want a spare.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from integrations.cluster_cache import ClusterCache
from integrations.cluster_watch import ClusterWatcher
from integrations.errors import IntegrationError
from integrations.kubernetes_api import KubernetesAPI, fingerprint
from jobs import redis_connection
from portal.extensions import db
from portal.models import Cluster
from portal.services.clusters import cluster_target

log = logging.getLogger(__name__)
# Threads per watcher that use its connection pool at once: one per watched kind, usage, and spare.
POOL = 12


class CacheKeeper:
    """The watchers of every registered cluster (call ``sync`` in an app context)."""

    def __init__(self, settings):
        self.settings = settings
        self.watchers: dict[str, tuple[str, ClusterWatcher]] = {}  # cluster name → (fingerprint, watcher)

    def sync(self) -> None:
        clusters = {c.name: c for c in db.session.scalars(select(Cluster)) if c.auth_kind}
        for name in list(self.watchers):
            if name not in clusters:
                _, watcher = self.watchers.pop(name)
                watcher.stop()
                watcher.cache.clear()
                log.info("cluster cache: %s removed from the registry; its cache is cleared", name)
        for name, cluster in clusters.items():
            target = cluster_target(cluster)
            print_ = fingerprint(target)
            known = self.watchers.get(name)
            if known and known[0] == print_:
                continue
            if known:
                known[1].stop()
            try:
                api = KubernetesAPI.of(target, self.settings.http_timeout, pool_size=POOL)
            except IntegrationError as exc:
                log.warning("cluster cache: cannot watch %s: %s", name, exc)
                continue
            watcher = ClusterWatcher(api, ClusterCache(redis_connection(), name),
                                     watch_seconds=self.settings.cache_watch_seconds,
                                     usage_interval=self.settings.cache_usage_seconds).start()
            self.watchers[name] = (print_, watcher)
            log.info("cluster cache: watching %s at %s", name, api.api_url)
        db.session.rollback()  # end the read transaction: the next sync sees new rows

    def stop(self) -> None:
        for _, watcher in self.watchers.values():
            watcher.stop()
        self.watchers.clear()


def keep_cluster_cache(settings, stop: threading.Event, refresh: float = 30.0) -> None:
    """Run watchers for the registered clusters until ``stop`` is set (in an app context)."""
    keeper = CacheKeeper(settings)
    try:
        while True:
            try:
                keeper.sync()
            except Exception:  # a database hiccup must not end the watchers already running
                log.exception("cluster cache: reading the cluster registry failed; trying again")
                db.session.rollback()
            if stop.wait(refresh):
                break
    finally:
        keeper.stop()
