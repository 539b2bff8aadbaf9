"""Redis and PostgreSQL servers in throwaway directories, from Debian's packages."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed.process import MissingComponent, ServerProcess, find_binary, free_port, port_open

HOW_REDIS = "Install it with `make setup-test` (or `apt-get install redis-server`), or set REDIS_SERVER to its path."
HOW_POSTGRES = "Install it with `make setup-test` (or `apt-get install postgresql`), or set PG_BINDIR to its bin folder."


@dataclass
class RedisServer:
    process: ServerProcess
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, workdir: Path | None = None, port: int | None = None) -> "RedisServer":
        binary = find_binary("redis-server", "REDIS_SERVER", ["/usr/bin", "/usr/sbin"], HOW_REDIS)
        port = port or free_port()
        workdir = workdir or Path(tempfile.mkdtemp(prefix="portal-redis-"))
        proc = ServerProcess(
            name="redis",
            argv=[binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", str(workdir)],
            workdir=workdir,
            healthy=lambda: _redis_ping(port),
        )
        return cls(proc.start(), port)

    def stop(self) -> None:
        self.process.stop()


def _redis_ping(port: int) -> bool:
    if not port_open(port):
        return False
    import redis

    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def postgres_bindir() -> str:
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if candidates:
        return candidates[-1]
    initdb = shutil.which("initdb")
    return str(Path(initdb).resolve().parent) if initdb else ""


@dataclass
class PostgresServer:
    process: ServerProcess
    port: int
    workdir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls, workdir: Path | None = None) -> "PostgresServer":
        bindir = postgres_bindir()
        if not bindir or not os.access(f"{bindir}/initdb", os.X_OK):
            raise MissingComponent("PostgreSQL (initdb and postgres)", HOW_POSTGRES)
        initdb, postgres = f"{bindir}/initdb", f"{bindir}/postgres"
        workdir = workdir or Path(tempfile.mkdtemp(prefix="portal-pg-"))
        data = workdir / "data"
        user = "postgres" if os.geteuid() == 0 else None
        if user:
            shutil.chown(workdir, user)
        run_as = ["runuser", "-u", user, "--"] if user else []
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True,
        )
        port = free_port()
        proc = ServerProcess(
            name="postgres",
            # A throwaway server: durability off, for speed.
            argv=[postgres, "-D", str(data), "-p", str(port), "-k", str(workdir), "-c", "listen_addresses=127.0.0.1",
                  "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                  "-c", "max_connections=200"],
            workdir=workdir,
            healthy=lambda: _pg_ready(port),
            user=user,
        )
        return cls(proc.start(), port, workdir)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _pg_ready(port: int) -> bool:
    if not port_open(port):
        return False
    import psycopg

    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=1):
            return True
    except psycopg.OperationalError:
        return False
