"""Sign-up, sign-in, sign-out, the waiting room, password change, login throttling."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, Membership, MembershipStatus, User
from tests.factories import PASSWORD, UserFactory, member_of
from tests.support import HTMX


def signup(client, username="alice", email=None, password="a long password", team="dev", **kw):
    return client.post("/signup", data={"username": username, "email": email or f"{username}@example.com",
                                        "password": password, "team": team}, **kw)


def test_first_user_becomes_admin_and_later_ones_do_not(client, app):
    resp = signup(client)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    alice = db.session.scalar(select(User).where(User.username == "alice"))
    assert alice.is_admin
    other = app.test_client()
    assert signup(other, "bob").status_code == 302
    bob = db.session.scalar(select(User).where(User.username == "bob"))
    assert not bob.is_admin
    assert bob.memberships[0].team.name == "dev" and bob.memberships[0].status == MembershipStatus.ACTIVE


def test_signup_signs_in_and_lands_on_dashboard(client):
    signup(client, team="ops")
    page = client.get("/")
    assert page.status_code == 200
    assert "Ops" in page.text and "alice" in page.text


def test_password_is_hashed_with_argon2(client):
    signup(client)
    user = db.session.scalar(select(User))
    assert user.password_hash.startswith("$argon2id$")
    assert "a long password" not in user.password_hash


@pytest.mark.parametrize("field,kwargs,message", [
    ("username", {"username": "Al"}, "Between 3 and 40"),
    ("username", {"username": "Alice"}, "Lowercase letters"),
    ("username", {"username": "a" * 41}, "Field cannot be longer than 40"),
    ("email", {"email": "not-an-address"}, "@"),
    ("password", {"password": "short"}, "At least 10 characters"),
    ("team", {"team": "nope"}, "Choose one of the listed teams"),
])
def test_signup_refuses_bad_input_with_a_message_and_writes_nothing(client, field, kwargs, message):
    resp = signup(client, **kwargs)
    assert resp.status_code == 422
    assert message in resp.text
    assert db.session.scalar(select(func.count(User.id))) == 0


def test_signup_refuses_duplicate_username_and_email(client, app):
    signup(client)
    again = app.test_client()
    resp = signup(again, "alice", email="other@example.com")
    assert resp.status_code == 422 and "This username is taken" in resp.text
    resp = signup(again, "alice2", email="ALICE@example.com")
    assert resp.status_code == 422 and "exists already" in resp.text
    assert db.session.scalar(select(func.count(User.id))) == 1


def test_signup_without_csrf_token_is_refused(client):
    resp = client.post("/signup", data={"username": "alice", "email": "a@example.com", "password": "a long password",
                                        "team": "dev"}, csrf=False)
    assert resp.status_code == 400
    assert "security token" in resp.text
    assert db.session.scalar(select(func.count(User.id))) == 0


def test_login_and_logout(client, app):
    user = UserFactory(username="carol")
    member_of("dev", username="dave")
    resp = client.post("/login", data={"username": "carol", "password": PASSWORD})
    assert resp.status_code == 302
    assert client.get("/account").status_code == 200
    assert client.post("/logout").status_code == 302
    assert client.get("/account").status_code == 302
    actions = [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == ["auth.login", "auth.logout"]
    assert user.last_login_at is not None


def test_login_redirects_only_to_local_paths(client):
    member_of("dev", username="carol")
    resp = client.post("/login?next=https://evil.example/x", data={"username": "carol", "password": PASSWORD})
    assert resp.headers["Location"] == "/"
    resp = client.get("/login?next=//evil.example")
    assert resp.status_code == 302 and resp.headers["Location"] == "/"


def test_wrong_password_is_refused_and_audited(client):
    UserFactory(username="carol")
    resp = client.post("/login", data={"username": "carol", "password": "wrong password!"})
    assert resp.status_code == 401
    assert "Wrong username or password" in resp.text
    event = db.session.scalar(select(AuditEvent))
    assert event.action == "auth.login_failed" and event.actor_name == "carol"
    assert "wrong password" not in str(event.details)


def test_repeated_failed_logins_are_slowed_down(client):
    UserFactory(username="carol")
    statuses = [client.post("/login", data={"username": "carol", "password": "wrong password!"}).status_code
                for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    # Even the right password waits out the limit.
    resp = client.post("/login", data={"username": "carol", "password": PASSWORD})
    assert resp.status_code == 429 and "Too many attempts" in resp.text


def test_change_password(login, dev_member, app):
    c = login(dev_member)
    resp = c.post("/account", data={"current_password": "wrong one!!", "new_password": "another long one"})
    assert resp.status_code == 422 and "current password is wrong" in resp.text
    resp = c.post("/account", data={"current_password": PASSWORD, "new_password": "short"})
    assert resp.status_code == 422 and "At least 10" in resp.text
    resp = c.post("/account", data={"current_password": PASSWORD, "new_password": "another long one"})
    assert resp.status_code == 302
    fresh = app.test_client()
    assert fresh.post("/login", data={"username": "devmember", "password": "another long one"}).status_code == 302


def test_session_cookie_is_httponly_and_samesite(client):
    UserFactory(username="carol")
    resp = client.post("/login", data={"username": "carol", "password": PASSWORD})
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_expired_session_on_htmx_request_redirects_the_whole_page(client):
    resp = client.get("/apps?q=x", headers={**HTMX, "HX-Current-URL": "http://localhost/apps?q=x"})
    assert resp.status_code == 401
    assert resp.headers["HX-Redirect"] == "/login?next=/apps?q%3Dx"
    assert resp.text == ""


class TestApproval:
    @pytest.fixture
    def app_overrides(self):
        return {"team_approval": True}

    def test_pending_user_waits_until_a_maintainer_approves(self, app, client, dev_maintainer, login):
        UserFactory(username="root", is_admin=True)  # not the first user any more
        signup(client, "erin")
        assert client.get("/").headers["Location"] == "/pending"
        assert client.get("/projects").headers["Location"] == "/pending"
        assert "Waiting for approval" in client.get("/pending").text
        membership = db.session.scalar(select(Membership).join(User).where(User.username == "erin"))
        assert membership.status == MembershipStatus.PENDING
        resp = login(dev_maintainer).post(f"/teams/dev/members/{membership.id}/approve", headers=HTMX)
        assert resp.status_code == 200
        assert client.get("/").status_code == 200

    def test_first_user_is_not_held_pending(self, client):
        signup(client)
        assert client.get("/").status_code == 200


def test_signing_in_starts_a_new_session_and_signing_out_leaves_nothing_of_it(client):
    UserFactory(username="carol")
    with client.session_transaction() as session:
        session["planted"] = "by someone else, before the owner signs in"
    assert client.post("/login", data={"username": "carol", "password": PASSWORD}).status_code == 302
    with client.session_transaction() as session:
        assert "planted" not in session and session.get("_user_id")
        session["planted"] = "during the session"
    assert client.post("/logout").status_code == 302
    with client.session_transaction() as session:
        assert "_user_id" not in session and "planted" not in session and "csrf_token" not in session
    assert client.get("/account").status_code == 302
