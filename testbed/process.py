"""Starting, health-checking and stopping a server process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


class MissingComponent(RuntimeError):
    """A real component the tests or the demo need is not installed."""

    def __init__(self, what: str, how: str):
        super().__init__(f"{what} is missing. {how}")


def find_binary(name: str, env_var: str | None, extra_dirs: list[str], how: str) -> str:
    """The binary named by ``env_var``, else on PATH, else in one of ``extra_dirs``."""
    if env_var and os.environ.get(env_var):
        path = os.environ[env_var]
        if not os.access(path, os.X_OK):
            raise MissingComponent(f"{name} at {path} (from {env_var})", how)
        return path
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        candidate = Path(d) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise MissingComponent(name, how)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class ServerProcess:
    """A server we started: its process, its state directory, and how to tell it is up."""

    name: str
    argv: list[str]
    workdir: Path
    healthy: Callable[[], bool]
    env: dict[str, str] | None = None
    user: str | None = None  # run as this user (PostgreSQL refuses root)
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = self.argv
        if self.user and os.geteuid() == 0:
            argv = ["runuser", "-u", self.user, "--", *argv]
        with open(self.workdir / f"{self.name}.log", "ab") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})},
                cwd=self.workdir, start_new_session=True,
            )
        (self.workdir / f"{self.name}.pid").write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        delay = 0.01
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.workdir}/{self.name}.log:\n"
                                   + self.log_tail())
            if self.healthy():
                return self
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not become healthy in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / f"{self.name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The whole process group: runuser and the server it started.
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
