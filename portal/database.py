"""Engine-level behaviour of the database connection, whatever the backend."""

from __future__ import annotations

import os

from flask import Flask
from sqlalchemy import event, exc

from portal.extensions import db


def init_app(app: Flask) -> None:
    db.init_app(app)
    with app.app_context():
        engine = db.engine  # created, not connected
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    # RQ forks a work horse per job: a pooled connection must never cross a fork.
    event.listen(engine, "connect", _remember_pid)
    event.listen(engine, "checkout", _refuse_other_pid)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer (web and worker processes)
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _remember_pid(_dbapi_conn, record) -> None:
    record.info["pid"] = os.getpid()


def _refuse_other_pid(_dbapi_conn, record, proxy) -> None:
    pid = os.getpid()
    if record.info.get("pid") != pid:
        record.dbapi_connection = proxy.dbapi_connection = None
        raise exc.DisconnectionError(f"connection made in process {record.info.get('pid')}, used in {pid}")
