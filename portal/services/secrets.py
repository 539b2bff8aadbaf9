"""Encryption at rest of the secrets the portal keeps, with key rotation.

The keys come from ``PORTAL_SECRET_KEYS`` (Fernet keys, comma-separated, the
first one encrypts, all of them decrypt); with none configured, one key is
derived from the portal's secret key with HKDF, so the embedded setup works
with nothing to configure. ``rotate_secrets`` re-encrypts everything with the
first key, after which old keys can be dropped.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import select

from portal.extensions import db
from portal.models.secret import StoredSecret


class SecretUnreadable(RuntimeError):
    """A stored secret was encrypted with a key that is no longer configured."""


def _derived_key(secret_key: str) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"portal-secrets", info=b"fernet").derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


def _fernet() -> MultiFernet:
    configured = [k.strip() for k in current_app.config["PORTAL"].secret_keys.split(",") if k.strip()]
    keys = configured or [_derived_key(current_app.config["SECRET_KEY"]).decode()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def store_secret(name: str, value: str, team_id: int | None = None, username: str = "") -> StoredSecret:
    """Keep ``value`` under ``name`` (replacing what was there); the caller commits."""
    row = db.session.scalar(select(StoredSecret).where(StoredSecret.name == name))
    if row is None:
        row = StoredSecret(name=name, team_id=team_id)
        db.session.add(row)
    row.username = username
    row.ciphertext = _fernet().encrypt(value.encode())
    return row


def has_secret(name: str) -> bool:
    return db.session.scalar(select(StoredSecret.id).where(StoredSecret.name == name)) is not None


def read_secret(name: str) -> str | None:
    row = db.session.scalar(select(StoredSecret).where(StoredSecret.name == name))
    if row is None:
        return None
    try:
        return _fernet().decrypt(row.ciphertext).decode()
    except InvalidToken:
        raise SecretUnreadable(f"secret {name!r} cannot be decrypted with the configured keys") from None


def delete_secret(name: str) -> None:
    row = db.session.scalar(select(StoredSecret).where(StoredSecret.name == name))
    if row is not None:
        db.session.delete(row)


def rotate_secrets() -> int:
    """Re-encrypt every stored secret with the first configured key; returns how many."""
    fernet = _fernet()
    rows = list(db.session.scalars(select(StoredSecret)))
    for row in rows:
        try:
            row.ciphertext = fernet.rotate(row.ciphertext)
        except InvalidToken:
            raise SecretUnreadable(f"secret {row.name!r} cannot be decrypted with the configured keys") from None
    db.session.commit()
    return len(rows)
