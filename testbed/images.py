"""Image builds with buildah and copies with skopeo, with no Docker engine.

buildah runs rootless-free here (as root) with the ``vfs`` storage driver and
``chroot`` isolation, so RUN steps work in a plain container or VM. Each
``ImageBuilder`` keeps its own storage under a folder of ours, so tests and
the demo never touch the machine's default image store.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from testbed.process import MissingComponent, find_binary

HOW_BUILDAH = "Install it with `make setup-test` (or `apt-get install buildah`), or set BUILDAH."
HOW_SKOPEO = "Install it with `make setup-test` (or `apt-get install skopeo`), or set SKOPEO."
HOW_BUSYBOX = "Install it with `make setup-test` (or `apt-get install busybox-static`)."


class BuildFailed(RuntimeError):
    """buildah or skopeo exited non-zero; ``output`` holds what it printed."""

    def __init__(self, what: str, output: str):
        super().__init__(f"{what} failed:\n{output[-4000:]}")
        self.output = output


@dataclass(frozen=True)
class PushedImage:
    reference: str  # host/repository:tag
    digest: str  # sha256:... of the manifest as the registry stores it


class ImageBuilder:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.buildah = find_binary("buildah", "BUILDAH", ["/usr/bin"], HOW_BUILDAH)
        self.skopeo = find_binary("skopeo", "SKOPEO", ["/usr/bin"], HOW_SKOPEO)

    @property
    def _storage(self) -> list[str]:
        return ["--root", str(self.workdir / "storage"), "--runroot", str(self.workdir / "run"),
                "--storage-driver", "vfs"]

    def _run(self, argv: list[str], what: str, timeout: float, log=None) -> str:
        lines: list[str] = []
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            # The output is read as it comes (so a caller can show a build live); a timer enforces the limit,
            # since a silent, stuck step would otherwise block the read forever.
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    lines.append(line)
                    if log:
                        log(line.rstrip("\n"))
                proc.wait()
            finally:
                timed_out = not timer.is_alive()
                timer.cancel()
        if timed_out and proc.returncode != 0:
            raise BuildFailed(what, "".join(lines) + f"\n(stopped after {timeout:.0f} s)")
        if proc.returncode != 0:
            raise BuildFailed(what, "".join(lines))
        return "".join(lines)

    def build(self, context: Path, tag: str, dockerfile: str = "Dockerfile",
              build_args: dict[str, str] | None = None, timeout: float = 900, log=None) -> str:
        """Build ``context`` into the local image ``tag``; returns the image id."""
        argv = [self.buildah, *self._storage, "bud", "--isolation", "chroot", "--layers=false",
                "-f", str(Path(context) / dockerfile), "-t", tag]
        for key, value in (build_args or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        self._run([*argv, str(context)], f"buildah bud {tag}", timeout, log)
        return self._run([self.buildah, *self._storage, "images", "-q", "--no-trunc", tag],
                         "buildah images", 60).strip().splitlines()[-1]

    def push(self, image: str, destination: str, tls_verify: bool = True, credentials: str | None = None,
             timeout: float = 600, log=None) -> PushedImage:
        """Push a local image to ``destination`` (host/repository:tag); returns the registry's digest."""
        digest_file = self.workdir / "digest"
        argv = [self.buildah, *self._storage, "push", f"--tls-verify={str(tls_verify).lower()}",
                "--digestfile", str(digest_file)]
        if credentials:
            argv += ["--creds", credentials]
        self._run([*argv, image, f"docker://{destination}"], f"buildah push {destination}", timeout, log)
        return PushedImage(destination, digest_file.read_text().strip())

    def copy(self, source: str, destination: str, tls_verify: bool = True, timeout: float = 600) -> str:
        """skopeo copy between transports (``docker://...``, ``oci:dir``, ``dir:...``)."""
        return self._run([self.skopeo, "copy", f"--src-tls-verify={str(tls_verify).lower()}",
                          f"--dest-tls-verify={str(tls_verify).lower()}", source, destination],
                         f"skopeo copy {source}", timeout)

    def has_image(self, tag: str) -> bool:
        """Whether this builder's store holds the image ``tag``."""
        result = subprocess.run([self.buildah, *self._storage, "inspect", "--type", "image", tag], capture_output=True)
        return result.returncode == 0

    def run(self, image: str, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``argv`` in a fresh container of ``image`` (its user and folder), then remove the container."""
        container = subprocess.run([self.buildah, *self._storage, "from", image], capture_output=True, text=True,
                                   check=True).stdout.strip()
        try:
            return subprocess.run([self.buildah, *self._storage, "run", "--isolation", "chroot", container, "--",
                                   *argv], capture_output=True, text=True, timeout=timeout)
        finally:
            subprocess.run([self.buildah, *self._storage, "rm", container], capture_output=True)

    def busybox_base(self, tag: str = "localhost/testbed/busybox:latest") -> str:
        """A tiny local base image (a static busybox as /bin/sh), built with no registry at all."""
        busybox = shutil.which("busybox") or "/bin/busybox"
        if not Path(busybox).exists():
            raise MissingComponent("busybox (static), needed for the base image,", HOW_BUSYBOX)
        context = self.workdir / "busybox-context"
        (context / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, context / "bin" / "busybox")
        (context / "Dockerfile").write_text(
            "FROM scratch\nCOPY bin/busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n')
        self.build(context, tag)
        return tag

    def remove_all(self) -> None:
        subprocess.run([self.buildah, *self._storage, "rm", "--all"], capture_output=True)
        subprocess.run([self.buildah, *self._storage, "rmi", "--all", "--force"], capture_output=True)
