"""Shared by the Argo CD tests (test_argocd.py, the declared objects; test_argocd_status.py, status, sync and
refresh declaratively; test_argocd_rest.py, Argo CD's REST API and its faults): the specs, the testbed's API
server with Argo CD's CRDs playing the central cluster, plain access to the objects, adapters closed after
each test, and the HTTP fake of Argo CD's API."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from integrations.argocd import ArgoCDDelivery
from integrations.delivery import DeliveryProjectSpec, DeliverySpec, Destination
from testbed.argocd import install_argocd_crds
from tests.fakes.argocd_server import FakeArgoCD

GROUP, VERSION = "argoproj.io", "v1alpha1"
MERGE = "application/merge-patch+json"
TOKEN = "argocd-api-token-3b9d1f"
CLUSTER_TOKEN = "eyJhbGciOiJSUzI1NiJ9.team-cluster-token-5e8a"
OWNER = "team-dev-7f3a"
URL = "https://argocd.example.com"
REPO = "https://gitlab.example.com/dev/shop-deploy.git"
DEV = "https://dev.k8s.example.com:6443"
MANAGED = {"app.kubernetes.io/managed-by": "developer-portal"}
SYNC_OPTIONS = ["CreateNamespace=false", "ServerSideApply=true"]
SOURCE = {"repoURL": REPO, "path": "chart", "targetRevision": "main", "helm": {"valueFiles": ["../values-dev.yaml"]}}


def project_spec(**changes: Any) -> DeliveryProjectSpec:
    spec = DeliveryProjectSpec(name="dev", owner=OWNER, description="Team dev", source_repos=(REPO,),
                               destinations=(Destination(DEV, "dev-*"), Destination(DEV, "shop-*")))
    return dataclasses.replace(spec, **changes)


def app_spec(**changes: Any) -> DeliverySpec:
    spec = DeliverySpec(name="shop-dev", owner=OWNER, project="dev", repository_url=REPO, path="chart",
                        values_file="values-dev.yaml", cluster=DEV, namespace="shop-dev", revision="main",
                        labels={"portal.dev/application": "shop", "portal.dev/environment": "dev"})
    return dataclasses.replace(spec, **changes)


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


# --- the testbed -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def argocd_crds(kube_api):
    """Argo CD's own CRDs, installed once per session."""
    return install_argocd_crds(kube_api)


class Objects:
    """Plain access to the objects the adapter manages, to check and to play Argo CD's controller."""

    def __init__(self, api: client.ApiClient, namespace: str):
        self.namespace = namespace
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name, patch,
                                                          _content_type=MERGE)

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)

    def exists(self, plural: str, name: str) -> bool:
        try:
            self.get(plural, name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def secret(self, name: str) -> client.V1Secret:
        return self.core.read_namespaced_secret(name, self.namespace)

    def release(self, name: str) -> None:
        """What Argo CD's controller does once an application's resources are deleted: drop its finalizer."""
        if self.exists("applications", name):
            self.patch("applications", name, {"metadata": {"finalizers": None}})


@pytest.fixture
def argo_ns(kube_api, argocd_crds, namespace):
    """A namespace playing Argo CD's. Its Applications lose their finalizer at the end, or it could not go."""
    yield namespace
    objects = Objects(kube_api, namespace)
    for app in objects.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "applications")["items"]:
        objects.release(app["metadata"]["name"])


@pytest.fixture
def objects(kube_api, argo_ns):
    return Objects(kube_api, argo_ns)


@pytest.fixture
def central(control_plane) -> Callable[[], client.ApiClient]:
    """A factory of ApiClients of the testbed, playing the central cluster."""
    return lambda: config.new_client_from_config(str(control_plane.kubeconfig))


@pytest.fixture
def connect(central, argo_ns, request):
    """``connect(**options)``: an adapter on the testbed, closed after the test."""
    def make(**options: Any) -> ArgoCDDelivery:
        adapter = ArgoCDDelivery(**{"kube_api": central, "namespace": argo_ns, "url": URL, "timeout": 30.0,
                                    "retries": 2, **options})
        request.addfinalizer(adapter.close)
        return adapter

    return make


@pytest.fixture
def delivery(connect) -> ArgoCDDelivery:
    """Declarative only: a URL for links, no API token."""
    return connect()


@pytest.fixture
def service_account(kube_api, argo_ns):
    """``service_account(name)``: a token of a new service account of the namespace, with no permission."""
    core = client.CoreV1Api(kube_api)

    def make(name: str) -> str:
        core.create_namespaced_service_account(argo_ns, {"metadata": {"name": name}})
        return core.create_namespaced_service_account_token(name, argo_ns, {"spec": {}}).status.token

    return make


# --- Argo CD's API: the fake ---------------------------------------------------------------------------

@pytest.fixture
def fake(kube_api, argo_ns) -> Iterator[FakeArgoCD]:
    with FakeArgoCD(kube_api, argo_ns, token=TOKEN, username="portal") as server:
        yield server


@pytest.fixture
def fake_rest(fake, connect) -> ArgoCDDelivery:
    """An adapter on the fake that does not retry, so that each injected fault shows; with a project and an app."""
    adapter = connect(url=fake.url, token=TOKEN, retries=0)
    adapter.ensure_project(project_spec())
    adapter.ensure_application(app_spec())
    return adapter

