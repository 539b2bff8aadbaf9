"""Every route of the app against every role: anonymous, a member of another team, a team member,
a team maintainer, an admin. The table is checked against the URL map, so a new route cannot be
added without saying who may use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest

from portal.extensions import db
from portal.models import Build, BuildState, Deployment, DeploymentState, MembershipStatus, Orphan, Role, RunKind, RunState, Team
from portal.services import kiosks, tokens
from portal.services.provisioning.runs import new_run
from tests.factories import ApplicationFactory, ClusterFactory, MembershipFactory, ProjectFactory, UserFactory, member_of

ROLES = ("anonymous", "other_team", "member", "maintainer", "admin")
LOGIN = "login"  # expected: a redirect to the login page


@dataclass
class World:
    pending_membership_id: int
    newcomer: str
    newcomer_id: int
    failed_run_id: int
    queued_run_id: int
    orphan_id: int
    token_id: int
    kiosk_token: str
    kiosk_token_id: int


@dataclass(frozen=True)
class Case:
    method: str
    url: str | Callable[[World], str]
    expect: tuple  # one status per role, in ROLES order; LOGIN for a redirect to /login
    data: dict | Callable[[World], dict] | None = None


CASES: dict[str, Case] = {
    "static": Case("GET", "/static/htmx.min.js", (200, 200, 200, 200, 200)),
    "auth.signup": Case("GET", "/signup", (200, 302, 302, 302, 302)),
    "auth.login": Case("GET", "/login", (200, 302, 302, 302, 302)),
    "auth.logout": Case("POST", "/logout", (LOGIN, 302, 302, 302, 302)),
    "auth.pending": Case("GET", "/pending", (LOGIN, 302, 302, 302, 302)),
    "auth.account": Case("GET", "/account", (LOGIN, 200, 200, 200, 200)),
    "auth.create_token": Case("POST", "/account/tokens", (LOGIN, 201, 201, 201, 201), {"name": "laptop"}),
    # The world's token is the newcomer's: only an admin may revoke someone else's.
    "auth.revoke_token": Case("POST", lambda w: f"/account/tokens/{w.token_id}/revoke", (LOGIN, 404, 404, 404, 302)),
    "dashboard.index": Case("GET", "/", (LOGIN, 200, 200, 200, 200)),
    "projects.index": Case("GET", "/projects", (LOGIN, 200, 200, 200, 200)),
    "projects.new": Case("GET", "/projects/new", (LOGIN, 200, 200, 200, 200)),
    "projects.create": Case("POST", "/projects", (LOGIN, 422, 302, 302, 302), {"team": "dev", "name": "fresh"}),
    "projects.check_name": Case("GET", "/projects/check-name?team=dev&name=fresh", (LOGIN, 200, 200, 200, 200)),
    "projects.show": Case("GET", "/t/dev/alpha", (LOGIN, 404, 200, 200, 200)),
    "projects.delete": Case("POST", "/t/dev/empty/delete", (LOGIN, 404, 403, 302, 302)),
    "apps.index": Case("GET", "/apps", (LOGIN, 200, 200, 200, 200)),
    "apps.new": Case("GET", "/t/dev/alpha/apps/new", (LOGIN, 404, 200, 200, 200)),
    "apps.create": Case("POST", "/t/dev/alpha/apps", (LOGIN, 404, 302, 302, 302),
                        {"name": "fresh", "template": "python-web"}),
    "apps.check_name": Case("GET", "/t/dev/alpha/apps/check-name?name=fresh", (LOGIN, 404, 200, 200, 200)),
    "apps.show": Case("GET", "/t/dev/alpha/web", (LOGIN, 404, 200, 200, 200)),
    "apps.delete": Case("POST", "/t/dev/alpha/web/delete", (LOGIN, 404, 403, 302, 302)),
    "provisioning.panel": Case("GET", "/t/dev/alpha/web/provisioning", (LOGIN, 404, 200, 200, 200)),
    "provisioning.retry": Case("POST", lambda w: f"/t/dev/alpha/web/runs/{w.failed_run_id}/retry",
                               (LOGIN, 404, 200, 200, 200)),
    "provisioning.cancel": Case("POST", lambda w: f"/t/dev/alpha/busy/runs/{w.queued_run_id}/cancel",
                                (LOGIN, 404, 200, 200, 200)),
    "provisioning.reconcile": Case("POST", "/t/dev/alpha/web/reconcile", (LOGIN, 404, 200, 200, 200)),
    "provisioning.orphans": Case("GET", "/orphans", (LOGIN, 200, 200, 200, 200)),
    "provisioning.orphan_retry": Case("POST", lambda w: f"/orphans/{w.orphan_id}/retry", (LOGIN, 404, 403, 409, 409)),
    "provisioning.orphan_dismiss": Case("POST", lambda w: f"/orphans/{w.orphan_id}/dismiss",
                                        (LOGIN, 404, 403, 200, 200)),
    "builds.timeline": Case("GET", "/t/dev/alpha/web/builds", (LOGIN, 404, 200, 200, 200)),
    "builds.show": Case("GET", "/t/dev/alpha/web/builds/1", (LOGIN, 404, 200, 200, 200)),
    "builds.log": Case("GET", "/t/dev/alpha/web/builds/1/log?after=0", (LOGIN, 404, 200, 200, 200)),
    "builds.download": Case("GET", "/t/dev/alpha/web/builds/1/log/download", (LOGIN, 404, 200, 200, 200)),
    "builds.rebuild": Case("POST", "/t/dev/alpha/web/builds/1/rebuild", (LOGIN, 404, 302, 302, 302)),
    "deployments.index": Case("GET", "/t/dev/alpha/web/deployments", (LOGIN, 404, 200, 200, 200)),
    "resources.panel": Case("GET", "/t/dev/alpha/web/resources", (LOGIN, 404, 200, 200, 200)),
    # The fake world has no log store and its clusters no API server: the panel says the logs cannot be read.
    "logs.panel": Case("GET", "/t/dev/alpha/web/logs", (LOGIN, 404, 409, 409, 409)),
    "logs.download": Case("GET", "/t/dev/alpha/web/logs/download", (LOGIN, 404, 409, 409, 409)),
    # Rolling back to what already runs, and promoting nothing, are refused by the service for those who may act.
    "deployments.rollback": Case("POST", "/t/dev/alpha/web/deployments/1/rollback", (LOGIN, 404, 409, 409, 409)),
    "deployments.promote": Case("POST", "/t/dev/alpha/web/environments/dev/promote", (LOGIN, 404, 403, 409, 409)),
    "deployments.sync": Case("POST", "/t/dev/alpha/web/environments/dev/sync", (LOGIN, 404, 409, 409, 409)),
    "deployments.refresh": Case("POST", "/t/dev/alpha/web/environments/dev/refresh", (LOGIN, 404, 409, 409, 409)),
    # No session or role counts for webhooks: an empty body is refused for everyone alike.
    "hooks.gitlab": Case("POST", "/hooks/gitlab", (400, 400, 400, 400, 400)),
    # Git over HTTP: only a personal access token counts, never a session.
    "git.smart_http": Case("GET", "/git/dev/alpha-web.git/info/refs?service=git-upload-pack",
                           (401, 401, 401, 401, 401)),
    "teams.index": Case("GET", "/teams", (LOGIN, 200, 200, 200, 200)),
    "teams.create": Case("POST", "/teams", (LOGIN, 403, 403, 403, 302), {"name": "qa", "display_name": "QA"}),
    "teams.show": Case("GET", "/teams/dev", (LOGIN, 404, 200, 200, 200)),
    "teams.add_member": Case("POST", "/teams/dev/members", (LOGIN, 404, 403, 200, 200),
                             lambda w: {"username": w.newcomer, "role": "member"}),
    "teams.resources": Case("POST", "/teams/dev/resources", (LOGIN, 404, 403, 403, 200), {"cpu": "6"}),
    "teams.approve": Case("POST", lambda w: f"/teams/dev/members/{w.pending_membership_id}/approve",
                          (LOGIN, 404, 403, 200, 200)),
    "teams.set_role": Case("POST", lambda w: f"/teams/dev/members/{w.pending_membership_id}/role",
                           (LOGIN, 404, 403, 200, 200), {"role": "maintainer"}),
    "teams.remove": Case("POST", lambda w: f"/teams/dev/members/{w.pending_membership_id}/remove",
                         (LOGIN, 404, 403, 200, 200)),
    "admin.users": Case("GET", "/admin/users", (LOGIN, 403, 403, 403, 200)),
    "admin.set_admin": Case("POST", lambda w: f"/admin/users/{w.newcomer_id}/admin", (LOGIN, 403, 403, 403, 200), {"is_admin": "1"}),
    "admin.clusters_index": Case("GET", "/admin/clusters", (LOGIN, 403, 403, 403, 200)),
    "admin.clusters_create": Case("POST", "/admin/clusters", (LOGIN, 403, 403, 403, 302),
                                  {"name": "new-one", "api_url": "https://10.0.0.9:6443", "team_names": "ops"}),
    "admin.cluster_edit": Case("GET", "/admin/clusters/dev-cluster", (LOGIN, 403, 403, 403, 200)),
    "admin.cluster_check": Case("POST", "/admin/clusters/dev-cluster/check", (LOGIN, 403, 403, 403, 200)),
    "admin.cluster_delete": Case("POST", "/admin/clusters/dev-cluster/delete", (LOGIN, 403, 403, 403, 302)),
    "admin.audit_log": Case("GET", "/admin/audit", (LOGIN, 403, 403, 403, 200)),
    "admin.kiosks_index": Case("GET", "/admin/kiosks", (LOGIN, 403, 403, 403, 200)),
    "admin.kiosks_create": Case("POST", "/admin/kiosks", (LOGIN, 403, 403, 403, 201),
                                {"name": "hall", "team_names": "dev"}),
    "admin.kiosk_revoke": Case("POST", lambda w: f"/admin/kiosks/{w.kiosk_token_id}/revoke",
                               (LOGIN, 403, 403, 403, 302)),
    "boards.team_board": Case("GET", "/teams/dev/board", (LOGIN, 404, 200, 200, 200)),
    # Only the kiosk token counts, never a session or a role: the world's token shows ops (not dev) to anyone.
    "boards.kiosk": Case("GET", lambda w: f"/kiosk/{w.kiosk_token}", (200, 200, 200, 200, 200)),
    # For probes and Prometheus: no session needed, none refused (PORTAL_METRICS_TOKEN is not set here).
    "ops.healthz": Case("GET", "/healthz", (200, 200, 200, 200, 200)),
    "ops.readyz": Case("GET", "/readyz", (200, 200, 200, 200, 200)),
    "ops.metrics": Case("GET", "/metrics", (200, 200, 200, 200, 200)),
}


def test_every_route_is_in_the_matrix(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints == set(CASES), (
        f"routes without an entry: {sorted(endpoints - set(CASES))}; stale entries: {sorted(set(CASES) - endpoints)}"
    )


@pytest.fixture
def world(app) -> World:
    alpha = ProjectFactory(name="alpha", description="dev secret")
    web = ApplicationFactory(project=alpha, name="web")
    failed = new_run(web, RunKind.CREATE, None)
    db.session.add(Build(application_id=web.id, number=1, commit_sha="a" * 40, state=BuildState.FAILED))
    db.session.add(Deployment(application_id=web.id, number=1, environment="dev", kind="deploy",
                              image_repository="registry.invalid/dev/alpha-web", image_tag="aaaaaaaa",
                              deploy_commit="d" * 40, state=DeploymentState.HEALTHY, requested_by="build #1"))
    failed.state = RunState.FAILED
    queued = new_run(ApplicationFactory(project=alpha, name="busy"), RunKind.CREATE, None)
    db.session.flush()
    orphan = Orphan(team_id=alpha.team_id, application_label="dev/alpha/old", step="source_repository",
                    system="gitlab", kind="repository", external_id="42", name="dev/alpha-old")
    db.session.add(orphan)
    db.session.commit()
    ProjectFactory(name="empty")
    omega = ProjectFactory(name="omega", team=Team.by_name("ops"))
    ApplicationFactory(project=omega, name="api")
    pending = MembershipFactory(user=UserFactory(username="waiting"), status=MembershipStatus.PENDING)
    newcomer = UserFactory(username="newcomer")
    token = tokens.create_token(newcomer, "newcomer's laptop").token
    ClusterFactory(name="dev-cluster", teams=[Team.by_name("dev")])
    kiosk = kiosks.create_kiosk_token(UserFactory(username="kiosk-maker", is_admin=True), "corridor", ["ops"])
    return World(pending_membership_id=pending.id, newcomer="newcomer", newcomer_id=newcomer.id,
                 failed_run_id=failed.id, queued_run_id=queued.id, orphan_id=orphan.id, token_id=token.id,
                 kiosk_token=kiosk.secret, kiosk_token_id=kiosk.token.id)


def _user_for(role: str):
    if role == "anonymous":
        return None
    if role == "other_team":
        return member_of("ops", username="outsider")
    if role == "member":
        return member_of("dev", username="insider")
    if role == "maintainer":
        return member_of("dev", Role.MAINTAINER, username="keeper")
    return UserFactory(username="boss", is_admin=True)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(CASES))
def test_route_answers_each_role_as_specified(app, world, endpoint, role):
    case = CASES[endpoint]
    user = _user_for(role)
    client = app.test_client(user=user) if user else app.test_client()
    url = case.url(world) if callable(case.url) else case.url
    data = case.data(world) if callable(case.data) else case.data
    resp = client.open(url, method=case.method, data=data)
    text = resp.get_data(as_text=True)
    resp.close()  # static files are streamed
    expected = case.expect[ROLES.index(role)]
    if expected == LOGIN:
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login"), resp.status_code
    else:
        assert resp.status_code == expected, f"{case.method} {url} as {role}: {resp.status_code}\n{text[:500]}"
    # Whatever the answer, another team's data never shows.
    if role == "other_team":
        assert "dev secret" not in text and "alpha" not in text


@pytest.mark.parametrize("role", ["anonymous", "member"])
def test_state_changes_without_csrf_token_are_refused(app, world, role):
    user = _user_for(role)
    client = app.test_client(user=user) if user else app.test_client()
    for endpoint, case in CASES.items():
        if case.method != "POST":
            continue
        url = case.url(world) if callable(case.url) else case.url
        data = case.data(world) if callable(case.data) else case.data
        resp = client.post(url, data=data, csrf=False)
        assert resp.status_code == 400, f"{endpoint} accepted a POST without CSRF token ({resp.status_code})"
