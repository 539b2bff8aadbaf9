"""The resource panel: a real API server with KWOK pods, the cluster cache in a real Redis, and the pages."""

from __future__ import annotations

import threading

import pytest
import redis
from kubernetes import client

from integrations.cluster_cache import ClusterCache
from portal.errors import NotFound
from portal.services import resources
from portal.services.cluster_cache import CacheKeeper
from portal.services.clusters import ClusterInput, ensure_cluster_from_command_line
from portal.services.naming import ResourceNames
from tests.factories import ApplicationFactory
from tests.real_servers import wait_for
from tests.test_cluster_watch import deployment, scale


@pytest.fixture
def app_overrides():
    return {"cluster": "kubernetes", "environments": "dev,prod", "cache_stale_seconds": 30.0}


@pytest.fixture
def cluster(app, control_plane):
    """The testbed's control plane registered for the Dev team, as an admin would."""
    return ensure_cluster_from_command_line(ClusterInput(
        name="dev-kwok", api_url=control_plane.server, team_names=["dev"],
        kubeconfig=control_plane.inline_kubeconfig()))


@pytest.fixture
def application(app):
    return ApplicationFactory()


@pytest.fixture
def running(application, cluster, kube_api):
    """The application's dev namespace with a Deployment of three pods in the real cluster."""
    names = ResourceNames(application.team.name, application.project.name, application.name)
    namespace = names.namespace("dev")
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_resource_quota(namespace, {"metadata": {"name": "portal"},
                                                      "spec": {"hard": {"requests.cpu": "2", "pods": "20"}}})
    apps.create_namespaced_deployment(namespace, deployment("web", 3))
    core.create_namespaced_service(namespace, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app.kubernetes.io/name": "web"}, "ports": [{"port": 80, "targetPort": 8000}]}})
    wait_for(lambda: (apps.read_namespaced_deployment(namespace=namespace, name="web").status.ready_replicas or 0) == 3,
             60, "three ready pods")
    yield namespace
    core.delete_namespace(namespace)


@pytest.fixture
def keeper(app, cluster):
    """``flask watch-clusters``' keeper, in this process, over the registered cluster."""
    keeper = CacheKeeper(app.config["PORTAL"])
    keeper.sync()
    yield keeper
    keeper.stop()
    ClusterCache(redis.Redis.from_url(app.config["PORTAL"].redis_url), cluster.name).clear()


def dev_panel(actor, application, **kwargs):
    return next(p for p in resources.resource_panel(actor, application, **kwargs) if p.environment == "dev")


def test_without_a_cache_the_panel_lists_from_the_api_server_and_says_so(dev_member, application, running):
    panel = dev_panel(dev_member, application)
    assert panel.freshness.source == "direct" and "API server" in panel.freshness.message
    assert (panel.pods_ready, panel.pods_total) == (3, 3)
    (web,) = panel.deployments
    assert (web.name, web.ready, web.desired, web.rollout) == ("web", 3, 3, "complete")
    assert [s["name"] for s in panel.services] == ["web"] and panel.services[0]["ports"] == ["80→8000/TCP"]
    assert panel.totals.text()["cpu_request"] == "300m" and panel.totals.text()["memory_limit"] == "384 MiB"
    assert {q.resource: (q.used_text, q.hard_text) for q in panel.quota}["requests.cpu"] == ("300m", "2 cores")


def test_with_the_cache_a_scaled_deployment_shows_without_asking_the_api_server(
        dev_member, application, running, keeper, kube_api, monkeypatch):
    wait_for(lambda: dev_panel(dev_member, application).freshness.source == "cache", 60, "the cache synced")
    scale(kube_api, running, "web", 5)
    panel = wait_for(lambda: (p := dev_panel(dev_member, application)).pods_ready == 5 and p, 60, "five pods")
    assert panel.freshness.source == "cache" and panel.deployments[0].desired == 5
    scale(kube_api, running, "web", 2)
    wait_for(lambda: dev_panel(dev_member, application).pods_total == 2, 60, "two pods after scaling down")

    # Viewing is reading Redis: twenty more views make no direct LIST.
    calls = []
    original = resources._direct
    monkeypatch.setattr(resources, "_direct", lambda *a, **k: calls.append(a) or original(*a, **k))
    for _ in range(20):
        assert dev_panel(dev_member, application).freshness.source == "cache"
    assert calls == []


def test_a_stale_cache_falls_back_and_says_how_old_it_was(app, dev_member, application, running, keeper):
    wait_for(lambda: dev_panel(dev_member, application).freshness.source == "cache", 60, "the cache synced")
    keeper.stop()  # the watcher process is gone: its heartbeat stops
    app.config["PORTAL"] = app.config["PORTAL"].replace({"cache_stale_seconds": 0.5})
    stopped = threading.Event()
    stopped.wait(1.0)
    panel = dev_panel(dev_member, application)
    assert panel.freshness.source == "direct" and "behind" in panel.freshness.message
    assert panel.pods_total == 3


def test_another_team_sees_nothing_of_the_panel(ops_member, application, running, login):
    with pytest.raises(NotFound):
        resources.resource_panel(ops_member, application)
    resp = login(ops_member).get(f"/t/dev/{application.project.name}/{application.name}/resources",
                                 headers={"HX-Request": "true"})
    assert resp.status_code == 404 and running not in resp.text


def test_the_panel_fragment_polls_on_the_chosen_interval_sorts_and_remembers(login, dev_member, application, running):
    c = login(dev_member)
    url = f"/t/dev/{application.project.name}/{application.name}/resources"
    resp = c.get(url, headers={"HX-Request": "true"})
    assert resp.status_code == 200 and "HX-Request" in resp.headers["Vary"]
    assert '<div id="resource-panel"' in resp.text and 'hx-trigger="every 10s"' in resp.text
    assert "<html" not in resp.text and resp.text.count('<tr id="pod-') == 3

    paused = c.get(url + "?every=0&sort=restarts&desc=1", headers={"HX-Request": "true"}).text
    assert "hx-trigger=\"every" not in paused and 'aria-sort="descending"' in paused
    # The choice is remembered for the next visit.
    assert "hx-trigger=\"every" not in c.get(url, headers={"HX-Request": "true"}).text
    assert 'hx-trigger="every 30s"' in c.get(url + "?every=30", headers={"HX-Request": "true"}).text
    # An interval nobody offered is ignored, not obeyed.
    assert 'hx-trigger="every 30s"' in c.get(url + "?every=1", headers={"HX-Request": "true"}).text

    page = c.get(url)
    assert page.status_code == 200 and "<html" in page.text and "web" in page.text


def test_the_application_page_loads_the_panel_lazily(login, dev_member, application):
    resp = login(dev_member).get(f"/t/dev/{application.project.name}/{application.name}")
    assert resp.status_code == 200
    assert f'hx-get="/t/dev/{application.project.name}/{application.name}/resources"' in resp.text


def test_without_a_bound_cluster_the_panel_says_so(dev_member, application):
    panel = dev_panel(dev_member, application)
    assert panel.freshness.source == "unavailable" and "No cluster" in panel.freshness.message


def test_a_failing_pod_shows_its_reason_and_usage_comes_from_metrics_server(
        dev_member, application, running, kube_api, keeper):
    """KWOK reports the crash and the usage the pod's annotations ask for; metrics-server serves the usage."""
    failing = deployment("worker", 1)
    failing["spec"]["template"]["metadata"]["annotations"] = {
        "testbed.portal.dev/fail": "OOMKilled", "testbed.portal.dev/restarts": "3"}
    client.AppsV1Api(kube_api).create_namespaced_deployment(running, failing)
    busy = {"testbed.portal.dev/usage-cpu": "250m", "testbed.portal.dev/usage-memory": "96Mi"}
    client.AppsV1Api(kube_api).patch_namespaced_deployment("web", running, {
        "spec": {"template": {"metadata": {"annotations": busy}}}})

    def settled():
        panel = dev_panel(dev_member, application, sort="status")
        web = [p for p in panel.pods if p.deployment == "web" and p.ready]
        worker = [p for p in panel.pods if p.deployment == "worker"]
        done = (len(web) == 3 and all(p.cpu is not None and abs(p.cpu - 0.25) < 0.01 for p in web) and worker and worker[0].last_reason == "OOMKilled")
        return panel if done else None

    panel = wait_for(settled, 120, "the crash and the usage figures in the panel")
    crashed = next(p for p in panel.pods if p.deployment == "worker")
    assert panel.pods[0] is crashed  # problems first
    assert (crashed.status, crashed.problem, crashed.restarts, crashed.ready) == ("CrashLoopBackOff", True, 3, False)
    assert panel.usage == "" and panel.totals.cpu_used is not None and panel.totals.cpu_used > 0.74
    assert all(p.memory == 96 * 1024 ** 2 for p in panel.pods if p.deployment == "web")
    rollout = {d.name: d.rollout for d in panel.deployments}
    assert rollout["web"] == "complete" and rollout["worker"] == "progressing"


def test_the_board_s_pod_counts_from_the_cache_match_a_direct_list(app, running, cluster, keeper, kube_api):
    """The cache counts a namespace's pods from the flag sets it keeps with them; a direct LIST counts the pods."""
    failing = deployment("worker", 1)
    failing["spec"]["template"]["metadata"]["annotations"] = {"testbed.portal.dev/fail": "CrashLoopBackOff"}
    client.AppsV1Api(kube_api).create_namespaced_deployment(running, failing)

    def summary():
        summaries = resources.namespace_summaries(cluster, [running])
        found = summaries.by_namespace.get(running)
        return summaries.freshness.source, found and (found.pods_ready, found.pods_total, found.problems)

    wait_for(lambda: summary() == ("cache", (3, 4, 1)), 60, "the crash-looping pod counted from the cache")
    settings = app.config["PORTAL"]
    app.config["PORTAL"] = settings.replace({"cache_stale_seconds": 0.0})
    # A direct LIST is shared for PORTAL_CACHE_DIRECT_SECONDS: one made while the cache was syncing may still
    # be served for a few seconds.
    wait_for(lambda: summary() == ("direct", (3, 4, 1)), 15, "the same counts from a direct LIST")
    app.config["PORTAL"] = settings
    client.AppsV1Api(kube_api).delete_namespaced_deployment("worker", running)
    wait_for(lambda: summary() == ("cache", (3, 3, 0)), 60, "the crashed pod gone from the counts")
