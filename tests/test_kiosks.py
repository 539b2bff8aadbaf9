"""Kiosk tokens: made and revoked by admins only, shown once, stored as a hash, audited without the token,
resolved to the teams they were made for, and nothing at all once revoked."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.errors import NotFound, PermissionDenied, ValidationFailed
from portal.extensions import db
from portal.models import AuditEvent, KioskToken
from portal.models.base import utcnow
from portal.services import kiosks
from tests.support import HTMX

TOKEN = re.compile(r"kiosk_[A-Za-z0-9_-]{43}")


def test_only_admins_make_list_and_revoke_kiosk_tokens(admin, dev_maintainer):
    with pytest.raises(PermissionDenied):
        kiosks.create_kiosk_token(dev_maintainer, "hall", ["dev"])
    new = kiosks.create_kiosk_token(admin, "hall", ["dev"])
    with pytest.raises(PermissionDenied):
        kiosks.list_kiosk_tokens(dev_maintainer)
    with pytest.raises(PermissionDenied):
        kiosks.revoke_kiosk_token(dev_maintainer, new.token.id)
    assert [t.id for t in kiosks.list_kiosk_tokens(admin)] == [new.token.id]
    with pytest.raises(NotFound):
        kiosks.revoke_kiosk_token(admin, new.token.id + 1000)


def test_only_the_hash_and_a_prefix_are_stored_and_the_audit_never_holds_the_token(admin):
    new = kiosks.create_kiosk_token(admin, "ops corridor", ["ops", "dev"])
    assert TOKEN.fullmatch(new.secret)
    row = db.session.scalar(select(KioskToken).where(KioskToken.id == new.token.id))
    assert row.token_hash == hashlib.sha256(new.secret.encode()).hexdigest()
    assert row.prefix == new.secret[:10] and row.created_by_id == admin.id
    assert [t.name for t in row.teams] == ["dev", "ops"]
    stored = [str(getattr(row, c.key)) for c in KioskToken.__table__.columns]
    assert not any(new.secret in value for value in stored)
    kiosks.revoke_kiosk_token(admin, new.token.id)
    kiosks.revoke_kiosk_token(admin, new.token.id)  # twice changes nothing
    events = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    assert [e.action for e in events] == ["kiosk_token.created", "kiosk_token.revoked"]
    assert events[0].details == {"prefix": row.prefix, "teams": ["dev", "ops"]}
    assert not any(new.secret in json.dumps(e.details) or new.secret in e.target_name for e in events)


@pytest.mark.parametrize("name,teams,field,message", [
    ("", ["dev"], "name", "A name is required"),
    ("x" * 61, ["dev"], "name", "At most 60 characters"),
    ("hall", [], "team_names", "at least one team"),
    ("hall", ["dev", "nope"], "team_names", "Unknown team"),
])
def test_names_and_teams_are_checked(admin, name, teams, field, message):
    with pytest.raises(ValidationFailed) as caught:
        kiosks.create_kiosk_token(admin, name, teams)
    assert message in " ".join(caught.value.errors[field])
    assert db.session.scalar(select(KioskToken.id)) is None


def test_a_name_is_taken_until_its_token_is_revoked(admin):
    first = kiosks.create_kiosk_token(admin, "hall", ["dev"])
    with pytest.raises(ValidationFailed, match="exists"):
        kiosks.create_kiosk_token(admin, "hall", ["ops"])
    kiosks.revoke_kiosk_token(admin, first.token.id)
    assert kiosks.create_kiosk_token(admin, "hall", ["ops"]).token.name == "hall"


def test_resolve_gives_the_token_s_teams_and_nothing_for_unknown_or_revoked_tokens(admin):
    new = kiosks.create_kiosk_token(admin, "hall", ["ops", "dev"])
    viewer = kiosks.resolve(new.secret)
    assert viewer == kiosks.KioskViewer(new.token.id, "hall", new.token.prefix, ("dev", "ops"))
    assert kiosks.resolve(new.secret[:-1] + ("A" if new.secret[-1] != "A" else "B")) is None
    assert kiosks.resolve("kiosk_") is None and kiosks.resolve("") is None and kiosks.resolve(new.secret + "x") is None
    kiosks.revoke_kiosk_token(admin, new.token.id)
    assert kiosks.resolve(new.secret) is None


def test_last_use_is_written_at_most_once_a_minute(admin):
    new = kiosks.create_kiosk_token(admin, "hall", ["dev"])
    assert new.token.last_used_at is None
    kiosks.resolve(new.secret)
    db.session.expire_all()
    first = db.session.get(KioskToken, new.token.id).last_used_at
    assert first is not None
    kiosks.resolve(new.secret)
    db.session.expire_all()
    assert db.session.get(KioskToken, new.token.id).last_used_at == first
    # A minute later, the next poll writes it again.
    db.session.get(KioskToken, new.token.id).last_used_at = utcnow() - timedelta(minutes=2)
    db.session.commit()
    kiosks.resolve(new.secret)
    db.session.expire_all()
    assert db.session.get(KioskToken, new.token.id).last_used_at > first


# --- the admin page ---------------------------------------------------------------------------------

def test_the_admin_page_shows_the_kiosk_url_once_then_only_the_prefix(login, admin):
    client = login(admin)
    page = client.get("/admin/kiosks")
    assert page.status_code == 200 and "No kiosk tokens yet" in page.text
    assert 'href="/admin/kiosks"' in page.text  # in the admin navigation
    resp = client.post("/admin/kiosks", data={"name": "hall", "team_names": ["dev", "ops"]}, headers=HTMX)
    assert resp.status_code == 201 and resp.headers["Cache-Control"] == "no-store"
    assert resp.text.lstrip().startswith('<section id="kiosks">') and "<html" not in resp.text
    secret = TOKEN.findall(resp.text)
    assert len(set(secret)) == 1 and "http://127.0.0.1:5000/kiosk/" + secret[0] in resp.text
    page = client.get("/admin/kiosks")
    assert TOKEN.search(page.text) is None and secret[0][:10] in page.text and "dev, ops" in page.text
    assert kiosks.resolve(secret[0]).team_names == ("dev", "ops")


def test_the_admin_page_explains_what_is_missing(login, admin):
    resp = login(admin).post("/admin/kiosks", data={"name": "hall"}, headers=HTMX)
    assert resp.status_code == 422 and "Choose at least one team" in resp.text and TOKEN.search(resp.text) is None


def test_revoking_from_the_admin_page_answers_the_row(login, admin):
    new = kiosks.create_kiosk_token(admin, "hall", ["dev"])
    resp = login(admin).post(f"/admin/kiosks/{new.token.id}/revoke", headers=HTMX)
    assert resp.status_code == 200 and resp.text.lstrip().startswith(f'<tr id="kiosk-token-{new.token.id}">')
    assert "revoked" in resp.text
    assert kiosks.resolve(new.secret) is None
