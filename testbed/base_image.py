"""A Python base image for the application templates, made from Debian's archive with no registry at all.

The scaffolds' Dockerfiles start ``FROM ${BASE_IMAGE}`` (python:3.12-slim from Docker Hub by
default). Where Docker Hub cannot be reached, this builds a stand-in: a minimal Debian root file
system made by ``debootstrap --variant=minbase`` with python3, pip, venv and the CA certificates,
imported into buildah as ``localhost/portal/python-base:<version>``.

The root file system is kept as a build context (``rootfs.tar.gz`` and a ``FROM scratch`` /
``ADD rootfs.tar.gz /`` Dockerfile, as Debian's official images are made) under
``~/.cache/portal-testbed/base-images/python-<version>/``, outside any clone, so that only the
first build on a machine runs debootstrap; later ones re-import the tarball, or reuse the image
if the builder's storage already holds it. The version names the suite, the architecture and a
digest of the package list and of the recipe below: change either and a new one is built.

How the image differs from Debian's own python3 and why:

- ``python`` runs python3 (Debian's python-is-python3 symlink), as in the python images.
- pip may install into the system interpreter: the EXTERNALLY-MANAGED marker is deleted and kept
  from coming back by a dpkg path-exclude, as PEP 668 recommends for single-application container
  images. An environment variable (PIP_BREAK_SYSTEM_PACKAGES) would also do, but would be lost by
  any step that resets the environment; without the marker the image behaves like python:*-slim.
  As root, Debian's pip installs under /usr/local, apart from the packages dpkg manages.
- It trusts the certificate authorities the build host added to Debian's store
  (/usr/local/share/ca-certificates/*.crt): on a network whose proxy intercepts TLS, pip in a
  RUN step reaches PyPI only so, as company base images carry the company's CA. They are part of
  the version, so adding or changing one makes a new root file system.
- No apt lists or downloaded packages, and (as debian:*-slim) no documentation but the copyright
  files, no manual pages and no translations; a dpkg config keeps later installs just as lean.

    python -m testbed.base_image build    make the cached root file system (as root), say how long it took
    python -m testbed.base_image path     where it is, or would be
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from testbed.images import BuildFailed, ImageBuilder
from testbed.process import MissingComponent, find_binary

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates", "python-is-python3")
# Bump when what the steps below put into the root file system changes, so caches are rebuilt.
RECIPE = 1
REPOSITORY = "localhost/portal/python-base"
# Where Debian (and Ubuntu) keep the certificate authorities added locally; update-ca-certificates reads it.
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
HOW_DEBOOTSTRAP = "Install it with `make setup-test` (or `apt-get install debootstrap`), or set DEBOOTSTRAP."

# Paths dpkg leaves out (and that are removed after debootstrap), as in Debian's slim images.
DPKG_EXCLUDES = """\
# Lean like debian:*-slim: no documentation but the copyright files, no manual pages, no translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
# pip may install into the system interpreter (PEP 668: single-application container images).
path-exclude /usr/lib/python3*/EXTERNALLY-MANAGED
"""
SLIMMED = ("usr/share/doc", "usr/share/info", "usr/share/man", "usr/share/groff", "usr/share/lintian",
           "usr/share/locale")
# Debian's official images do the same: no downloaded .deb is left behind by later apt-get installs.
_REMOVE_DEBS = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"
APT_CLEAN = f"""\
DPkg::Post-Invoke {{ "{_REMOVE_DEBS}"; }};
APT::Update::Post-Invoke {{ "{_REMOVE_DEBS}"; }};
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""
DOCKERFILE = """\
FROM scratch
ADD rootfs.tar.gz /
LABEL org.opencontainers.image.title="portal python base" org.opencontainers.image.version="{version}" \\
      org.opencontainers.image.description="Debian {suite} (minbase) with {packages}"
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8
CMD ["python3"]
"""


def base_images_dir() -> Path:
    """Base images live in the user's cache, outside any clone, so every checkout on a machine
    (CI's fresh clones included) reuses them; TESTBED_BASE_IMAGES_DIR moves them."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("TESTBED_BASE_IMAGES_DIR") or cache / "portal-testbed" / "base-images")


def version() -> str:
    """``<suite>-<arch>-<digest>``: what names the cached root file system and the image's tag.

    The digest covers the package list, the recipe and the local certificate authorities."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    digest = hashlib.sha256(f"minbase {' '.join(sorted(PACKAGES))} recipe {RECIPE}".encode())
    for path in _local_cas(LOCAL_CAS):
        digest.update(path.relative_to(LOCAL_CAS).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{SUITE}-{arch}-{digest.hexdigest()[:10]}"


def build_python_base(builder: ImageBuilder, cache_dir: Path, mirror: str = MIRROR, log=None) -> str:
    """The local name of the Python base image in ``builder``'s storage, building what is missing.

    Cold, this runs debootstrap (as root, a minute or so, downloading from ``mirror``); warm, it
    imports the cached tarball; if ``builder`` already holds the image it returns at once.
    """
    tag = f"{REPOSITORY}:{version()}"
    if builder.has_image(tag):
        return tag
    context = python_rootfs(cache_dir, mirror, log)
    builder.build(context, tag, log=log)
    return tag


def python_rootfs(cache_dir: Path, mirror: str = MIRROR, log=None) -> Path:
    """The build context of the base image (``rootfs.tar.gz`` and its Dockerfile), made if missing."""
    name = version()
    context = Path(cache_dir) / f"python-{name}"
    tarball = context / "rootfs.tar.gz"
    if tarball.exists():
        return context
    context.mkdir(parents=True, exist_ok=True)
    with open(Path(cache_dir) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be making the same thing
        if tarball.exists():
            return context
        if os.geteuid() != 0:
            raise MissingComponent(
                f"The Python base image's root file system ({tarball})",
                "debootstrap needs root to make it: run the tests as root, or make it once with "
                f"`sudo TESTBED_BASE_IMAGES_DIR={cache_dir} .venv/bin/python -m testbed.base_image build`.")
        debootstrap = find_binary("debootstrap", "DEBOOTSTRAP", ["/usr/sbin"], HOW_DEBOOTSTRAP)
        root = context / "rootfs.partial"
        _remove_tree(root)  # what an interrupted run left
        argv = [debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), mirror]
        build_log = context / "build.log"
        build_log.write_text("")
        _run_logged(argv, build_log, "debootstrap", log)
        _finish(root, LOCAL_CAS, build_log, log)
        partial = context / "rootfs.tar.gz.partial"
        # Numeric owners, as the image has no passwd of the host's; /dev stays empty (the runtime fills it).
        _run_logged(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--exclude=./dev/*",
                     "-C", str(root), "-czf", str(partial), "."], build_log, "tar", log)
        _remove_tree(root)
        (context / "Dockerfile").write_text(DOCKERFILE.format(version=name, suite=SUITE, packages=", ".join(PACKAGES)))
        os.replace(partial, tarball)  # never leave a half-written tarball under the final name
    return context


def _finish(root: Path, local_cas: Path, build_log: Path, log=None) -> None:
    """Make debootstrap's result an image: lean, pip allowed, the host's local CAs trusted, nothing else of
    the host's or of the build's."""
    cas = _local_cas(local_cas)
    for path in cas:
        target = root / "usr/local/share/ca-certificates" / path.relative_to(local_cas)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    if cas:
        _run_logged(["chroot", str(root), "update-ca-certificates"], build_log, "update-ca-certificates", log)
    (root / "etc/dpkg/dpkg.cfg.d/portal-base").write_text(DPKG_EXCLUDES)
    (root / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
    for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for folder in SLIMMED:
        _slim(root, root / folder)
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
                    "var/log/*.log", "var/log/apt/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
                    # The build host's: buildah provides its own to every container.
                    "etc/resolv.conf", "etc/hostname"):
        for path in root.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()


def _local_cas(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.crt") if p.is_file()) if folder.is_dir() else []


def _slim(root: Path, folder: Path) -> None:
    """Remove what dpkg would now leave out under ``folder``: all but the copyright files."""
    for dirpath, dirnames, filenames in os.walk(folder, topdown=False):
        here = Path(dirpath)
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            path = here / name
            if not re.fullmatch(r"usr/share/doc/[^/]+/copyright", path.relative_to(root).as_posix()):
                path.unlink()
        if here != folder and not any(here.iterdir()):
            here.rmdir()


def _run_logged(argv: list[str], log_path: Path, what: str, log=None) -> None:
    with open(log_path, "a") as out, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            out.flush()
            if log:
                log(line.rstrip("\n"))
    if proc.returncode != 0:
        raise BuildFailed(f"{what} (full log in {log_path})", log_path.read_text(errors="replace"))


def _remove_tree(path: Path) -> None:
    """Delete a root file system, unmounting first what debootstrap mounted into it (/proc, /sys) if it
    was stopped: deleting through a mount would delete the host's files."""
    if not path.exists():
        return
    mounted = _mounts_under(path)
    for mount_point in sorted(mounted, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount_point], capture_output=True)
    still = _mounts_under(path)
    if still:
        raise RuntimeError(f"{path} still has mounts ({', '.join(still)}): unmount them, then delete it")
    shutil.rmtree(path)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as mountinfo:
        # The fifth field is the mount point, with spaces and the like written as octal escapes.
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in mountinfo]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.base_image", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "path"])
    args = parser.parse_args(argv)
    context = base_images_dir() / f"python-{version()}"
    if args.command == "path" or (context / "rootfs.tar.gz").exists():
        built = (context / "rootfs.tar.gz").exists()
        print(f"python base {version()}\t{context}{'' if built else ' (not built)'}")
        return 0
    print(f"python base {version()}: running debootstrap ...", flush=True)
    started = time.monotonic()
    context = python_rootfs(base_images_dir())
    size = (context / "rootfs.tar.gz").stat().st_size
    print(f"python base: made {context} in {time.monotonic() - started:.0f} s, {size / 1e6:.0f} MB compressed",
          flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main())
    except (MissingComponent, BuildFailed) as exc:
        sys.exit(str(exc))
