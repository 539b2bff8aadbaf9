"""Resource panel and team board on a cluster of 20,000 pods: server time, API-server requests, cache memory.

    .venv/bin/python -m benchmarks.resources [--pods 20000] [--requests 200] [--direct-requests 20]
                                             [--dashboards 200] [--window 60] [--no-metrics]

Starts throwaway PostgreSQL and Redis servers and a testbed cluster (a real control plane whose nodes are
KWOK's), migrates a database, seeds team dev with 50 applications and registers the cluster for the team,
then creates in the cluster the applications' 50 dev namespaces, each with a ResourceQuota and 10
Deployments of 40 replicas, and waits until every pod is ready. It runs the cluster cache as production does,
`flask watch-clusters` in a process of its own, and waits until every kind is synced. Then, through the Flask
test client as a dev member (the HTMX fragments the pages poll):

- times the resource panel of one application and the team board from the cache (again after gc.freeze(), as
  a prefork server can do once the app is loaded: the full garbage collections, each 50 ms or more, make the
  tail), and with the cache bypassed (PORTAL_CACHE_STALE_SECONDS=0: a direct LIST per request, nothing shared);
- counts the API server's read requests per minute (its own apiserver_request_total) with 1 and with 200
  open dashboards (threads polling the board every 10 s, as the kiosk does, served by 4 request threads as the
  Dockerfile's 4 gunicorn workers would), with the cache and without;
- measures the cache's memory: its keys in Redis and the watcher process's resident memory.

Targets (issue 8): p95 under 50 ms for the panel and the board; as many API-server requests with 200
dashboards as with 1.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import signal
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from flask_login import FlaskLoginClient
from kubernetes import config as kube_config
from flask_migrate import upgrade
from redis import Redis

from benchmarks.cluster_load import (cache_memory, memory_kib, populate, start_watcher, stop_watcher, wait_ready,
                                     wait_synced)
from benchmarks.dashboards import HTMX, RESOURCES, WebRequests, dashboards, per_minute
from benchmarks.list_pages import timed
from benchmarks.report import machine, row, servers
from integrations.cluster_cache import ClusterCache
from integrations.cluster_objects import BY_KEY, bytes_text
from portal import create_app
from portal.extensions import db
from portal.models import (Application, Build, BuildState, Deployment, DeploymentState, Membership,
                           MembershipStatus, Project, Role, Team, User)
from portal.services.clusters import ClusterInput, ensure_cluster_from_command_line
from portal.services.naming import ResourceNames
from testbed.cluster import Cluster

TARGET_MS = 50.0
SECRET_KEY = "benchmark"  # the web app's and the watcher's: the stored kubeconfig is encrypted with a key derived from it
CLUSTER = "bench"
TEAM, PROJECT = "dev", "shop"


# --- the portal's side: team dev, its applications, the cluster registered for it ---------------------


def seed(apps: int) -> tuple[int, list[str]]:
    """A dev member; ``apps`` applications in one project of team dev, each with a succeeded build and a healthy
    deployment to dev (so the board has badges to decide). Returns the member's id and the applications' names."""
    team = Team.by_name(TEAM)
    user = User(username="devmember", email="devmember@example.com", password_hash="unused")
    db.session.add(user)
    db.session.flush()
    db.session.add(Membership(user_id=user.id, team_id=team.id, role=Role.MEMBER, status=MembershipStatus.ACTIVE))
    project = Project(team_id=team.id, name=PROJECT, description="The shop.", created_by_id=user.id)
    db.session.add(project)
    db.session.flush()
    names = [f"app-{i:03d}" for i in range(apps)]
    for name in names:
        application = Application(project_id=project.id, team_id=team.id, name=name, template="python-web",
                                  state="ready", created_by_id=user.id)
        db.session.add(application)
        db.session.flush()
        build = Build(application_id=application.id, number=1, state=BuildState.SUCCEEDED, commit_sha="0" * 40)
        db.session.add(build)
        db.session.flush()
        db.session.add(Deployment(application_id=application.id, number=1, environment="dev", kind="deploy",
                                  state=DeploymentState.HEALTHY, build_id=build.id,
                                  image_repository=f"registry.example/{TEAM}/{PROJECT}-{name}", image_tag="1.0.0",
                                  sync_status="Synced", health_status="Healthy"))
    db.session.commit()
    return user.id, names


def register(cluster: Cluster) -> None:
    ensure_cluster_from_command_line(ClusterInput(name=CLUSTER, api_url=cluster.server, team_names=[TEAM],
                                                  kubeconfig=cluster.inline_kubeconfig()))


# --- timing pages --------------------------------------------------------------------------------


@contextmanager
def full_collections():
    """The durations (ms) of the full (generation 2) garbage collections of this process meanwhile."""
    durations: list[float] = []
    started = [0.0]

    def note(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                durations.append((time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(note)
    try:
        yield durations
    finally:
        gc.callbacks.remove(note)


def check(texts: list[str]):
    def check(resp) -> None:
        body = resp.get_data(as_text=True)
        assert resp.status_code == 200, f"status {resp.status_code}"
        missing = [t for t in texts if t not in body]
        assert not missing, f"answer lacks {missing}"
        assert "<html" not in body, "a whole page for an HTMX request"
    return check


@contextmanager
def settings(app, **overrides):
    """The app's settings with ``overrides`` for a while (what PORTAL_* variables would set)."""
    saved = app.config["PORTAL"]
    app.config["PORTAL"] = saved.replace(overrides)
    try:
        yield
    finally:
        app.config["PORTAL"] = saved


# --- the run ---------------------------------------------------------------------------------------


def run(args, database_url: str, redis_url: str, tmp: Path) -> None:
    per_namespace = args.pods // args.namespaces
    replicas = per_namespace // args.deployments
    per_namespace = args.deployments * replicas
    total = args.namespaces * per_namespace
    app = create_app({"secret_key": SECRET_KEY, "database_url": database_url, "redis_url": redis_url,
                      "cluster": "kubernetes", "ratelimit_storage_url": "memory://"})
    app.test_client_class = FlaskLoginClient
    redis = Redis.from_url(redis_url)
    cluster = Cluster(CLUSTER, tmp / "cluster", nodes=args.nodes, node_pods=math.ceil(total * 1.25 / args.nodes),
                      api_qps=args.api_qps, metrics=args.metrics)
    watcher = None
    try:
        start = time.perf_counter()
        cluster.start(timeout=300)
        started = time.perf_counter() - start
        with app.app_context():
            upgrade()
            user_id, names = seed(args.namespaces)
            register(cluster)
            namespaces = {ResourceNames(TEAM, PROJECT, name).namespace("dev"): name for name in names}
        api = kube_config.new_client_from_config(str(cluster.kubeconfig))
        start = time.perf_counter()
        populate(api, namespaces, args.deployments, replicas, f"registry.example/{TEAM}/{PROJECT}-{{app}}:1.0.0")
        created = time.perf_counter() - start
        ready, waited = wait_ready(api, total, args.ready_timeout)
        api.close()

        used_before = redis.info("memory")["used_memory"]
        log = tmp / "watch-clusters.log"
        watcher = start_watcher(database_url, redis_url, SECRET_KEY, log)
        cache = ClusterCache(redis, CLUSTER)
        synced = wait_synced(cache, watcher, log, args.metrics, timeout=600)
        status = cache.status()

        print(*machine(app), sep="\n")
        print(f"cluster:  {args.nodes} KWOK nodes of {cluster.node_pods} pods; controllers and scheduler at "
              f"{args.api_qps} requests/s; up in {started:.0f} s;\n          metrics-server "
              + ("on (KWOK works out every pod's usage for its scrapes: row (0) below shows the control plane's CPU "
                 "at rest)" if args.metrics else "off (--no-metrics)"))
        print(f"data:     team {TEAM}: {args.namespaces} applications; their dev namespaces each with a ResourceQuota "
              f"and {args.deployments} Deployments of {replicas} replicas: {args.namespaces * args.deployments} "
              f"Deployments, {total} pods")
        print(f"          objects created in {created:.1f} s; {ready} of {total} pods ready {waited:.0f} s later"
              + ("" if ready >= total else "  ** NOT ALL READY **"))
        print(f"cache:    `flask watch-clusters` synced every kind in {synced:.1f} s from its start"
              f"{' (pod usage read too)' if args.metrics else ''}:\n          "
              + ", ".join(f"{status.kinds[k].objects} {k}" for k in BY_KEY))

        with app.app_context():
            member = db.session.get(User, user_id)
            client = app.test_client(user=member)
            boards = [app.test_client(user=member) for _ in range(args.dashboards)]
            db.session.remove()
        panel_url = f"/t/{TEAM}/{PROJECT}/{names[0]}/resources"
        board_url = f"/teams/{TEAM}/board?every={args.every:.0f}"
        ready_text = f"{per_namespace}/{per_namespace} pods ready" if ready >= total else "pods ready"
        # (label, URL, what it must show, what says the figures came from the cache, or from a direct LIST)
        pages = (("resource panel", panel_url, [ready_text], "From the cluster cache",
                  "Listed from the API server just now"),
                 ("team board", board_url, [names[0], names[-1]], "figures from the cluster cache",
                  "figures read from the cluster just now"))
        print(f"\n{args.requests} timed requests per row after {args.warmup} warm-up ones, {args.direct_requests} after 2 "
              f"with a direct LIST; HTMX fragments (HX-Request: true)\nof {panel_url} and {board_url}.\n")
        print(f"{'user':<11} {'page (server time, ms)':<42}{'median':>8}{'p95':>8}{'p99':>8}{'min':>8}{'max':>8}")
        p95, pauses = {}, []
        for frozen in (False, True):
            if frozen:  # what a prefork server can do once the app is loaded: start-up objects left out of collections
                gc.collect()
                gc.freeze()
            for label, url, texts, cached, _ in pages:
                with full_collections() as collected:
                    times = timed(lambda: client.get(url, headers=HTMX), args.requests, args.warmup,
                                  check([*texts, cached]))
                p95[label, frozen] = statistics.quantiles(times, n=100, method="inclusive")[94]
                print(row("devmember", f"{label}, from the cache" + (", gc.freeze()" if frozen else ""), times))
                pauses.append(f"{label}{' frozen' if frozen else ''} {len(collected)} ({sum(collected):.0f} ms)")
        gc.unfreeze()
        print(f"{'':<11} (full garbage collections during a row, and their time: {', '.join(pauses)})")
        redis_bytes, redis_keys = cache_memory(redis, CLUSTER)
        used_after = redis.info("memory")["used_memory"]
        rss, peak = memory_kib(watcher.pid, "VmRSS"), memory_kib(watcher.pid, "VmHWM")
        # The cache bypassed: every request lists the API server itself, nothing shared between requests.
        web, sent = WebRequests(), []
        with settings(app, cache_stale_seconds=0.0, cache_direct_seconds=0.001):
            for label, url, texts, _, direct in pages:
                before = web.count
                times = timed(lambda: client.get(url, headers=HTMX), args.direct_requests, 2, check([*texts, direct]))
                sent.append(f"{label} {(web.count - before) / (args.direct_requests + 2):.0f}")
                print(row("devmember", f"{label}, direct LIST per request", times))
        print(f"{'':<11} (API-server requests per direct request: {', '.join(sent)})")

        metrics = ", metrics-server" if args.metrics else ""
        print(f"""
API-server requests per minute, over {args.window:.0f} s of boards each polled every {args.every:.0f} s (staggered; \
a test client each),
served by {args.web_threads} request threads (the Dockerfile's gunicorn runs 4 sync workers).
LIST, GET, WATCH: the read requests the API server completed (its apiserver_request_total; a WATCH counts when
  it ends, the control plane's own too) on {', '.join(sorted(RESOURCES))}.
usage: LISTs of pods of metrics.k8s.io, counted by metrics-server (the API server proxies them uncounted).
all: every request the two completed, the control plane's own included.
web/poll: requests this web process sent to the API server, per poll served.
watcher: watches the cache's watcher resumed after their timeout / lists it made (from its status).
polls: served/due. median, p95: their server time, ms.
cluster, web: CPU cores used on average by the control plane (etcd, API server, controllers, scheduler, KWOK{metrics})
  and by this web process.
""")
        print(f"{'case':<42}{'LIST':>6}{'GET':>5}{'WATCH':>6}{'usage':>6}{'all':>7}{'web/poll':>9}{'watcher':>8}"
              f"{'polls':>10}{'fail':>5}{'median':>7}{'p95':>7}{'cluster':>8}{'web':>5}")
        windows = {}

        def measure(key: str, label: str, n: int, watching: bool) -> None:
            w = windows[key] = dashboards(boards[:n], board_url, args.every, args.window, cluster, args.web_threads,
                                          web, cache if watching else None)
            r = per_minute(w.requests, w.seconds)
            served = len(w.times) + w.failed
            times = (f"{statistics.median(w.times):>7.0f}{statistics.quantiles(w.times, n=100, method='inclusive')[94]:>7.0f}"
                     if len(w.times) > 1 else f"{'-':>7}{'-':>7}")
            print(f"{label:<42}{r['LIST']:>6.0f}{r['GET']:>5.0f}{r['WATCH']:>6.0f}{r['usage']:>6.0f}{r['everything']:>7.0f}"
                  f"{(f'{w.web_requests / served:.0f}' if served else '-'):>9}"
                  f"{(f'{w.watcher[0]}/{w.watcher[1]}' if w.watcher else '-'):>8}{f'{served}/{w.due}':>10}{w.failed:>5}"
                  f"{times}{w.cluster_cores:>8.2f}{w.web_cores:>5.2f}", flush=True)

        measure("a", "(a) cache, 1 board", 1, True)
        measure("b", f"(b) cache, {args.dashboards} boards", args.dashboards, True)
        stop_watcher(watcher)
        time.sleep(2)  # its watches end now, not in the next window
        measure("0", "(0) no cache, no board: the control plane", 0, False)
        with settings(app, cache_stale_seconds=0.0):
            shared = app.config["PORTAL"].cache_direct_seconds
            measure("c", f"(c) no cache, {args.dashboards} boards, shared {shared:g} s", args.dashboards, False)
        with settings(app, cache_stale_seconds=0.0, cache_direct_seconds=0.001):
            measure("d", f"(d) no cache, {args.unshared} boards, nothing shared", args.unshared, False)

        print(f"\ncache memory: {bytes_text(redis_bytes)} in Redis for {redis_keys} keys (sum of MEMORY USAGE); Redis "
              f"used_memory {bytes_text(used_before)} before the watcher,\n              {bytes_text(used_after)} after "
              f"its sync; the watcher process: {rss / 1024:.0f} MiB resident, {peak / 1024:.0f} MiB at its peak.")
        print("load:     {:.2f} {:.2f} {:.2f} (1, 5, 15 min, at the end)".format(*os.getloadavg()))
        print(f"Target: p95 < {TARGET_MS:.0f} ms; as many API-server requests with {args.dashboards} boards as with 1.")
        for label, *_ in pages:
            value = p95[label, False]
            print(f"  {label + ', from the cache':<36} p95 {value:6.1f} ms  {'met' if value < TARGET_MS else 'MISSED'}"
                  f"  (after gc.freeze(): {p95[label, True]:.1f} ms)")
        a, b = windows["a"], windows["b"]
        ra, rb = per_minute(a.requests, a.seconds), per_minute(b.requests, b.seconds)
        print(f"  {'requests/min, 1 → ' + str(args.dashboards) + ' boards':<36} sent by the web process {a.web_requests}"
              f" → {b.web_requests}  {'met' if a.web_requests == b.web_requests == 0 else 'MISSED'}\n"
              f"  {'':<36} at the API servers: LIST+GET {ra['LIST'] + ra['GET']:.0f} → {rb['LIST'] + rb['GET']:.0f}, "
              f"usage {ra['usage']:.0f} → {rb['usage']:.0f}, WATCH {ra['WATCH']:.0f} → {rb['WATCH']:.0f}\n"
              f"  {'':<36} the watcher's own: watches resumed {a.watcher[0]} → {b.watcher[0]}, lists {a.watcher[1]} → "
              f"{b.watcher[1]}")
        with app.app_context():
            db.engine.dispose()
    finally:
        if watcher is not None:
            stop_watcher(watcher)
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20000, help="pods in all (default 20000)")
    parser.add_argument("--namespaces", type=int, default=50, help="applications, one dev namespace each (default 50)")
    parser.add_argument("--deployments", type=int, default=10, help="Deployments per namespace (default 10)")
    parser.add_argument("--nodes", type=int, default=50, help="KWOK nodes (default 50)")
    parser.add_argument("--api-qps", type=int, default=500, help="requests/s of the controllers and scheduler")
    parser.add_argument("--metrics", action=argparse.BooleanOptionalAction, default=True,
                        help="run metrics-server, so the panels show usage (default on)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests before each page (default 20)")
    parser.add_argument("--direct-requests", type=int, default=20,
                        help="timed requests per page with a direct LIST each (default 20)")
    parser.add_argument("--dashboards", type=int, default=200, help="simulated open boards (default 200)")
    parser.add_argument("--unshared", type=int, default=10,
                        help="simulated boards without cache nor sharing (default 10: each poll lists every namespace)")
    parser.add_argument("--web-threads", type=int, default=4,
                        help="requests served at once, as gunicorn's workers (default 4, as the Dockerfile)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between two polls of a board (default 10)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds API requests are counted (default 60)")
    parser.add_argument("--ready-timeout", type=float, default=1800.0, help="longest wait for the pods (default 1800)")
    args = parser.parse_args()
    # Ctrl-C (even when started in the background, where SIGINT comes ignored) and SIGTERM stop everything started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with servers(False) as (url, redis_url, tmp):
        run(args, url, redis_url, tmp)


if __name__ == "__main__":
    main()
