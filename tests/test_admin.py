"""Teams and memberships, users, clusters and the audit trail, as admins and maintainers use them."""

from __future__ import annotations

import html

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, Cluster, Membership, MembershipStatus, Role, Team, User
from portal.services.secrets import read_secret
from tests.factories import ClusterFactory, MembershipFactory, UserFactory
from tests.support import HTMX


def actions() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_admin_creates_a_team_offered_at_signup(login, admin, app):
    c = login(admin)
    assert c.post("/teams", data={"name": "qa", "display_name": "Quality"}).status_code == 302
    assert "Quality" in app.test_client().get("/signup").text
    resp = c.post("/teams", data={"name": "qa", "display_name": "Again"})
    assert resp.status_code == 422 and "exists already" in resp.text
    resp = c.post("/teams", data={"name": "Q A"})
    assert resp.status_code == 422
    assert actions() == ["team.created"]


def test_maintainer_manages_members_with_htmx(login, dev_maintainer):
    newcomer = UserFactory(username="newbie")
    c = login(dev_maintainer)
    resp = c.post("/teams/dev/members", data={"username": "newbie", "role": "member"}, headers=HTMX)
    assert resp.status_code == 200 and resp.text.lstrip().startswith('<section id="members">')
    m = db.session.scalar(select(Membership).where(Membership.user_id == newcomer.id))
    assert m.status == MembershipStatus.ACTIVE
    resp = c.post(f"/teams/dev/members/{m.id}/role", data={"role": "maintainer"}, headers=HTMX)
    assert resp.status_code == 200
    db.session.refresh(m)
    assert m.role == Role.MAINTAINER
    resp = c.post(f"/teams/dev/members/{m.id}/role", data={"role": "owner"}, headers=HTMX)
    assert resp.status_code == 422 and "member' or 'maintainer" in html.unescape(resp.text)
    assert c.post(f"/teams/dev/members/{m.id}/remove", headers=HTMX).status_code == 200
    assert db.session.scalar(select(func.count(Membership.id)).where(Membership.user_id == newcomer.id)) == 0
    assert actions() == ["membership.added", "membership.role_changed", "membership.removed"]


def test_adding_unknown_or_existing_member_is_explained(login, dev_maintainer, dev_member):
    c = login(dev_maintainer)
    resp = c.post("/teams/dev/members", data={"username": "ghost", "role": "member"}, headers=HTMX)
    assert resp.status_code == 422 and "No user named" in html.unescape(resp.text)
    resp = c.post("/teams/dev/members", data={"username": "devmember", "role": "member"}, headers=HTMX)
    assert resp.status_code == 422 and "already in dev" in resp.text


def test_maintainer_of_one_team_cannot_touch_another(login, dev_maintainer):
    ops_membership = MembershipFactory(team=Team.by_name("ops"))
    c = login(dev_maintainer)
    assert c.post(f"/teams/ops/members/{ops_membership.id}/remove").status_code == 404
    # Nor through its own team's URL with another team's membership id.
    assert c.post(f"/teams/dev/members/{ops_membership.id}/remove").status_code == 404
    assert db.session.get(Membership, ops_membership.id) is not None


def test_admin_grants_and_revokes_admin_but_one_must_remain(login, admin):
    other = UserFactory(username="second")
    c = login(admin)
    resp = c.post(f"/admin/users/{other.id}/admin", data={"is_admin": "1"}, headers=HTMX)
    assert resp.status_code == 200 and "Revoke admin" in resp.text
    assert c.post(f"/admin/users/{other.id}/admin", data={"is_admin": "0"}).status_code == 200
    resp = c.post(f"/admin/users/{admin.id}/admin", data={"is_admin": "0"})
    assert resp.status_code == 422 and "At least one admin" in resp.text
    assert db.session.get(User, admin.id).is_admin


def test_user_list_filters(login, admin):
    for name in ("anna", "bert", "anton"):
        UserFactory(username=name)
    text = login(admin).get("/admin/users?q=an", headers=HTMX).text
    assert "anna" in text and "anton" in text and "bert" not in text


def test_cluster_registration_and_one_central(login, admin):
    c = login(admin)
    resp = c.post("/admin/clusters", data={"name": "central", "api_url": "https://10.0.0.1:6443",
                                           "token": "tok-en-central-s3cret", "is_central": "y"})
    assert resp.status_code == 302
    resp = c.post("/admin/clusters", data={"name": "dev-eks", "api_url": "https://10.0.0.2:6443",
                                           "team_names": ["dev"], "is_central": "y"})
    assert resp.status_code == 302
    clusters = {cl.name: cl for cl in db.session.scalars(select(Cluster))}
    assert clusters["dev-eks"].is_central and not clusters["central"].is_central
    assert [t.name for t in clusters["dev-eks"].teams] == ["dev"]
    page = c.get("/admin/clusters").text
    assert "tok-en-central-s3cret" not in page and "token (stored)" in page
    edit = c.get("/admin/clusters/central").text
    assert "tok-en-central-s3cret" not in edit  # write-only: never filled back
    assert read_secret(clusters["central"].credentials_ref) == "tok-en-central-s3cret"
    # Saving without a token keeps the stored one; a new one replaces it.
    c.post("/admin/clusters/central", data={"api_url": "https://10.0.0.1:6443", "is_central": "y"})
    assert read_secret("cluster-central") == "tok-en-central-s3cret"
    c.post("/admin/clusters/central", data={"api_url": "https://10.0.0.1:6443", "token": "rotated-t0ken"})
    assert read_secret("cluster-central") == "rotated-t0ken"
    events = [e.details for e in db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("cluster.%")))]
    assert "rotated-t0ken" not in str(events) and "tok-en-central" not in str(events)


def test_cluster_bad_input(login, admin):
    ClusterFactory(name="taken")
    c = login(admin)
    for data, message in [
        ({"name": "taken", "api_url": "https://x:1"}, "registered already"),
        ({"name": "Bad Name", "api_url": "https://x:1"}, "use lowercase"),
        ({"name": "ok", "api_url": "ftp://x"}, "An http(s) URL"),
        ({"name": "ok", "api_url": "https://x:1", "team_names": ["nope"]}, "Unknown team"),
        ({"name": "ok", "api_url": "https://x:1", "token": "t", "kubeconfig": "clusters: []"}, "not both"),
        ({"name": "ok", "api_url": "https://x:1", "kubeconfig": "clusters: [unclosed"}, "Not valid YAML"),
        ({"name": "ok", "api_url": "https://x:1", "kubeconfig": "apiVersion: v1"}, "needs clusters"),
        ({"name": "ok", "api_url": "https://x:1", "ca_pem": "hello"}, "Not a PEM certificate"),
    ]:
        resp = c.post("/admin/clusters", data=data)
        assert resp.status_code == 422, data
        assert message in html.unescape(resp.text), data
    assert db.session.scalar(select(func.count(Cluster.id))) == 1


def test_only_one_central_cluster_even_bypassing_the_service(app):
    import pytest
    from sqlalchemy.exc import IntegrityError

    ClusterFactory(name="a", is_central=True)
    db.session.add(Cluster(name="b", api_url="https://b:1", is_central=True))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_cluster_edit_and_delete_are_audited(login, admin):
    ClusterFactory(name="dev-eks", api_url="https://old:6443")
    c = login(admin)
    resp = c.post("/admin/clusters/dev-eks", data={"api_url": "https://new:6443", "team_names": ["dev", "ops"]})
    assert resp.status_code == 302
    cluster = db.session.scalar(select(Cluster))
    assert cluster.api_url == "https://new:6443" and {t.name for t in cluster.teams} == {"dev", "ops"}
    assert c.post("/admin/clusters/dev-eks/delete").status_code == 302
    assert actions() == ["cluster.updated", "cluster.deleted"]


def test_audit_page_lists_and_filters_events(login, admin, dev_member):
    login(dev_member).post("/projects", data={"team": "dev", "name": "billing"})
    c = login(admin)
    page = c.get("/admin/audit")
    assert "project.created" in page.text and "devmember" in page.text
    frag = c.get("/admin/audit?action=team.created", headers=HTMX)
    assert "project.created" not in frag.text and "No event" in frag.text


def test_an_operator_registers_a_cluster_from_the_command_line(app, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nclusters: [{name: c, cluster: {server: 'https://10.0.0.3:6443'}}]\n"
                          "users: [{name: u, user: {token: cli-s3cret}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["register-cluster", "dev-local", "--api-url", "https://10.0.0.3:6443",
                                 "--kubeconfig", str(kubeconfig), "--team", "dev"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(args=["register-cluster", "dev-local", "--api-url", "https://10.0.0.4:6443", "--team", "dev"])
    assert again.exit_code == 0, again.output
    cluster = db.session.scalar(select(Cluster).where(Cluster.name == "dev-local"))
    assert cluster.api_url == "https://10.0.0.4:6443" and [t.name for t in cluster.teams] == ["dev"]
    assert cluster.auth_kind == "kubeconfig" and "cli-s3cret" in read_secret(cluster.credentials_ref)
    bad = runner.invoke(args=["register-cluster", "Bad Name", "--api-url", "https://x:1"])
    assert bad.exit_code != 0 and "use lowercase" in bad.output
