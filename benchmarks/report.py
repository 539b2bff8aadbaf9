"""What every benchmark prints: the machine it ran on, and rows of medians and percentiles."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from portal.extensions import db


def row(user: str, label: str, times: list[float]) -> str:
    """median, p95, p99, min, max of ``times`` (ms), after a user and a label."""
    pct = statistics.quantiles(times, n=100, method="inclusive")
    cols = (statistics.median(times), pct[94], pct[98], min(times), max(times))
    return f"{user:<11} {label:<42}" + "".join(f"{c:>8.1f}" for c in cols)


def machine(app=None) -> list[str]:
    """Date, CPUs, memory, software and load; the database line needs ``app``."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    software = f"Python {platform.python_version()}"
    if app is not None:
        with app.app_context():
            postgres = db.engine.dialect.name == "postgresql"
            database = f"PostgreSQL {db.session.scalar(text('SHOW server_version'))}" if postgres else \
                f"SQLite {sqlite3.sqlite_version}"
        software += f", {database}"
    return [f"date:     {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
            f"machine:  {len(os.sched_getaffinity(0))} CPUs (nproc), {cpu}, {mem_kb / 1024 ** 2:.1f} GiB RAM",
            f"software: {software}",
            "load:     {:.2f} {:.2f} {:.2f} (1, 5, 15 min, at start)".format(*os.getloadavg())]


@contextmanager
def servers(sqlite: bool):
    """Throwaway Redis and PostgreSQL (or a SQLite file): yields (database URL, Redis URL, a scratch folder)."""
    from testbed.services import PostgresServer, RedisServer

    started = []
    try:
        redis = RedisServer.start()
        started.append(redis)
        with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
            if sqlite:
                url = f"sqlite:///{Path(tmp) / 'portal.sqlite3'}"
            else:
                postgres = PostgresServer.start()
                started.append(postgres)
                url = postgres.create_database("portal_bench")
            yield url, redis.url, Path(tmp)
    finally:
        for server in reversed(started):
            server.stop()
