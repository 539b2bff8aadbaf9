"""What the built-in deployer deploys: the application's chart at the head of its branch, read from the
built-in Git host's bare repository on this disk, rendered by ``helm template`` as Argo CD renders it.

Only the chart's folder and the values file are written out (into a private temporary folder), and only
regular files: a symbolic link in the repository could otherwise make helm read any file of the portal's
machine into a manifest. Whatever the repository holds is the team's; what goes wrong with it is a
failed sync (``SyncFailed``), recorded and shown, never an exception out of the deployer.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from dulwich.errors import NotGitRepository
from dulwich.object_store import iter_tree_contents
from dulwich.objects import Commit
from dulwich.repo import Repo

from integrations.builtin_deployer_state import SYSTEM
from integrations.builtin_git import BuiltinGit, resolve
from integrations.delivery import DeliverySpec
from integrations.errors import InvalidRequest, NotFound

# Argo CD's tracking label (its default ``application.instanceLabelKey``): on every object it deploys.
INSTANCE = "app.kubernetes.io/instance"
RENDER_TIMEOUT = 120.0  # seconds helm may take to render one chart
MESSAGE_LIMIT = 4000  # characters of helm's stderr kept in the operation's message


class SyncFailed(Exception):
    """A sync that failed for a reason in the application's repository or manifests: recorded as Failed."""


def relative_path(what: str, path: str) -> PurePosixPath:
    """``path`` as a path inside the repository; InvalidRequest when it could leave it."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or any(part in ("..", ".git") for part in pure.parts):
        raise InvalidRequest(SYSTEM, f"{what} {path!r} is not a relative path inside the repository", status=400)
    return pure


class DeploymentSources:
    """The deployment repositories of the built-in Git host, by the clone URLs it serves them at."""

    def __init__(self, git_root: Path, public_url: str, helm: str):
        self.git = BuiltinGit(git_root, public_url)
        self.helm = helm

    def repository_path(self, url: str) -> Path:
        """The bare repository behind clone URL ``url``; InvalidRequest for a URL of anything else."""
        prefix = f"{self.git.base_url}/git/"
        if url.startswith(prefix) and url.endswith(".git"):
            try:
                return self.git.repository_path(url[len(prefix):-len(".git")])
            except InvalidRequest:
                pass
        raise InvalidRequest(SYSTEM, f"{url} is not a repository of the built-in Git host ({prefix}<team>/<name>.git): "
                                     f"the built-in deployer deploys only from there", status=400)

    def head(self, spec: DeliverySpec) -> str:
        """The commit ``spec.revision`` (a branch, a tag, a commit or HEAD) names now; NotFound when none."""
        with self._open(spec.repository_url) as repo:
            return self._resolve(repo, spec).id.decode()

    def render(self, spec: DeliverySpec, sha: str) -> list[dict[str, Any]]:
        """The manifests of the chart at commit ``sha``, each labelled with the application's instance label."""
        chart = relative_path("chart path", spec.path.strip("/"))
        values = relative_path("values file", spec.values_file)
        with tempfile.TemporaryDirectory(prefix="portal-deployer-") as tmp:
            root = Path(tmp) / "repository"
            with self._open(spec.repository_url) as repo:
                written = _checkout(repo, sha.encode(), root, (chart, values))
            if values not in written:
                raise SyncFailed(f"{values} is not in the repository at {sha[:8]}")
            if chart / "Chart.yaml" not in written:
                raise SyncFailed(f"there is no chart (Chart.yaml) in {chart}/ at {sha[:8]}")
            output = self._helm_template(spec, root / chart, root / values, Path(tmp))
        try:
            documents = [d for d in yaml.safe_load_all(output) if d is not None]
        except yaml.YAMLError as exc:
            raise SyncFailed(f"helm template wrote invalid YAML: {exc}") from None
        return [labelled(document, spec.name) for document in documents]

    def _helm_template(self, spec: DeliverySpec, chart: Path, values: Path, home: Path) -> str:
        helm = self.helm or shutil.which("helm") or "helm"
        argv = [helm, "template", spec.name, str(chart), "--namespace", spec.namespace, "-f", str(values)]
        # Helm's caches and configuration in the temporary folder: nothing of the portal's user is read or left.
        env = {"HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
               "HELM_DATA_HOME": str(home / "data"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=RENDER_TIMEOUT)
        except OSError as exc:
            raise SyncFailed(f"cannot run helm ({helm}): {exc.strerror or exc}; install helm or set "
                             f"PORTAL_DEPLOYER_HELM to its path") from None
        except subprocess.TimeoutExpired:
            raise SyncFailed(f"helm template did not finish within {RENDER_TIMEOUT:g} s") from None
        if done.returncode:
            said = (done.stderr or done.stdout).strip().replace(f"{home}/repository/", "")
            raise SyncFailed(f"helm template failed: {said[:MESSAGE_LIMIT]}")
        return done.stdout

    def _open(self, url: str) -> Repo:
        path = self.repository_path(url)
        if not (path / "HEAD").is_file():
            raise NotFound(SYSTEM, f"repository {url} not found", status=404)
        try:
            return Repo(str(path))
        except NotGitRepository as exc:
            raise NotFound(SYSTEM, f"repository {url} not found", status=404) from exc

    @staticmethod
    def _resolve(repo: Repo, spec: DeliverySpec) -> Commit:
        return resolve(repo, spec.revision or "HEAD", spec.repository_url)


def labelled(manifest: Any, instance: str) -> dict[str, Any]:
    """``manifest`` with Argo CD's tracking label in its own metadata (never in selectors or templates)."""
    if not isinstance(manifest, dict):
        raise SyncFailed(f"helm template wrote a document that is not an object: {str(manifest)[:200]}")
    metadata = manifest.get("metadata") if isinstance(manifest.get("metadata"), dict) else {}
    labels = metadata.get("labels") if isinstance(metadata.get("labels"), dict) else {}
    return {**manifest, "metadata": {**metadata, "labels": {**labels, INSTANCE: instance}}}


def _checkout(repo: Repo, sha: bytes, root: Path, wanted: tuple[PurePosixPath, ...]) -> set[PurePosixPath]:
    """Write the regular files of commit ``sha`` that are, or are under, ``wanted`` below ``root``."""
    commit = repo[sha]
    if not isinstance(commit, Commit):
        raise SyncFailed(f"{sha.decode()[:8]} is not a commit")
    written = set()
    for entry in iter_tree_contents(repo.object_store, commit.tree):
        name = entry.path.decode("utf-8", "replace")
        if not stat.S_ISREG(entry.mode) or any(part in ("", ".", "..") for part in name.split("/")):
            continue  # symbolic links and submodules are not followed; odd names are not written
        path = PurePosixPath(name)
        if not any(path == w or w in path.parents for w in wanted):
            continue
        target = root.joinpath(*path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(repo[entry.sha].as_raw_string())
        written.add(path)
    return written
