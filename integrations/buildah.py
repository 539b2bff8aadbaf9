"""buildah, as the built-in runner drives it: the commands, and running one with its output streamed and a time limit.

buildah keeps its images and containers under a folder of ours (``<root>/storage``, ``<root>/run``, the
``vfs`` driver: the layout of ``testbed.images.ImageBuilder``, so both can share one store) and runs RUN
steps and containers with ``chroot`` isolation, which works as root in a plain container or VM with no
daemon. ``chroot`` isolates the file system only: a build's commands share the host's network and
processes (see the runner's docstring).

A command runs in a process group of its own, so that stopping it stops what it started. Past its time
limit the group gets SIGTERM first, on which ``buildah bud`` and ``buildah run`` remove the working
containers they made; SIGKILL follows after a grace period (and would leave them behind).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

GRACE = 10.0  # seconds between SIGTERM and SIGKILL of a command past its time limit


class TimedOut(Exception):
    """The command was stopped at its time limit."""


def run_streamed(argv: list[str], log: Callable[[str], None], timeout: float, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None, grace: float = GRACE) -> int:
    """Run ``argv`` (stdin closed), handing each line it prints on stdout or stderr to ``log`` as it comes;
    return its exit status. Raises TimedOut when it ran past ``timeout`` seconds (and was stopped), and
    OSError when it cannot be started."""
    if timeout <= 0:
        raise TimedOut(argv[0])
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=cwd, env=env, start_new_session=True)
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        _signal_group(proc.pid, signal.SIGTERM)
        ends = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < ends:
            time.sleep(0.1)
        _signal_group(proc.pid, signal.SIGKILL)  # what is left of the group, the leader or not

    # A timer rather than a deadline checked between lines: a silent, stuck command would block the read forever.
    timer = threading.Timer(timeout, stop)
    timer.daemon = True
    timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            log(raw.decode("utf-8", "replace").rstrip("\r\n"))
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:  # ``log`` raised: nothing may outlive us
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        if timer.is_alive():  # stop() is running: let it finish its SIGKILL
            timer.join()
        proc.stdout.close()
    if expired.is_set():
        raise TimedOut(argv[0])
    return proc.returncode


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Buildah:
    """The buildah commands of a build, on the image store under ``root``."""

    def __init__(self, root: Path, binary: str = "buildah"):
        self.root = Path(root)
        self.binary = binary

    def command(self, *args: str) -> list[str]:
        """``buildah <args>`` on this store."""
        return [self.binary, "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", "vfs", *args]

    def from_image(self, image: str, name: str) -> list[str]:
        """A working container ``name`` of ``image`` (pulled when missing)."""
        return self.command("from", "--name", name, image)

    def run(self, container: str, script: str, *, volumes: dict[Path, str], workdir: str,
            env: dict[str, str] | None = None) -> list[str]:
        """``sh -c script`` in ``container``, with host folders mounted read-write at the given paths."""
        argv = self.command("run", "--isolation", "chroot", "--workingdir", workdir)
        for host, inside in volumes.items():
            argv += ["--volume", f"{host}:{inside}:rw"]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, container, "--", "sh", "-c", script]

    def bud(self, context: Path, tag: str, *, dockerfile: str = "Dockerfile",
            build_args: dict[str, str] | None = None) -> list[str]:
        """Build ``context`` into the local image ``tag`` (no layer cache: one image, nothing left behind)."""
        argv = self.command("bud", "--isolation", "chroot", "--layers=false", "-f", str(Path(context) / dockerfile),
                            "-t", tag)
        for key, value in (build_args or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        return [*argv, str(context)]

    def push(self, image: str, destination: str, *, tls_verify: bool, digest_file: Path) -> list[str]:
        """Push the local ``image`` to ``destination`` (host/repository:tag), writing the registry's digest."""
        return self.command("push", f"--tls-verify={str(tls_verify).lower()}", "--digestfile", str(digest_file),
                            image, f"docker://{destination}")

    def remove_container(self, name: str) -> str:
        """Remove a working container; returns buildah's complaint, empty when it went (or was gone)."""
        return self._quietly("rm", name)

    def remove_image(self, tag: str) -> str:
        """Remove a local image tag; returns buildah's complaint, empty when it went (or was gone)."""
        return self._quietly("rmi", tag)

    def _quietly(self, *args: str) -> str:
        try:
            done = subprocess.run(self.command(*args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if done.returncode == 0 or "not known" in done.stderr:
            return ""
        return done.stderr.strip()
