"""The built-in Git host of the embedded mode: bare repositories on the portal's own disk (dulwich).

Each repository lives at ``<root>/<group>/<name>.git``; its identifier is
``<group>/<name>``. The ownership marker is ``[portal] owner`` in the
repository's config. A repository is prepared in a hidden folder beside its
final place and renamed into it, so that it exists whole or not at all.

The portal serves these repositories over Git's smart HTTP protocol itself
(``serve_http``), so it sees every push as it happens: the host needs no
webhook. The contract's webhook methods still record what they are asked for
(``[portal-webhook "<id>"]`` in the config), so that the provisioning step
succeeds, is adopted on a re-run, and is removed by a delete run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from dulwich.errors import GitProtocolError, HangupException, NotGitRepository, NotTreeError
from dulwich.object_store import commit_tree_changes, tree_lookup_path
from dulwich.objects import Blob, Commit as GitCommit, Tag, Tree
from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import ChunkedEncodingError, GunzipFilter, HTTPGitApplication, LimitedInputFilter

from integrations.errors import Conflict, InvalidRequest, NotFound, Unavailable
from integrations.resources import ExternalResource
from integrations.scm import Commit, RepositorySpec, WebhookSpec

log = logging.getLogger(__name__)

SYSTEM = "builtin-git"
COMMITTER_NAME = "Developer Portal"
COMMITTER = f"{COMMITTER_NAME} <portal@localhost>".encode()
OWNER_SECTION = (b"portal",)
WEBHOOK_SECTION = b"portal-webhook"
ZERO_SHA = "0" * 40
# Group and repository names are the portal's names (RFC 1035 labels and their slugs): nothing that could
# climb out of the root, hide a folder, or collide with the staging folders (which start with a dot).
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?")
_HEX_SHA = re.compile(r"[0-9a-f]{40}")
# Only the two smart services: clone or fetch, and push (no upload-archive).
_SERVICES = (b"git-upload-pack", b"git-receive-pack")


@dataclass(frozen=True)
class RefUpdate:
    """One ref a push changed. ``commit`` is the new head (None when the push deleted the ref)."""

    ref: str
    old: str
    new: str
    commit: Commit | None


@dataclass(frozen=True)
class HTTPAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class BuiltinGit:
    """SourceControl on local bare repositories, with the clone URLs the portal serves them at."""

    system = SYSTEM

    def __init__(self, root: Path, base_url: str):
        self.root = Path(root)
        self.base_url = base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Any) -> "BuiltinGit":
        """The factory the portal calls with its Settings (PORTAL_GIT_ROOT, PORTAL_PUBLIC_URL)."""
        return cls(Path(settings.git_root), settings.public_url)

    # --- where things are ------------------------------------------------------------------------

    def repository_path(self, external_id: str) -> Path:
        """The folder of the bare repository ``<group>/<name>``; InvalidRequest for any other shape."""
        group, _, name = external_id.partition("/")
        if not (_NAME.fullmatch(group) and _NAME.fullmatch(name)):
            raise InvalidRequest(SYSTEM, f"{external_id!r} is not <group>/<name> in lowercase letters, digits and '-'",
                                 status=400)
        return self.root / group / f"{name}.git"

    def clone_url(self, external_id: str) -> str:
        return f"{self.base_url}/git/{external_id}.git"

    # --- repositories ----------------------------------------------------------------------------

    def find_repository(self, path: str) -> ExternalResource | None:
        try:
            with self._open(path) as repo:
                return self._repository(repo, path)
        except NotFound:
            return None

    def create_repository(self, spec: RepositorySpec) -> ExternalResource:
        """Create the repository with ``spec.files`` as its first commit (one commit, not one per file)."""
        external_id = spec.path
        final = self.repository_path(external_id)
        if final.exists():
            raise Conflict(SYSTEM, f"repository {external_id} exists already", status=409)
        with _disk_errors():
            final.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", suffix=".creating", dir=final.parent))
            try:
                repo = Repo.init_bare(str(staging), default_branch=spec.default_branch.encode())
                try:
                    config = repo.get_config()
                    config.set(OWNER_SECTION, b"owner", spec.owner.encode())
                    config.write_to_path()
                    repo.set_description(spec.description.encode())
                    if spec.files:
                        self._commit(repo, spec.default_branch, spec.files, spec.commit_message)
                finally:
                    repo.close()
                staging.chmod(0o755)  # mkdtemp made it private to this process
                try:
                    os.rename(staging, final)
                except OSError as exc:  # made meanwhile by someone else: theirs stays
                    raise Conflict(SYSTEM, f"repository {external_id} exists already", status=409) from exc
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        with self._open(external_id) as repo:
            return self._repository(repo, external_id)

    def delete_repository(self, external_id: str) -> None:
        """Remove it; NotFound when it is already gone."""
        path = self.repository_path(external_id)
        # Renamed away first, so that nobody meets a half-deleted repository.
        doomed = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.deleting")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            raise NotFound(SYSTEM, f"repository {external_id} not found", status=404) from None
        except OSError as exc:
            raise Unavailable(SYSTEM, f"cannot remove repository {external_id}: {exc.strerror}") from exc
        shutil.rmtree(doomed, ignore_errors=True)

    # --- files and commits -----------------------------------------------------------------------

    def commit_files(self, external_id: str, branch: str, files: dict[str, bytes], message: str) -> Commit:
        """One commit on top of ``branch`` (started from the default branch when new) adding or replacing ``files``."""
        if not files:
            raise InvalidRequest(SYSTEM, "a commit needs at least one file", status=400)
        with self._open(external_id) as repo:
            sha = self._commit(repo, branch, files, message)
        return Commit(sha=sha, message=message, author=COMMITTER_NAME)

    def head(self, external_id: str, branch: str) -> Commit:
        """The tip of ``branch``; NotFound when the repository or the branch is missing."""
        with self._open(external_id) as repo:
            sha = repo.refs.as_dict().get(b"refs/heads/" + branch.encode())
            if sha is None:
                raise NotFound(SYSTEM, f"branch {branch} of repository {external_id} not found", status=404)
            return _as_commit(sha, repo[sha])

    def read_file(self, external_id: str, ref: str, path: str) -> bytes:
        """The bytes of ``path`` at ``ref`` (a branch, a tag or a full commit SHA); NotFound when either is missing."""
        with self._open(external_id) as repo:
            commit = self._resolve(repo, ref, external_id)
            try:
                _, sha = tree_lookup_path(repo.__getitem__, commit.tree, _tree_path(path))
                blob = repo[sha]
            except (KeyError, NotTreeError):
                blob = None
            if not isinstance(blob, Blob):
                raise NotFound(SYSTEM, f"file {path} at {ref} not found in {external_id}", status=404)
            return blob.data

    # --- webhooks (recorded only: the portal serves the pushes itself) ------------------------------

    def find_webhook(self, repository_id: str, url: str) -> ExternalResource | None:
        try:
            with self._open(repository_id) as repo:
                return self._webhook(repo, repository_id, _hook_id(url))
        except NotFound:
            return None

    def create_webhook(self, spec: WebhookSpec) -> ExternalResource:
        hook_id = _hook_id(spec.url)
        with self._open(spec.repository_id) as repo, _disk_errors():
            config = repo.get_config()
            section = (WEBHOOK_SECTION, hook_id.encode())
            if config.has_section(section):
                raise Conflict(SYSTEM, f"webhook to {spec.url} exists already on {spec.repository_id}", status=409)
            # The secret is not kept: nothing is ever delivered.
            config.set(section, b"url", spec.url.encode())
            config.set(section, b"owner", spec.owner.encode())
            config.set(section, b"events", ",".join(spec.events).encode())
            config.write_to_path()
            return self._webhook(repo, spec.repository_id, hook_id)

    def delete_webhook(self, repository_id: str, external_id: str) -> None:
        with self._open(repository_id) as repo, _disk_errors():
            config = repo.get_config()
            section = (WEBHOOK_SECTION, external_id.encode())
            if not config.has_section(section):
                raise NotFound(SYSTEM, f"webhook {external_id} of repository {repository_id} not found", status=404)
            del config[section]
            config.write_to_path()

    # --- Git over HTTP -----------------------------------------------------------------------------

    def serve_http(self, external_id: str, environ: dict[str, Any],
                   on_push: Callable[[list[RefUpdate]], str] | None = None) -> HTTPAnswer:
        """Answer one request of Git's smart HTTP protocol for the repository (whoever asks: check first).

        ``environ`` is the request's WSGI environ with ``PATH_INFO`` the part after
        ``<name>.git`` (``/info/refs``, ``/git-upload-pack``, ``/git-receive-pack``).
        After a push has updated refs, ``on_push`` gets them and what it returns is
        shown to the pusher (``remote: ...``). The answer is read whole into memory.
        """
        with self._open(external_id) as repo:
            repo.hooks["post-receive"] = _PostReceive(repo, on_push)
            git = HTTPGitApplication(DictBackend({"/": repo}))
            git.handlers = {service: git.handlers[service] for service in _SERVICES}
            environ = dict(environ)
            if environ.get("wsgi.input_terminated"):
                # The server has already decoded a chunked body: dulwich must not decode it again.
                environ.pop("HTTP_TRANSFER_ENCODING", None)
            started: list[tuple[str, list[tuple[str, str]]]] = []
            chunks: list[bytes] = []

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
                started.append((status, list(headers)))
                return chunks.append  # dulwich writes through this, and yields too; both keep their order

            try:
                result = LimitedInputFilter(GunzipFilter(git))(environ, start_response)
                try:
                    chunks.extend(result)
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            except (GitProtocolError, HangupException, ChunkedEncodingError) as exc:
                raise InvalidRequest(SYSTEM, f"not a valid Git request: {exc}", status=400) from exc
            status, headers = started[-1]
            return HTTPAnswer(int(status.split()[0]), headers, b"".join(chunks))

    # --- inside ------------------------------------------------------------------------------------

    @contextmanager
    def _open(self, external_id: str) -> Iterator[Repo]:
        path = self.repository_path(external_id)
        if not (path / "HEAD").is_file():
            raise NotFound(SYSTEM, f"repository {external_id} not found", status=404)
        try:
            repo = Repo(str(path))
        except NotGitRepository as exc:
            raise NotFound(SYSTEM, f"repository {external_id} not found", status=404) from exc
        try:
            yield repo
        finally:
            repo.close()

    def _repository(self, repo: Repo, external_id: str) -> ExternalResource:
        url = self.clone_url(external_id)
        head = repo.refs.get_symrefs().get(b"HEAD", b"refs/heads/main")
        return ExternalResource(
            system=SYSTEM, kind="repository", external_id=external_id, name=external_id, url=url,
            owner=_config_value(repo, OWNER_SECTION, b"owner"),
            attributes={"http_url": url, "default_branch": head.decode().removeprefix("refs/heads/")},
        )

    def _webhook(self, repo: Repo, repository_id: str, hook_id: str) -> ExternalResource | None:
        section = (WEBHOOK_SECTION, hook_id.encode())
        url = _config_value(repo, section, b"url")
        if url is None:
            return None
        return ExternalResource(
            system=SYSTEM, kind="webhook", external_id=hook_id, name=url, url=self.clone_url(repository_id),
            owner=_config_value(repo, section, b"owner"),
            attributes={"repository_id": repository_id, "events": _config_value(repo, section, b"events") or "",
                        "delivery": "none needed: the portal serves this repository and sees its pushes"},
        )

    def _commit(self, repo: Repo, branch: str, files: dict[str, bytes], message: str) -> str:
        """Commit ``files`` on top of ``branch`` and move it there, unless someone moved it meanwhile."""
        ref = b"refs/heads/" + branch.encode()
        changes = []
        for path, content in sorted(files.items()):
            blob = Blob.from_string(content)
            repo.object_store.add_object(blob)
            changes.append((_tree_path(path), 0o100644, blob.id))
        with _disk_errors():
            for _ in range(3):
                old = repo.refs.as_dict().get(ref)
                start = old or _default_head(repo)
                base: Tree | bytes = repo[start].tree if start else Tree()
                commit = GitCommit()
                commit.tree = commit_tree_changes(repo.object_store, base, changes)
                commit.parents = [start] if start else []
                commit.author = commit.committer = COMMITTER
                commit.author_time = commit.commit_time = int(time.time())
                commit.author_timezone = commit.commit_timezone = 0
                commit.encoding = b"UTF-8"
                commit.message = message.encode() if message.endswith("\n") else (message + "\n").encode()
                repo.object_store.add_object(commit)
                moved = repo.refs.add_if_new(ref, commit.id) if old is None else \
                    repo.refs.set_if_equals(ref, old, commit.id)
                if moved:
                    return commit.id.decode()
        raise Conflict(SYSTEM, f"branch {branch} of {repo.path} kept moving; try again", status=409)

    def _resolve(self, repo: Repo, ref: str, external_id: str) -> GitCommit:
        return resolve(repo, ref, f"repository {external_id}")


def resolve(repo: Repo, ref: str, where: str) -> GitCommit:
    """The commit ``ref`` names in ``repo``: ``HEAD``, a branch, a tag (annotated ones peeled) or a full SHA;
    NotFound (saying ``where``) otherwise."""
    refs = repo.refs.as_dict()
    if ref == "HEAD":
        target = refs.get(repo.refs.get_symrefs().get(b"HEAD", b"refs/heads/main"))
    else:
        target = refs.get(b"refs/heads/" + ref.encode()) or refs.get(b"refs/tags/" + ref.encode())
    if target is None and _HEX_SHA.fullmatch(ref):
        target = ref.encode()
    try:
        obj = repo[target] if target is not None else None
        while isinstance(obj, Tag):
            obj = repo[obj.object[1]]
    except KeyError:
        obj = None
    if not isinstance(obj, GitCommit):
        raise NotFound(SYSTEM, f"ref {ref} of {where} not found", status=404)
    return obj


class _PostReceive:
    """dulwich's post-receive hook: tells the portal which refs a push moved, and relays its answer."""

    def __init__(self, repo: Repo, on_push: Callable[[list[RefUpdate]], str] | None):
        self.repo = repo
        self.on_push = on_push

    def execute(self, client_refs: Sequence[tuple[bytes, bytes, bytes]]) -> bytes | None:
        if self.on_push is None:
            return None
        updates = [RefUpdate(ref=ref.decode(), old=old.decode(), new=new.decode(), commit=self._commit(new))
                   for old, new, ref in client_refs]
        try:
            message = self.on_push(updates)
        except Exception:  # the refs have moved already: the push succeeded, whatever happens next
            log.exception("what follows a push to %s failed", self.repo.path)
            message = "The push was received, but the portal could not act on it; this has been logged."
        return (message.rstrip("\n") + "\n").encode() if message else None

    def _commit(self, sha: bytes) -> Commit | None:
        if sha.decode() == ZERO_SHA:
            return None
        obj = self.repo[sha]
        return _as_commit(sha, obj) if isinstance(obj, GitCommit) else None


def _as_commit(sha: bytes, obj: GitCommit) -> Commit:
    """Our Commit of a dulwich commit object: its message, and the author's name without the e-mail."""
    encoding = (obj.encoding or b"UTF-8").decode()
    return Commit(sha=sha.decode(), message=obj.message.decode(encoding, "replace").strip(),
                  author=obj.author.split(b" <", 1)[0].decode(encoding, "replace"))


def _hook_id(url: str) -> str:
    return "hook-" + hashlib.sha256(url.encode()).hexdigest()[:16]


def _config_value(repo: Repo, section: tuple[bytes, ...], name: bytes) -> str | None:
    try:
        return repo.get_config().get(section, name).decode()
    except KeyError:
        return None


def _default_head(repo: Repo) -> bytes | None:
    head = repo.refs.get_symrefs().get(b"HEAD")
    return repo.refs.as_dict().get(head) if head else None


def _tree_path(path: str) -> bytes:
    parts = path.split("/")
    if not path or any(p in ("", ".", "..", ".git") for p in parts):
        raise InvalidRequest(SYSTEM, f"{path!r} is not a relative path inside the repository", status=400)
    return path.encode()


@contextmanager
def _disk_errors() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise Unavailable(SYSTEM, f"the repository store cannot be written: {exc.strerror or exc}") from exc
