"""What the built-in deployer remembers, on the portal's own disk: one JSON file per project, cluster and
application, and one lock file per application.

    <root>/projects/<name>.json       source repositories, destinations, owner
    <root>/clusters/<name>.json       the cluster's target, credentials included
    <root>/applications/<name>.json   the spec, the last operation, what is synced, the history
    <root>/locks/<name>.lock          held (flock) while the application is synced or changed

Cluster credentials are in these files: every folder is made 0700 and every file 0600, so only the
portal's own user can read them (back them up as you back up the portal's stored secrets). A file is
written whole to a temporary name and renamed over the old one, so a reader never meets half a file.
Lock files stay after their application is deleted: removing a lock another process may be waiting
on would let two holders in.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from integrations.errors import IntegrationError, InvalidRequest, Unavailable

SYSTEM = "builtin-deployer"
KINDS = ("projects", "clusters", "applications")
# The names of Argo CD's objects: DNS subdomains. Nothing that could climb out of the folder or hide in it.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")


def checked_name(what: str, name: str) -> str:
    """``name`` when it can name a ``what`` (a DNS subdomain), else InvalidRequest."""
    if not _NAME.fullmatch(name or "") or ".." in name:
        raise InvalidRequest(SYSTEM, f"{what} name {name!r} is not a DNS subdomain "
                                     f"(lowercase letters, digits, '-' and '.')", status=400)
    return name


class DeployerState:
    """The records of the built-in deployer under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def read(self, kind: str, name: str) -> dict[str, Any] | None:
        """The record ``name`` of ``kind`` (projects, clusters, applications), or None."""
        path = self._path(kind, name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unavailable(SYSTEM, f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            return json.loads(text)
        except ValueError as exc:
            raise IntegrationError(SYSTEM, f"{path} is not valid JSON: repair or remove it") from exc

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every record of ``kind``, by name."""
        folder = self._folder(kind)
        names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        return [record for record in (self.read(kind, name) for name in names) if record is not None]

    def write(self, kind: str, name: str, record: dict[str, Any]) -> None:
        """Replace the record ``name`` of ``kind`` by ``record``, readable by this user only."""
        path = self._path(kind, name)
        with _disk_errors(path):
            self._ensure_folder(path.parent)
            fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=path.parent)  # mode 0600
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(record, out, indent=2, sort_keys=True)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise

    def remove(self, kind: str, name: str) -> bool:
        """Forget the record; False when there was none."""
        path = self._path(kind, name)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise Unavailable(SYSTEM, f"cannot remove {path}: {exc.strerror or exc}") from exc
        return True

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the application's lock (other processes and threads wait for it) for the ``with`` block."""
        path = self.root / "locks" / f"{checked_name('application', name)}.lock"
        with _disk_errors(path):
            self._ensure_folder(path.parent)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # per open file: threads of one process exclude each other too
            yield
        finally:
            os.close(fd)  # releases the lock

    def _folder(self, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown kind of record {kind!r}")
        return self.root / kind

    def _path(self, kind: str, name: str) -> Path:
        return self._folder(kind) / f"{checked_name(kind[:-1], name)}.json"

    def _ensure_folder(self, folder: Path) -> None:
        for path in (self.root, folder):
            if not path.is_dir():
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                path.chmod(0o700)  # whatever the umask made of it


@contextmanager
def _disk_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise Unavailable(SYSTEM, f"cannot write {path}: {exc.strerror or exc}") from exc
