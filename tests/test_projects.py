"""Projects and applications: creation, name rules, HTMX fragments, filtering, pagination, visibility."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Application, AuditEvent, Project, Team
from tests.factories import ApplicationFactory, ProjectFactory
from tests.support import HTMX


def body(resp) -> str:
    """The response text with HTML entities decoded, to compare with messages."""
    return html.unescape(resp.text)


def count(model) -> int:
    return db.session.scalar(select(func.count(model.id)))


def test_create_project_redirects_to_it_and_is_audited(login, dev_member):
    c = login(dev_member)
    resp = c.post("/projects", data={"team": "dev", "name": "billing", "description": "Invoices"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/t/dev/billing"
    page = c.get("/t/dev/billing")
    assert page.status_code == 200 and "Invoices" in page.text
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "project.created"))
    assert event.actor_name == "devmember" and event.target_name == "dev/billing"


def test_create_project_with_htmx_answers_the_new_row_and_a_fresh_form(login, dev_member):
    resp = login(dev_member).post("/projects", data={"team": "dev", "name": "billing"}, headers=HTMX)
    assert resp.status_code == 200
    assert resp.text.lstrip().startswith('<tr id="project-')
    assert 'hx-swap-oob="true"' in resp.text and 'id="project-form"' in resp.text
    assert 'value="billing"' not in resp.text  # the fresh form is empty
    assert "project-created" in resp.headers["HX-Trigger"]
    assert "HX-Request" in resp.headers["Vary"]


@pytest.mark.parametrize("name,message", [
    ("Billing", "use lowercase"),
    ("bill_ing", "Only lowercase letters, digits and '-'"),
    ("-billing", "Must start with a lowercase letter"),
    ("9lives", "Must start with a lowercase letter"),
    ("billing-", "Must end with a letter or a digit"),
    ("b" * 31, "At most 30 characters; this one has 31"),
    ("", "This field is required"),
])
def test_invalid_project_names_are_explained_and_nothing_is_written(login, dev_member, name, message):
    c = login(dev_member)
    resp = c.post("/projects", data={"team": "dev", "name": name})
    assert resp.status_code == 422
    assert message in body(resp)
    resp = c.post("/projects", data={"team": "dev", "name": name}, headers=HTMX)
    assert resp.status_code == 422
    assert resp.headers["HX-Retarget"] == "#project-form"
    assert message in body(resp)
    assert count(Project) == 0
    assert count(AuditEvent) == 0


def test_duplicate_project_name_in_the_same_team_is_refused(login, dev_member, ops_member):
    ProjectFactory(name="billing")
    resp = login(dev_member).post("/projects", data={"team": "dev", "name": "billing"})
    assert resp.status_code == 422 and "dev already has a project named billing" in resp.text
    # Another team may use the same name.
    assert login(ops_member).post("/projects", data={"team": "ops", "name": "billing"}).status_code == 302
    assert count(Project) == 2


def test_project_in_another_team_cannot_be_created(login, dev_member):
    resp = login(dev_member).post("/projects", data={"team": "ops", "name": "sneaky"})
    assert resp.status_code == 422 and "Choose one of your teams" in resp.text
    assert count(Project) == 0


def test_live_project_name_check(login, dev_member):
    ProjectFactory(name="billing")
    c = login(dev_member)
    assert "is available" in c.get("/projects/check-name?team=dev&name=payments", headers=HTMX).text
    assert "already has a project" in c.get("/projects/check-name?team=dev&name=billing", headers=HTMX).text
    assert "use lowercase" in body(c.get("/projects/check-name?team=dev&name=Pay", headers=HTMX))
    assert "Choose one of your teams" in c.get("/projects/check-name?team=ops&name=x", headers=HTMX).text


def test_over_long_description_is_refused(login, dev_member):
    resp = login(dev_member).post("/projects", data={"team": "dev", "name": "billing", "description": "x" * 501})
    assert resp.status_code == 422 and "500 characters" in resp.text
    assert count(Project) == 0


def test_project_list_filters_and_paginates_on_the_server(login, dev_member, app):
    for i in range(30):
        ProjectFactory(name=f"svc-{i:02d}")
    ProjectFactory(name="other-thing")
    c = login(dev_member)
    page = c.get("/projects")
    assert "31 in all" in page.text and "page 1 of 2" in page.text
    frag = c.get("/projects?q=thing", headers=HTMX)
    assert frag.status_code == 200
    assert frag.text.lstrip().startswith('<div id="project-table">')
    assert "other-thing" in frag.text and "svc-01" not in frag.text
    assert "<html" not in frag.text
    page2 = c.get("/projects?page=2")
    assert "svc-29" in page2.text and "svc-00" not in page2.text
    # Junk page numbers and wildcard characters are harmless.
    assert c.get("/projects?page=abc").status_code == 200
    assert "No project matches" in c.get("/projects?q=%25").text


def test_projects_of_another_team_are_invisible(login, ops_member):
    ProjectFactory(name="secret-plan")
    c = login(ops_member)
    assert "secret-plan" not in c.get("/projects").text
    assert "secret-plan" not in c.get("/projects?q=secret").text
    assert "secret-plan" not in c.get("/").text
    assert c.get("/t/dev/secret-plan").status_code == 404


def test_maintainer_deletes_an_empty_project_but_not_one_with_applications(login, dev_maintainer, dev_member):
    empty_id = ProjectFactory(name="empty").id
    ApplicationFactory(project=ProjectFactory(name="full"), name="web")
    assert login(dev_member).post("/t/dev/empty/delete").status_code == 403
    c = login(dev_maintainer)
    resp = c.post("/t/dev/full/delete")
    assert resp.status_code == 409 and "applications first" in resp.text
    assert c.post("/t/dev/empty/delete").status_code == 302
    assert db.session.get(Project, empty_id) is None


class TestApplications:
    @pytest.fixture
    def project(self, app):
        return ProjectFactory(name="shop")

    def test_create_application(self, login, dev_member, project):
        c = login(dev_member)
        resp = c.post("/t/dev/shop/apps", data={"name": "cart", "template": "python-web", "description": "Basket"})
        assert resp.status_code == 302 and resp.headers["Location"] == "/t/dev/shop/cart"
        page = c.get("/t/dev/shop/cart")
        assert page.status_code == 200
        for region in ("provisioning", "timeline", "resources", "logs"):
            assert f'id="{region}"' in page.text
        app_row = db.session.scalar(select(Application))
        assert app_row.team_id == project.team_id and app_row.template == "python-web"

    def test_create_with_htmx_swaps_in_the_row(self, login, dev_member, project):
        resp = login(dev_member).post("/t/dev/shop/apps", data={"name": "cart", "template": "static-site"},
                                      headers=HTMX)
        assert resp.status_code == 200
        assert resp.text.lstrip().startswith('<tr id="app-')
        assert 'id="application-form" ' in resp.text and 'hx-swap-oob="true"' in resp.text

    @pytest.mark.parametrize("data,message", [
        ({"name": "a" * 41, "template": "python-web"}, "At most 40 characters; this one has 41"),
        ({"name": "Cart", "template": "python-web"}, "use lowercase"),
        ({"name": "cart", "template": "cobol"}, "Choose one of: python-web, static-site"),
        ({"name": "cart.v2", "template": "python-web"}, "found '.'"),
    ])
    def test_bad_application_input(self, login, dev_member, project, data, message):
        resp = login(dev_member).post("/t/dev/shop/apps", data=data, headers=HTMX)
        assert resp.status_code == 422 and message in body(resp)
        assert resp.headers["HX-Retarget"] == "#application-form"
        assert count(Application) == 0

    def test_duplicate_in_project_refused_but_allowed_in_another(self, login, dev_member, project):
        ApplicationFactory(project=project, name="cart")
        ProjectFactory(name="other")
        c = login(dev_member)
        resp = c.post("/t/dev/shop/apps", data={"name": "cart", "template": "python-web"})
        assert resp.status_code == 422 and "already has an application named cart" in resp.text
        assert c.post("/t/dev/other/apps", data={"name": "cart", "template": "python-web"}).status_code == 302

    def test_live_name_check_includes_availability(self, login, dev_member, project):
        ApplicationFactory(project=project, name="cart")
        c = login(dev_member)
        assert "already has an application" in c.get("/t/dev/shop/apps/check-name?name=cart", headers=HTMX).text
        assert "is available" in c.get("/t/dev/shop/apps/check-name?name=till", headers=HTMX).text

    def test_application_list_filters_by_name_and_template(self, login, dev_member, project):
        ApplicationFactory(project=project, name="cart", template="python-web")
        ApplicationFactory(project=project, name="cart-ui", template="static-site")
        ApplicationFactory(project=project, name="till", template="python-web")
        c = login(dev_member)
        frag = c.get("/apps?q=cart&template=static-site", headers=HTMX).text
        assert "cart-ui" in frag and ">cart<" not in frag and "till" not in frag
        assert "1 in all" in frag

    def test_another_teams_application_is_a_404(self, login, ops_member, project):
        ApplicationFactory(project=project, name="cart")
        c = login(ops_member)
        assert c.get("/t/dev/shop/cart").status_code == 404
        assert c.get("/t/dev/shop/apps/new").status_code == 404
        assert c.post("/t/dev/shop/apps", data={"name": "x", "template": "python-web"}).status_code == 404
        assert "cart" not in c.get("/apps").text

    def test_an_application_named_like_a_route_still_works(self, login, dev_member, project):
        c = login(dev_member)
        for name in ("apps", "delete"):
            assert c.post("/t/dev/shop/apps", data={"name": name, "template": "python-web"}).status_code == 302
            assert c.get(f"/t/dev/shop/{name}").status_code == 200

    def test_maintainer_deletes_an_application(self, login, dev_member, dev_maintainer, project):
        ApplicationFactory(project=project, name="cart")
        assert login(dev_member).post("/t/dev/shop/cart/delete").status_code == 403
        assert login(dev_maintainer).post("/t/dev/shop/cart/delete").status_code == 302
        assert count(Application) == 0
        assert db.session.scalar(select(AuditEvent.action).order_by(AuditEvent.id.desc())) == "application.deleted"


def test_team_and_project_mismatch_is_impossible_in_the_database(app):
    """The composite foreign key keeps an application's team equal to its project's."""
    from sqlalchemy.exc import IntegrityError

    project = ProjectFactory(name="shop")
    ops = Team.by_name("ops")
    db.session.add(Application(project_id=project.id, team_id=ops.id, name="x", template="python-web"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_delete_with_htmx_redirects_the_whole_page_or_explains_in_the_flash_area(login, dev_maintainer):
    ApplicationFactory(project=ProjectFactory(name="full"), name="web")
    c = login(dev_maintainer)
    resp = c.post("/t/dev/full/delete", headers=HTMX)
    assert resp.status_code == 409 and resp.headers["HX-Retarget"] == "#flash"
    resp = c.post("/t/dev/full/web/delete", headers=HTMX)
    assert resp.status_code == 200 and resp.headers["HX-Redirect"] == "/t/dev/full"
