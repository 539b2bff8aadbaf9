"""Personal access tokens: made and shown once, listed without their secret, stored as a hash, revoked,
checked in constant time, and audited without the token."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from sqlalchemy import select

from portal.errors import NotFound, ValidationFailed
from portal.extensions import db
from portal.models import AuditEvent, PersonalAccessToken
from portal.services import tokens
from tests.factories import UserFactory
from tests.support import HTMX

TOKEN = re.compile(r"pat_[A-Za-z0-9_-]{43}")


def create_through_page(client, name: str = "laptop", htmx: bool = True):
    return client.post("/account/tokens", data={"name": name}, headers=HTMX if htmx else {})


def test_a_new_token_is_shown_once_then_never_again(login, dev_member):
    client = login(dev_member)
    resp = create_through_page(client)
    assert resp.status_code == 201
    assert resp.headers["Cache-Control"] == "no-store"
    assert "HX-Redirect" not in resp.headers and "Vary" in resp.headers
    shown = TOKEN.findall(resp.text)
    assert len(set(shown)) == 1
    secret = shown[0]
    assert 'id="tokens"' in resp.text and "<html" not in resp.text  # the section, not the page
    assert "shown this once" in resp.text
    page = client.get("/account")
    assert page.status_code == 200
    assert secret not in page.text and secret[:8] in page.text and "laptop" in page.text
    assert TOKEN.search(page.text) is None
    assert tokens.authenticate(dev_member.username, secret) == dev_member


def test_without_htmx_the_whole_page_shows_the_new_token(login, dev_member):
    resp = create_through_page(login(dev_member), htmx=False)
    assert resp.status_code == 201 and "<html" in resp.text and TOKEN.search(resp.text)
    assert "Change password" in resp.text


def test_only_the_hash_and_a_prefix_are_stored(app, dev_member):
    new = tokens.create_token(dev_member, "ci")
    assert TOKEN.fullmatch(new.secret)
    row = db.session.scalar(select(PersonalAccessToken).where(PersonalAccessToken.id == new.token.id))
    assert row.token_hash == hashlib.sha256(new.secret.encode()).hexdigest()
    assert row.prefix == new.secret[:8] and row.scopes == "git"
    stored = [str(getattr(row, c.key)) for c in PersonalAccessToken.__table__.columns]
    assert not any(new.secret in value for value in stored)
    listed = tokens.list_tokens(dev_member)
    assert [t.id for t in listed] == [new.token.id]
    assert not any(new.secret in str(vars(t)) for t in listed)


def test_names_are_checked(login, dev_member):
    client = login(dev_member)
    resp = create_through_page(client, "")
    assert resp.status_code == 422 and "This field is required" in resp.text and TOKEN.search(resp.text) is None
    resp = create_through_page(client, "x" * 61)
    assert resp.status_code == 422
    assert create_through_page(client, "laptop").status_code == 201
    resp = create_through_page(client, "laptop")
    assert resp.status_code == 422 and "already have a token named laptop" in resp.text
    with pytest.raises(ValidationFailed):
        tokens.create_token(dev_member, "api", ("admin",))
    # Once revoked, its name is free again.
    tokens.revoke_token(dev_member, tokens.list_tokens(dev_member)[0].id)
    assert create_through_page(client, "laptop").status_code == 201


def test_revoking_answers_the_row_and_the_token_stops_working(login, dev_member):
    new = tokens.create_token(dev_member, "old laptop")
    resp = login(dev_member).post(f"/account/tokens/{new.token.id}/revoke", headers=HTMX)
    assert resp.status_code == 200
    assert resp.text.strip().startswith(f'<tr id="token-{new.token.id}">') and "revoked" in resp.text
    assert "Revoke</button>" not in resp.text
    assert tokens.authenticate(dev_member.username, new.secret) is None
    # Again: nothing changes, no second audit event.
    resp = login(dev_member).post(f"/account/tokens/{new.token.id}/revoke")
    assert resp.status_code == 302 and resp.headers["Location"] == "/account"
    assert _actions() == ["token.created", "token.revoked"]


def test_only_the_owner_or_an_admin_may_revoke(login, dev_member, ops_member, admin):
    new = tokens.create_token(dev_member, "laptop")
    resp = login(ops_member).post(f"/account/tokens/{new.token.id}/revoke", headers=HTMX)
    assert resp.status_code == 404
    with pytest.raises(NotFound):
        tokens.revoke_token(ops_member, new.token.id)
    assert tokens.authenticate(dev_member.username, new.secret) == dev_member
    assert login(admin).post(f"/account/tokens/{new.token.id}/revoke").status_code == 302
    assert tokens.authenticate(dev_member.username, new.secret) is None
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "token.revoked"))
    assert event.actor_name == "theadmin" and event.target_name == "devmember/laptop"


def test_each_user_sees_only_their_own_tokens(login, dev_member, ops_member):
    tokens.create_token(dev_member, "dev laptop")
    tokens.create_token(ops_member, "ops laptop")
    page = login(ops_member).get("/account").text
    assert "ops laptop" in page and "dev laptop" not in page
    assert [t.name for t in tokens.list_tokens(dev_member)] == ["dev laptop"]


def test_authenticate_accepts_only_the_owner_with_a_live_token_of_the_scope(app, dev_member, ops_member):
    mine = tokens.create_token(dev_member, "git")
    theirs = tokens.create_token(ops_member, "git")
    api = tokens.create_token(dev_member, "api", ("read", "write"))
    assert mine.token.last_used_at is None
    assert tokens.authenticate("devmember", mine.secret) == dev_member
    assert db.session.get(PersonalAccessToken, mine.token.id).last_used_at is not None
    assert tokens.authenticate(" devmember ", mine.secret) == dev_member
    assert tokens.authenticate("devmember", theirs.secret) is None  # another user's token
    assert tokens.authenticate("opsmember", mine.secret) is None
    assert tokens.authenticate("nobody", mine.secret) is None
    assert tokens.authenticate("devmember", mine.secret + "x") is None
    assert tokens.authenticate("devmember", "") is None
    assert tokens.authenticate("devmember", api.secret) is None  # no git scope
    assert tokens.authenticate("devmember", api.secret, scope="read") == dev_member
    tokens.revoke_token(dev_member, mine.token.id)
    assert tokens.authenticate("devmember", mine.secret) is None


def test_authenticate_compares_every_hash_in_constant_time(app, dev_member, monkeypatch):
    made = [tokens.create_token(dev_member, f"t{i}") for i in range(3)]
    compared: list[tuple[str, str]] = []
    real = tokens.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    # Whichever token matches (the first, the last, none), every stored hash is compared: no early exit.
    for secret in (made[0].secret, made[2].secret, "pat_" + "x" * 43):
        compared.clear()
        tokens.authenticate("devmember", secret)
        assert len(compared) == 3
        assert {a for a, _ in compared} == {t.token.token_hash for t in made}
        assert {b for _, b in compared} == {hashlib.sha256(secret.encode()).hexdigest()}
    compared.clear()
    assert tokens.authenticate("nobody", made[0].secret) is None
    assert len(compared) == 1  # an unknown user is compared against a stand-in


def test_creations_and_revocations_are_audited_without_the_token(login, dev_member):
    client = login(dev_member)
    secret = TOKEN.search(create_through_page(client, "laptop").text).group()
    token = db.session.scalar(select(PersonalAccessToken))
    client.post(f"/account/tokens/{token.id}/revoke", headers=HTMX)
    events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.target_type == "token")
                                      .order_by(AuditEvent.id)))
    assert [(e.action, e.actor_name, e.target_name, e.target_id) for e in events] == [
        ("token.created", "devmember", "devmember/laptop", token.id),
        ("token.revoked", "devmember", "devmember/laptop", token.id),
    ]
    assert events[0].details == {"prefix": secret[:8], "scopes": "git"}
    everything = json.dumps([[e.action, e.target_name, e.details] for e in db.session.scalars(select(AuditEvent))])
    assert secret not in everything and token.token_hash not in everything


def test_deleting_a_user_deletes_their_tokens(app):
    user = UserFactory(username="leaving")
    tokens.create_token(user, "laptop")
    db.session.delete(user)
    db.session.commit()
    assert db.session.scalar(select(PersonalAccessToken)) is None


def _actions() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "token")
                                   .order_by(AuditEvent.id)))
