"""Connected mode, part 2, end to end against real Kubernetes API servers: a central cluster with Argo CD's
CRDs and two team clusters (dev, ops) from the testbed, the GitLab fake holding the deployment repository,
and a stand-in for Argo CD's controller (tests/argocd_controller.py: no Argo CD runs here) that renders the
chart with helm and applies it, so that deploys, rollbacks and promotions end in real Ready pods on KWOK
nodes. Then the delete runs backwards through all of it; and the bad inputs end in clear step errors."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client, config
from sqlalchemy import select

from portal.extensions import db
from portal.models import (
    Application, ApplicationResource, Deployment, DeploymentState, Orphan, RunState, StepState, Team,
)
from testbed.argocd import install_argocd_crds
from testbed.cluster import Cluster
from tests.argocd_controller import ArgoCDStandIn
from tests.factories import ProjectFactory
from tests.provisioning_support import FAST, latest_run, push_to_default_branch
from tests.support import HTMX

ARGOCD = "argocd"
GROUP, VERSION = "argoproj.io", "v1alpha1"


@pytest.fixture(scope="module")
def team_clusters(tmp_path_factory):
    started = {}
    try:
        for name in ("dev", "ops"):
            started[name] = Cluster(f"team-{name}", tmp_path_factory.mktemp(f"team-{name}"), nodes=2).start()
        yield started
    finally:
        for cluster in started.values():
            cluster.stop()


@pytest.fixture(scope="module")
def central(control_plane):
    api = config.new_client_from_config(str(control_plane.kubeconfig))
    install_argocd_crds(api)
    core = client.CoreV1Api(api)
    if ARGOCD not in {n.metadata.name for n in core.list_namespace().items}:
        core.create_namespace({"metadata": {"name": ARGOCD}})
    yield api
    api.close()




@pytest.fixture
def app_overrides(gitlab, control_plane, central):
    return {
        **FAST, "build_poll_interval": 0.05, "deploy_timeout": 60, "environments": "dev,prod", "build_on_create": False,
        "scm": "gitlab", "gitlab_url": gitlab.url, "gitlab_token": gitlab.token, "gitlab_parent_group": "portal",
        "ci": "tests.fakes.providers:FakeCIServer.from_settings",
        "registry": "tests.fakes.providers:FakeImageRegistry.from_settings",
        "cluster": "kubernetes", "delivery": "argocd", "argocd_kubeconfig": str(control_plane.kubeconfig),
        "argocd_namespace": ARGOCD,
    }


@pytest.fixture
def registered(login, admin, team_clusters):
    """The two team clusters registered by an admin through the pages, each bound to its team."""
    c = login(admin)
    for team, cluster in team_clusters.items():
        resp = c.post("/admin/clusters", data={"name": f"{team}-eks", "api_url": cluster.server,
                                               "kubeconfig": cluster.inline_kubeconfig(), "team_names": [team],
                                               "verify_tls": "y"})
        assert resp.status_code == 302, resp.text
    return c


def team_api(cluster: Cluster) -> client.ApiClient:
    return config.new_client_from_config(str(cluster.kubeconfig))


def unique(prefix: str) -> str:
    """A project name of its own: the clusters outlive each test (and serve both database backends)."""
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def create(login, user, project: str, name: str = "web", team: str = "dev"):
    ProjectFactory(name=project, team=Team.by_name(team))
    resp = login(user).post(f"/t/{team}/{project}/apps", data={"name": name, "template": "python-web"})
    assert resp.status_code == 302, resp.text
    return db.session.scalar(select(Application).where(Application.name == name))


def push(app, application: Application, sha: str) -> None:
    push_to_default_branch(app, application, sha)


def deployments() -> list[Deployment]:
    db.session.expire_all()
    return list(db.session.scalars(select(Deployment).order_by(Deployment.number)))


def images_in(cluster: Cluster, namespace: str) -> list[str]:
    with team_api(cluster) as api:
        items = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
        return [c.image for d in items for c in d.spec.template.spec.containers]


def test_provision_deploy_rollback_promote_and_delete_through_argo_cd(app, registered, login, dev_member,
                                                                       dev_maintainer, team_clusters, central,
                                                                       gitlab):
    dev = team_clusters["dev"]
    check = registered.post("/admin/clusters/dev-eks/check", headers=HTMX)
    assert "v1.37" in check.text and "permissions suffice" in check.text, check.text
    shop = unique("shop")
    application = create(login, dev_maintainer, shop)
    run = latest_run(application.id)
    assert run.state == RunState.SUCCEEDED, [(s.name, s.last_error) for s in run.steps]
    assert all(s.state == StepState.SUCCEEDED for s in run.steps)

    # The team cluster: a namespace per environment, labelled, with quota, limits, team access, pull secret.
    with team_api(dev) as api:
        core = client.CoreV1Api(api)
        for env in ("dev", "prod"):
            ns = core.read_namespace(f"dev-{shop}-web-{env}")
            assert ns.metadata.labels["portal.dev/environment"] == env
            assert ns.metadata.annotations["portal.dev/owner"] == application.uid
            quota = core.read_namespaced_resource_quota("portal-quota", ns.metadata.name)
            assert quota.spec.hard["requests.cpu"] == "4"
            binding = client.RbacAuthorizationV1Api(api).read_namespaced_role_binding("portal-team", ns.metadata.name)
            assert binding.subjects[0].name == "team:dev" and binding.role_ref.name == "edit"
            assert core.read_namespaced_secret("registry-pull", ns.metadata.name).type == \
                "kubernetes.io/dockerconfigjson"
    # The central cluster: the team's AppProject, an Application per environment, the cluster Secret.
    custom = client.CustomObjectsApi(central)
    project = custom.get_namespaced_custom_object(GROUP, VERSION, ARGOCD, "appprojects", "dev")
    assert project["spec"]["destinations"] == [{"server": dev.server, "namespace": "dev-*"}]
    argo_app = custom.get_namespaced_custom_object(GROUP, VERSION, ARGOCD, "applications", f"dev-{shop}-web-dev")
    deploy_repo = ApplicationResource.of(application.id, "deployment_repository")
    assert argo_app["spec"]["source"]["repoURL"] == deploy_repo.attributes["http_url"]
    assert argo_app["spec"]["source"]["helm"]["valueFiles"] == ["../values-dev.yaml"]
    assert argo_app["spec"]["destination"] == {"server": dev.server, "namespace": f"dev-{shop}-web-dev"}
    assert argo_app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert "resources-finalizer.argocd.argoproj.io" in argo_app["metadata"]["finalizers"]

    with ArgoCDStandIn(central, ARGOCD, gitlab) as argocd:
        push(app, application, "a" * 40)
        first = deployments()[-1]
        assert first.state == DeploymentState.HEALTHY, (first.message, argocd.errors)
        assert first.pods == "1/1 ready" and first.synced_at and first.healthy_at
        assert images_in(dev, f"dev-{shop}-web-dev") == [f"registry.fake.invalid/dev/{shop}-web:aaaaaaaa"]
        push(app, application, "b" * 40)
        assert deployments()[-1].state == DeploymentState.HEALTHY
        assert images_in(dev, f"dev-{shop}-web-dev") == [f"registry.fake.invalid/dev/{shop}-web:bbbbbbbb"]
        # Roll back to the first image: a commit, then Argo CD (here its stand-in) syncs it.
        resp = login(dev_member).post(f"/t/dev/{shop}/web/deployments/{first.number}/rollback", headers=HTMX)
        assert resp.status_code == 200, resp.text
        assert deployments()[-1].kind == "rollback" and deployments()[-1].state == DeploymentState.HEALTHY
        assert images_in(dev, f"dev-{shop}-web-dev") == [f"registry.fake.invalid/dev/{shop}-web:aaaaaaaa"]
        # Promote what runs in dev to prod (a maintainer).
        assert login(dev_maintainer).post(f"/t/dev/{shop}/web/environments/dev/promote", headers=HTMX).status_code == 200
        promoted = deployments()[-1]
        assert (promoted.environment, promoted.state) == ("prod", DeploymentState.HEALTHY), promoted.message
        assert images_in(dev, f"dev-{shop}-web-prod") == [f"registry.fake.invalid/dev/{shop}-web:aaaaaaaa"]
        status = custom.get_namespaced_custom_object(GROUP, VERSION, ARGOCD, "applications", f"dev-{shop}-web-dev")
        assert status["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}  # never turned off
        page = login(dev_member).get(f"/t/dev/{shop}/web").text
        assert "Promote to prod" not in page  # a member does not get the button
        assert "Roll back to this" in page and f"{shop}-web:aaaaaaaa" in page

        # Delete: backwards through all of it, nothing left, nothing orphaned.
        resp = login(dev_maintainer).post(f"/t/dev/{shop}/web/delete")
        assert resp.status_code == 302
        delete_run = latest_run_of(f"dev/{shop}/web")
        assert delete_run.state == RunState.SUCCEEDED, [(s.name, s.last_error) for s in delete_run.steps]
        assert argocd.errors == []
        # Argo CD removes the resources finalizer once it has deleted what it deployed; then the objects go.
        wait_for(lambda: not {f"dev-{shop}-web-dev", f"dev-{shop}-web-prod"} & {
            a["metadata"]["name"] for a in custom.list_namespaced_custom_object(
                GROUP, VERSION, ARGOCD, "applications")["items"]}, "the Applications to be gone")
    assert not db.session.scalars(select(Orphan)).all()
    projects = {p["metadata"]["name"] for p in custom.list_namespaced_custom_object(
        GROUP, VERSION, ARGOCD, "appprojects")["items"]}
    assert "dev" not in projects  # the team had no other application
    with team_api(dev) as api:
        for env in ("dev", "prod"):
            try:
                ns = client.CoreV1Api(api).read_namespace(f"dev-{shop}-web-{env}")
            except client.ApiException as exc:
                assert exc.status == 404
            else:
                assert ns.status.phase == "Terminating"


def wait_for(check, what: str, timeout: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def latest_run_of(label: str):
    from portal.models import ProvisioningRun

    db.session.expire_all()
    return db.session.scalar(select(ProvisioningRun).where(ProvisioningRun.application_label == label)
                             .order_by(ProvisioningRun.id.desc()))


def test_the_ops_team_deploys_to_its_own_cluster(app, registered, login, ops_member, team_clusters, central):
    billing = unique("billing")
    application = create(login, ops_member, billing, team="ops")
    assert latest_run(application.id).state == RunState.SUCCEEDED
    with team_api(team_clusters["ops"]) as api:
        ns = client.CoreV1Api(api).read_namespace(f"ops-{billing}-web-dev")
        assert ns.metadata.labels["portal.dev/team"] == "ops"
    with team_api(team_clusters["dev"]) as api:
        with pytest.raises(client.ApiException) as missing:
            client.CoreV1Api(api).read_namespace(f"ops-{billing}-web-dev")
        assert missing.value.status == 404


def failed_step(application: Application):
    run = latest_run(application.id)
    assert run.state == RunState.FAILED, [(s.name, s.state.value) for s in run.steps]
    return next(s for s in run.steps if s.state == StepState.FAILED)


def test_a_namespace_not_made_by_the_portal_is_refused_not_adopted(app, registered, login, dev_member,
                                                                    team_clusters):
    legacy = unique("legacy")
    with team_api(team_clusters["dev"]) as api:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": f"dev-{legacy}-web-dev", "labels": {"keep": "me"}}})
    step = failed_step(create(login, dev_member, legacy))
    assert step.name == "namespace:dev"
    assert "not created by the portal" in step.last_error or "not managed by the portal" in step.last_error
    with team_api(team_clusters["dev"]) as api:
        ns = client.CoreV1Api(api).read_namespace(f"dev-{legacy}-web-dev")
        assert ns.metadata.labels == {"keep": "me", "kubernetes.io/metadata.name": f"dev-{legacy}-web-dev"}


def test_a_quota_too_small_for_the_chart_is_a_clear_step_error(app, registered, login, admin, dev_member):
    resp = login(admin).post("/teams/dev/resources", data={"cpu": "50m", "limits_cpu": "50m"}, headers=HTMX)
    assert resp.status_code == 200, resp.text
    step = failed_step(create(login, dev_member, unique("tiny")))
    assert step.name == "namespace:dev" and step.attempts == 1  # not retried: retrying cannot help
    assert "values-dev.yaml asks for more than team dev's quota" in step.last_error
    assert "ask an admin to raise the quota" in step.last_error


@pytest.mark.parametrize("case", ["unreachable", "expired credentials"])
def test_a_cluster_the_portal_cannot_use_is_a_clear_step_error(app, login, admin, dev_member, team_clusters, case):
    dev = team_clusters["dev"]
    data = {"name": "dev-eks", "team_names": ["dev"], "api_url": dev.server, "kubeconfig": dev.inline_kubeconfig(),
            "verify_tls": "y"}
    if case == "unreachable":
        from testbed.process import free_port

        data["api_url"] = data["kubeconfig_server"] = f"https://127.0.0.1:{free_port()}"
        data["kubeconfig"] = data["kubeconfig"].replace(dev.server, data.pop("kubeconfig_server"))
    else:
        data.pop("kubeconfig")
        data["token"] = "expired-or-revoked-token"
        data["ca_pem"] = (dev.state / "pki" / "ca.crt").read_text()
    assert login(admin).post("/admin/clusters", data=data).status_code == 302
    step = failed_step(create(login, dev_member, unique("cut")))
    assert step.name in ("delivery_project", "namespace:dev")
    expected = "cannot reach" if case == "unreachable" else "401"
    assert expected in step.last_error, step.last_error
    assert "expired-or-revoked-token" not in step.last_error
