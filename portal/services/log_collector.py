"""The built-in log collector of the embedded mode, in the process ``flask collect-logs`` runs.

What is followed is decided here, from the portal's database only: on each team's cluster (``team_cluster``),
the namespace of every environment of every application of the team; nothing else on the cluster. Every
``refresh`` seconds the applications and clusters are read again: a cluster with applications gets a
collector (``integrations.log_collector``) on a thread of its own, so one that cannot be reached holds up no
other; a collector's namespaces follow the applications created and deleted; a cluster removed, or left with
no application, has its collector stopped and its positions forgotten. The lines go to the central log store
(PORTAL_LOGS, PORTAL_LOGS_URL, PORTAL_LOGS_INDEX), whose index template is put first, so that the panel's
queries find the mappings they need.

Run one such process: two would both write every line (harmlessly, the same documents under the same ids, but
for nothing).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from integrations.errors import IntegrationError
from integrations.kubernetes_api import KubernetesAPI, fingerprint
from integrations.log_collector import LogCollector, Positions, Round
from integrations.search_logs import SearchLogStore
from jobs import redis_connection
from portal.errors import Conflict
from portal.extensions import db
from portal.models import Application, Cluster
from portal.services.clusters import cluster_target, team_cluster
from portal.services.naming import ResourceNames
from portal.services.providers import current_providers
from portal.services.provisioning.chain import environments_of

log = logging.getLogger(__name__)


def followed_namespaces(settings) -> dict[str, set[str]]:
    """Cluster name → the namespaces of every environment of every application of the teams it serves."""
    environments = environments_of(settings)
    clusters: dict[int, Cluster | None] = {}
    followed: dict[str, set[str]] = defaultdict(set)
    query = select(Application).options(joinedload(Application.team), joinedload(Application.project))
    for app in db.session.scalars(query):
        if app.team_id not in clusters:
            clusters[app.team_id] = team_cluster(app.team_id)
        cluster = clusters[app.team_id]
        if cluster is not None:
            names = ResourceNames(app.team.name, app.project.name, app.name)
            followed[cluster.name] |= {names.namespace(environment) for environment in environments}
    return dict(followed)


def central_store() -> SearchLogStore:
    """The configured search store the collector writes to, or Conflict saying what to configure."""
    store = current_providers().logs
    if not isinstance(store, SearchLogStore):
        raise Conflict("The log collector writes to a search engine: set PORTAL_LOGS=opensearch (or elasticsearch) "
                       "and PORTAL_LOGS_URL.")
    try:
        store.write_pattern()
    except ValueError as exc:
        raise Conflict(f"PORTAL_LOGS_INDEX: {exc}") from None
    return store


class CollectorKeeper:
    """A collector per team cluster with applications (call ``sync`` in an app context)."""

    def __init__(self, settings, store: SearchLogStore, interval: float = 2.0):
        self.settings, self.store, self.interval = settings, store, interval
        self.collectors: dict[str, tuple[str, LogCollector]] = {}  # cluster name → (fingerprint, collector)
        self._template = False

    def sync(self, start: bool = True) -> None:
        """Read the clusters and applications again and make the collectors match; ``start=False`` makes them
        without threads (for ``collect_once``)."""
        if not self._template:  # indices made before it would have the wrong mappings: nothing is written first
            self.store.ensure_template()
            self._template = True
            log.info("log collector: index template for %s in place", self.store.write_pattern())
        followed = followed_namespaces(self.settings)
        clusters = {c.name: c for c in db.session.scalars(select(Cluster)) if c.auth_kind}
        for name in list(self.collectors):
            if name not in clusters or name not in followed:
                _, collector = self.collectors.pop(name)
                collector.stop()
                collector.positions.clear()
                log.info("log collector: %s has no applications or is no longer registered; stopped", name)
        for name, namespaces in followed.items():
            cluster = clusters.get(name)
            if cluster is None:
                continue
            target = cluster_target(cluster)
            print_ = fingerprint(target)
            known = self.collectors.get(name)
            if known and known[0] == print_:
                if known[1].namespaces != namespaces:
                    known[1].namespaces = frozenset(namespaces)
                    log.info("log collector: %s now follows %d namespaces", name, len(namespaces))
                continue
            if known:
                known[1].stop()
            try:
                api = KubernetesAPI.of(target, self.settings.http_timeout)
            except IntegrationError as exc:
                log.warning("log collector: cannot follow %s: %s", name, exc)
                continue
            collector = LogCollector(api, self.store, Positions(redis_connection(), name), namespaces,
                                     interval=self.interval)
            self.collectors[name] = (print_, collector.start() if start else collector)
            log.info("log collector: following %d namespaces of %s at %s", len(namespaces), name, api.api_url)
        db.session.rollback()  # end the read transaction: the next sync sees new rows

    def collect_once(self) -> dict[str, Round | str]:
        """One round of every collector, one after the other: cluster name → what it did, or its error."""
        done: dict[str, Round | str] = {}
        for name, (_, collector) in sorted(self.collectors.items()):
            try:
                done[name] = collector.collect()
            except Exception as exc:  # noqa: BLE001 - one cluster's failure is reported, the others go on
                done[name] = str(exc)[:300]
                log.warning("log collector %s: %s", name, done[name])
        return done

    def stop(self) -> None:
        for _, collector in self.collectors.values():
            collector.stop()
        self.collectors.clear()


def collect_logs(settings, stop: threading.Event, interval: float = 2.0, refresh: float = 30.0,
                 once: bool = False) -> dict[str, Round | str]:
    """Collect the applications' logs until ``stop`` is set (in an app context), or with ``once`` one round of
    every cluster, whose results are returned."""
    keeper = CollectorKeeper(settings, central_store(), interval)
    if once:
        keeper.sync(start=False)
        return keeper.collect_once()
    try:
        while True:
            try:
                keeper.sync()
            except IntegrationError as exc:  # the search engine away: the collectors running go on
                log.warning("log collector: cannot put the index template: %s; trying again", exc)
            except Exception:  # a database hiccup, likewise
                log.exception("log collector: reading the applications failed; trying again")
                db.session.rollback()
            if stop.wait(refresh):
                break
    finally:
        keeper.stop()
    return {}
