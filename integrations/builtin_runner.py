"""The built-in runner of the embedded mode: the CIServer contract, building on the portal's own machine.

A job is the folder ``<work_root>/jobs/<folder>/<name>/``: ``job.json`` holds its repository, branch and
owner marker, and ``builds/<n>/`` each build's ``state.json`` and ``console.log``. A build is numbered
when it is triggered (its folder is made with mkdir, which one process only can win) and run by an RQ job,
``run_build``, on the queue ``runner`` (served by its own worker, since the portal's job following the
build waits on the ``builds`` queue):

1. **Checkout**: ``git clone --no-checkout`` of the local bare repository the job's URL names
   (``<public_url>/git/<team>/<repo>.git`` is ``<git_root>/<team>/<repo>.git``), then ``git checkout`` of COMMIT.
2. **Test**, in a working container of the base image (``base_image``, else portal.yaml's) with the checkout
   at /src and a pip cache shared by the builds: portal.yaml's ``setup`` (else ``pip install -r
   requirements-dev.txt`` when there is one), then its ``test`` command, as the Jenkinsfile runs them.
3. **Build**: ``buildah bud`` of the Dockerfile, with ``--build-arg BASE_IMAGE`` when ``base_image`` is set.
4. **Push** to ``<registry_host>/<folder>/<name>:<IMAGE_TAG>``; the digest goes into the console as
   ``PORTAL_IMAGE_DIGEST=sha256:...`` (the Jenkinsfile's line) and into state.json.

Every line a step prints is appended to console.log as it comes, under a ``==> <step>`` header, and
state.json goes queued, running, then succeeded or failed. The time limit covers the whole build: the
step running when it passes is stopped (its process group), and the build fails. At the end the working
folder, the container and the local image are removed; the console and the state stay.

What the isolation is worth: buildah's ``chroot`` isolation (the one that works as root with no daemon
in a plain container or VM) gives the tests their own file system, not their own network, processes or
user: the runner is for code the portal's own users push, not for untrusted code.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TextIO

import yaml
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from integrations.buildah import Buildah, TimedOut, run_streamed
from integrations.builtin_git import BuiltinGit
from integrations.ci import Build, BuildState, ConsoleChunk, JobSpec
from integrations.errors import Conflict, IntegrationError, InvalidRequest, NotFound, Unavailable
from integrations.resources import ExternalResource

log = logging.getLogger(__name__)

SYSTEM = "builtin-runner"
QUEUE = "runner"  # its own queue and worker: a build's follower on "builds" waits for it
CONSOLE = "console.log"
STATE = "state.json"
FINAL = {BuildState.SUCCEEDED, BuildState.FAILED, BuildState.ABORTED}
# A build still "running" this long after its time limit lost its worker (killed, machine restarted).
LOST_AFTER = 300
# Job folders are the portal's names; nothing that could climb out of work_root.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?")
_COMMIT = re.compile(r"[0-9a-f]{7,40}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # the OCI distribution spec's tag grammar
_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}")
_PIP_ENV = {"CI": "true", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}


class _Failed(Exception):
    """A step failed; the message says which and why, for the console and state.json."""


class BuiltinRunner:
    """CIServer on this machine: git, buildah and an RQ worker; jobs and builds kept as files under ``work_root``."""

    system = SYSTEM

    def __init__(self, work_root: Path, git_root: Path, public_url: str, registry_host: str,
                 registry_tls_verify: bool, base_image: str, buildah_root: Path, timeout: float, redis_url: str,
                 is_async: bool = True, queue: str = QUEUE):
        if not registry_host:
            raise ValueError("the built-in runner needs the registry host it pushes images to")
        self.work_root = Path(work_root)
        self.git_root = Path(git_root)
        self.public_url = public_url.rstrip("/")
        self.registry_host = registry_host
        self.registry_tls_verify = registry_tls_verify
        self.base_image = base_image
        self.buildah_root = Path(buildah_root)
        self.timeout = float(timeout)
        self.redis_url = redis_url
        self.is_async = is_async
        self.queue = queue
        self.buildah = Buildah(self.buildah_root)

    @classmethod
    def from_settings(cls, settings: Any) -> "BuiltinRunner":
        """The runner the portal builds from its Settings (PORTAL_RUNNER_*, PORTAL_GIT_ROOT, PORTAL_PUBLIC_URL).

        ``runner_registry`` is the registry's URL: ``http://`` pushes without TLS, ``https://`` verifies
        it as PORTAL_TLS_VERIFY says; a bare ``host:port`` is taken as https."""
        root = Path(settings.runner_root)
        scheme, _, host = settings.runner_registry.rpartition("://")
        return cls(work_root=root, git_root=Path(settings.git_root), public_url=settings.public_url,
                   registry_host=host.rstrip("/"), registry_tls_verify=scheme != "http" and settings.tls_verify,
                   base_image=settings.runner_base_image, buildah_root=root / "buildah",
                   timeout=settings.runner_timeout, redis_url=settings.redis_url, is_async=settings.rq_async)

    def settings(self) -> dict[str, Any]:
        """What a worker needs to run a build, as plain JSON-able values (no Redis URL: it may hold a password)."""
        return {"work_root": str(self.work_root), "git_root": str(self.git_root), "public_url": self.public_url,
                "registry_host": self.registry_host, "registry_tls_verify": self.registry_tls_verify,
                "base_image": self.base_image, "buildah_root": str(self.buildah_root), "timeout": self.timeout}

    def __repr__(self) -> str:
        return f"BuiltinRunner(work_root={str(self.work_root)!r}, registry_host={self.registry_host!r})"

    # --- jobs --------------------------------------------------------------------------------------

    def find_job(self, path: str) -> ExternalResource | None:
        record = _read_json(self._job_dir(path) / "job.json")
        return self._job(path, record) if record is not None else None

    def create_job(self, spec: JobSpec) -> ExternalResource:
        """Record the job; its repository must be one of the built-in Git host's (Conflict if the job exists)."""
        path = spec.path
        self.bare_repository(spec.repository_url)
        if not _BRANCH.fullmatch(spec.branch):
            raise InvalidRequest(SYSTEM, f"{spec.branch!r} is not a branch name", status=400)
        record = {"repository_url": spec.repository_url, "branch": spec.branch, "owner": spec.owner}
        folder = self._job_dir(path)
        with _disk_errors():
            folder.mkdir(parents=True, exist_ok=True)
            staging = folder / f".job.{uuid.uuid4().hex}"
            staging.write_text(json.dumps(record, indent=2))
            try:
                os.link(staging, folder / "job.json")  # whole or not at all, and only once
            except FileExistsError:
                raise Conflict(SYSTEM, f"job {path} exists already", status=409) from None
            finally:
                staging.unlink()
        return self._job(path, record)

    def delete_job(self, path: str) -> None:
        """Remove the job and all its builds; NotFound when it is not there."""
        folder = self._job_dir(path)
        doomed = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.deleting")
        try:
            os.rename(folder, doomed)  # away first, so that nobody meets a half-deleted job
        except FileNotFoundError:
            raise NotFound(SYSTEM, f"job {path} not found", status=404) from None
        except OSError as exc:
            raise Unavailable(SYSTEM, f"cannot remove job {path}: {exc.strerror}") from exc
        shutil.rmtree(doomed, ignore_errors=True)

    def bare_repository(self, repository_url: str) -> Path:
        """The local bare repository behind a clone URL of the built-in Git host; InvalidRequest for any other."""
        prefix = f"{self.public_url}/git/"
        if not (repository_url.startswith(prefix) and repository_url.endswith(".git")):
            raise InvalidRequest(SYSTEM, f"{repository_url} is not a repository of the built-in Git host "
                                         f"({prefix}<team>/<repository>.git)", status=400)
        external_id = repository_url[len(prefix):-len(".git")]
        return BuiltinGit(self.git_root, self.public_url).repository_path(external_id)

    # --- builds ------------------------------------------------------------------------------------

    def trigger_build(self, path: str, parameters: dict[str, str]) -> Build:
        """Number the build and queue it; it is numbered at once, so ``queue_id`` is its number."""
        if self.find_job(path) is None:
            raise NotFound(SYSTEM, f"job {path} not found", status=404)
        commit, tag = parameters.get("COMMIT", ""), parameters.get("IMAGE_TAG", "")
        if commit and not _COMMIT.fullmatch(commit):
            raise InvalidRequest(SYSTEM, f"COMMIT must be a commit SHA in lowercase hex, not {commit!r}", status=400)
        if tag and not _TAG.fullmatch(tag):
            raise InvalidRequest(SYSTEM, f"IMAGE_TAG {tag!r} is not a valid image tag", status=400)
        builds = self._job_dir(path) / "builds"
        with _disk_errors():
            builds.mkdir(exist_ok=True)
            number = max((int(p.name) for p in builds.iterdir() if p.name.isdigit()), default=0) + 1
            while True:
                try:
                    (builds / str(number)).mkdir()
                    break
                except FileExistsError:  # another trigger took it
                    number += 1
            _write_json(builds / str(number) / STATE, {"state": BuildState.QUEUED.value,
                                                       "parameters": dict(parameters), "queued_at": time.time()})
        try:
            connection = Redis.from_url(self.redis_url)
            try:
                Queue(self.queue, connection=connection, is_async=self.is_async).enqueue(
                    run_build, args=(self.settings(), path, number), job_timeout=int(self.timeout) + 60,
                    description=f"build {path} #{number}")
            finally:
                connection.close()
        except RedisError as exc:
            self._update(path, number, state=BuildState.FAILED.value, error="could not be queued",
                         finished_at=time.time())
            raise Unavailable(SYSTEM, f"cannot queue build {path} #{number}: {type(exc).__name__}") from exc
        return self.get_build(Build(job=path, number=number, state=BuildState.QUEUED, queue_id=str(number)))

    def get_build(self, build: Build) -> Build:
        number = build.number if build.number is not None else _number(build.queue_id)
        state = self._state(build.job, number)
        return Build(job=build.job, number=number, state=_effective_state(state, self.timeout),
                     duration_ms=state.get("duration_ms"), queue_id=str(number),
                     parameters=dict(state.get("parameters") or {}))

    def console(self, path: str, number: int, start: int = 0) -> ConsoleChunk:
        """The console from character ``start``. While the build runs, only whole lines are returned, so that
        an offset never falls inside a line still being written (nor inside a character)."""
        if start < 0:
            raise InvalidRequest(SYSTEM, f"start must not be negative, not {start}", status=400)
        # The state first: a build seen over has written its last line before saying so.
        over = _effective_state(self._state(path, number), self.timeout) in FINAL
        try:
            text = (self._build_dir(path, number) / CONSOLE).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        if not over:
            text = text[:text.rfind("\n") + 1]
        return ConsoleChunk(text=text[start:], next_start=max(start, len(text)), more=not over)

    # --- running one (on a worker) -----------------------------------------------------------------

    def run(self, path: str, number: int) -> str:
        """Run a queued build to its end; returns its final state. A build not queued (run already) is left as it is."""
        state = self._state(path, number)
        if state["state"] != BuildState.QUEUED.value:
            return state["state"]
        job = _read_json(self._job_dir(path) / "job.json") or {}
        started = time.time()
        self._update(path, number, state=BuildState.RUNNING.value, started_at=started)
        build_dir = self._build_dir(path, number)
        outcome: dict[str, Any]
        with open(build_dir / CONSOLE, "a", encoding="utf-8", buffering=1) as console:  # line-buffered: read live
            try:
                outcome = self._steps(path, number, job, state.get("parameters") or {}, build_dir / "work", console,
                                      time.monotonic() + self.timeout)
            except _Failed as exc:
                outcome = {"state": BuildState.FAILED.value, "error": str(exc)}
            except Exception as exc:  # a bug of ours or a broken disk: the build must still end
                log.exception("build %s #%s broke the runner", path, number)
                outcome = {"state": BuildState.FAILED.value, "error": f"the runner broke: {type(exc).__name__}: {exc}"}
            finally:
                for problem in self._clean(path, number, build_dir / "work"):
                    _write_line(console, f"cleanup: {problem}")
            finished = time.time()
            if outcome["state"] == BuildState.SUCCEEDED.value:
                _write_line(console, f"==> Succeeded in {finished - started:.0f} s")
            else:
                _write_line(console, f"==> Failed: {outcome['error']}")
        self._update(path, number, **outcome, finished_at=finished, duration_ms=int((finished - started) * 1000))
        return outcome["state"]

    def _steps(self, path: str, number: int, job: dict[str, Any], parameters: dict[str, str], work: Path,
               console: TextIO, deadline: float) -> dict[str, Any]:
        def step(argv: list[str], failure: str, **kwargs: Any) -> None:
            try:
                status = run_streamed(argv, lambda line: _write_line(console, line), deadline - time.monotonic(),
                                      **kwargs)
            except TimedOut:
                raise _Failed(f"stopped after {self.timeout:g} s (the build's time limit)") from None
            except OSError as exc:
                raise _Failed(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
            if status != 0:
                raise _Failed(f"{failure} (exit status {status})")

        commit = parameters.get("COMMIT", "")
        branch = job.get("branch", "main")
        source = work / "source"
        work.mkdir(parents=True, exist_ok=True)
        git = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LC_ALL": "C",
               "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
        _write_line(console, f"==> Checkout {commit or branch}")
        try:
            bare = self.bare_repository(job.get("repository_url", ""))
        except IntegrationError as exc:
            raise _Failed(exc.message) from exc
        # Into a path relative to the work folder: the console shows no folder of the portal's machine.
        step(["git", "clone", "--no-checkout", str(bare), source.name], "git clone failed", cwd=work, env=git)
        step(["git", "-c", "advice.detachedHead=false", "checkout", "--detach", commit or f"origin/{branch}", "--"],
             "git checkout failed", cwd=source, env=git)
        sha = (source / ".git" / "HEAD").read_text().strip()
        self._update(path, number, commit=sha)

        manifest = _manifest(source)
        image = self.base_image or str(manifest.get("base_image") or "")
        if not image:
            raise _Failed("no image to test in: PORTAL_RUNNER_BASE_IMAGE is empty and portal.yaml names no base_image")
        setup = str(manifest.get("setup") or "")
        if not setup and (source / "requirements-dev.txt").is_file():
            setup = "pip install -r requirements-dev.txt"
        container = _container_name(path, number)
        run = {"volumes": {source: "/src", self._pip_cache(): "/root/.cache/pip"}, "workdir": "/src", "env": _PIP_ENV}
        _write_line(console, f"==> Setup: {setup}" if setup else f"==> Test: {manifest['test']}")
        step(self.buildah.from_image(image, container), f"could not start a container of {image}")
        if setup:
            step(self.buildah.run(container, setup, **run), "the setup failed")
            _write_line(console, f"==> Test: {manifest['test']}")
        step(self.buildah.run(container, str(manifest["test"]), **run), "the tests failed")

        tag = parameters.get("IMAGE_TAG") or sha[:12]
        destination = f"{self.registry_host}/{path}:{tag}"
        local = _local_image(path, number)
        _write_line(console, f"==> Build {destination}")
        build_args = {"BASE_IMAGE": self.base_image} if self.base_image else {}
        step(self.buildah.bud(source, local, build_args=build_args), "the image build failed")
        _write_line(console, f"==> Push {destination}")
        digest_file = work / "digest"
        step(self.buildah.push(local, destination, tls_verify=self.registry_tls_verify, digest_file=digest_file),
             "the push failed")
        digest = digest_file.read_text().strip()
        _write_line(console, f"PORTAL_IMAGE={destination}")
        _write_line(console, f"PORTAL_IMAGE_DIGEST={digest}")
        return {"state": BuildState.SUCCEEDED.value, "image": destination, "digest": digest}

    def _clean(self, path: str, number: int, work: Path) -> list[str]:
        """Remove what the build made but its console and state; returns what could not be removed."""
        problems = [p for p in (self.buildah.remove_container(_container_name(path, number)),
                                self.buildah.remove_image(_local_image(path, number))) if p]
        shutil.rmtree(work, ignore_errors=True)
        if work.exists():
            problems.append("the work folder could not be removed")
        return problems

    # --- inside ------------------------------------------------------------------------------------

    def _job_dir(self, path: str) -> Path:
        folder, _, name = path.partition("/")
        if not (_NAME.fullmatch(folder) and _NAME.fullmatch(name)):
            raise InvalidRequest(SYSTEM, f"{path!r} is not <folder>/<name> in lowercase letters, digits and '-'",
                                 status=400)
        return self.work_root / "jobs" / folder / name

    def _build_dir(self, path: str, number: int) -> Path:
        return self._job_dir(path) / "builds" / str(int(number))

    def _job(self, path: str, record: dict[str, Any]) -> ExternalResource:
        return ExternalResource(system=SYSTEM, kind="job", external_id=path, name=path, owner=record.get("owner"),
                                attributes={"repository_url": record.get("repository_url", ""),
                                            "branch": record.get("branch", "")})

    def _state(self, path: str, number: int) -> dict[str, Any]:
        state = _read_json(self._build_dir(path, number) / STATE)
        if state is None:
            raise NotFound(SYSTEM, f"build {path} #{number} not found", status=404)
        return state

    def _update(self, path: str, number: int, **changes: Any) -> None:
        """Change fields of state.json (only the process running the build writes it once queued)."""
        with _disk_errors():
            _write_json(self._build_dir(path, number) / STATE, {**self._state(path, number), **changes})

    def _pip_cache(self) -> Path:
        cache = self.work_root / "pip-cache"
        cache.mkdir(parents=True, exist_ok=True)
        return cache


def run_build(settings: dict[str, Any], path: str, number: int) -> str:
    """The RQ job running one build: ``settings`` is ``BuiltinRunner.settings()``. Safe to run twice."""
    return BuiltinRunner(**settings, redis_url="").run(path, number)


def _manifest(source: Path) -> dict[str, Any]:
    try:
        manifest = yaml.safe_load((source / "portal.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _Failed("the repository has no portal.yaml (it says how to test the application)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _Failed(f"portal.yaml cannot be read: {exc}") from exc
    if not isinstance(manifest, dict) or not manifest.get("test"):
        raise _Failed("portal.yaml names no test command (test: ...)")
    return manifest


def _effective_state(state: dict[str, Any], timeout: float) -> BuildState:
    current = BuildState(state["state"])
    if current == BuildState.RUNNING and time.time() > state.get("started_at", 0) + timeout + LOST_AFTER:
        return BuildState.FAILED  # its worker died without a word
    return current


def _number(queue_id: str) -> int:
    if not queue_id.isdigit():
        raise InvalidRequest(SYSTEM, f"{queue_id!r} is not a build number", status=400)
    return int(queue_id)


def _container_name(path: str, number: int) -> str:
    return f"runner.{path.replace('/', '.')}.{number}"  # '.' is in no job name: one name per build


def _local_image(path: str, number: int) -> str:
    # Per build, not per tag: two builds of one commit must not remove each other's image.
    return f"localhost/runner/{path}:build-{number}"


def _write_line(console: TextIO, line: str) -> None:
    console.write(line + "\n")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    staging.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(staging, path)  # readers see the old state or the new one, never half of one


@contextmanager
def _disk_errors() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise Unavailable(SYSTEM, f"the runner's folder cannot be written: {exc.strerror or exc}") from exc
