"""Personal access tokens: made, listed, revoked by their owner, and checked when a Git client presents one.

A token is ``pat_`` and 43 URL-safe characters (256 random bits). Only its
SHA-256 is stored: a slow hash would protect nothing more, the token being
random, and would slow down every Git request. It is shown once, when made,
and never written to the audit trail or the logs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from portal.errors import NotFound, ValidationFailed
from portal.extensions import db
from portal.models import PersonalAccessToken, User
from portal.models.base import utcnow
from portal.services import audit

TOKEN_PREFIX = "pat_"
SHOWN_PREFIX = 8  # characters kept and shown to tell tokens apart
MAX_NAME = 60
SCOPES = ("git", "read", "write")  # git: clone and push; read, write: the API to come
# Each Git command makes several requests; the last use is written at most this often.
LAST_USED_PRECISION = timedelta(minutes=1)
# Compared against when the username is unknown, so that both paths do the same work.
_NO_HASH = hashlib.sha256(b"no such token").hexdigest()


@dataclass(frozen=True)
class NewToken:
    """A token just made: ``secret`` is the only copy of the token there will ever be."""

    token: PersonalAccessToken
    secret: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def create_token(actor: User, name: str, scopes: tuple[str, ...] = ("git",)) -> NewToken:
    """Make a token for the actor; the plaintext is in the result and nowhere else."""
    name = name.strip()
    errors: list[str] = []
    if not name:
        errors.append("A name is required, to recognise the token later (say, where it is used).")
    elif len(name) > MAX_NAME:
        errors.append(f"At most {MAX_NAME} characters; this one has {len(name)}.")
    elif db.session.scalar(select(PersonalAccessToken.id).where(
            PersonalAccessToken.user_id == actor.id, PersonalAccessToken.name == name,
            PersonalAccessToken.revoked_at.is_(None))):
        errors.append(f"You already have a token named {name}; revoke it or choose another name.")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValidationFailed({"scopes": [f"Scopes are among {', '.join(SCOPES)}."]})
    if errors:
        raise ValidationFailed({"name": errors})
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = PersonalAccessToken(user_id=actor.id, name=name, token_hash=_digest(secret),
                                prefix=secret[:SHOWN_PREFIX], scopes=",".join(dict.fromkeys(scopes)))
    db.session.add(token)
    db.session.flush()
    audit.record(actor, "token.created", "token", f"{actor.username}/{name}", token.id,
                 prefix=token.prefix, scopes=token.scopes)
    db.session.commit()
    return NewToken(token, secret)


def list_tokens(actor: User) -> list[PersonalAccessToken]:
    """The actor's tokens, newest first, revoked ones included (they say so)."""
    return list(db.session.scalars(select(PersonalAccessToken).where(PersonalAccessToken.user_id == actor.id)
                                   .order_by(PersonalAccessToken.created_at.desc(), PersonalAccessToken.id.desc())))


def revoke_token(actor: User, token_id: int) -> PersonalAccessToken:
    """Revoke one of the actor's tokens (an admin may revoke anyone's). Revoking twice changes nothing."""
    token = db.session.get(PersonalAccessToken, token_id)
    if token is None or (token.user_id != actor.id and not actor.is_admin):
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(actor, "token.revoked", "token", f"{token.user.username}/{token.name}", token.id,
                     prefix=token.prefix)
        db.session.commit()
    return token


def authenticate(username: str, secret: str, scope: str = "git") -> User | None:
    """The user whose token this is, if it is theirs, not revoked, and carries ``scope``; else None.

    Every stored hash of the user is compared in constant time, whether or not an
    earlier one matched, and an unknown username does the same comparison.
    """
    digest = _digest(secret)
    user = db.session.scalar(select(User).where(User.username == username.strip()))
    candidates = list(db.session.scalars(select(PersonalAccessToken).where(
        PersonalAccessToken.user_id == user.id))) if user is not None else []
    match = None
    for token in candidates:
        if hmac.compare_digest(token.token_hash, digest):
            match = token
    if not candidates:
        hmac.compare_digest(_NO_HASH, digest)
    if match is None or match.revoked_at is not None or scope not in match.scope_list:
        return None
    now = utcnow()
    if match.last_used_at is None or now - match.last_used_at >= LAST_USED_PRECISION:
        match.last_used_at = now
        db.session.commit()
    return user
