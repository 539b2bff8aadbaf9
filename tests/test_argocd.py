"""The Argo CD adapter against the testbed's real Kubernetes API server with Argo CD's CRDs installed.

No Argo CD controller runs here: nothing reconciles what the adapter declares, so where a test needs
a sync state it writes the Application's ``.status`` the way Argo CD's controller does. ``status``
is not a subresource in Argo CD's CRDs (they declare none), so a plain patch of the object sets it.

The REST part (sync and refresh through Argo CD's API) runs against the HTTP fake of
``tests.fakes.argocd_server``, which keeps the Applications in the same API server, or unchanged
against a real Argo CD: set PORTAL_TEST_ARGOCD_URL, PORTAL_TEST_ARGOCD_TOKEN (an account allowed
applications get and sync) and PORTAL_TEST_ARGOCD_KUBECONFIG (a kubeconfig of that Argo CD's cluster
allowed to manage AppProjects and Applications in its namespace, PORTAL_TEST_ARGOCD_NAMESPACE,
"argocd" by default); PORTAL_TEST_ARGOCD_USERNAME, when set, is checked as the sync's initiator.
Those tests make a project and an application of their own there, deleted afterwards.

The last part injects faults, which only the fake can do: those tests start a fake of their own
whatever the environment says.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from integrations.argocd import ArgoCDDelivery
from integrations.argocd_manifests import FINALIZER, value_file
from integrations.cluster import ClusterTarget
from integrations.delivery import (
    Delivery, DeliveryEvent, DeliveryProjectSpec, DeliverySpec, DeliveryStatus, Destination,
)
from integrations.errors import (
    AuthFailed, Conflict, IntegrationError, InvalidRequest, NotFound, RateLimited, Unavailable,
)
from portal.config import Settings
from tests.fakes.argocd_server import FakeArgoCD

ARGO = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "argocd"
GROUP, VERSION = "argoproj.io", "v1alpha1"
MERGE = "application/merge-patch+json"
ENV = ("PORTAL_TEST_ARGOCD_URL", "PORTAL_TEST_ARGOCD_TOKEN", "PORTAL_TEST_ARGOCD_KUBECONFIG")
REAL = all(os.environ.get(name) for name in ENV)
TOKEN = "argocd-api-token-3b9d1f"
CLUSTER_TOKEN = "eyJhbGciOiJSUzI1NiJ9.team-cluster-token-5e8a"
OWNER = "team-dev-7f3a"
URL = "https://argocd.example.com"
REPO = "https://gitlab.example.com/dev/shop-deploy.git"
DEV = "https://dev.k8s.example.com:6443"
MANAGED = {"app.kubernetes.io/managed-by": "developer-portal"}
SYNC_OPTIONS = ["CreateNamespace=false", "ServerSideApply=true"]


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout} s")


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
    """Argo CD's own CRDs, installed once per session (server-side: too large for a last-applied annotation)."""
    ext = client.ApiextensionsV1Api(kube_api)
    names = []
    for file in ("application-crd.yaml", "appproject-crd.yaml"):
        body = yaml.safe_load((ARGO / file).read_text())
        names.append(body["metadata"]["name"])
        ext.patch_custom_resource_definition(body["metadata"]["name"], body, field_manager="portal-tests",
                                             force=True, _content_type="application/apply-patch+yaml")
    for name in names:
        wait_for(lambda: any(c.type == "Established" and c.status == "True"
                             for c in ext.read_custom_resource_definition(name).status.conditions or []),
                 what=f"CRD {name} established")


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
def connect(central, argo_ns):
    """``connect(**options)``: an adapter on the testbed, closed after the test."""
    made: list[ArgoCDDelivery] = []

    def make(**options: Any) -> ArgoCDDelivery:
        adapter = ArgoCDDelivery(**{"kube_api": central, "namespace": argo_ns, "url": URL, "timeout": 30.0,
                                    "retries": 2, **options})
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def delivery(connect) -> ArgoCDDelivery:
    """Declarative only: a URL for links, no API token."""
    return connect()


def flattened(control_plane) -> dict[str, Any]:
    """The testbed's admin kubeconfig with its files embedded, as ``kubectl config view --flatten`` writes it."""
    doc = yaml.safe_load(control_plane.kubeconfig.read_text())
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    cluster["certificate-authority-data"] = b64(Path(cluster.pop("certificate-authority")).read_bytes())
    user["client-certificate-data"] = b64(Path(user.pop("client-certificate")).read_bytes())
    user["client-key-data"] = b64(Path(user.pop("client-key")).read_bytes())
    return doc


def reach(server: str, cluster_config: dict[str, Any]) -> str:
    """Whom the API server at ``server`` takes a client with Argo CD's cluster ``config`` for."""
    tls = cluster_config["tlsClientConfig"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = client.Configuration()
        cfg.host, cfg.verify_ssl = server, not tls["insecure"]
        for key, attribute in (("caData", "ssl_ca_cert"), ("certData", "cert_file"), ("keyData", "key_file")):
            if key in tls:
                path = Path(tmp) / key
                path.write_bytes(base64.b64decode(tls[key]))
                setattr(cfg, attribute, str(path))
        if "bearerToken" in cluster_config:
            cfg.api_key = {"authorization": f"Bearer {cluster_config['bearerToken']}"}
        with client.ApiClient(cfg) as api:
            review = client.AuthenticationV1Api(api).create_self_subject_review({})
            return review.status.user_info.username


@pytest.fixture
def service_account(kube_api, argo_ns):
    """``service_account(name)``: a token of a new service account of the namespace, with no permission."""
    core = client.CoreV1Api(kube_api)

    def make(name: str) -> str:
        core.create_namespaced_service_account(argo_ns, {"metadata": {"name": name}})
        return core.create_namespaced_service_account_token(name, argo_ns, {"spec": {}}).status.token

    return make


# --- the contract ------------------------------------------------------------------------------------

def test_the_adapter_implements_the_protocol_with_the_same_signatures():
    adapter = ArgoCDDelivery("/nonexistent/kubeconfig", url=URL, token=TOKEN)
    assert isinstance(adapter, Delivery) and adapter.system == "argocd"
    methods = [n for n, v in vars(Delivery).items() if callable(v) and not n.startswith("_")]
    assert len(methods) == 12
    for name in methods:
        assert str(inspect.signature(getattr(ArgoCDDelivery, name))) == str(inspect.signature(getattr(Delivery, name)))
    assert TOKEN not in repr(adapter)
    adapter.close()


def test_the_adapter_is_built_from_the_settings(control_plane, argo_ns):
    settings = Settings().replace({"argocd_kubeconfig": str(control_plane.kubeconfig), "argocd_namespace": argo_ns,
                                   "argocd_url": URL + "/", "argocd_token": TOKEN, "http_timeout": 7.5})
    adapter = ArgoCDDelivery.from_settings(settings)
    assert (adapter.namespace, adapter.url, adapter.timeout) == (argo_ns, URL, 7.5)
    assert adapter.find_project("nothing") is None  # it reaches the central cluster with that kubeconfig
    adapter.close()


@pytest.mark.parametrize("kubeconfig, said", [
    ("/nonexistent/kubeconfig", "the kubeconfig /nonexistent/kubeconfig"),
    ("", "the in-cluster service account"),
])
def test_a_central_cluster_that_cannot_be_configured_is_an_error_saying_which(kubeconfig, said, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod, even if the tests run in one
    adapter = ArgoCDDelivery(kubeconfig)
    with pytest.raises(IntegrationError, match=said) as info:
        adapter.find_application("shop-dev")
    assert not info.value.transient
    adapter.close()


# --- projects ----------------------------------------------------------------------------------------

def test_a_project_allows_exactly_the_teams_repositories_and_destinations(delivery, objects, argo_ns):
    created = delivery.ensure_project(project_spec())
    project = objects.get("appprojects", "dev")
    assert project["spec"] == {
        "description": "Team dev",
        "sourceRepos": [REPO],
        "destinations": [{"server": DEV, "namespace": "dev-*"}, {"server": DEV, "namespace": "shop-*"}],
        "clusterResourceWhitelist": [],
        "namespaceResourceBlacklist": [{"group": "", "kind": "ResourceQuota"}, {"group": "", "kind": "LimitRange"}],
    }
    assert project["metadata"]["labels"] == MANAGED
    assert project["metadata"]["annotations"] == {"portal.dev/owner": OWNER}
    assert [(m["manager"], m["operation"]) for m in project["metadata"]["managedFields"]] == [
        ("developer-portal", "Apply")]
    assert (created.system, created.kind, created.name, created.owner, created.url) == (
        "argocd", "project", "dev", OWNER, f"{URL}/settings/projects/dev")
    assert created.attributes == {"namespace": argo_ns, "description": "Team dev", "source_repos": REPO,
                                  "destinations": f"{DEV} dev-*,{DEV} shop-*"}
    assert delivery.find_project("dev") == created


def test_applying_the_same_project_changes_nothing_and_a_new_spec_converges(delivery, objects):
    delivery.ensure_project(project_spec())
    before = objects.get("appprojects", "dev")["metadata"]["resourceVersion"]
    delivery.ensure_project(project_spec())
    assert objects.get("appprojects", "dev")["metadata"]["resourceVersion"] == before
    other = "https://gitlab.example.com/dev/shop-config.git"
    delivery.ensure_project(project_spec(description="", source_repos=(other,), destinations=(Destination(DEV, "x"),)))
    spec = objects.get("appprojects", "dev")["spec"]
    assert (spec["description"], spec["sourceRepos"], spec["destinations"]) == ("", [other], [
        {"server": DEV, "namespace": "x"}])


@pytest.mark.parametrize("annotations", [None, {"portal.dev/owner": "team-ops-0000"}])
def test_a_project_without_this_owners_marker_is_never_adopted(delivery, objects, annotations):
    objects.create("appprojects", {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AppProject",
                                   "metadata": {"name": "dev", "annotations": annotations},
                                   "spec": {"sourceRepos": ["*"]}})
    with pytest.raises(Conflict, match="AppProject dev exists and is not owned by team-dev-7f3a") as info:
        delivery.ensure_project(project_spec())
    assert info.value.status == 409
    assert objects.get("appprojects", "dev")["spec"] == {"sourceRepos": ["*"]}
    assert delivery.find_project("dev").owner == (annotations or {}).get("portal.dev/owner")


def test_a_deleted_project_is_gone_and_deleting_it_again_is_not_found(delivery, objects):
    assert delivery.find_project("dev") is None
    delivery.ensure_project(project_spec())
    delivery.delete_project("dev")
    assert delivery.find_project("dev") is None and not objects.exists("appprojects", "dev")
    with pytest.raises(NotFound, match="not found") as info:
        delivery.delete_project("dev")
    assert info.value.status == 404 and info.value.system == "argocd"


# --- clusters ----------------------------------------------------------------------------------------

def cluster_config_of(objects: Objects, name: str) -> tuple[client.V1Secret, dict[str, str], dict[str, Any]]:
    secret = objects.secret(f"cluster-{name}")
    data = {k: unb64(v) for k, v in secret.data.items()}
    return secret, data, json.loads(data["config"])


def test_a_cluster_with_a_token_and_its_ca_becomes_argocds_cluster_secret(
        delivery, objects, control_plane, service_account, argo_ns):
    ca = (control_plane.state / "pki" / "ca.crt").read_text()
    token = service_account("argocd-manager")
    target = ClusterTarget(name="dev-cluster", api_url=control_plane.server, ca_pem=ca, token=token)
    created = delivery.register_cluster(target, OWNER)
    secret, data, cluster_config = cluster_config_of(objects, "dev-cluster")
    assert secret.metadata.labels == {"argocd.argoproj.io/secret-type": "cluster", **MANAGED}
    assert secret.metadata.annotations == {"portal.dev/owner": OWNER} and secret.type == "Opaque"
    assert (data["name"], data["server"], set(data)) == ("dev-cluster", control_plane.server,
                                                         {"name", "server", "config"})
    assert cluster_config == {"bearerToken": token, "tlsClientConfig": {"insecure": False, "caData": b64(ca)}}
    # What Argo CD would do with it: reach the cluster as that service account.
    assert reach(data["server"], cluster_config) == f"system:serviceaccount:{argo_ns}:argocd-manager"
    assert (created.kind, created.external_id, created.name, created.owner) == (
        "cluster", "cluster-dev-cluster", "dev-cluster", OWNER)
    assert created.attributes["auth"] == "bearer-token" and created.attributes["ca"] == "yes"
    assert token not in repr(created) and token not in repr(target)
    found = delivery.find_cluster("dev-cluster")
    assert (found.name, found.owner, found.attributes["server"]) == ("dev-cluster", OWNER, control_plane.server)
    assert token not in repr(found)


def test_registering_the_same_cluster_again_changes_nothing_and_a_new_token_converges(delivery, objects):
    target = ClusterTarget(name="dev-cluster", api_url=DEV, token=CLUSTER_TOKEN, verify=False)
    delivery.register_cluster(target, OWNER)
    before = objects.secret("cluster-dev-cluster").metadata.resource_version
    delivery.register_cluster(target, OWNER)
    assert objects.secret("cluster-dev-cluster").metadata.resource_version == before
    delivery.register_cluster(dataclasses.replace(target, token="rotated-token"), OWNER)
    assert cluster_config_of(objects, "dev-cluster")[2] == {"bearerToken": "rotated-token",
                                                            "tlsClientConfig": {"insecure": True}}


def test_a_kubeconfig_with_a_client_certificate_gives_its_certificate_key_and_ca(delivery, objects, control_plane):
    doc = flattened(control_plane)
    target = ClusterTarget(name="central", api_url="", kubeconfig=yaml.safe_dump(doc))
    created = delivery.register_cluster(target, OWNER)
    _, data, cluster_config = cluster_config_of(objects, "central")
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    assert data["server"] == control_plane.server
    assert cluster_config == {"tlsClientConfig": {
        "insecure": False, "caData": cluster["certificate-authority-data"],
        "certData": user["client-certificate-data"], "keyData": user["client-key-data"]}}
    assert reach(data["server"], cluster_config) == "testbed-admin"  # the certificate's subject
    assert created.attributes["auth"] == "client-certificate"
    assert user["client-key-data"] not in repr(created) and user["client-key-data"] not in repr(target)


def test_a_kubeconfig_with_a_token_gives_the_token_and_the_targets_url_wins(delivery, objects):
    kubeconfig = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "clusters": [{"name": "other", "cluster": {"server": "https://other:6443"}},
                     {"name": "dev", "cluster": {"server": "https://10.0.0.1:6443", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "robot", "user": {"token": CLUSTER_TOKEN}}],
        "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "robot"}}],
    })
    delivery.register_cluster(ClusterTarget(name="dev-cluster", api_url=DEV, kubeconfig=kubeconfig), OWNER)
    _, data, cluster_config = cluster_config_of(objects, "dev-cluster")
    assert data["server"] == DEV
    assert cluster_config == {"bearerToken": CLUSTER_TOKEN, "tlsClientConfig": {"insecure": True}}


@pytest.mark.parametrize("kubeconfig, said", [
    (None, "credentials in files or plugins cannot be used: embed them (kubectl config view --flatten --raw)"),
    ("users: [}", "not YAML"),
    ("current-context: nowhere\ncontexts: []\n", "no context named 'nowhere'"),
])
def test_a_kubeconfig_argocd_could_not_use_is_refused_and_nothing_is_made(delivery, control_plane, kubeconfig, said):
    kubeconfig = kubeconfig or control_plane.kubeconfig.read_text()  # the testbed's refers to files
    with pytest.raises(InvalidRequest, match=re.escape(said)):
        delivery.register_cluster(ClusterTarget(name="central", api_url="", kubeconfig=kubeconfig), OWNER)
    assert delivery.find_cluster("central") is None


@pytest.mark.parametrize("target, said", [
    (ClusterTarget(name="dev-cluster", api_url=DEV), "cluster dev-cluster has neither a token nor a kubeconfig"),
    (ClusterTarget(name="dev-cluster", api_url="", token=CLUSTER_TOKEN), "cluster dev-cluster has no API URL"),
])
def test_a_cluster_argocd_could_not_reach_is_refused(delivery, target, said):
    with pytest.raises(InvalidRequest, match=said) as info:
        delivery.register_cluster(target, OWNER)
    assert CLUSTER_TOKEN not in str(info.value)
    assert delivery.find_cluster("dev-cluster") is None


def test_a_secret_of_that_name_without_this_owners_marker_is_never_adopted(delivery, objects):
    objects.core.create_namespaced_secret(objects.namespace, {"metadata": {"name": "cluster-dev-cluster"},
                                                              "stringData": {"server": DEV}})
    with pytest.raises(Conflict, match="Secret cluster-dev-cluster exists and is not owned by"):
        delivery.register_cluster(ClusterTarget(name="dev-cluster", api_url=DEV, token=CLUSTER_TOKEN), OWNER)
    assert delivery.find_cluster("dev-cluster").owner is None
    assert "config" not in (objects.secret("cluster-dev-cluster").data or {})


def test_a_deleted_cluster_is_gone_and_deleting_it_again_is_not_found(delivery, objects):
    assert delivery.find_cluster("dev-cluster") is None
    delivery.register_cluster(ClusterTarget(name="dev-cluster", api_url=DEV, token=CLUSTER_TOKEN), OWNER)
    delivery.delete_cluster("dev-cluster")
    assert delivery.find_cluster("dev-cluster") is None
    with pytest.raises(NotFound):
        delivery.delete_cluster("dev-cluster")


# --- applications ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, values, expected", [
    ("chart", "values-dev.yaml", "../values-dev.yaml"),
    ("deploy/charts/shop/", "values-prod.yaml", "../../../values-prod.yaml"),
    ("chart", "envs/values-dev.yaml", "../envs/values-dev.yaml"),
    (".", "values-dev.yaml", "values-dev.yaml"),
    ("", "values-dev.yaml", "values-dev.yaml"),
])
def test_the_values_file_is_given_relative_to_the_chart(path, values, expected):
    assert value_file(app_spec(path=path, values_file=values)) == expected


def test_an_application_deploys_the_chart_with_its_values_syncing_automatically(delivery, objects, argo_ns):
    delivery.ensure_project(project_spec())
    created = delivery.ensure_application(app_spec())
    app = objects.get("applications", "shop-dev")
    assert app["spec"] == {
        "project": "dev",
        "source": {"repoURL": REPO, "path": "chart", "targetRevision": "main",
                   "helm": {"valueFiles": ["../values-dev.yaml"]}},
        "destination": {"server": DEV, "namespace": "shop-dev"},
        "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "syncOptions": SYNC_OPTIONS},
    }
    assert app["metadata"]["finalizers"] == [FINALIZER] == ["resources-finalizer.argocd.argoproj.io"]
    assert app["metadata"]["labels"] == {"portal.dev/application": "shop", "portal.dev/environment": "dev", **MANAGED}
    assert app["metadata"]["annotations"] == {"portal.dev/owner": OWNER}
    assert "operation" not in app and "status" not in app
    assert (created.kind, created.name, created.owner, created.url) == (
        "application", "shop-dev", OWNER, f"{URL}/applications/{argo_ns}/shop-dev")
    assert created.attributes == {"namespace": argo_ns, "project": "dev", "repository_url": REPO, "path": "chart",
                                  "revision": "main", "value_files": "../values-dev.yaml", "cluster": DEV,
                                  "destination_namespace": "shop-dev"}
    assert delivery.find_application("shop-dev") == created


def test_an_application_converges_to_a_new_spec_and_keeps_what_argocd_wrote(delivery, objects):
    delivery.ensure_application(app_spec())
    objects.patch("applications", "shop-dev", {"status": {"sync": {"status": "Synced", "revision": "abc"}}})
    delivery.ensure_application(app_spec())
    before = objects.get("applications", "shop-dev")["metadata"]["resourceVersion"]
    delivery.ensure_application(app_spec())
    assert objects.get("applications", "shop-dev")["metadata"]["resourceVersion"] == before
    delivery.ensure_application(app_spec(revision="release-1.4", values_file="values-prod.yaml", namespace="shop",
                                         labels={"portal.dev/application": "shop"}))
    app = objects.get("applications", "shop-dev")
    assert app["spec"]["source"]["targetRevision"] == "release-1.4"
    assert app["spec"]["source"]["helm"] == {"valueFiles": ["../values-prod.yaml"]}
    assert app["spec"]["destination"] == {"server": DEV, "namespace": "shop"}
    assert app["metadata"]["labels"] == {"portal.dev/application": "shop", **MANAGED}
    assert app["status"] == {"sync": {"status": "Synced", "revision": "abc"}}  # the controller's, untouched


def test_an_application_without_this_owners_marker_is_never_adopted(delivery, objects):
    objects.create("applications", {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Application",
                                    "metadata": {"name": "shop-dev"},
                                    "spec": {"project": "default", "destination": {"namespace": "x"}}})
    with pytest.raises(Conflict, match="Application shop-dev exists and is not owned by"):
        delivery.ensure_application(app_spec())
    assert delivery.find_application("shop-dev").owner is None
    assert objects.get("applications", "shop-dev")["spec"]["project"] == "default"


SOURCE = {"repoURL": REPO, "path": "chart", "targetRevision": "main", "helm": {"valueFiles": ["../values-dev.yaml"]}}
# A status block as Argo CD's controller writes it after two automated syncs (fields of Argo CD 3.x).
SYNCED = {
    "sync": {"status": "Synced", "revision": "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e",
             "comparedTo": {"source": SOURCE, "destination": {"server": DEV, "namespace": "shop-dev"}}},
    "health": {"status": "Healthy", "lastTransitionTime": "2025-05-02T09:14:31Z"},
    "operationState": {
        "operation": {"initiatedBy": {"automated": True}, "retry": {"limit": 5},
                      "sync": {"revision": "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e", "prune": True,
                               "syncOptions": SYNC_OPTIONS}},
        "phase": "Succeeded", "message": "successfully synced (all tasks run)",
        "startedAt": "2025-05-02T09:14:02Z", "finishedAt": "2025-05-02T09:14:09Z",
        "syncResult": {"revision": "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e", "source": SOURCE,
                       "resources": [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop-dev",
                                      "name": "shop", "status": "Synced", "hookPhase": "Running", "syncPhase": "Sync",
                                      "message": "deployment.apps/shop serverside-applied"}]},
    },
    "reconciledAt": "2025-05-02T09:17:40Z",
    "resources": [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop-dev", "name": "shop",
                   "status": "Synced", "health": {"status": "Healthy"}}],
    "summary": {"images": ["registry.example.com/dev/shop:0f3c2a1", "redis:7.2"]},
    "history": [
        {"id": 0, "revision": "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b", "deployStartedAt": "2025-05-01T16:02:11Z",
         "deployedAt": "2025-05-01T16:02:19Z", "source": SOURCE, "initiatedBy": {"automated": True}},
        {"id": 1, "revision": "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e", "deployStartedAt": "2025-05-02T09:14:02Z",
         "deployedAt": "2025-05-02T09:14:09Z", "source": SOURCE, "initiatedBy": {"automated": True}},
    ],
    "sourceType": "Helm", "controllerNamespace": "argocd",
}


def test_the_status_is_read_as_argocd_wrote_it(delivery, objects):
    delivery.ensure_application(app_spec())
    objects.patch("applications", "shop-dev", {"status": SYNCED})  # as the controller would
    assert delivery.status("shop-dev") == DeliveryStatus(
        sync="Synced", health="Healthy", operation="Succeeded", message="successfully synced (all tasks run)",
        revision="9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e",
        history=[DeliveryEvent(revision="1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b", deployed_at="2025-05-01T16:02:19Z",
                               id=0),
                 DeliveryEvent(revision="9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e", deployed_at="2025-05-02T09:14:09Z",
                               id=1)],
        reconciled_at="2025-05-02T09:17:40Z", operation_started_at="2025-05-02T09:14:02Z",
        operation_finished_at="2025-05-02T09:14:09Z",
        images=("registry.example.com/dev/shop:0f3c2a1", "redis:7.2"))


def test_a_failed_sync_says_why_with_the_health_and_the_conditions(delivery, objects):
    delivery.ensure_application(app_spec())
    objects.patch("applications", "shop-dev", {"status": {
        "sync": {"status": "OutOfSync", "revision": "1a2b3c4"},
        "health": {"status": "Degraded", "message": "Deployment \"shop\" exceeded its progress deadline"},
        "operationState": {"operation": {"sync": {"revision": "1a2b3c4"}}, "phase": "Failed",
                           "message": "one or more objects failed to apply", "startedAt": "2025-05-02T10:00:00Z",
                           "finishedAt": "2025-05-02T10:00:04Z"},
        "conditions": [{"type": "SyncError", "message": "Failed sync attempt to 1a2b3c4: one or more objects failed"},
                       {"type": "RepeatedResourceWarning", "message": "not an error"}],
    }})
    status = delivery.status("shop-dev")
    assert (status.sync, status.health, status.operation, status.history, status.images) == (
        "OutOfSync", "Degraded", "Failed", [], ())
    assert status.message == ("one or more objects failed to apply; Deployment \"shop\" exceeded its progress deadline"
                              "; SyncError: Failed sync attempt to 1a2b3c4: one or more objects failed")


def test_an_application_argocd_has_not_reconciled_yet_is_unknown(delivery):
    delivery.ensure_application(app_spec())
    assert delivery.status("shop-dev") == DeliveryStatus(sync="Unknown", health="Unknown")
    with pytest.raises(NotFound):
        delivery.status("nothing")


def test_a_declarative_refresh_sets_argocds_refresh_annotation(delivery, objects):
    delivery.ensure_application(app_spec())
    delivery.refresh("shop-dev")
    annotations = objects.get("applications", "shop-dev")["metadata"]["annotations"]
    assert annotations == {"portal.dev/owner": OWNER, "argocd.argoproj.io/refresh": "normal"}
    delivery.ensure_application(app_spec())  # re-applying the spec leaves Argo CD's request alone
    assert objects.get("applications", "shop-dev")["metadata"]["annotations"]["argocd.argoproj.io/refresh"] == "normal"
    with pytest.raises(NotFound):
        delivery.refresh("nothing")


def test_a_declarative_sync_sets_the_operation_as_argocds_api_server_does(delivery, objects):
    delivery.ensure_application(app_spec())
    objects.patch("applications", "shop-dev", {"status": SYNCED})
    delivery.sync("shop-dev")
    app = objects.get("applications", "shop-dev")
    assert app["operation"] == {"initiatedBy": {"username": "developer-portal"},
                                "sync": {"revision": "main", "prune": True, "syncOptions": SYNC_OPTIONS}}
    assert "operationState" not in app["status"] and app["status"]["history"] == SYNCED["history"]
    delivery.ensure_application(app_spec())  # the spec's owner does not own the operation
    assert objects.get("applications", "shop-dev")["operation"] == app["operation"]
    # A second sync while the first is pending is refused, as Argo CD refuses it, and changes nothing.
    with pytest.raises(Conflict, match="another operation is already in progress"):
        delivery.sync("shop-dev")
    assert objects.get("applications", "shop-dev")["metadata"]["resourceVersion"] == app["metadata"]["resourceVersion"]
    with pytest.raises(NotFound):
        delivery.sync("nothing")


def test_deleting_an_application_leaves_it_to_argocds_finalizer(delivery, objects):
    delivery.ensure_application(app_spec())
    delivery.delete_application("shop-dev")
    # Argo CD's controller would now delete the application's resources, then remove its finalizer.
    # Nothing does here, so the Application remains, marked for deletion, and may not be synced.
    app = objects.get("applications", "shop-dev")
    assert app["metadata"]["deletionTimestamp"] and app["metadata"]["finalizers"] == [FINALIZER]
    with pytest.raises(InvalidRequest, match="being deleted"):
        delivery.sync("shop-dev")
    objects.release("shop-dev")  # what the controller does at the end; the object then goes
    wait_for(lambda: not objects.exists("applications", "shop-dev"), what="Application gone")
    assert delivery.find_application("shop-dev") is None
    with pytest.raises(NotFound):
        delivery.delete_application("shop-dev")


# --- the central cluster's refusals and silences --------------------------------------------------------

def test_an_account_without_permissions_is_auth_failed_with_the_api_servers_message(
        connect, control_plane, service_account, argo_ns):
    token = service_account("nobody")

    def as_nobody() -> client.ApiClient:
        cfg = client.Configuration()
        cfg.host, cfg.ssl_ca_cert = control_plane.server, str(control_plane.state / "pki" / "ca.crt")
        cfg.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(cfg)

    adapter = connect(kube_api=as_nobody)
    with pytest.raises(AuthFailed) as info:
        adapter.find_project("dev")
    assert info.value.status == 403 and info.value.__cause__ is not None
    assert f'appprojects.argoproj.io "dev" is forbidden: User "system:serviceaccount:{argo_ns}:nobody"' in str(
        info.value)
    assert token not in str(info.value)


def test_a_central_cluster_that_is_not_there_or_does_not_answer_is_unavailable(connect, tmp_path):
    with socket.socket() as silent, socket.socket() as closed:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections into its backlog and never answers
        closed.bind(("127.0.0.1", 0))
        for sock, said in ((silent, "no answer within 0.5s"), (closed, "cannot connect")):
            host = f"http://127.0.0.1:{sock.getsockname()[1]}"
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": host}}], "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
            adapter = connect(kube_api=str(kubeconfig), timeout=0.5, retries=0)
            with pytest.raises(Unavailable, match=said) as info:
                adapter.find_application("shop-dev")
            assert info.value.transient and info.value.__cause__ is not None and host in str(info.value)


# --- sync and refresh through Argo CD's API: the fake, or a real Argo CD ---------------------------------

@dataclass
class Target:
    """The Argo CD the REST tests talk to, and the central cluster it keeps its applications in."""

    url: str
    token: str
    kube_api: Callable[[], client.ApiClient]
    namespace: str
    username: str | None
    server: FakeArgoCD | None = None
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])


@pytest.fixture
def target(request) -> Iterator[Target]:
    if not REAL and any(os.environ.get(name) for name in ENV):
        pytest.fail(f"set all of {', '.join(ENV)} to test a real Argo CD, or none of them to test the fake")
    if REAL:
        path = os.environ["PORTAL_TEST_ARGOCD_KUBECONFIG"]
        yield Target(url=os.environ["PORTAL_TEST_ARGOCD_URL"], token=os.environ["PORTAL_TEST_ARGOCD_TOKEN"],
                     kube_api=lambda: config.new_client_from_config(path),
                     namespace=os.environ.get("PORTAL_TEST_ARGOCD_NAMESPACE", "argocd"),
                     username=os.environ.get("PORTAL_TEST_ARGOCD_USERNAME"))
        return
    kube_api, central = request.getfixturevalue("kube_api"), request.getfixturevalue("central")
    argo_ns = request.getfixturevalue("argo_ns")
    with FakeArgoCD(kube_api, argo_ns, token=TOKEN, username="portal") as server:
        yield Target(server.url, TOKEN, central, argo_ns, "portal", server)


@pytest.fixture
def rest(target) -> Iterator[tuple[ArgoCDDelivery, Objects, str]]:
    """An adapter with Argo CD's URL and token, the objects, and an application of this test's own there."""
    adapter = ArgoCDDelivery(target.kube_api, namespace=target.namespace, url=target.url, token=target.token,
                             timeout=30.0, retries=0)
    api = target.kube_api()
    objects = Objects(api, target.namespace)
    project, name = f"portal-test-{target.suffix}", f"portal-test-{target.suffix}-dev"
    adapter.ensure_project(project_spec(name=project, destinations=(
        Destination("https://kubernetes.default.svc", f"portal-test-{target.suffix}"),)))
    adapter.ensure_application(app_spec(name=name, project=project, cluster="https://kubernetes.default.svc",
                                        namespace=f"portal-test-{target.suffix}"))
    yield adapter, objects, name
    try:
        adapter.delete_application(name)
    except NotFound:
        pass
    if target.server is not None:
        objects.release(name)  # the fake has no controller to do it
    wait_for(lambda: not objects.exists("applications", name), timeout=120, what="Application deleted")
    adapter.delete_project(project)
    adapter.close()
    api.close()


def requested(app: dict[str, Any]) -> dict[str, Any]:
    """The sync operation asked for: still pending, or taken up by Argo CD's controller already."""
    return app.get("operation") or ((app.get("status") or {}).get("operationState") or {}).get("operation") or {}


def test_a_sync_through_the_api_is_an_operation_of_the_tokens_account(target, rest):
    adapter, objects, name = rest
    adapter.sync(name)
    operation = requested(objects.get("applications", name))
    assert operation["sync"]["prune"] is True and operation["sync"].get("syncOptions") == SYNC_OPTIONS
    initiator = operation["initiatedBy"]["username"]
    assert initiator and initiator != "developer-portal"  # Argo CD's account: not the declarative way
    if target.username:
        assert initiator == target.username


def test_a_refresh_through_the_api_returns_once_argocd_has_reconciled(rest):
    adapter, objects, name = rest
    before = (objects.get("applications", name).get("status") or {}).get("reconciledAt") or ""
    adapter.refresh(name)
    app = objects.get("applications", name)
    assert app["status"]["reconciledAt"] >= before and app["status"]["reconciledAt"]
    assert "argocd.argoproj.io/refresh" not in app["metadata"]["annotations"]


def test_through_the_api_an_unknown_application_is_not_found(rest):
    adapter, _, _ = rest
    for call in (adapter.sync, adapter.refresh):
        with pytest.raises(NotFound):
            call("portal-test-nothing")


def test_a_wrong_token_is_auth_failed_and_never_shown(target, rest):
    _, _, name = rest
    adapter = ArgoCDDelivery(target.kube_api, namespace=target.namespace, url=target.url, token="wrong-secret-token",
                             retries=0)
    for call in (adapter.sync, adapter.refresh):
        with pytest.raises(AuthFailed) as info:
            call(name)
        assert info.value.status == 401 and "wrong-secret-token" not in str(info.value)
        assert "wrong-secret-token" not in repr(adapter)
    adapter.close()


# --- fake only: the fake's controller, and faults ----------------------------------------------------------

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


def test_the_fake_answers_403_for_unknown_applications_unless_a_project_is_named(fake, fake_rest):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answers = {query: requests.get(f"{fake.url}/api/v1/applications/nothing{query}", headers=headers, timeout=10)
               for query in ("", "?project=dev")}
    assert [(a.status_code, a.json()["message"]) for a in answers.values()] == [
        (403, "permission denied"), (404, 'applications.argoproj.io "nothing" not found')]
    assert requests.get(f"{fake.url}/api/v1/applications/shop-dev", timeout=10).json() == {
        "error": "no session information", "code": 16, "message": "no session information"}


def test_the_adapter_names_the_project_so_that_argocds_404_and_403_mean_what_they_say(fake, fake_rest, objects):
    fake_rest.sync("shop-dev")
    fake_rest.refresh("shop-dev")
    calls = [(r.method, r.path, r.query, r.body) for r in fake.requests]
    assert calls == [("POST", "/api/v1/applications/shop-dev/sync", "",
                      {"name": "shop-dev", "prune": True, "project": "dev"}),
                     ("GET", "/api/v1/applications/shop-dev", "refresh=normal&project=dev", None)]
    fake.denied.add("shop-dev")  # the account's RBAC no longer covers it: the application exists
    with pytest.raises(AuthFailed, match="permission denied"):
        fake_rest.refresh("shop-dev")


def test_a_sync_through_the_api_ends_as_the_controller_writes_it(fake, fake_rest, objects):
    fake_rest.sync("shop-dev")
    app = objects.get("applications", "shop-dev")
    assert app["operation"] == {"sync": {"source": SOURCE, "revision": "main", "prune": True,
                                         "syncOptions": SYNC_OPTIONS}, "initiatedBy": {"username": "portal"}}
    with pytest.raises(Conflict, match="another operation is already in progress") as info:
        fake_rest.sync("shop-dev")
    assert info.value.status == 400
    fake.finish_operation("shop-dev", revision="0f3c2a1", images=("registry.example.com/dev/shop:0f3c2a1",))
    status = fake_rest.status("shop-dev")
    assert (status.sync, status.health, status.operation, status.revision, status.images) == (
        "Synced", "Healthy", "Succeeded", "0f3c2a1", ("registry.example.com/dev/shop:0f3c2a1",))
    assert [(e.id, e.revision) for e in status.history] == [(0, "0f3c2a1")]
    assert "operation" not in objects.get("applications", "shop-dev")
    fake_rest.sync("shop-dev")  # the next one is accepted again


def test_through_the_api_an_application_being_deleted_is_not_synced(fake_rest, objects):
    fake_rest.delete_application("shop-dev")  # it stays until Argo CD's finalizer is done
    with pytest.raises(InvalidRequest, match="application is deleting") as info:
        fake_rest.sync("shop-dev")
    assert info.value.status == 400 and "operation" not in objects.get("applications", "shop-dev")


CALLS: dict[str, Callable[[ArgoCDDelivery], Any]] = {
    "sync": lambda adapter: adapter.sync("shop-dev"),
    "refresh": lambda adapter: adapter.refresh("shop-dev"),
}
ENDPOINT = {"sync": ("POST", r"/sync$"), "refresh": ("GET", r"/applications/shop-dev$")}


def grpc_error(message: str, code: int) -> str:
    return json.dumps({"error": message, "code": code, "message": message})


@pytest.mark.parametrize("call, status, headers, body, error, said", [
    ("refresh", 401, {}, grpc_error("invalid session: token has invalid claims: token is expired", 16), AuthFailed,
     "invalid session: token has invalid claims: token is expired"),
    ("sync", 403, {}, grpc_error("permission denied: applications, sync, dev/shop-dev, sub: portal", 7), AuthFailed,
     "permission denied: applications, sync, dev/shop-dev"),
    ("sync", 404, {}, grpc_error('applications.argoproj.io "shop-dev" not found', 5), NotFound,
     'applications.argoproj.io "shop-dev" not found'),
    ("sync", 400, {}, grpc_error('app is not allowed in project "dev", or the project does not exist', 3),
     InvalidRequest, 'app is not allowed in project "dev"'),
    ("sync", 400, {}, grpc_error("another operation is already in progress", 9), Conflict,
     "another operation is already in progress"),
    ("refresh", 429, {"Retry-After": "7"}, None, RateLimited, "Too Many Requests"),
    ("sync", 500, {}, grpc_error("error setting app operation: etcdserver: request timed out", 13), Unavailable,
     "etcdserver: request timed out"),
    ("refresh", 502, {"Content-Type": "text/plain"}, "Bad Gateway: argocd-server is restarting", Unavailable,
     "Bad Gateway: argocd-server is restarting"),
])
def test_each_failure_is_translated_with_argocds_message(fake, fake_rest, call, status, headers, body, error, said):
    method, where = ENDPOINT[call]
    fake.fail_next(method, where, status, headers=headers, body=body)
    with pytest.raises(error) as info:
        CALLS[call](fake_rest)
    assert type(info.value) is error and info.value.system == "argocd" and info.value.status == status
    assert said in info.value.message and f"HTTP {status}" in info.value.message
    assert info.value.__cause__ is not None and TOKEN not in str(info.value)
    if error is RateLimited:
        assert info.value.retry_after == 7.0
    CALLS[call](fake_rest)  # the fault was for one request only


@pytest.mark.parametrize("call", ["sync", "refresh"])
def test_an_argocd_that_does_not_answer_in_time_is_unavailable(fake, connect, call):
    adapter = connect(url=fake.url, token=TOKEN, retries=0, timeout=0.3)
    adapter.ensure_project(project_spec())
    adapter.ensure_application(app_spec())
    fake.fail_next(*ENDPOINT[call], None, delay=3)
    with pytest.raises(Unavailable, match="no answer within 0.3s") as info:
        CALLS[call](adapter)
    assert info.value.status is None and info.value.__cause__ is not None


def test_an_argocd_that_is_not_there_is_unavailable(connect):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = connect(url=f"http://127.0.0.1:{port}", token=TOKEN, retries=0)
    adapter.ensure_application(app_spec())
    with pytest.raises(Unavailable, match="cannot connect"):
        adapter.refresh("shop-dev")


def test_a_refresh_is_retried_after_a_5xx_and_a_sync_is_not(fake, connect):
    adapter = connect(url=fake.url, token=TOKEN, retries=2)
    adapter.ensure_project(project_spec())
    adapter.ensure_application(app_spec())
    fake.fail_next("GET", ENDPOINT["refresh"][1], 503, times=2)
    adapter.refresh("shop-dev")
    assert [r.status for r in fake.requests] == [503, 503, 200]
    fake.fail_next("POST", ENDPOINT["sync"][1], 503)
    with pytest.raises(Unavailable):
        adapter.sync("shop-dev")
    assert [r.status for r in fake.requests if r.method == "POST"] == [503]


def test_the_token_is_masked_even_where_argocd_would_repeat_it(fake, fake_rest):
    fake.fail_next("GET", ENDPOINT["refresh"][1], 401, body=grpc_error(f"invalid session: {TOKEN}", 16))
    with pytest.raises(AuthFailed) as info:
        fake_rest.refresh("shop-dev")
    assert TOKEN not in str(info.value) and "invalid session: ***" in info.value.message


def test_an_answer_that_is_not_json_is_an_error_of_its_own(fake, fake_rest):
    fake.fail_next("POST", ENDPOINT["sync"][1], 200, body="<html>Argo CD</html>")
    with pytest.raises(IntegrationError, match="not JSON") as info:
        fake_rest.sync("shop-dev")
    assert type(info.value) is IntegrationError and not info.value.transient
