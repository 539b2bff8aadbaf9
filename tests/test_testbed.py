"""The testbed's real control plane: server-side apply, KWOK pods, watches, RBAC, Argo CD's CRDs."""

from __future__ import annotations

import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException

from testbed.argocd import install_argocd_crds
from tests.real_servers import wait_for


def deployment(name: str, replicas: int) -> dict:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "web", "image": "registry.local/web:1",
                                                       "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}},
    }


def test_a_deployment_applied_server_side_gets_running_ready_pods(kube_api, namespace):
    dyn = dynamic.DynamicClient(kube_api)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    core = client.CoreV1Api(kube_api)
    stream = watch.Watch()
    deployments.server_side_apply(body=deployment("web", 3), namespace=namespace, field_manager="portal")
    ready = wait_for(lambda: (deployments.get(name="web", namespace=namespace).status.readyReplicas or 0) == 3,
                     what="3 ready replicas")
    assert ready
    pods = core.list_namespaced_pod(namespace).items
    assert len(pods) == 3
    assert all(p.status.phase == "Running" and p.spec.node_name.startswith("test-node-") for p in pods)
    assert all(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions) for p in pods)
    # A watch from the list's resourceVersion sees the scale-down.
    rv = core.list_namespaced_pod(namespace).metadata.resource_version
    deployments.server_side_apply(body=deployment("web", 1), namespace=namespace, field_manager="portal")
    deleted = set()
    for event in stream.stream(core.list_namespaced_pod, namespace, resource_version=rv, timeout_seconds=30):
        if event["type"] == "DELETED":
            deleted.add(event["object"].metadata.name)
        if len(deleted) == 2:
            stream.stop()
    assert len(deleted) == 2
    # Applying the same thing again changes nothing: server-side apply under one field manager.
    before = deployments.get(name="web", namespace=namespace).metadata.generation
    deployments.server_side_apply(body=deployment("web", 1), namespace=namespace, field_manager="portal")
    assert deployments.get(name="web", namespace=namespace).metadata.generation == before


def test_deleting_the_namespace_cleans_up(kube_api):
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": "doomed"}})
    dynamic.DynamicClient(kube_api).resources.get(api_version="apps/v1", kind="Deployment").server_side_apply(
        body=deployment("web", 2), namespace="doomed", field_manager="portal")
    wait_for(lambda: len(core.list_namespaced_pod("doomed").items) == 2, what="2 pods")
    core.delete_namespace("doomed")

    def gone() -> bool:
        try:
            core.read_namespace("doomed")
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_for(gone, timeout=60, what="namespace deleted")


def test_rbac_gives_a_user_one_namespace_and_a_real_403_elsewhere(kube_api, control_plane, namespace):
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    core.create_namespace({"metadata": {"name": f"{namespace}-other"}})
    try:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "dev"}})
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": "dev-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": namespace}],
        })
        token = core.create_namespaced_service_account_token("dev", namespace, {"spec": {}}).status.token
        cfg = client.Configuration()
        cfg.host = control_plane.server
        cfg.ssl_ca_cert = str(control_plane.state / "pki" / "ca.crt")
        cfg.api_key = {"authorization": f"Bearer {token}"}
        with client.ApiClient(cfg) as as_dev:
            dev_core = client.CoreV1Api(as_dev)
            assert dev_core.list_namespaced_pod(namespace).items == []
            with pytest.raises(ApiException) as denied:
                dev_core.list_namespaced_pod(f"{namespace}-other")
            assert denied.value.status == 403
            assert "forbidden" in denied.value.body
    finally:
        core.delete_namespace(f"{namespace}-other")


def test_argocd_crds_install_and_an_application_round_trips(kube_api, namespace):
    assert install_argocd_crds(kube_api) == ["applications.argoproj.io", "appprojects.argoproj.io"]
    apps = dynamic.DynamicClient(kube_api).resources.get(api_version="argoproj.io/v1alpha1", kind="Application")
    spec = {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
            "source": {"repoURL": "https://git.example/dev/shop-deploy.git", "path": "chart", "targetRevision": "main",
                       "helm": {"valueFiles": ["values-dev.yaml"]}},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}}
    apps.create(body={"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                      "metadata": {"name": "shop", "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
                      "spec": spec}, namespace=namespace)
    got = apps.get(name="shop", namespace=namespace)
    assert got.spec.to_dict() == spec
    # No Argo CD controller runs here: set the status as Argo CD does (status is not a subresource).
    apps.patch(name="shop", namespace=namespace, content_type="application/merge-patch+json",
               body={"status": {"sync": {"status": "Synced", "revision": "abc123"}, "health": {"status": "Healthy"}}})
    status = apps.get(name="shop", namespace=namespace).status
    assert status.sync.status == "Synced" and status.health.status == "Healthy"
    apps.patch(name="shop", namespace=namespace, content_type="application/merge-patch+json",
               body={"metadata": {"finalizers": None}})
