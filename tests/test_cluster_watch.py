"""The cluster cache's list-then-watch against a real API server with KWOK pods, into a real Redis."""

from __future__ import annotations

import base64
import threading
import uuid

import pytest
import redis
import requests
from kubernetes import client

from integrations.cluster import ClusterTarget
from integrations.cluster_cache import ClusterCache
from integrations.cluster_objects import BY_KEY, Watched
from integrations.cluster_watch import ClusterWatcher, KindWatch, list_all, list_namespace
from integrations.kubernetes_api import Kind, KubernetesAPI
from tests.real_servers import wait_for


@pytest.fixture
def api(control_plane):
    target = ClusterTarget(name="test", api_url=control_plane.server, kubeconfig=control_plane.inline_kubeconfig())
    api = KubernetesAPI.of(target, timeout=10.0, pool_size=12)
    yield api
    api.close()


@pytest.fixture
def cache(redis_server):
    cache = ClusterCache(redis.Redis.from_url(redis_server.url), f"test-{uuid.uuid4().hex[:6]}")
    yield cache
    cache.clear()


@pytest.fixture
def watcher(api, cache):
    watcher = ClusterWatcher(api, cache, watch_seconds=30, usage_interval=2.0, heartbeat=0.5).start()
    yield watcher
    watcher.stop()


def deployment(name: str, replicas: int) -> dict:
    labels = {"app.kubernetes.io/name": name}
    container = {"name": "web", "image": f"registry.local/{name}:1",
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                               "limits": {"cpu": "500m", "memory": "128Mi"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


def ready_pods(cache: ClusterCache, namespace: str) -> list[dict]:
    found, _ = cache.read([namespace], ["pods"])
    return [p for p in found[namespace]["pods"] if p["ready"] and not p["deleting"]]


def scale(kube_api, namespace: str, name: str, replicas: int) -> None:
    client.AppsV1Api(kube_api).patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})


def test_a_deployment_scaled_up_and_down_is_followed_by_the_cache(kube_api, namespace, watcher, cache):
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, deployment("web", 2))
    wait_for(lambda: len(ready_pods(cache, namespace)) == 2, 60, "two ready pods in the cache")

    found, status = cache.read([namespace], ["deployments", "replicasets", "pods"])
    (web,) = found[namespace]["deployments"]
    assert (web["name"], web["desired"], web["images"]) == ("web", 2, ["registry.local/web:1"])
    (replicaset,) = found[namespace]["replicasets"]
    assert replicaset["deployment"] == "web"
    pod = found[namespace]["pods"][0]
    assert pod["owner"] == replicaset["name"] and pod["node"].startswith("test-node-")
    assert pod["requests"] == {"cpu": 0.1, "memory": 64 * 1024 ** 2}
    assert pod["limits"] == {"cpu": 0.5, "memory": 128 * 1024 ** 2}
    assert "env" not in str(pod) and "annotations" not in pod  # only the fields the panels use

    scale(kube_api, namespace, "web", 4)
    wait_for(lambda: len(ready_pods(cache, namespace)) == 4, 60, "four ready pods after scaling up")
    scale(kube_api, namespace, "web", 1)
    # Deleted pods leave the cache (KWOK removes them at once; none may linger as "deleting" forever).
    wait_for(lambda: len(cache.read([namespace], ["pods"])[0][namespace]["pods"]) == 1, 60,
             "one pod left after scaling down")
    wait_for(lambda: cache.read([namespace], ["deployments"])[0][namespace]["deployments"][0]["ready"] == 1, 30,
             "the Deployment's status followed")

    # The heartbeat writes the status every half second (this test can be faster than that).
    status = wait_for(lambda: (s := cache.status()).kinds.get("pods") and s.kinds["pods"].relists and s, 10,
                      "the status written")
    assert status.kinds["pods"].relists == 1 and status.kinds["pods"].state == "watching"
    assert status.age() is not None and status.age() < 10
    assert set(status.kinds) == set(BY_KEY)


def test_a_dropped_watch_resumes_from_its_resource_version_without_listing_again(api, cache, kube_api, namespace):
    stop = threading.Event()
    pods = KindWatch(api, cache, BY_KEY["pods"], stop, watch_seconds=60)
    thread = threading.Thread(target=pods.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: pods.status.state == "watching", 30, "the pod watch open")
        client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, deployment("one", 1))
        wait_for(lambda: len(ready_pods(cache, namespace)) == 1, 60, "the first pod in the cache")
        before = pods.status.resource_version

        pods.drop()  # the connection is cut, as by a load balancer or a restarted API server
        wait_for(lambda: pods.status.resumes >= 1 and pods.status.state == "watching", 30, "the watch resumed")
        client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, deployment("two", 1))
        wait_for(lambda: len(ready_pods(cache, namespace)) == 2, 60, "a pod made after the drop")

        assert pods.status.relists == 1  # resumed from `before`, not listed again
        assert int(pods.status.resource_version) > int(before)
    finally:
        stop.set()
        pods.drop()
        thread.join(10)


def test_a_watcher_restarted_later_resumes_where_its_predecessor_stopped(api, cache, kube_api, namespace):
    first = ClusterWatcher(api, cache, watch_seconds=30, heartbeat=0.5, kinds=(BY_KEY["pods"],)).start()
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, deployment("web", 1))
    wait_for(lambda: len(ready_pods(cache, namespace)) == 1, 60, "the pod in the cache")
    first.stop()

    scale(kube_api, namespace, "web", 3)  # changes while no watcher runs
    second = ClusterWatcher(api, cache, watch_seconds=30, heartbeat=0.5, kinds=(BY_KEY["pods"],)).start()
    try:
        wait_for(lambda: len(ready_pods(cache, namespace)) == 3, 60, "the changes made meanwhile")
        assert second.kinds["pods"].status.relists == 0  # the API server still had those versions
    finally:
        second.stop()


def compact_etcd(etcd_url: str) -> int:
    """Compact etcd's history up to its current revision (through its JSON gateway); that revision."""
    found = requests.post(f"{etcd_url}/v3/kv/range", json={"key": base64.b64encode(b"/").decode()}, timeout=5).json()
    revision = int(found["header"]["revision"])
    requests.post(f"{etcd_url}/v3/kv/compaction", json={"revision": str(revision), "physical": True},
                  timeout=30).raise_for_status()
    return revision


def run_watch(watch: KindWatch) -> threading.Thread:
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    return thread


def test_a_compacted_resource_version_makes_the_watch_list_again(api, cache, kube_api, namespace, control_plane):
    """A watcher away while etcd compacted its history gets 410 Gone from the API server, lists again, and the
    cache holds what is there now (the testbed serves ConfigMap watches from etcd, not its watch cache)."""
    configmaps = Watched("configmaps", Kind("v1", "ConfigMap", "configmaps", True),
                         lambda obj: {"name": obj["metadata"]["name"]})
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before"}})
    stop = threading.Event()
    first = KindWatch(api, cache, configmaps, stop, watch_seconds=30)
    thread = run_watch(first)
    wait_for(lambda: first.status.state == "watching", 30, "the first watch open")
    stop.set()
    first.drop()
    thread.join(10)

    core.delete_namespaced_config_map("before", namespace)  # changes while no watcher runs...
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "after"}})
    assert compact_etcd(control_plane.etcd_url) > int(first.status.resource_version)  # ...then compacted away

    stop = threading.Event()
    second = KindWatch(api, cache, configmaps, stop, watch_seconds=30, resume_from=first.status.resource_version)
    thread = run_watch(second)
    try:
        wait_for(lambda: second.status.relists == 1 and second.status.state == "watching", 30, "a relist after 410")
        names = {c["name"] for c in cache.read([namespace], ["configmaps"])[0][namespace]["configmaps"]}
        assert "after" in names and "before" not in names
    finally:
        stop.set()
        second.drop()
        thread.join(10)


def test_the_direct_list_pages_through_a_namespace_in_the_same_shape(api, kube_api, namespace):
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, deployment("web", 5))
    wait_for(lambda: len(list_all(api, BY_KEY["pods"], namespace=namespace)[0]) == 5, 60, "five pods")
    found, usage = list_namespace(api, namespace, page=2)  # three pages of pods
    assert len(found["pods"]) == 5 and {p["owner"] for p in found["pods"]} == {found["replicasets"][0]["name"]}
    assert found["deployments"][0]["desired"] == 5
    assert usage["state"] in ("ok", "unavailable")
