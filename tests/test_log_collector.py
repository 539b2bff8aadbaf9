"""The built-in log collector against real servers: KWOK pods on the testbed's control plane (whose logs are
files the tests write, the same for every pod), the testbed's OpenSearch node, and Redis for the positions;
the portal's read path (``OpenSearchLogStore`` and the logs service) finds what it wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from datetime import datetime, timedelta, timezone

import pytest
import redis
from kubernetes import client

from integrations.cluster import ClusterTarget
from integrations.kubernetes_api import KubernetesAPI
from integrations.errors import Unavailable
from integrations.log_collector import Container, LogCollector, Positions, document
from integrations.logs import LogQuery
from integrations.search_logs import ElasticsearchLogStore, OpenSearchLogStore
from portal.config import env_name
from portal.models import Team
from portal.services.clusters import ClusterInput, ensure_cluster_from_command_line
from portal.services.log_collector import followed_namespaces
from portal.services.logs import LogFilters, read_logs
from portal.services.naming import ResourceNames
from portal.services.providers import current_providers
from testbed.process import free_port
from tests.factories import ApplicationFactory, ProjectFactory
from tests.real_servers import wait_for

BOTH = ("web", "sidecar")
ROOT = Path(__file__).resolve().parent.parent


def deployment(name: str, replicas: int, containers: tuple[str, ...] = BOTH) -> dict:
    labels = {"app.kubernetes.io/name": name, "tier": "front"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": c, "image": f"registry.local/{name}-{c}:1"} for c in containers]}}}}


def running_pods(kube_api, namespace: str, n: int) -> list[client.V1Pod]:
    core = client.CoreV1Api(kube_api)

    def ready():
        pods = [p for p in core.list_namespaced_pod(namespace).items
                if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        return len(pods) == n and sorted(pods, key=lambda p: p.metadata.name)

    return wait_for(ready, 60, f"{n} running pods in {namespace}")


def start(kube_api, namespace: str, replicas: int, containers: tuple[str, ...] = BOTH) -> list[client.V1Pod]:
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, deployment("web", replicas, containers))
    return running_pods(kube_api, namespace, replicas)


@pytest.fixture
def logs(control_plane):
    """``logs(message, ...)`` appends lines stamped now (strictly later each time, or ``same=True``: one stamp for
    all) to the file every pod's containers log, or its previous container's; returns the stamps."""
    files = control_plane.pod_logs
    for f in files:
        f.write_text("")
    last = [datetime.now(timezone.utc) - timedelta(seconds=5)]

    def write(*messages: str, previous: bool = False, same: bool = False) -> list[str]:
        stamps = []
        with open(files[1] if previous else files[0], "a") as f:
            for i, message in enumerate(messages):
                if not (same and i):
                    last[0] = max(datetime.now(timezone.utc), last[0] + timedelta(microseconds=1))
                stamp = last[0].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                f.write(f"{stamp} stdout F {message}\n")
                stamps.append(stamp)
        return stamps

    yield write
    for f in files:
        f.write_text("")


@pytest.fixture
def api(control_plane):
    target = ClusterTarget(name="test", api_url=control_plane.server, kubeconfig=control_plane.inline_kubeconfig())
    api = KubernetesAPI.of(target, timeout=10.0)
    yield api
    api.close()


@pytest.fixture
def store(search_node):
    """A store over a fresh index pattern of the OpenSearch node, with its template."""
    prefix = f"collected-{uuid.uuid4().hex[:8]}"
    store = OpenSearchLogStore.connect(search_node.url, f"{prefix}*")
    store.ensure_template()
    yield store
    store.client.indices.delete(index=f"{prefix}-*")
    store.client.indices.delete_index_template(name=f"portal-logs-{prefix}")


@pytest.fixture
def positions(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    positions = Positions(connection, f"test-{uuid.uuid4().hex[:6]}")
    yield positions
    positions.clear()
    connection.close()


@pytest.fixture
def collector(api, store, positions, namespace):
    made = []

    def make(**options) -> LogCollector:
        options.setdefault("namespaces", {namespace})
        made.append(LogCollector(api, store, positions, **options))
        return made[-1]

    yield make
    for c in made:
        c.stop()


def documents(store: OpenSearchLogStore, namespace: str) -> list[dict]:
    """Every document of ``namespace``, as stored, with its _id."""
    store.client.cluster.health(index=store.index, wait_for_status="yellow")
    store.client.indices.refresh(index=store.index)
    found = store.client.search(index=store.index, body={
        "size": 1000, "query": {"term": {"kubernetes.namespace_name": namespace}},
        "sort": [{"@timestamp": "asc"}, {"log_id": "asc"}]})
    return [{**hit["_source"], "_id": hit["_id"]} for hit in found["hits"]["hits"]]


def count(store: OpenSearchLogStore, namespace: str) -> int:
    """How many documents ``namespace`` has, once the index the collector may just have made is searchable
    (-1 while its shards are still starting: the index can appear between the health check and the count)."""
    from opensearchpy import exceptions

    store.client.cluster.health(index=store.index, wait_for_status="yellow")
    try:
        store.client.indices.refresh(index=store.index)
        return store.client.count(index=store.index, body={
            "query": {"term": {"kubernetes.namespace_name": namespace}}})["count"]
    except exceptions.TransportError as exc:
        if exc.status_code == 503:
            return -1
        raise


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_writing_a_line_again_replaces_it_and_a_malformed_document_is_refused_not_retried(request, engine):
    node = request.getfixturevalue("search_node" if engine == "opensearch" else "elasticsearch_node")
    kind = OpenSearchLogStore if engine == "opensearch" else ElasticsearchLogStore
    prefix = f"written-{uuid.uuid4().hex[:8]}"
    store = kind.connect(node.url, f"{prefix}*")
    store.ensure_template()
    store.ensure_template()  # idempotent
    try:
        web = Container("dev-shop", "web-1", "web", labels={"app_kubernetes_io/name": "web"})
        lines = [document(web, "2026-12-06T23:59:59.999999999Z", 0, "late"),
                 document(web, "2026-12-07T00:00:00.000000001Z", 0, "WARN early"),
                 document(web, "2026-12-07T00:00:00.000000001Z", 1, "same time")]
        assert store.write(lines, refresh=True) == [] and store.write(lines[1:], refresh=True) == []
        assert [line.message for line in store.query(LogQuery(namespaces=("dev-shop",))).lines] == [
            "late", "WARN early", "same time"]
        assert store.query(LogQuery(namespaces=("dev-shop",), levels=("warn",))).lines[0].level == "warn"
        indices = store.client.indices.get(index=f"{prefix}-*")
        assert sorted(indices) == [f"{prefix}-2026.12.06", f"{prefix}-2026.12.07"]

        broken = {**document(web, "2026-12-07T00:00:01Z", 0, "x"), "kubernetes": "not an object"}
        (reason,) = store.write([broken, document(web, "2026-12-07T00:00:02Z", 0, "fine")], refresh=True)
        assert reason.startswith(broken["log_id"]) and "kubernetes" in reason  # the engine's own words
        assert len(store.query(LogQuery(namespaces=("dev-shop",))).lines) == 4
    finally:
        for name in store.client.indices.get(index=f"{prefix}-*"):  # Elasticsearch deletes no wildcard
            store.client.indices.delete(index=name)
        store.client.indices.delete_index_template(name=f"portal-logs-{prefix}")

    away = kind.connect(f"http://127.0.0.1:{free_port()}", f"{prefix}*", timeout=2.0)
    with pytest.raises(Unavailable, match="cannot reach the search engine"):
        away.write(lines)
    with pytest.raises(ValueError, match="use a prefix"):
        kind.connect(node.url, "*").ensure_template()


def test_every_container_of_every_pod_arrives_in_fluent_bit_s_layout_and_the_panel_reads_it(
        kube_api, namespace, logs, store, collector):
    pods = start(kube_api, namespace, 2)
    stamps = logs("starting", '{"level": "WARNING", "msg": "slow query"}', "ERROR db down")
    logs("same a", "same b", same=True)

    done = collector().collect()
    assert (done.lines, done.containers) == (5 * 4, 4)
    stored = documents(store, namespace)
    assert len(stored) == 20 and len({d["_id"] for d in stored}) == 20

    first = next(d for d in stored if d["kubernetes"]["pod_name"] == pods[0].metadata.name
                 and d["kubernetes"]["container_name"] == "sidecar")
    assert first["log"] == "starting" and first["@timestamp"].startswith(stamps[0][:26])
    assert first["kubernetes"] == {
        "namespace_name": namespace, "pod_name": pods[0].metadata.name, "pod_id": pods[0].metadata.uid,
        "container_name": "sidecar", "container_image": "registry.local/web-sidecar:1",
        "host": pods[0].spec.node_name, "labels": {"app_kubernetes_io/name": "web", "tier": "front",
                                                   "pod-template-hash": pods[0].metadata.labels["pod-template-hash"]}}
    assert first["_id"] == first["log_id"] and "stream" not in first and "level" not in first
    assert store.write_index(first["@timestamp"]) == f"{store.index[:-1]}-{stamps[0][:10].replace('-', '.')}"

    # The portal's read path: every pod and container, levels found, equal timestamps in their order.
    lines = store.query(LogQuery(namespaces=(namespace,), limit=50)).lines
    assert len(lines) == 20
    assert {(line.pod, line.container) for line in lines} == {(p.metadata.name, c) for p in pods for c in BOTH}
    assert {line.message: line.level for line in lines}["ERROR db down"] == "error"
    assert {line.message: line.level for line in lines}['{"level": "WARNING", "msg": "slow query"}'] == "warn"
    for pod in pods:
        mine = [line.message for line in lines if line.pod == pod.metadata.name and line.container == "web"]
        assert mine[-2:] == ["same a", "same b"]
    errors = store.query(LogQuery(namespaces=(namespace,), levels=("error",), text="db"))
    assert [line.message for line in errors.lines] == ["ERROR db down"] * 4


def test_lines_written_later_arrive_once_while_the_collector_runs(kube_api, namespace, logs, store, collector):
    start(kube_api, namespace, 1)
    logs("one", "two")
    running = collector(interval=0.2).start()
    query = LogQuery(namespaces=(namespace,), limit=100)
    wait_for(lambda: count(store, namespace) == 4, 30, "the first lines")
    first = store.tail(query, None)
    assert len(first.lines) == 4

    logs("three", "four", "five")
    seen = []

    def arrived():
        page = store.tail(query, arrived.cursor)
        seen.extend(line.message for line in page.lines)
        arrived.cursor = page.cursor
        return len(seen) >= 6

    arrived.cursor = first.cursor
    wait_for(arrived, 30, "the later lines")
    assert sorted(seen) == sorted(["three", "four", "five"] * 2)
    rounds = running.rounds
    wait_for(lambda: running.rounds >= rounds + 3, 30, "three more rounds")
    assert count(store, namespace) == 10 and store.tail(query, arrived.cursor).lines == []


def test_a_restarted_collector_resumes_where_it_stopped_without_duplicates_or_gaps(
        kube_api, namespace, logs, store, collector, positions):
    start(kube_api, namespace, 1)
    logs("before 1", "before 2", "before 3")
    assert collector().collect().lines == 6

    logs("while down 1", "while down 2")  # nobody collecting
    again = collector()
    assert again.collect().lines == 4  # only what is new: nothing read twice
    logs("after")
    assert again.collect().lines == 2
    stored = documents(store, namespace)
    assert len(stored) == 12 and sorted({d["log"] for d in stored}) == sorted(
        ["before 1", "before 2", "before 3", "while down 1", "while down 2", "after"])

    positions.clear()  # the positions lost: everything is read again, and replaces itself
    assert collector().collect().lines == 12
    assert count(store, namespace) == 12


def test_a_new_pod_is_followed_and_a_deleted_one_forgotten(kube_api, namespace, logs, store, collector, positions):
    (old,) = start(kube_api, namespace, 1)
    logs("hello")
    follower = collector()
    assert follower.collect().lines == 2

    client.AppsV1Api(kube_api).patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 2}})
    (new,) = [p for p in running_pods(kube_api, namespace, 2) if p.metadata.name != old.metadata.name]
    assert follower.collect().lines == 2  # the new pod's two containers: the old one's nothing again
    assert count(store, namespace) == 4
    assert {line.pod for line in store.query(LogQuery(namespaces=(namespace,))).lines} == {
        old.metadata.name, new.metadata.name}

    client.CoreV1Api(kube_api).delete_namespaced_pod(old.metadata.name, namespace, grace_period_seconds=0)
    wait_for(lambda: old.metadata.name not in {p.metadata.name for p in client.CoreV1Api(kube_api)
                                               .list_namespaced_pod(namespace).items}, 30, "the old pod gone")
    follower.collect()
    assert not any(key.startswith(old.metadata.name) for key in positions.load(namespace))
    assert {f"{new.metadata.name}/{c}" for c in BOTH} <= set(positions.load(namespace))


def test_only_the_namespaces_given_are_collected(kube_api, namespace, logs, store, collector, positions):
    other = f"{namespace[:50]}-other"
    client.CoreV1Api(kube_api).create_namespace({"metadata": {"name": other}})
    try:
        start(kube_api, namespace, 1, ("web",))
        start(kube_api, other, 1, ("web",))
        logs("mine or not")
        follower = collector()
        assert follower.collect().lines == 1
        assert (count(store, namespace), count(store, other)) == (1, 0)

        follower.namespaces = frozenset({namespace, other})
        assert follower.collect().lines == 1
        assert count(store, other) == 1 and positions.load(other)
        follower.namespaces = frozenset({namespace})  # the application deleted: its positions go
        logs("later")
        assert follower.collect().lines == 1
        assert (count(store, namespace), count(store, other)) == (2, 1)
        assert positions.load(other) == {} and positions.namespaces() == {namespace}
    finally:
        client.CoreV1Api(kube_api).delete_namespace(other)


def test_after_a_restart_the_previous_container_s_last_lines_are_read(kube_api, namespace, logs, store, collector):
    (pod,) = start(kube_api, namespace, 1, ("web",))
    logs("up")
    follower = collector()
    assert follower.collect().lines == 1

    logs("last words", "OOM", previous=True)  # written by the instance that then died
    client.CoreV1Api(kube_api).patch_namespaced_pod(pod.metadata.name, namespace, {"metadata": {"annotations": {
        "testbed.portal.dev/fail": "OOMKilled"}}})
    wait_for(lambda: client.CoreV1Api(kube_api).read_namespaced_pod(pod.metadata.name, namespace)
             .status.container_statuses[0].restart_count == 1, 30, "the container restarted")
    logs("up again")
    assert follower.collect().lines == 3
    assert [d["log"] for d in documents(store, namespace)] == ["up", "last words", "OOM", "up again"]
    assert follower.collect().lines == 0


def test_a_burst_is_read_in_chunks_without_loss_and_a_second_too_big_for_any_is_skipped_with_a_warning(
        kube_api, namespace, logs, store, collector, caplog):
    start(kube_api, namespace, 1, ("web",))
    burst = [f"burst line {i:03d} " + "x" * 40 for i in range(40)]  # 3.4 KiB, within a second or two
    logs(*burst)
    follower = collector(chunk_bytes=1024, max_chunk_bytes=4096, chunks_per_round=2, batch_size=7)
    first = follower.collect()
    assert 0 < first.lines < 40 and first.behind == 1  # two chunks a round
    while (done := follower.collect()).lines or done.behind:
        pass
    assert [d["log"] for d in documents(store, namespace)] == burst
    assert "skipped" not in caplog.text

    crowded = logs(*[f"crowded {i:03d} " + "y" * 80 for i in range(60)], same=True)  # 7.5 KiB at one time
    wait_for(lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") != crowded[0][:19], 3,
             "the next second")
    logs("afterwards")
    while (done := follower.collect()).lines or done.behind:
        pass
    stored = [d["log"] for d in documents(store, namespace)]
    assert stored[:40] == burst and stored[-1] == "afterwards"
    assert 0 < sum(1 for line in stored if line.startswith("crowded")) < 60  # the biggest chunk's, then skipped
    assert "wrote more than 4096 bytes in one second" in caplog.text


# --- the portal: what is followed, and `flask collect-logs` --------------------------------------------------

@pytest.fixture
def app_overrides(search_node):
    return {"cluster": "kubernetes", "environments": "dev,prod", "logs": "opensearch", "logs_url": search_node.url,
            "logs_index": f"portal-{uuid.uuid4().hex[:8]}*"}


@pytest.fixture
def made_namespaces(kube_api):
    core, made = client.CoreV1Api(kube_api), []

    def make(*names: str) -> None:
        for name in names:
            core.create_namespace({"metadata": {"name": name}})
            made.append(name)

    yield make
    for name in made:
        core.delete_namespace(name)


@pytest.fixture
def portal_store(app):
    store = current_providers().logs
    yield store
    store.client.indices.delete(index=f"{store.index[:-1]}-*")
    store.client.indices.delete_index_template(name=f"portal-logs-{store.index[:-1]}", ignore=404)


def test_collect_logs_follows_every_application_s_environments_on_its_team_s_cluster_and_nothing_else(
        app, control_plane, kube_api, logs, made_namespaces, portal_store, dev_member):
    ensure_cluster_from_command_line(ClusterInput(name="dev-kwok", api_url=control_plane.server, team_names=["dev"],
                                                  kubeconfig=control_plane.inline_kubeconfig()))
    ensure_cluster_from_command_line(ClusterInput(name="ops-away", api_url=f"https://127.0.0.1:{free_port()}",
                                                  team_names=["ops"], token="ops-secret-token"))
    application = ApplicationFactory()
    ops_application = ApplicationFactory(project=ProjectFactory(team=Team.by_name("ops")))
    names = ResourceNames("dev", application.project.name, application.name)
    ops_names = ResourceNames("ops", ops_application.project.name, ops_application.name)
    assert followed_namespaces(app.config["PORTAL"]) == {
        "dev-kwok": {names.namespace("dev"), names.namespace("prod")},
        "ops-away": {ops_names.namespace("dev"), ops_names.namespace("prod")}}

    foreign = f"foreign-{uuid.uuid4().hex[:6]}"  # on the same cluster, no application's
    made_namespaces(names.namespace("dev"), names.namespace("prod"), foreign)
    start(kube_api, names.namespace("dev"), 1, ("web",))
    start(kube_api, foreign, 1, ("web",))
    logs("GET /health 200", "ERROR payment refused")

    runner = app.test_cli_runner()
    result = runner.invoke(args=["collect-logs", "--once"])
    # The cluster that cannot be reached is reported (without its token); the other one is collected.
    assert result.exit_code == 1, result.output
    assert "dev-kwok: 2 lines" in result.output and "ops-away: kubernetes: cannot reach" in result.output
    assert "ops-secret-token" not in result.output
    assert (count(portal_store, names.namespace("dev")), count(portal_store, foreign)) == (2, 0)

    # The panel's read path finds them, with their levels.
    page = read_logs(dev_member, application, LogFilters(environment="dev"))
    assert [(line.message, line.level) for line in page.lines] == [("GET /health 200", ""),
                                                                   ("ERROR payment refused", "error")]
    # Positions kept in Redis: the next run sends nothing again.
    assert "dev-kwok: 0 lines" in runner.invoke(args=["collect-logs", "--once"]).output
    assert count(portal_store, names.namespace("dev")) == 2


@pytest.mark.parametrize(("setting", "said"), [({"logs": "none"}, "set PORTAL_LOGS=opensearch"),
                                                ({"logs_index": "*"}, "PORTAL_LOGS_INDEX: cannot write to")])
def test_collect_logs_refuses_to_run_without_a_search_store_to_write_to(app, setting, said):
    app.config["PORTAL"] = app.config["PORTAL"].replace(setting)
    app.extensions.pop("providers", None)
    result = app.test_cli_runner().invoke(args=["collect-logs", "--once"])
    assert result.exit_code == 2 and said in result.output


def test_the_collect_logs_process_ships_lines_as_they_come_and_stops_on_sigterm(
        app, control_plane, kube_api, logs, made_namespaces, portal_store, redis_server, tmp_path):
    kubeconfig = control_plane.inline_kubeconfig()
    ensure_cluster_from_command_line(ClusterInput(name="dev-kwok", api_url=control_plane.server, team_names=["dev"],
                                                  kubeconfig=kubeconfig))
    application = ApplicationFactory()
    namespace = ResourceNames("dev", application.project.name, application.name).namespace("dev")
    made_namespaces(namespace)
    start(kube_api, namespace, 1, ("web",))
    logs("first")

    settings = app.config["PORTAL"]
    env = {**os.environ, env_name("database_url"): app.config["SQLALCHEMY_DATABASE_URI"],
           env_name("redis_url"): redis_server.url, env_name("secret_key"): "test-secret"}
    for key in ("cluster", "environments", "logs", "logs_url", "logs_index"):
        env[env_name(key)] = str(getattr(settings, key))
    output = tmp_path / "collect-logs.log"
    with open(output, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "collect-logs", "--interval", "0.2"],
                                cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: count(portal_store, namespace) == 1, 60, "the first line shipped")
        logs("second")
        wait_for(lambda: count(portal_store, namespace) == 2, 30, "the second line shipped")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    said = output.read_text()
    assert "following 2 namespaces of dev-kwok at " + control_plane.server in said
    key = next(line.split(": ", 1)[1] for line in kubeconfig.splitlines() if "client-key-data" in line)
    assert key not in said and "Traceback" not in said
