"""Settings come from PORTAL_* variables, typed, with embedded defaults."""

from __future__ import annotations

import pytest

from portal import create_app
from portal.config import ConfigError, Settings, reference


def test_defaults_need_nothing_configured():
    s = Settings.from_env({})
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("instance/portal.sqlite3")
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.team_approval is False


def test_values_are_converted_to_their_types():
    s = Settings.from_env({"PORTAL_TEAM_APPROVAL": "yes", "PORTAL_PAGE_SIZE": "50", "PORTAL_REDIS_URL": "redis://r:1/2"})
    assert s.team_approval is True and s.page_size == 50 and s.redis_url == "redis://r:1/2"


@pytest.mark.parametrize("env,message", [
    ({"PORTAL_PAGE_SIZE": "many"}, "PORTAL_PAGE_SIZE must be a number"),
    ({"PORTAL_TEAM_APPROVAL": "perhaps"}, "PORTAL_TEAM_APPROVAL must be a boolean"),
])
def test_bad_values_are_named(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="unknown settings: nope"):
        create_app({"nope": 1})


def test_reference_lists_every_setting_with_its_meaning():
    rows = reference()
    names = {r["name"] for r in rows}
    assert {"PORTAL_DATABASE_URL", "PORTAL_REDIS_URL", "PORTAL_TEAM_APPROVAL"} <= names
    assert all(r["doc"] for r in rows)


def test_create_app_does_not_connect_anywhere(tmp_path):
    # Unreachable servers: building the app must still succeed, since nothing connects at build time.
    app = create_app({"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none",
                      "redis_url": "redis://127.0.0.1:1/0", "secret_key": "x"})
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("/none")


def test_the_configuration_document_is_the_settings_as_they_are():
    """docs/configuration.md is generated from portal/config.py; a setting added, changed or removed without
    regenerating it fails here."""
    from portal.config import PROJECT_ROOT, REFERENCE_DOCUMENT, reference_document

    written = (PROJECT_ROOT / REFERENCE_DOCUMENT).read_text()
    assert written == reference_document(), (
        f"{REFERENCE_DOCUMENT} is out of date: run  .venv/bin/flask --app app config-reference > {REFERENCE_DOCUMENT}")
    assert all(f"`{row['name']}`" in written for row in reference())
    assert str(PROJECT_ROOT) not in written  # the same on every machine
