"""Secrets at rest: encrypted with Fernet, readable with any configured key, rotated onto the first."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from portal.extensions import db
from portal.models import StoredSecret
from portal.services.secrets import SecretUnreadable, read_secret, rotate_secrets, store_secret


def _keys(app, *keys: bytes) -> None:
    app.config["PORTAL"] = app.config["PORTAL"].replace({"secret_keys": ",".join(k.decode() for k in keys)})


def test_a_secret_is_encrypted_and_read_back(app):
    store_secret("registry-robot-dev", "s3cr3t-value", username="dev-robot")
    db.session.commit()
    row = db.session.query(StoredSecret).one()
    assert b"s3cr3t" not in row.ciphertext and row.username == "dev-robot"
    assert read_secret("registry-robot-dev") == "s3cr3t-value"
    assert read_secret("nothing-here") is None


def test_rotation_moves_every_secret_to_the_new_key(app):
    old, new = Fernet.generate_key(), Fernet.generate_key()
    _keys(app, old)
    store_secret("a", "alpha")
    store_secret("b", "beta")
    db.session.commit()
    _keys(app, new, old)  # the new key first: it encrypts, the old one still decrypts
    assert read_secret("a") == "alpha"
    assert rotate_secrets() == 2
    _keys(app, new)  # the old key dropped
    assert (read_secret("a"), read_secret("b")) == ("alpha", "beta")
    _keys(app, old)
    with pytest.raises(SecretUnreadable, match="'a' cannot be decrypted"):
        read_secret("a")
