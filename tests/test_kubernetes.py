"""The Kubernetes adapter against the testbed's real control plane (API server, controllers, scheduler, KWOK).

The portal's identity is a ServiceAccount holding only the ClusterRole below, which is what the adapter
claims to need; the team's people are users impersonated into the group ``team:<team>``, so every
allowed and refused request is decided by the API server's own RBAC.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator

import pytest
import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from integrations.cluster import (
    ClusterAccess, ClusterConnector, ClusterTarget, Limits, NamespaceSpec, PullSecret, Quota,
)
from integrations.errors import AuthFailed, Conflict, IntegrationError, InvalidRequest, NotFound, Unavailable
from integrations.kubernetes import PERMISSIONS, KubernetesCluster, KubernetesConnector
from testbed.process import free_port
from tests.real_servers import wait_for

RBAC = "rbac.authorization.k8s.io"
# What the portal's identity is given in a cluster: what ``check()`` asks about, and what the tests apply.
PORTAL_RULES = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["resourcequotas", "limitranges"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch", "list", "delete"]},
    {"apiGroups": [RBAC], "resources": ["rolebindings"], "verbs": ["create", "patch"]},
    {"apiGroups": [RBAC], "resources": ["clusterroles"], "resourceNames": ["edit"], "verbs": ["bind"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
     "verbs": ["list", "create", "patch"]},
    {"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["create", "patch"]},
]
TIMEOUT = 10.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def spec_for(name: str, owner: str = "app-owner-1", team: str = "dev", **overrides) -> NamespaceSpec:
    return NamespaceSpec(name=name, owner=owner, team_group=f"team:{team}",
                         labels={"portal.dev/team": team, "portal.dev/environment": "dev"}, **overrides)


def deployment(name: str, replicas: int = 1, resources: dict | None = None) -> dict:
    labels = {"app.kubernetes.io/name": name}
    container = {"name": "web", "image": f"registry.local/{name}:1", **({"resources": resources} if resources else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


def missing(read) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


# --- identities and connections ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_pem(control_plane) -> str:
    return (control_plane.state / "pki" / "ca.crt").read_text()


@pytest.fixture(scope="module")
def service_account(kube_api, control_plane, ca_pem):
    """``service_account(rules, name)``: a ClusterTarget named after a new ServiceAccount holding ``rules``,
    with its token; the accounts live in the namespace ``service_account.namespace``."""
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    home = unique("portal-system")
    core.create_namespace({"metadata": {"name": home}})
    made: list[str] = []

    def make(rules: list[dict], name: str = "portal") -> ClusterTarget:
        account = unique(name)
        core.create_namespaced_service_account(home, {"metadata": {"name": account}})
        rbac.create_cluster_role({"metadata": {"name": account}, "rules": rules})
        rbac.create_cluster_role_binding({
            "metadata": {"name": account},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": home}]})
        made.append(account)
        token = core.create_namespaced_service_account_token(account, home, {"spec": {}}).status.token
        # Named after its account: each identity is a cluster registration of its own.
        return ClusterTarget(name=account, api_url=control_plane.server, ca_pem=ca_pem, token=token)

    make.namespace = home
    yield make
    for account in made:
        rbac.delete_cluster_role_binding(account)
        rbac.delete_cluster_role(account)
    core.delete_namespace(home)


@pytest.fixture(scope="module")
def portal_target(service_account) -> ClusterTarget:
    return service_account(PORTAL_RULES)


@pytest.fixture
def connector() -> Iterator[KubernetesConnector]:
    made = KubernetesConnector(timeout=TIMEOUT)
    yield made
    made.close()


@pytest.fixture
def portal(connector, portal_target) -> KubernetesCluster:
    """The adapter as the portal's least-privileged identity."""
    return connector.connect(portal_target)


@pytest.fixture
def admin_target(control_plane) -> ClusterTarget:
    return ClusterTarget(name="test", api_url=control_plane.server, kubeconfig=control_plane.kubeconfig.read_text())


def inline_kubeconfig(control_plane) -> str:
    """The admin's kubeconfig with its certificates inline, as one is pasted into the portal's cluster registry."""
    pki = control_plane.state / "pki"

    def data(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "inline",
        "clusters": [{"name": "c", "cluster": {"server": control_plane.server,
                                               "certificate-authority-data": data("ca.crt")}}],
        "users": [{"name": "u", "user": {"client-certificate-data": data("admin.crt"),
                                         "client-key-data": data("admin.key")}}],
        "contexts": [{"name": "inline", "context": {"cluster": "c", "user": "u"}}]})


@pytest.fixture
def names(kube_api) -> Iterator:
    """``names(prefix)``: a fresh namespace name, whose namespace is deleted after the test if it exists."""
    core, made = client.CoreV1Api(kube_api), []

    def make(prefix: str = "team") -> str:
        made.append(unique(prefix))
        return made[-1]

    yield make
    for name in made:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def quota_counted(core: client.CoreV1Api, namespace: str) -> bool:
    """The quota controller has filled in the quota's status: admission enforces it from then on."""
    quota = core.read_namespaced_resource_quota("portal-quota", namespace)
    return bool(quota.status and quota.status.hard == quota.spec.hard and quota.status.used is not None)


def rejection(cluster: KubernetesCluster) -> AuthFailed | None:
    """The AuthFailed a request of ``cluster`` gets, or None while its credentials still work."""
    try:
        cluster.find_namespace("default")
    except AuthFailed as exc:
        return exc
    return None


def as_team_member(control_plane, team: str) -> client.ApiClient:
    """An API client for a person of ``team``: the admin impersonating a user in the group ``team:<team>``."""
    api = config.new_client_from_config(str(control_plane.kubeconfig))
    api.set_default_header("Impersonate-User", f"someone-of-{team}")
    api.set_default_header("Impersonate-Group", f"team:{team}")
    return api


# --- connecting and checking -----------------------------------------------------------------------


def test_connects_by_kubeconfig_and_by_token_and_ca_and_reuses_the_client(connector, admin_target,
                                                                            portal_target, control_plane):
    assert isinstance(connector, ClusterConnector)
    admin, portal = connector.connect(admin_target), connector.connect(portal_target)
    inline = connector.connect(ClusterTarget(name="inline", api_url=control_plane.server,
                                             kubeconfig=inline_kubeconfig(control_plane)))
    assert isinstance(portal, ClusterAccess)

    for cluster in (admin, inline, portal):
        found = cluster.check()
        assert found.version.startswith("v1.37."), found.version
        assert set(found.permissions) == set(PERMISSIONS)
        assert found.missing == [], found.permissions
    assert connector.connect(portal_target) is portal  # one client per cluster and credentials
    rotated = connector.connect(ClusterTarget(**{**portal_target.__dict__, "token": portal_target.token + "x"}))
    assert rotated is not portal
    broken = "users: [{name: u, user: {token: s3cr3t-in-kubeconfig"
    with pytest.raises(InvalidRequest) as unusable:
        connector.connect(ClusterTarget(name="broken", api_url=control_plane.server, kubeconfig=broken))
    assert "kubeconfig of cluster 'broken' cannot be used" in str(unusable.value)
    assert "s3cr3t" not in str(unusable.value)


def test_check_reports_what_an_identity_with_fewer_rights_lacks(connector, service_account):
    reader = connector.connect(service_account([
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "create", "patch"]}], name="reader"))

    found = reader.check()
    assert found.permissions["read namespaces"] and found.permissions["create namespaces"]
    assert {"delete namespaces", "create rolebindings", "bind clusterrole edit", "manage pull secrets"} <= set(
        found.missing)


# --- namespaces ------------------------------------------------------------------------------------


def test_ensure_namespace_creates_its_quota_limits_access_and_pull_secret_and_a_rerun_changes_nothing(
        portal, kube_api, names):
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    name = names("shop-api-dev")
    pull = PullSecret(name="registry-pull", server="registry.example:5000", username="dev-robot",
                      password="s3cret-pull")
    spec = spec_for(name, quota=Quota(cpu="2", memory="4Gi", pods=20, limits_cpu="4", limits_memory="8Gi"),
                    limits=Limits(default_request_cpu="50m", default_request_memory="64Mi",
                                  default_limit_cpu="250m", default_limit_memory="256Mi"), pull_secret=pull)

    made = portal.ensure_namespace(spec)

    assert (made.system, made.kind, made.external_id, made.name, made.owner) == (
        "kubernetes", "namespace", name, name, "app-owner-1")
    assert made.url == f"{portal.api_url}/api/v1/namespaces/{name}"
    assert made.attributes["quota.cpu"] == "2" and made.attributes["pull_secret"] == "registry-pull"
    ns = core.read_namespace(name)
    assert ns.metadata.labels["portal.dev/team"] == "dev"
    assert ns.metadata.labels["app.kubernetes.io/managed-by"] == "developer-portal"
    assert ns.metadata.labels["portal.dev/owner"] == ns.metadata.annotations["portal.dev/owner"] == "app-owner-1"
    quota = core.read_namespaced_resource_quota("portal-quota", name)
    assert quota.spec.hard == {"requests.cpu": "2", "requests.memory": "4Gi", "limits.cpu": "4",
                               "limits.memory": "8Gi", "pods": "20"}
    limits = core.read_namespaced_limit_range("portal-limits", name).spec.limits[0]
    assert (limits.type, limits.default_request, limits.default) == (
        "Container", {"cpu": "50m", "memory": "64Mi"}, {"cpu": "250m", "memory": "256Mi"})
    binding = rbac.read_namespaced_role_binding("portal-team", name)
    assert (binding.role_ref.kind, binding.role_ref.name) == ("ClusterRole", "edit")
    assert [(s.kind, s.name) for s in binding.subjects] == [("Group", "team:dev")]
    secret = core.read_namespaced_secret("registry-pull", name)
    assert secret.type == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))["auths"]
    assert auths == {"registry.example:5000": {"username": "dev-robot", "password": "s3cret-pull",
                                               "auth": base64.b64encode(b"dev-robot:s3cret-pull").decode()}}
    found = portal.find_namespace(name)
    assert (found.owner, found.url) == ("app-owner-1", made.url)

    # Again with the same spec: server-side apply writes nothing.
    wait_for(lambda: quota_counted(core, name), what="quota counted")
    reads = {
        "namespace": lambda: core.read_namespace(name),
        "quota": lambda: core.read_namespaced_resource_quota("portal-quota", name),
        "limits": lambda: core.read_namespaced_limit_range("portal-limits", name),
        "binding": lambda: rbac.read_namespaced_role_binding("portal-team", name),
        "secret": lambda: core.read_namespaced_secret("registry-pull", name),
    }
    before = {what: read().metadata.resource_version for what, read in reads.items()}
    assert portal.ensure_namespace(spec) == made
    assert {what: read().metadata.resource_version for what, read in reads.items()} == before

    # A changed spec converges: the quota follows, a renamed pull secret replaces the old one.
    moved = PullSecret(name="registry-pull-2", server=pull.server, username="dev-robot", password="n3w")
    portal.ensure_namespace(spec_for(name, quota=Quota(cpu="3", memory="6Gi", pods=30), pull_secret=moved))
    assert core.read_namespaced_resource_quota("portal-quota", name).spec.hard == {
        "requests.cpu": "3", "requests.memory": "6Gi", "limits.cpu": "8", "limits.memory": "16Gi", "pods": "30"}
    assert core.read_namespaced_limit_range("portal-limits", name).spec.limits[0].default == {
        "cpu": "500m", "memory": "512Mi"}
    assert missing(lambda: core.read_namespaced_secret("registry-pull", name))
    assert core.read_namespaced_secret("registry-pull-2", name).type == "kubernetes.io/dockerconfigjson"


def test_the_team_works_in_its_own_namespace_and_gets_real_403s_elsewhere(portal, control_plane, names):
    mine, theirs = names("dev-shop-dev"), names("ops-tool-dev")
    portal.ensure_namespace(spec_for(mine, team="dev"))
    portal.ensure_namespace(spec_for(theirs, owner="app-owner-2", team="ops"))

    with as_team_member(control_plane, "dev") as api:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        core.create_namespaced_config_map(mine, {"metadata": {"name": "settings"}, "data": {"mode": "dev"}})
        apps.create_namespaced_deployment(mine, deployment("web"))
        assert [d.metadata.name for d in apps.list_namespaced_deployment(mine).items] == ["web"]
        refused = [
            lambda: core.create_namespaced_config_map(theirs, {"metadata": {"name": "settings"}}),
            lambda: apps.list_namespaced_deployment(theirs),
            lambda: core.list_node(),
            lambda: core.list_namespace(),
            lambda: core.delete_namespace(mine),  # edit in a namespace is not power over the namespace
        ]
        for call in refused:
            with pytest.raises(ApiException) as denied:
                call()
            assert denied.value.status == 403
            assert 'is forbidden: User "someone-of-dev"' in json.loads(denied.value.body)["message"]


def test_a_namespace_without_the_owners_marker_is_never_adopted_nor_deleted(portal, kube_api, names):
    core = client.CoreV1Api(kube_api)
    legacy = names("legacy")
    core.create_namespace({"metadata": {"name": legacy, "labels": {"owner": "someone"}}})
    core.create_namespaced_config_map(legacy, {"metadata": {"name": "keep"}, "data": {"a": "1"}})
    before = core.read_namespace(legacy).metadata.resource_version

    with pytest.raises(Conflict) as refused:
        portal.ensure_namespace(spec_for(legacy))
    assert f"namespace {legacy} exists and is not managed by the portal for this application" in str(refused.value)
    assert "refusing to adopt it" in str(refused.value)
    assert portal.find_namespace(legacy).owner is None
    with pytest.raises(Conflict, match="refusing to delete it"):
        portal.delete_namespace(legacy)

    ns = core.read_namespace(legacy)
    assert ns.metadata.resource_version == before and ns.status.phase == "Active"
    assert ns.metadata.labels == {"owner": "someone", "kubernetes.io/metadata.name": legacy}
    assert core.list_namespaced_resource_quota(legacy).items == []
    assert core.read_namespaced_config_map("keep", legacy).data == {"a": "1"}

    # Made by the portal, for another application: not adopted either.
    other = names("other-app")
    portal.ensure_namespace(spec_for(other, owner="app-owner-2"))
    with pytest.raises(Conflict, match="belongs to app-owner-2"):
        portal.ensure_namespace(spec_for(other, owner="app-owner-1"))
    assert core.read_namespace(other).metadata.annotations["portal.dev/owner"] == "app-owner-2"


# --- manifests and workloads -----------------------------------------------------------------------


def test_applied_workloads_run_with_the_namespace_defaults_and_are_listed(portal, kube_api, names):
    core, name = client.CoreV1Api(kube_api), names("web-dev")
    portal.ensure_namespace(spec_for(name))
    wait_for(lambda: quota_counted(core, name), what="quota counted")
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "data": {"a": "1"}}
    database = {**deployment("db"), "kind": "StatefulSet"}
    agent = deployment("agent")
    agent.update(kind="DaemonSet", spec={k: v for k, v in agent["spec"].items() if k != "replicas"})

    applied = portal.apply(name, [config_map, deployment("web", replicas=2), database, agent])

    assert [(r.kind, r.external_id) for r in applied] == [
        ("ConfigMap", f"{name}/ConfigMap/web"), ("Deployment", f"{name}/Deployment/web"),
        ("StatefulSet", f"{name}/StatefulSet/db"), ("DaemonSet", f"{name}/DaemonSet/agent")]
    assert applied[1].url == f"{portal.api_url}/apis/apps/v1/namespaces/{name}/deployments/web"

    def all_ready():
        found = portal.list_workloads(name)
        return len(found) == 3 and all(w.ready == w.desired > 0 for w in found) and found

    ready = wait_for(all_ready, what="every workload ready")
    assert [(w.kind, w.name, w.namespace, w.ready, w.desired) for w in ready] == [
        ("DaemonSet", "agent", name, 3, 3), ("Deployment", "web", name, 2, 2), ("StatefulSet", "db", name, 1, 1)]
    assert [w.details["images"] for w in ready] == [
        ["registry.local/agent:1"], ["registry.local/web:1"], ["registry.local/db:1"]]
    # The pods said nothing of resources: the LimitRange's defaults are what the quota counted.
    pod = core.list_namespaced_pod(name).items[0]
    assert pod.spec.containers[0].resources.requests == {"cpu": "100m", "memory": "128Mi"}
    assert pod.spec.containers[0].resources.limits == {"cpu": "500m", "memory": "512Mi"}
    # Applying the same manifest again changes nothing: the same object, at its first generation.
    again = portal.apply(name, [deployment("web", replicas=2)])
    assert again[0].attributes["uid"] == applied[1].attributes["uid"]
    assert client.AppsV1Api(kube_api).read_namespaced_deployment("web", name).metadata.generation == 1


def test_manifests_that_cannot_be_applied_are_invalid_requests(portal, names):
    name = names("bad-dev")
    portal.ensure_namespace(spec_for(name))
    wrong_type = deployment("web")
    wrong_type["spec"]["replicas"] = "three"

    negative = deployment("web", replicas=-1)

    with pytest.raises(InvalidRequest) as typed:  # server-side apply says 500, but retrying won't help
        portal.apply(name, [wrong_type])
    assert typed.value.status == 500 and "failed to create typed patch object" in typed.value.message
    assert ".spec.replicas: expected numeric" in typed.value.message
    with pytest.raises(InvalidRequest) as invalid:
        portal.apply(name, [negative])
    assert invalid.value.status == 422 and "spec.replicas: Invalid value: -1" in invalid.value.message
    with pytest.raises(InvalidRequest, match="names namespace elsewhere"):
        portal.apply(name, [{**deployment("web"), "metadata": {"name": "web", "namespace": "elsewhere"}}])
    with pytest.raises(InvalidRequest, match="cluster-wide"):
        portal.apply(name, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sneaky"}}])
    with pytest.raises(InvalidRequest, match="serves no kind Gadget"):
        portal.apply(name, [{"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "g"}}])
    with pytest.raises(NotFound):
        portal.apply(unique("absent"), [deployment("web")])
    with pytest.raises(NotFound):
        portal.list_workloads(unique("absent"))


def test_pods_beyond_the_quota_are_refused_with_the_servers_message(portal, kube_api, names):
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    name = names("small-dev")
    portal.ensure_namespace(spec_for(name, quota=Quota(cpu="500m", memory="512Mi", pods=5, limits_cpu="1",
                                                       limits_memory="1Gi")))
    wait_for(lambda: quota_counted(core, name), what="quota counted")
    big = {"requests": {"cpu": "2", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "256Mi"}}

    portal.apply(name, [deployment("big", replicas=1, resources=big)])  # the Deployment itself is accepted...

    def failure() -> str:
        conditions = apps.read_namespaced_deployment("big", name).status.conditions or []
        return next((c.message for c in conditions if c.type == "ReplicaFailure" and c.status == "True"), "")

    assert "exceeded quota: portal-quota" in wait_for(failure, what="ReplicaFailure condition")
    assert core.list_namespaced_pod(name).items == []  # ...but none of its pods
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
           "spec": {"containers": [{"name": "web", "image": "registry.local/big:1", "resources": big}]}}
    with pytest.raises(InvalidRequest) as refused:
        portal.apply(name, [pod])
    assert refused.value.status == 403
    assert 'pods "big" is forbidden: exceeded quota: portal-quota' in refused.value.message
    assert core.list_namespaced_pod(name).items == []


def test_deleting_a_namespace_removes_it_and_everything_in_it(portal, kube_api, names):
    core, name = client.CoreV1Api(kube_api), names("gone-dev")
    portal.ensure_namespace(spec_for(name))
    portal.apply(name, [deployment("web")])

    portal.delete_namespace(name)

    assert wait_for(lambda: portal.find_namespace(name) is None, what="namespace deleted")
    assert missing(lambda: core.read_namespace(name))
    with pytest.raises(NotFound):
        portal.delete_namespace(name)


# --- failures --------------------------------------------------------------------------------------


def test_an_unreachable_cluster_is_unavailable(ca_pem):
    port = free_port()
    with socket.socket() as silent:  # accepts connections into its backlog and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        connector = KubernetesConnector(timeout=0.5)
        try:
            for url, said in ((f"https://127.0.0.1:{port}", "cannot connect"),
                              (f"https://127.0.0.1:{silent.getsockname()[1]}", "no answer within 0.5s")):
                cluster = connector.connect(ClusterTarget(name=url, api_url=url, ca_pem=ca_pem, token="t0ken"))
                with pytest.raises(Unavailable) as unreachable:
                    cluster.check()
                assert f"cannot reach {url}: {said}" in str(unreachable.value)
                assert unreachable.value.transient
        finally:
            connector.close()


def test_tls_is_verified_against_the_clusters_ca_unless_the_cluster_says_not_to(connector, portal_target):
    without_ca = ClusterTarget(**{**portal_target.__dict__, "ca_pem": ""})  # the system's CAs: not the testbed's

    with pytest.raises(IntegrationError) as refused:
        connector.connect(without_ca).check()
    assert type(refused.value) is IntegrationError and not refused.value.transient
    assert f"TLS handshake with {portal_target.api_url} failed" in str(refused.value)
    unverified = ClusterTarget(**{**without_ca.__dict__, "name": "unverified", "verify": False})
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        assert connector.connect(unverified).check().missing == []


def test_rejected_or_insufficient_credentials_are_auth_failed_and_never_shown(
        connector, service_account, portal_target, kube_api, names):
    revoked = service_account(PORTAL_RULES, name="revoked")
    assert connector.connect(revoked).find_namespace("default") is not None
    client.CoreV1Api(kube_api).delete_namespaced_service_account(revoked.name, service_account.namespace)
    invalid = ClusterTarget(**{**portal_target.__dict__, "token": "not-a-token-" + uuid.uuid4().hex})
    reader = service_account([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}], name="reader")

    for target in (invalid, revoked):
        cluster = connector.connect(target)
        # A deleted account's token stops working once the API server's cache has seen the deletion.
        rejected = wait_for(lambda: rejection(cluster), timeout=30, what="credentials rejected")
        assert rejected.status == 401 and "expired or invalid" in rejected.message
        assert target.token not in str(rejected) and target.token not in repr(cluster)
    with pytest.raises(AuthFailed) as forbidden:
        connector.connect(reader).ensure_namespace(spec_for(names("forbidden")))
    assert forbidden.value.status == 403
    assert f'is forbidden: User "system:serviceaccount:{service_account.namespace}:reader-' in forbidden.value.message
    assert "cannot patch resource \"namespaces\"" in forbidden.value.message
    for shown in (repr(connector), repr(connector.connect(portal_target)), repr(portal_target), str(forbidden.value)):
        assert portal_target.token not in shown and reader.token not in shown
