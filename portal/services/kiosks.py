"""Kiosk tokens: admins make and revoke them; a wall screen presents one to open its teams' boards.

A token is ``kiosk_`` and 43 URL-safe characters (256 random bits), carried in
the kiosk URL. Only its SHA-256 is stored, as for personal access tokens: the
token being random, a slow hash would protect nothing more and would slow down
every poll. It is shown once, when made, and never written to the audit trail
or the logs; what identifies a token there is its name, id and prefix.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import selectinload

from portal.errors import NotFound, ValidationFailed
from portal.extensions import db
from portal.models import KioskToken, Team, User
from portal.models.base import utcnow
from portal.models.kiosk import kiosk_token_teams
from portal.services import audit
from portal.services.access import require_admin

TOKEN_PREFIX = "kiosk_"
SHOWN_PREFIX = 10  # the marker and 4 random characters, enough to tell tokens apart
TOKEN_LENGTH = len(TOKEN_PREFIX) + 43
MAX_NAME = 60
# A kiosk polls every few seconds; the last use is written at most this often.
LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class NewKioskToken:
    """A token just made: ``secret`` is the only copy of the token there will ever be."""

    token: KioskToken
    secret: str


@dataclass(frozen=True)
class KioskViewer:
    """Who is looking through a kiosk token: the token's identity and the teams it may show, by name."""

    token_id: int
    name: str
    prefix: str
    team_names: tuple[str, ...]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def create_kiosk_token(actor: User, name: str, team_names: list[str]) -> NewKioskToken:
    """Make a token showing ``team_names`` (admins only); the plaintext is in the result and nowhere else."""
    require_admin(actor)
    name = name.strip()
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["A name is required, to recognise the token later (say, the screen it runs on)."]
    elif len(name) > MAX_NAME:
        errors["name"] = [f"At most {MAX_NAME} characters; this one has {len(name)}."]
    elif db.session.scalar(select(KioskToken.id).where(KioskToken.name == name, KioskToken.revoked_at.is_(None))):
        errors["name"] = [f"A kiosk token named {name} exists; revoke it or choose another name."]
    wanted = list(dict.fromkeys(t.strip() for t in team_names if t.strip()))
    teams = list(db.session.scalars(select(Team).where(Team.name.in_(wanted)).order_by(Team.name))) if wanted else []
    if not wanted:
        errors["team_names"] = ["Choose at least one team to show."]
    elif len(teams) != len(wanted):
        errors["team_names"] = ["Unknown team."]
    if errors:
        raise ValidationFailed(errors)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = KioskToken(name=name, token_hash=_digest(secret), prefix=secret[:SHOWN_PREFIX], created_by_id=actor.id,
                       teams=teams)
    db.session.add(token)
    db.session.flush()
    audit.record(actor, "kiosk_token.created", "kiosk_token", name, token.id, prefix=token.prefix,
                 teams=[t.name for t in teams])
    db.session.commit()
    return NewKioskToken(token, secret)


def list_kiosk_tokens(actor: User) -> list[KioskToken]:
    """Every kiosk token, newest first, revoked ones included (they say so); admins only."""
    require_admin(actor)
    return list(db.session.scalars(
        select(KioskToken).options(selectinload(KioskToken.teams), selectinload(KioskToken.created_by))
        .order_by(KioskToken.created_at.desc(), KioskToken.id.desc())))


def revoke_kiosk_token(actor: User, token_id: int) -> KioskToken:
    """Revoke a kiosk token (admins only): its screens stop at their next poll. Revoking twice changes nothing."""
    require_admin(actor)
    token = db.session.get(KioskToken, token_id)
    if token is None:
        raise NotFound("No such kiosk token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(actor, "kiosk_token.revoked", "kiosk_token", token.name, token.id, prefix=token.prefix)
        db.session.commit()
    return token


def resolve(secret: str) -> KioskViewer | None:
    """The viewer of a kiosk token if it exists and is not revoked; else None, whatever the reason.

    The lookup is by the token's SHA-256 (an index lookup on a digest an attacker cannot choose), so its timing
    tells nothing of the stored tokens. The last use is written at most once a minute, by a conditional UPDATE,
    so that screens polling every few seconds do not write on each poll.
    """
    if not secret.startswith(TOKEN_PREFIX) or len(secret) != TOKEN_LENGTH:
        return None
    token = db.session.execute(
        select(KioskToken.id, KioskToken.name, KioskToken.prefix, KioskToken.last_used_at)
        .where(KioskToken.token_hash == _digest(secret), KioskToken.revoked_at.is_(None))
    ).one_or_none()
    if token is None:
        return None
    team_names = tuple(db.session.scalars(
        select(Team.name).join(kiosk_token_teams, kiosk_token_teams.c.team_id == Team.id)
        .where(kiosk_token_teams.c.kiosk_token_id == token.id).order_by(Team.name)))
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        db.session.execute(update(KioskToken).where(
            KioskToken.id == token.id,
            or_(KioskToken.last_used_at.is_(None), KioskToken.last_used_at <= now - LAST_USED_PRECISION),
        ).values(last_used_at=now))
        db.session.commit()
    return KioskViewer(token_id=token.id, name=token.name, prefix=token.prefix, team_names=team_names)
