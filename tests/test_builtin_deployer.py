"""The built-in deployer of the embedded mode against the testbed's real control plane (KWOK nodes run the pods),
with the real helm and real bare repositories of the built-in Git host holding the portal's deployment scaffold.

Each test has its own namespace, Git root and deployer state; deployments are changed the way the portal
changes them, by commits to the deployment repository.
"""

from __future__ import annotations

import inspect
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from dulwich.object_store import commit_tree_changes
from dulwich.objects import Commit
from dulwich.repo import Repo
from kubernetes import client

from integrations.builtin_deployer import BuiltinDeployer, glob_match
from integrations.builtin_git import COMMITTER, BuiltinGit
from integrations.cluster import ClusterTarget
from integrations.delivery import Delivery, DeliveryProjectSpec, DeliverySpec, Destination
from integrations.errors import Conflict, InvalidRequest, NotFound, Unavailable
from integrations.scm import RepositorySpec
from scaffolds import ScaffoldContext, render_deployment
from testbed import binaries
from testbed.process import free_port
from tests.real_servers import wait_for

BASE_URL = "http://portal.test"
REPOSITORY = "dev/shop-deploy"
OWNER = "app-7f3a"
APP = "dev-shop-api-dev"
INSTANCE = "app.kubernetes.io/instance"
IMAGE = "registry.test:5000/dev/shop-api"
CONTEXT = ScaffoldContext(team="dev", project="shop", application="api", registry="registry.test:5000",
                          image="dev/shop-api", environments=("dev",))


@pytest.fixture(scope="session")
def helm() -> str:
    return str(binaries.ensure("helm"))


@pytest.fixture
def git(tmp_path) -> BuiltinGit:
    """The built-in Git host with the application's deployment repository, as provisioning creates it."""
    git = BuiltinGit(tmp_path / "git", BASE_URL)
    git.create_repository(RepositorySpec(group="dev", name="shop-deploy", description="Deployment of api",
                                         owner=OWNER, files=render_deployment(CONTEXT, "python-web")))
    return git


@pytest.fixture
def deployer(tmp_path, helm) -> BuiltinDeployer:
    deployer = BuiltinDeployer(tmp_path / "deployer", tmp_path / "git", BASE_URL, helm, timeout=10)
    yield deployer
    deployer.close()


@pytest.fixture
def target(control_plane) -> ClusterTarget:
    return ClusterTarget(name="test", api_url=control_plane.server, kubeconfig=control_plane.inline_kubeconfig())


def project_spec(server: str, namespace: str, **changes) -> DeliveryProjectSpec:
    return DeliveryProjectSpec(**{
        "name": "dev", "owner": "team-dev", "description": "Applications of team dev",
        "source_repos": (f"{BASE_URL}/git/dev/*-deploy.git",),
        "destinations": (Destination(server=server, namespace=namespace),), **changes})


def app_spec(git: BuiltinGit, server: str, namespace: str, **changes) -> DeliverySpec:
    return DeliverySpec(**{
        "name": APP, "owner": OWNER, "project": "dev", "repository_url": git.clone_url(REPOSITORY), "path": "chart",
        "values_file": "values-dev.yaml", "cluster": server, "namespace": namespace,
        "labels": {"portal.dev/team": "dev", "portal.dev/environment": "dev"}, **changes})


@pytest.fixture
def application(deployer, git, target, namespace) -> DeliverySpec:
    """The application's cluster, project and application ensured, as the provisioning steps do."""
    deployer.register_cluster(target, owner="developer-portal")
    deployer.ensure_project(project_spec(target.api_url, namespace))
    spec = app_spec(git, target.api_url, namespace)
    deployer.ensure_application(spec)
    return spec


# --- helpers ----------------------------------------------------------------------------------------

def head(git: BuiltinGit) -> str:
    with Repo(str(git.repository_path(REPOSITORY))) as repo:
        return repo.refs[b"refs/heads/main"].decode()


def set_tag(git: BuiltinGit, tag: str, **more: bytes) -> str:
    """Commit ``tag`` as the image tag of values-dev.yaml (and ``more`` files), as a deploy does; the new head."""
    values = git.read_file(REPOSITORY, "main", "values-dev.yaml").decode()
    updated = re.sub(r"(?m)^  tag: .*$", f'  tag: "{tag}"', values, count=1)
    assert updated != values
    return git.commit_files(REPOSITORY, "main", {"values-dev.yaml": updated.encode(), **more}, f"Deploy {tag}").sha


def delete_file(git: BuiltinGit, path: str) -> str:
    """Commit the removal of ``path`` (the host's contract only adds and replaces files); the new head."""
    with Repo(str(git.repository_path(REPOSITORY))) as repo:
        parent = repo.refs[b"refs/heads/main"]
        commit = Commit()
        commit.tree = commit_tree_changes(repo.object_store, repo[parent].tree, [(path.encode(), None, None)])
        commit.parents = [parent]
        commit.author = commit.committer = COMMITTER
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = f"Remove {path}\n".encode()
        repo.object_store.add_object(commit)
        assert repo.refs.set_if_equals(b"refs/heads/main", parent, commit.id)
        return commit.id.decode()


def labelled(kube_api, namespace: str) -> dict[str, list[str]]:
    """The names of the objects carrying the application's instance label, by kind."""
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    selector = f"{INSTANCE}={APP}"
    found = {"Deployment": apps.list_namespaced_deployment(namespace, label_selector=selector).items,
             "Service": core.list_namespaced_service(namespace, label_selector=selector).items,
             "ServiceAccount": core.list_namespaced_service_account(namespace, label_selector=selector).items}
    return {kind: sorted(o.metadata.name for o in items) for kind, items in found.items() if items}


def deployed_image(kube_api, namespace: str) -> str:
    deployment = client.AppsV1Api(kube_api).read_namespaced_deployment("api", namespace)
    return deployment.spec.template.spec.containers[0].image


def healthy(deployer: BuiltinDeployer, what: str = "the application healthy"):
    return wait_for(lambda: (s := deployer.status(APP)).health == "Healthy" and s, timeout=90, what=what)


# --- deploying ----------------------------------------------------------------------------------------

def test_status_deploys_the_head_of_the_branch_and_the_pods_become_ready(deployer, git, application, namespace,
                                                                         kube_api):
    found = deployer.find_application(APP)
    assert found.owner == OWNER and found.attributes["destination_namespace"] == namespace
    assert labelled(kube_api, namespace) == {}  # ensuring deploys nothing: the first status does

    status = deployer.status(APP)
    assert (status.sync, status.operation, status.revision) == ("Synced", "Succeeded", head(git))
    assert [event.revision for event in status.history] == [head(git)]
    assert status.history[0].image == f"{IMAGE}:latest"
    assert labelled(kube_api, namespace) == {"Deployment": ["api"], "Service": ["api"], "ServiceAccount": ["api"]}
    deployment = client.AppsV1Api(kube_api).read_namespaced_deployment("api", namespace)
    assert deployment.metadata.labels[INSTANCE] == APP
    assert deployment.spec.selector.match_labels == {"app.kubernetes.io/name": "api", INSTANCE: APP}  # the chart's
    assert {m.manager for m in deployment.metadata.managed_fields} >= {"developer-portal"}

    final = healthy(deployer)
    assert (final.sync, final.revision, final.images) == ("Synced", head(git), (f"{IMAGE}:latest",))
    assert len(final.history) == 1  # polling the status does not sync again
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector=f"{INSTANCE}={APP}").items
    assert len(pods) == 1 and pods[0].spec.node_name and all(
        c.status == "True" for c in pods[0].status.conditions if c.type == "Ready")


def test_a_commit_of_a_new_image_tag_is_deployed_by_the_next_status(deployer, git, application, namespace, kube_api):
    first = healthy(deployer, "the first deployment healthy")
    commit = set_tag(git, "1.0.1")
    moved = deployer.status(APP)
    assert (moved.revision, moved.sync, moved.operation) == (commit, "Synced", "Succeeded")
    assert [e.revision for e in moved.history] == [first.revision, commit]
    assert [e.id for e in moved.history] == [0, 1]
    assert deployed_image(kube_api, namespace) == f"{IMAGE}:1.0.1"
    assert healthy(deployer, "the new image rolled out").images == (f"{IMAGE}:1.0.1",)


def test_refresh_syncs_a_moved_branch_and_nothing_else(deployer, git, application, namespace, kube_api):
    deployer.refresh(APP)
    synced = deployer.status(APP)
    assert synced.revision == head(git) and len(synced.history) == 1
    deployer.refresh(APP)  # nothing moved
    assert len(deployer.status(APP).history) == 1
    commit = set_tag(git, "2.0.0")
    deployer.refresh(APP)
    assert deployed_image(kube_api, namespace) == f"{IMAGE}:2.0.0"
    assert [e.revision for e in deployer.status(APP).history][-1] == commit
    deployer.sync(APP)  # an explicit sync always syncs, as Argo CD's does
    assert len(deployer.status(APP).history) == 3


def test_deploying_a_chart_change_that_removes_a_service_removes_it_from_the_cluster(deployer, git, application,
                                                                                     namespace, kube_api):
    deployer.sync(APP)
    assert "Service" in labelled(kube_api, namespace)
    commit = delete_file(git, "chart/templates/service.yaml")
    deployer.sync(APP)
    status = deployer.status(APP)
    assert (status.revision, status.sync, status.operation) == (commit, "Synced", "Succeeded")
    assert "pruned Service/api" in status.message
    assert labelled(kube_api, namespace) == {"Deployment": ["api"], "ServiceAccount": ["api"]}
    with pytest.raises(client.ApiException) as gone:
        client.CoreV1Api(kube_api).read_namespaced_service("api", namespace)
    assert gone.value.status == 404


def test_objects_are_labelled_as_the_applications_whatever_the_chart_says(deployer, git, application, namespace,
                                                                          kube_api):
    plain = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  a: b\n"
    git.commit_files(REPOSITORY, "main", {"chart/templates/plain.yaml": plain}, "A plain ConfigMap")
    deployer.sync(APP)
    core = client.CoreV1Api(kube_api)
    assert core.read_namespaced_config_map("plain", namespace).metadata.labels == {INSTANCE: APP}
    delete_file(git, "chart/templates/plain.yaml")
    assert "pruned ConfigMap/plain" in deployer.status(APP).message
    assert not core.list_namespaced_config_map(namespace, label_selector=f"{INSTANCE}={APP}").items


def test_a_rollback_is_a_commit_restoring_the_earlier_tag(deployer, git, application, namespace, kube_api):
    healthy(deployer, "the first deployment healthy")
    set_tag(git, "1.0.1")
    assert healthy(deployer, "1.0.1 rolled out").images == (f"{IMAGE}:1.0.1",)
    rollback = set_tag(git, "latest")
    status = healthy(deployer, "the rollback rolled out")
    assert status.revision == rollback and status.images == (f"{IMAGE}:latest",)
    assert deployed_image(kube_api, namespace) == f"{IMAGE}:latest"
    assert [e.image for e in status.history] == [f"{IMAGE}:latest", f"{IMAGE}:1.0.1", f"{IMAGE}:latest"]
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector=f"{INSTANCE}={APP}").items
    assert {p.spec.containers[0].image for p in pods if not p.metadata.deletion_timestamp} == {f"{IMAGE}:latest"}


def test_a_chart_helm_cannot_render_fails_the_sync_and_leaves_the_cluster_alone(deployer, git, application,
                                                                              namespace, kube_api):
    first = healthy(deployer, "the first deployment healthy")
    broken = set_tag(git, "9.9.9", **{"chart/templates/broken.yaml": b"kind: {{ .Values.nope.missing }}\n"})
    failed = deployer.status(APP)
    assert (failed.revision, failed.sync, failed.operation) == (broken, "OutOfSync", "Failed")
    assert "helm template failed" in failed.message and "broken.yaml" in failed.message
    assert "nil pointer" in failed.message  # helm's own words
    assert "portal-deployer-" not in failed.message  # not the temporary folder
    assert deployed_image(kube_api, namespace) == f"{IMAGE}:latest"  # nothing was applied
    assert labelled(kube_api, namespace) == {"Deployment": ["api"], "Service": ["api"], "ServiceAccount": ["api"]}
    assert [e.revision for e in failed.history] == [first.revision]
    assert failed.health == "Healthy"  # what runs is still the previous deployment
    # A revision whose automatic sync failed is not rendered again at every poll.
    assert deployer.status(APP).operation_started_at == failed.operation_started_at

    fixed = git.commit_files(REPOSITORY, "main", {"chart/templates/broken.yaml": b"# nothing\n"}, "Fix").sha
    status = deployer.status(APP)
    assert (status.revision, status.sync, status.operation) == (fixed, "Synced", "Succeeded")
    assert deployed_image(kube_api, namespace) == f"{IMAGE}:9.9.9"


def test_an_object_the_api_server_refuses_fails_the_sync_with_its_message(deployer, git, application, namespace,
                                                                          kube_api):
    synced = deployer.status(APP)
    bad = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Name\n"
    refused = git.commit_files(REPOSITORY, "main", {"chart/templates/bad.yaml": bad}, "Bad").sha
    status = deployer.status(APP)
    assert (status.revision, status.sync, status.operation) == (refused, "OutOfSync", "Failed")
    assert "Not_A_Name" in status.message and "HTTP 422" in status.message  # the API server's own words
    assert [e.revision for e in status.history] == [synced.revision]


def test_moving_the_application_to_another_namespace_removes_it_from_the_first(deployer, git, application, target,
                                                                               namespace, kube_api):
    deployer.sync(APP)
    core, other = client.CoreV1Api(kube_api), f"{namespace}-moved"
    core.create_namespace({"metadata": {"name": other}})
    try:
        deployer.ensure_project(project_spec(target.api_url, namespace, destinations=(
            Destination(target.api_url, namespace), Destination(target.api_url, other))))
        deployer.ensure_application(app_spec(git, target.api_url, other))
        status = deployer.status(APP)  # a changed spec is synced again, as a new commit is
        assert (status.sync, status.operation, len(status.history)) == ("Synced", "Succeeded", 2)
        assert f"pruned {namespace}/Deployment/api" in status.message
        assert labelled(kube_api, namespace) == {}
        assert labelled(kube_api, other) == {"Deployment": ["api"], "Service": ["api"], "ServiceAccount": ["api"]}
    finally:
        core.delete_namespace(other)


def test_pods_that_cannot_be_created_make_the_application_degraded(deployer, git, application, namespace, kube_api):
    client.CoreV1Api(kube_api).create_namespaced_resource_quota(namespace, {
        "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}})
    deployer.sync(APP)
    degraded = wait_for(lambda: (s := deployer.status(APP)).health == "Degraded" and s, timeout=60,
                        what="the application degraded")
    assert degraded.operation == "Succeeded" and degraded.sync == "Synced"  # applied fine; its pods cannot run
    assert "Deployment/api" in degraded.message and "exceeded quota" in degraded.message


def test_a_chart_may_not_set_the_namespaces_quota(deployer, git, application, namespace, kube_api):
    quota = b"apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: more\nspec:\n  hard:\n    pods: '1000'\n"
    git.commit_files(REPOSITORY, "main", {"chart/templates/quota.yaml": quota}, "More")
    status = deployer.status(APP)
    assert status.operation == "Failed" and "ResourceQuota" in status.message and status.health == "Missing"
    assert labelled(kube_api, namespace) == {}


def test_concurrent_callers_sync_once(deployer, git, application, namespace, monkeypatch):
    deployer.sync(APP)
    commit = set_tag(git, "3.0.0")
    rendered, render = [], deployer.sources.render
    monkeypatch.setattr(deployer.sources, "render", lambda spec, sha: rendered.append(sha) or render(spec, sha))
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: deployer.status(APP), range(4)))
    assert {(s.revision, s.sync, s.operation) for s in statuses} == {(commit, "Synced", "Succeeded")}
    assert rendered == [commit]  # the others waited for the lock, then found the head synced
    assert [e.revision for e in deployer.status(APP).history][1:] == [commit]


# --- projects, clusters, ownership ----------------------------------------------------------------------

def test_an_application_its_project_does_not_allow_is_refused(deployer, git, target, namespace):
    deployer.register_cluster(target, owner="developer-portal")
    with pytest.raises(InvalidRequest, match="project dev does not exist"):
        deployer.ensure_application(app_spec(git, target.api_url, namespace))
    deployer.ensure_project(project_spec(target.api_url, namespace,
                                         source_repos=(f"{BASE_URL}/git/ops/*-deploy.git",)))
    with pytest.raises(InvalidRequest, match=f"repository {BASE_URL}/git/dev/shop-deploy.git is not permitted"):
        deployer.ensure_application(app_spec(git, target.api_url, namespace))
    deployer.ensure_project(project_spec(target.api_url, "dev-*"))
    with pytest.raises(InvalidRequest, match=f"namespace {namespace} is not permitted"):
        deployer.ensure_application(app_spec(git, target.api_url, namespace))
    with pytest.raises(InvalidRequest, match="only from there"):
        deployer.ensure_application(app_spec(git, target.api_url, "dev-x",
                                             repository_url="https://gitlab.example.com/dev/shop-deploy.git"))
    with pytest.raises(InvalidRequest, match="not a relative path"):
        deployer.ensure_application(app_spec(git, target.api_url, "dev-x", values_file="../values-dev.yaml"))
    assert deployer.find_application(APP) is None
    assert deployer.ensure_application(app_spec(git, target.api_url, "dev-shop")).owner == OWNER


def test_globs_of_projects_stay_within_a_path_segment():
    assert glob_match(f"{BASE_URL}/git/dev/*-deploy.git", f"{BASE_URL}/git/dev/shop-deploy.git")
    assert not glob_match(f"{BASE_URL}/git/dev/*-deploy.git", f"{BASE_URL}/git/dev/a/b-deploy.git")
    assert not glob_match("dev-*", "ops-shop") and glob_match("*", "https://anything/at/all")


def test_delete_application_removes_what_it_deployed(deployer, git, application, namespace, kube_api):
    deployer.sync(APP)
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "someone-elses"}})
    deployer.delete_application(APP)
    assert labelled(kube_api, namespace) == {}
    assert core.read_namespaced_config_map("someone-elses", namespace)  # unlabelled: not the application's
    assert deployer.find_application(APP) is None
    with pytest.raises(NotFound):
        deployer.delete_application(APP)
    with pytest.raises(NotFound):
        deployer.status(APP)


def test_projects_clusters_and_applications_keep_their_owners(deployer, git, application, target, namespace):
    with pytest.raises(Conflict):
        deployer.ensure_project(project_spec(target.api_url, namespace, owner="team-ops"))
    with pytest.raises(Conflict):
        deployer.register_cluster(target, owner="someone-else")
    with pytest.raises(Conflict):
        deployer.ensure_application(app_spec(git, target.api_url, namespace, owner="app-other"))
    with pytest.raises(Conflict, match="still has applications"):
        deployer.delete_project("dev")
    assert deployer.find_project("dev").owner == "team-dev"
    cluster = deployer.find_cluster("test")
    assert cluster.owner == "developer-portal" and cluster.attributes["server"] == target.api_url
    assert "BEGIN" not in repr(cluster) and "client-key" not in repr(cluster)
    deployer.delete_application(APP)
    deployer.delete_project("dev")
    deployer.delete_cluster("test")
    assert deployer.find_project("dev") is None and deployer.find_cluster("test") is None
    with pytest.raises(NotFound):
        deployer.delete_cluster("test")


def test_the_state_on_disk_is_readable_by_the_portals_user_only(deployer, application, tmp_path):
    root = tmp_path / "deployer"
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {p.parent.name for p in files} >= {"projects", "clusters", "applications", "locks"}
    for path in [root, *root.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    assert "client-key-data" in (root / "clusters" / "test.json").read_text()  # what the mode protects
    with pytest.raises(InvalidRequest):
        deployer.find_application("../clusters/test")


def test_an_unreachable_cluster_is_an_error_of_sync_and_status_not_a_failed_sync(deployer, git, namespace):
    gone = ClusterTarget(name="gone", api_url=f"https://127.0.0.1:{free_port()}", token="t0k3n")
    deployer.register_cluster(gone, owner="developer-portal")
    deployer.ensure_project(project_spec(gone.api_url, namespace))
    deployer.ensure_application(app_spec(git, gone.api_url, namespace))
    with pytest.raises(Unavailable, match="cannot reach"):
        deployer.sync(APP)
    with pytest.raises(Unavailable):
        deployer.status(APP)  # tried again: an unreachable cluster is not recorded as the revision's failure


# --- the contract ------------------------------------------------------------------------------------

def test_the_deployer_implements_the_delivery_protocol_with_the_same_signatures(deployer):
    assert isinstance(deployer, Delivery) and deployer.system == "builtin-deployer"
    methods = [n for n, v in vars(Delivery).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        assert str(inspect.signature(getattr(BuiltinDeployer, name))) == str(
            inspect.signature(getattr(Delivery, name))), name


def test_the_portal_builds_it_from_its_settings(tmp_path):
    settings = SimpleNamespace(deployer_root=str(tmp_path / "d"), git_root=str(tmp_path / "g"),
                               public_url=BASE_URL + "/", deployer_helm="", http_timeout=7.0)
    deployer = BuiltinDeployer.from_settings(settings)
    try:
        assert deployer.state.root == Path(tmp_path / "d") and deployer.sources.helm == ""
        assert deployer.connector.timeout == 7.0 and deployer.connector.field_manager == "developer-portal"
        assert deployer.sources.repository_path(f"{BASE_URL}/git/dev/shop-deploy.git") == \
            tmp_path / "g" / "dev" / "shop-deploy.git"
    finally:
        deployer.close()
