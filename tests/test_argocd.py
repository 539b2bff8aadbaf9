"""The Argo CD adapter's declared objects (AppProjects, cluster Secrets, Applications) against the testbed's real
Kubernetes API server with Argo CD's CRDs installed, playing the central cluster; and that cluster's refusals
and silences.

No Argo CD controller runs here: nothing reconciles what the adapter declares (see test_argocd_status.py for
the status it would write).
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from integrations.argocd import ArgoCDDelivery
from integrations.argocd_manifests import FINALIZER, value_file
from integrations.cluster import ClusterTarget
from integrations.delivery import Delivery, Destination
from integrations.errors import AuthFailed, Conflict, IntegrationError, InvalidRequest, NotFound, Unavailable
from portal.config import Settings
from tests import argocd_support
from tests.argocd_support import (
    CLUSTER_TOKEN, DEV, GROUP, MANAGED, OWNER, REPO, SYNC_OPTIONS, TOKEN, URL, VERSION, Objects, app_spec, b64,
    project_spec, unb64,
)
from tests.real_servers import wait_for

# The fixtures shared with the other Argo CD tests: pytest finds them by these names.
argocd_crds, argo_ns, objects = argocd_support.argocd_crds, argocd_support.argo_ns, argocd_support.objects
central, connect, delivery = argocd_support.central, argocd_support.connect, argocd_support.delivery
service_account = argocd_support.service_account


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
            assert info.value.transient and info.value.__cause__ is not None
            assert f"cannot reach {host}: {said}" in str(info.value)

