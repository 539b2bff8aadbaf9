"""The testbed's metrics.k8s.io (metrics-server scraping what KWOK reports) and its crash-looping pods."""

from __future__ import annotations

from kubernetes import client
from kubernetes.utils import parse_quantity

from tests.real_servers import wait_for

MI = 2 ** 20
NODE_CPU, NODE_MEMORY = parse_quantity("100m"), 512 * MI  # what a node uses for itself (testbed/kwok/metrics.yaml)


def deployment(name: str, replicas: int, annotations: dict[str, str] | None = None,
               containers: tuple[str, ...] = ("web",)) -> dict:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels, "annotations": annotations or {}},
                              "spec": {"containers": [{"name": c, "image": f"registry.local/{c}:1"}
                                                      for c in containers]}}},
    }


def pod_metrics(kube_api, namespace: str) -> dict[str, dict[str, dict]]:
    """Pod name → container name → usage, as metrics.k8s.io answers now."""
    listed = client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", namespace, "pods")
    return {p["metadata"]["name"]: {c["name"]: c["usage"] for c in p["containers"]} for p in listed["items"]}


def node_metrics(kube_api) -> dict[str, dict]:
    listed = client.CustomObjectsApi(kube_api).list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    return {n["metadata"]["name"]: n["usage"] for n in listed["items"]}


def close_to(quantity: str, expected: str) -> bool:
    """A CPU rate as metrics-server computes it between two scrapes: within 20% of what KWOK was told."""
    return abs(parse_quantity(quantity) - parse_quantity(expected)) <= parse_quantity(expected) / 5


def test_pods_report_the_usage_their_annotations_choose_and_a_default_otherwise(kube_api, namespace):
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment(
        "api", 2, {"testbed.portal.dev/usage-cpu": "250m", "testbed.portal.dev/usage-memory": "96Mi"},
        containers=("api", "sidecar")))
    apps.create_namespaced_deployment(namespace, deployment("worker", 1))
    wait_for(lambda: len(core.list_namespaced_pod(namespace).items) == 3, what="3 pods")
    owners = {p.metadata.name: p.metadata.labels["app.kubernetes.io/name"]
              for p in core.list_namespaced_pod(namespace).items}

    metrics = wait_for(lambda: (m := pod_metrics(kube_api, namespace)).keys() == owners.keys() and m,
                       timeout=90, what="metrics of the 3 pods")

    for pod, containers in metrics.items():
        if owners[pod] == "api":
            assert containers.keys() == {"api", "sidecar"}
            for usage in containers.values():
                assert close_to(usage["cpu"], "250m"), usage
                assert parse_quantity(usage["memory"]) == 96 * MI
        else:
            (usage,) = containers.values()
            assert close_to(usage["cpu"], "10m") and parse_quantity(usage["memory"]) == 32 * MI, usage
    # The same figures per pod, as `kubectl top pod NAME` asks for them.
    one = next(p for p in owners if owners[p] == "worker")
    got = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", namespace, "pods", one)
    assert got["containers"][0]["name"] == "web" and parse_quantity(got["containers"][0]["usage"]["memory"]) == 32 * MI


def test_every_node_reports_its_own_usage_plus_its_pods(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    nodes = [n.metadata.name for n in core.list_node().items]
    assert len(nodes) == 3
    # Where metrics-server finds each node's kubelet: KWOK, on loopback.
    for node in core.list_node().items:
        assert {a.type: a.address for a in node.status.addresses} == {"InternalIP": "127.0.0.1",
                                                                      "Hostname": node.metadata.name}
        assert node.status.daemon_endpoints.kubelet_endpoint.port > 0
        assert node.metadata.annotations["metrics.k8s.io/resource-metrics-path"] == \
            f"/metrics/nodes/{node.metadata.name}/metrics/resource"
    service = client.ApiregistrationV1Api(kube_api).read_api_service("v1beta1.metrics.k8s.io")
    assert any(c.type == "Available" and c.status == "True" for c in service.status.conditions)

    usage = wait_for(lambda: (u := node_metrics(kube_api)).keys() == set(nodes) and u, timeout=60,
                     what="metrics of the 3 nodes")
    for figures in usage.values():
        assert parse_quantity(figures["cpu"]) >= NODE_CPU * parse_quantity("0.8")
        assert parse_quantity(figures["memory"]) >= NODE_MEMORY

    # A pod using 1 GiB shows in its node's memory.
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, deployment(
        "big", 1, {"testbed.portal.dev/usage-memory": "1Gi"}))
    node = wait_for(lambda: next((p.spec.node_name for p in core.list_namespaced_pod(namespace).items
                                  if p.spec.node_name), None), what="the pod scheduled")
    wait_for(lambda: parse_quantity(node_metrics(kube_api).get(node, {}).get("memory", "0")) >= NODE_MEMORY + 1024 * MI,
             timeout=60, what=f"{node}'s memory counting the pod's 1 GiB")


def test_a_pod_annotated_to_fail_crash_loops_with_that_reason(kube_api, namespace):
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("oom", 1, {"testbed.portal.dev/fail": "OOMKilled"}))
    for name, notes in (("crashing", {"testbed.portal.dev/fail": "CrashLoopBackOff",
                                            "testbed.portal.dev/restarts": "4"}),
                              ("erroring", {"testbed.portal.dev/fail": "Error"}),
                              ("healthy", {})):
        core.create_namespaced_pod(namespace, {"metadata": {"name": name, "annotations": notes},
                                               "spec": {"containers": [{"name": "web", "image": "registry.local/web:1"}]}})

    def status(pod_name: str):
        pod = core.read_namespaced_pod(pod_name, namespace)
        return pod if pod.status.container_statuses else None

    oom_pod = wait_for(lambda: next((p.metadata.name for p in core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/name=oom").items), None), what="the oom pod")
    expected = {oom_pod: ("OOMKilled", 137, 1), "crashing": ("Error", 1, 4), "erroring": ("Error", 1, 1)}
    for pod_name, (reason, exit_code, restarts) in expected.items():
        pod = wait_for(lambda: status(pod_name), what=f"{pod_name}'s container status")
        (container,) = pod.status.container_statuses
        assert pod.status.phase == "Running" and container.ready is False and container.started is False
        assert container.restart_count == restarts
        assert container.state.waiting.reason == "CrashLoopBackOff"
        assert container.last_state.terminated.reason == reason
        assert container.last_state.terminated.exit_code == exit_code
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"
    # A normal pod beside them is as before: Running and Ready.
    healthy = wait_for(lambda: status("healthy"), what="the healthy pod's status").status.container_statuses[0]
    assert healthy.ready and healthy.state.running and healthy.restart_count == 0
    # The Deployment counts its crash-looping replica as unavailable, and the pods have the kubelet's event.
    wait_for(lambda: (s := apps.read_namespaced_deployment("oom", namespace).status).unavailable_replicas == 1
             and s.replicas == 1 and not s.ready_replicas, what="the Deployment's replica unavailable")
    wait_for(lambda: {e.involved_object.name for e in core.list_namespaced_event(namespace).items
                      if e.reason == "BackOff" and e.type == "Warning"} >= set(expected),
             what="BackOff events of the 3 pods")

    # A running pod annotated later crashes the same way.
    core.patch_namespaced_pod("healthy", namespace, {"metadata": {"annotations": {"testbed.portal.dev/fail": "OOMKilled"}}})
    crashed = wait_for(lambda: (c := status("healthy").status.container_statuses[0]).state.waiting and c,
                       what="the annotated running pod crash-looping")
    assert crashed.last_state.terminated.reason == "OOMKilled" and crashed.restart_count == 1 and not crashed.ready
