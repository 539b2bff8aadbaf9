"""The pod-log store against the testbed's API server: KWOK serves `kubectl logs` from files we write."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from kubernetes import client

from integrations.cluster import ClusterTarget
from integrations.kubernetes_api import KubernetesAPI
from integrations.logs import LogQuery
from integrations.pod_logs import PodLogStore
from tests.real_servers import wait_for
from tests.test_cluster_watch import deployment


@pytest.fixture
def store(control_plane):
    target = ClusterTarget(name="test", api_url=control_plane.server, kubeconfig=control_plane.inline_kubeconfig())
    api = KubernetesAPI.of(target, timeout=10.0)
    yield PodLogStore(api)
    api.close()


@pytest.fixture
def logs(control_plane):
    """Append CRI-format lines to the file every pod's current (or previous) container logs."""
    current, previous = control_plane.pod_logs

    def write(*lines: tuple[str, str], stream: str = "stdout", previous_container: bool = False) -> None:
        with open(previous if previous_container else current, "a") as f:
            for stamp, text in lines:
                f.write(f"{stamp} {stream} F {text}\n")

    yield write
    current.write_text("")
    previous.write_text("")


@pytest.fixture
def pods(kube_api, namespace):
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, deployment("web", 2))
    core = client.CoreV1Api(kube_api)
    wait_for(lambda: sum(1 for p in core.list_namespaced_pod(namespace).items
                         if p.status.phase == "Running") == 2, 60, "two running pods")
    return sorted(p.metadata.name for p in core.list_namespaced_pod(namespace).items)


def test_lines_of_every_replica_merge_by_time_and_filter_by_text(store, logs, pods, namespace):
    logs(("2026-12-07T10:00:00.000000001Z", "starting"), ("2026-12-07T10:00:01Z", "GET /health 200"),
         ("2026-12-07T10:00:01Z", "GET /orders 500 boom"), ("2026-12-07T10:00:02.5Z", "done"))
    page = store.query(LogQuery(namespaces=(namespace,)))
    assert len(page.lines) == 8  # both replicas log the same file here
    assert [line.message for line in page.lines[:2]] == ["starting", "starting"]
    assert {line.pod for line in page.lines} == set(pods)
    assert [line.sort for line in page.lines] == sorted(line.sort for line in page.lines)
    assert page.lines[0].timestamp == datetime(2026, 12, 7, 10, 0, 0, tzinfo=timezone.utc)

    errors = store.query(LogQuery(namespaces=(namespace,), text="500 orders", pods=(pods[0],)))
    assert [line.message for line in errors.lines] == ["GET /orders 500 boom"]
    assert store.query(LogQuery(namespaces=(namespace,), text='"500 orders"')).lines == []


def test_a_tail_returns_each_new_line_once_even_within_one_second(store, logs, pods, namespace):
    logs(("2026-12-07T11:00:00.1Z", "one"), ("2026-12-07T11:00:00.1Z", "two"))
    query = LogQuery(namespaces=(namespace,), pods=(pods[0],))
    first = store.tail(query, None)
    assert [line.message for line in first.lines] == ["one", "two"]
    assert store.tail(query, first.cursor).lines == []

    logs(("2026-12-07T11:00:00.1Z", "three"), ("2026-12-07T11:00:00.9Z", "four"))  # same second, same stamp
    second = store.tail(query, first.cursor)
    assert [line.message for line in second.lines] == ["three", "four"]
    assert store.tail(query, second.cursor).lines == []


def test_the_previous_container_s_log_is_read_apart(store, logs, pods, namespace):
    logs(("2026-12-07T12:00:00Z", "now"))
    logs(("2026-12-07T11:59:00Z", "OOM: killed"), previous_container=True)
    query = LogQuery(namespaces=(namespace,), pods=(pods[0],))
    assert [line.message for line in store.query(query).lines] == ["now"]
    assert [line.message for line in store.query(query, previous=True).lines] == ["OOM: killed"]


def test_another_namespace_s_pods_are_not_read(store, logs, pods):
    logs(("2026-12-07T13:00:00Z", "secret-ish"))
    assert store.query(LogQuery(namespaces=("kube-system",))).lines == []
    assert store.query(LogQuery(namespaces=())).lines == []


def test_levels_and_highlights_are_found_in_the_lines_themselves(store, logs, pods, namespace):
    logs(("2026-12-07T14:00:00Z", "ERROR payment failed"), ("2026-12-07T14:00:01Z", '{"level":"warning","msg":"slow"}'),
         ("2026-12-07T14:00:02Z", "[info] Payment ok"), ("2026-12-07T14:00:03Z", "an error-free line, level unknown"))
    query = LogQuery(namespaces=(namespace,), pods=(pods[0],))
    assert [line.level for line in store.query(query).lines] == ["error", "warn", "info", ""]
    assert [line.message for line in store.query(replace(query, levels=("warn", "error"))).lines] \
        == ["ERROR payment failed", '{"level":"warning","msg":"slow"}']
    [found] = store.query(replace(query, text="PAYMENT failed")).lines
    assert found.highlighted == "ERROR \ue000payment\ue001 \ue000failed\ue001"
    streams = store.query(replace(query, streams=("stderr",)))
    assert len(streams.lines) == 4 and "all streams are shown" in streams.notes[0]
