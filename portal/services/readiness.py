"""Whether this process can serve requests: the database answers at the migrations' head (or ahead of it: during
a rolling upgrade the new release migrates first, and its migrations keep the old code working), and Redis
answers.

Each check is short (a second's timeout on Redis, two seconds per statement on PostgreSQL) so that a probe
never holds a web worker for long. The answer names what failed in a few words (an exception's type, two
revisions): never a URL, a message that could quote one, or a secret. The full reason goes to the log.
"""

from __future__ import annotations

import functools
import logging

from alembic.config import Config
from alembic.script import ScriptDirectory
from redis import Redis, RedisError
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from portal.extensions import db

log = logging.getLogger(__name__)
OK = "ok"
STATEMENT_TIMEOUT_MS = 2000


@functools.cache
def migrations_head(directory: str) -> tuple[str, ...]:
    """The head revision(s) of the Alembic scripts in ``directory`` (read once per process)."""
    config = Config()
    config.set_main_option("script_location", directory)
    scripts = ScriptDirectory.from_config(config)
    head = tuple(sorted(scripts.get_heads()))
    _KNOWN[head] = frozenset(script.revision for script in scripts.walk_revisions())
    return head


_KNOWN: dict[tuple[str, ...], frozenset[str]] = {}


def known_revisions(head: tuple[str, ...]) -> frozenset[str]:
    """Every revision of this code's scripts, by the head ``migrations_head`` read them for."""
    return _KNOWN.get(head, frozenset(head))


def quick_redis(url: str) -> Redis:
    """A client for probes and scrapes: one try, a second to connect and to answer."""
    return Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))


def readiness(redis: Redis, head: tuple[str, ...]) -> dict[str, str]:
    """``{"database": ..., "redis": ..., "migrations": ...}``, each "ok" or what is wrong (in an app context)."""
    checks: dict[str, str] = {}
    try:
        revisions = _database_revisions()
        checks["database"] = OK
        if revisions == head or (revisions and not set(revisions) & known_revisions(head)):
            checks["migrations"] = OK  # at our head, or ahead: a newer release migrated first (helm's pre-upgrade)
        else:
            checks["migrations"] = f"at {', '.join(revisions) or 'no revision'}, head is {', '.join(head)}"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown: the database is unreachable"
        log.warning("readiness: the database is unreachable: %s", getattr(exc, "orig", None) or type(exc).__name__)
    try:
        redis.ping()
        checks["redis"] = OK
    except RedisError as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
        log.warning("readiness: Redis is unreachable: %s", exc)
    return checks


def _database_revisions() -> tuple[str, ...]:
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
        conn.exec_driver_sql("SELECT 1")
        # Read directly rather than through Alembic's MigrationContext, which logs two lines each time.
        if not inspect(conn).has_table("alembic_version"):
            return ()
        return tuple(sorted(row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")))
