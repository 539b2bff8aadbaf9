"""The migrations and the models describe the same schema, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from portal.extensions import db
from portal.models import Team


def test_models_and_migrations_agree(app):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_first_migration_seeds_dev_and_ops(app):
    assert list(db.session.scalars(select(Team.name).order_by(Team.name))) == ["dev", "ops"]


def test_downgrade_and_upgrade_round_trip(tmp_path, redis_server):
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    from tests.conftest import make_app

    app = make_app(f"sqlite:///{tmp_path / 'round.sqlite3'}", redis_server.url)
    with app.app_context():
        upgrade()
        assert "applications" in inspect(db.engine).get_table_names()
        downgrade(revision="base")
        assert inspect(db.engine).get_table_names() == ["alembic_version"]
        upgrade()
        assert db.session.scalar(select(Team.name).where(Team.name == "dev")) == "dev"
        db.session.remove()
        db.engine.dispose()
