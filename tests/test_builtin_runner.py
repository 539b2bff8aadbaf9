"""The built-in runner: jobs and numbered builds on disk, each build checked out with the real git from a bare
repository of the built-in Git host, tested in a buildah container of the offline Python base image, built
with buildah and pushed to the real registry, its console read while it runs.

Builds run inline (``is_async=False``) except where the point is a build read while it runs: there a real
RQ worker (``rq worker --burst``) runs it. The first test may make the base image cold (a minute or two).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import threading
import time
import urllib.error
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from redis import Redis
from rq import Queue

from integrations.builtin_git import BuiltinGit
from integrations.builtin_runner import LOST_AFTER, BuiltinRunner, run_build
from integrations.ci import Build, BuildState, CIServer, JobSpec
from integrations.errors import Conflict, InvalidRequest, NotFound
from integrations.registry_plain import PlainRegistry
from integrations.scm import RepositorySpec
from scaffolds import ScaffoldContext, render_source

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "http://portal.test"
OWNER = "app-7f3a"

GREETING = b"def greet():\n    return 'hello'\n"
PASSING = b"""import unittest

from greeting import greet


class GreetingTest(unittest.TestCase):
    def test_greets(self):
        self.assertEqual(greet(), "hello")
"""
DOCKERFILE = (b"ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\nCOPY greeting.py /app/\n"
              b'CMD ["python", "/app/greeting.py"]\n')


def small_app(test: str = "python -m unittest -v", **files: bytes) -> dict[str, bytes]:
    """An application that needs nothing from PyPI: a module, a unittest, a Dockerfile, its portal.yaml."""
    return {"portal.yaml": f"base_image: python:3.12-slim\ntest: {test}\nport: 8080\n".encode(),
            "greeting.py": GREETING, "test_greeting.py": PASSING, "Dockerfile": DOCKERFILE, **files}


def unique(prefix: str) -> str:
    """A repository name of its own per test: the registry lives for the whole session."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def git_host(tmp_path) -> BuiltinGit:
    return BuiltinGit(tmp_path / "git", PUBLIC_URL)


@pytest.fixture
def make_runner(tmp_path, git_host, registry_server, image_builder, python_base, redis_server):
    """A runner on the test's folders, the session's registry and image store, the offline base image."""

    def make(**overrides) -> BuiltinRunner:
        settings = dict(work_root=tmp_path / "runner", git_root=git_host.root, public_url=PUBLIC_URL,
                        registry_host=registry_server.host, registry_tls_verify=False, base_image=python_base,
                        buildah_root=image_builder.workdir, timeout=600, redis_url=redis_server.url, is_async=False,
                        queue=unique("runner-test"))
        return BuiltinRunner(**{**settings, **overrides})

    return make


@pytest.fixture
def runner(make_runner) -> BuiltinRunner:
    return make_runner()


def new_job(runner: BuiltinRunner, git_host: BuiltinGit, name: str, files: dict[str, bytes]) -> tuple[str, str]:
    """A repository dev/<name> holding ``files`` as its first commit, and its job; returns (job path, head SHA)."""
    repository = git_host.create_repository(RepositorySpec(group="dev", name=name, description="", owner=OWNER,
                                                           files=files, commit_message="Start"))
    runner.create_job(JobSpec(folder="dev", name=name, repository_url=repository.attributes["http_url"], owner=OWNER))
    return f"dev/{name}", head(git_host, f"dev/{name}")


def head(git_host: BuiltinGit, external_id: str, ref: str = "main") -> str:
    return subprocess.run(["git", "--git-dir", str(git_host.repository_path(external_id)), "rev-parse", ref],
                          capture_output=True, text=True, check=True).stdout.strip()


def whole_console(runner: BuiltinRunner, path: str, number: int) -> str:
    chunk = runner.console(path, number)
    assert not chunk.more
    return chunk.text


def pushed_tags(registry_server, repository: str) -> list[str]:
    try:
        return registry_server.tags(repository)
    except urllib.error.HTTPError as exc:
        exc.close()  # its answer holds the connection
        assert exc.code == 404
        return []


def containers(image_builder) -> list[str]:
    done = subprocess.run([*_buildah(image_builder), "containers", "--all", "--format", "{{.ContainerName}}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


def _buildah(image_builder) -> list[str]:
    return [image_builder.buildah, "--root", str(image_builder.workdir / "storage"), "--runroot",
            str(image_builder.workdir / "run"), "--storage-driver", "vfs"]


def processes_with(marker: str) -> list[str]:
    """Command lines of the live processes that mention ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{proc.name}: {cmdline}")
    return found


# --- the contract ----------------------------------------------------------------------------------

def test_the_runner_implements_the_ci_contract_with_the_same_signatures(tmp_path):
    runner = BuiltinRunner(tmp_path, tmp_path / "git", PUBLIC_URL, "127.0.0.1:5000", False, "", tmp_path / "b", 60,
                           "redis://127.0.0.1:1/0")
    assert isinstance(runner, CIServer)
    assert runner.system == "builtin-runner"
    methods = [n for n, v in vars(CIServer).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        ours, contract = inspect.signature(getattr(BuiltinRunner, name)), inspect.signature(getattr(CIServer, name))
        assert str(ours) == str(contract), name


def test_the_runner_is_built_from_the_portal_settings(tmp_path):
    settings = SimpleNamespace(runner_root=str(tmp_path / "runner"), runner_registry="http://127.0.0.1:5001",
                               runner_base_image="localhost/portal/python-base:x", runner_timeout=900,
                               git_root=str(tmp_path / "git"), public_url="http://portal.test/",
                               redis_url="redis://127.0.0.1:6379/0", rq_async=False, tls_verify=True)
    runner = BuiltinRunner.from_settings(settings)
    assert (runner.registry_host, runner.registry_tls_verify, runner.is_async) == ("127.0.0.1:5001", False, False)
    assert runner.buildah_root == tmp_path / "runner" / "buildah" and runner.public_url == "http://portal.test"
    assert runner.timeout == 900 and runner.base_image == "localhost/portal/python-base:x"
    secure = BuiltinRunner.from_settings(SimpleNamespace(**{**vars(settings),
                                                            "runner_registry": "https://reg.example"}))
    assert (secure.registry_host, secure.registry_tls_verify) == ("reg.example", True)
    assert "redis" not in json.dumps(runner.settings())  # the worker's arguments carry no Redis URL (nor password)
    with pytest.raises(ValueError, match="registry"):
        BuiltinRunner.from_settings(SimpleNamespace(**{**vars(settings), "runner_registry": ""}))


def test_jobs_are_recorded_found_with_their_owner_and_deleted_with_their_builds(runner, git_host):
    path, sha = new_job(runner, git_host, "shop-cart", small_app())
    job = runner.find_job(path)
    assert (job.system, job.kind, job.external_id, job.owner) == ("builtin-runner", "job", path, OWNER)
    assert job.attributes["repository_url"] == f"{PUBLIC_URL}/git/dev/shop-cart.git"
    assert runner.find_job("dev/other") is None
    with pytest.raises(Conflict):
        runner.create_job(JobSpec(folder="dev", name="shop-cart", repository_url=job.attributes["repository_url"],
                                  owner="app-other"))
    assert runner.find_job(path).owner == OWNER
    for bad in ("https://gitlab.example.com/dev/shop-cart.git", f"{PUBLIC_URL}/git/../etc.git"):
        with pytest.raises(InvalidRequest):
            runner.create_job(JobSpec(folder="dev", name="elsewhere", repository_url=bad, owner=OWNER))
    with pytest.raises(InvalidRequest):
        runner.find_job("../../etc")

    # Queued for a worker that never comes: numbered at once, one number each, even when triggered together.
    runner.is_async = True
    numbers: list[int] = []
    threads = [threading.Thread(target=lambda: numbers.append(runner.trigger_build(path, {"COMMIT": sha}).number))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == list(range(1, 9))
    queued = runner.get_build(Build(job=path, number=None, state=BuildState.QUEUED, queue_id="3"))
    assert (queued.number, queued.state, queued.parameters) == (3, BuildState.QUEUED, {"COMMIT": sha})
    assert runner.console(path, 3) == runner.console(path, 3, 0)
    assert runner.console(path, 3).text == "" and runner.console(path, 3).more
    with Redis.from_url(runner.redis_url) as redis:
        queue = Queue(runner.queue, connection=redis)
        [job_of_3] = [j for j in queue.jobs if tuple(j.args[1:]) == (path, 3)]
        assert job_of_3.func_name == "integrations.builtin_runner.run_build" and job_of_3.timeout == 660
        queue.empty()

    # A build whose worker died without a word is over once its time limit is long past.
    state_file = runner.work_root / "jobs" / "dev" / "shop-cart" / "builds" / "2" / "state.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "state": "running", "started_at": time.time() - 600 - LOST_AFTER - 1}))
    assert runner.get_build(Build(job=path, number=2, state=BuildState.RUNNING)).state == BuildState.FAILED
    assert not runner.console(path, 2).more

    for call in (lambda: runner.trigger_build(path, {"COMMIT": "--upload-pack=evil"}),
                 lambda: runner.trigger_build(path, {"COMMIT": sha, "IMAGE_TAG": "no spaces"}),
                 lambda: runner.console(path, 1, -1)):
        with pytest.raises(InvalidRequest):
            call()
    runner.delete_job(path)
    assert runner.find_job(path) is None
    assert not (runner.work_root / "jobs" / "dev" / "shop-cart").exists()
    for call in (lambda: runner.delete_job(path), lambda: runner.trigger_build(path, {"COMMIT": sha}),
                 lambda: runner.console(path, 1), lambda: runner.get_build(Build(path, 1, BuildState.QUEUED))):
        with pytest.raises(NotFound):
            call()


# --- builds ----------------------------------------------------------------------------------------

def test_a_commit_of_the_python_template_is_tested_built_and_pushed(runner, git_host, registry_server,
                                                                     image_builder, tmp_path):
    name = unique("shop-cart")
    files = render_source("python-web", ScaffoldContext(team="dev", project="shop", application="cart",
                                                        registry=registry_server.host, image=f"dev/{name}"))
    path, sha = new_job(runner, git_host, name, files)
    before = containers(image_builder)

    triggered = runner.trigger_build(path, {"COMMIT": sha, "IMAGE_TAG": sha[:8]})
    assert (triggered.job, triggered.number, triggered.queue_id) == (path, 1, "1")
    build = runner.get_build(triggered)
    console = whole_console(runner, path, 1)
    assert build.state == BuildState.SUCCEEDED, console
    assert build.duration_ms > 0 and build.parameters == {"COMMIT": sha, "IMAGE_TAG": sha[:8]}

    headers = [line for line in console.splitlines() if line.startswith("==> ")]
    assert headers == [f"==> Checkout {sha}", "==> Setup: pip install --no-cache-dir -r requirements-dev.txt",
                       "==> Test: python -m pytest -q", f"==> Build {registry_server.host}/{path}:{sha[:8]}",
                       f"==> Push {registry_server.host}/{path}:{sha[:8]}", headers[-1]], console
    assert headers[-1].startswith("==> Succeeded in ")
    assert "5 passed" in console  # pytest's summary, from inside the container
    assert str(runner.work_root) not in console and str(git_host.root) not in console  # no folder of this machine
    [digest] = [line.split("=", 1)[1] for line in console.splitlines() if line.startswith("PORTAL_IMAGE_DIGEST=")]
    assert pushed_tags(registry_server, path) == [sha[:8]]
    assert registry_server.manifest_digest(path, sha[:8]) == digest

    # What the portal asks next, of the registry the runner pushed to.
    registry = PlainRegistry(registry_server.url, tmp_path / "registry", timeout=10, retries=0, verify=True,
                             ca_bundle="")
    assert registry.image_name(path) == f"{registry_server.host}/{path}"
    assert [(t.tag, t.digest) for t in registry.list_tags(path)] == [(sha[:8], digest)]

    build_dir = runner.work_root / "jobs" / "dev" / name / "builds" / "1"
    assert sorted(p.name for p in build_dir.iterdir()) == ["console.log", "state.json"]  # the work folder is gone
    assert json.loads((build_dir / "state.json").read_text())["digest"] == digest
    assert containers(image_builder) == before
    assert not image_builder.has_image(f"localhost/runner/{path}:build-1")

    # Run again (a retried job): the build is over, nothing happens.
    assert run_build(runner.settings(), path, 1) == "succeeded"
    assert whole_console(runner, path, 1) == console


@pytest.mark.worker
def test_the_console_is_read_in_pieces_while_a_worker_runs_the_build(make_runner, git_host, registry_server,
                                                                    redis_server, tmp_path):
    runner = make_runner(is_async=True)
    name = unique("shop-site")
    files = render_source("static-site", ScaffoldContext(team="dev", project="shop", application="site",
                                                         registry=registry_server.host, image=f"dev/{name}"))
    path, sha = new_job(runner, git_host, name, files)
    triggered = runner.trigger_build(path, {"COMMIT": sha, "IMAGE_TAG": "v1"})
    assert runner.get_build(triggered).state == BuildState.QUEUED
    assert runner.console(path, 1) == runner.console(path, 1, 0)

    with open(tmp_path / "worker.log", "w") as worker_log:
        worker = subprocess.Popen([str(Path(sys.executable).parent / "rq"), "worker", "--burst", "--url",
                                   redis_server.url, "--path", str(ROOT), runner.queue],
                                  cwd=ROOT, stdout=worker_log, stderr=subprocess.STDOUT)
    try:
        chunks, states, offset = [], set(), 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            states.add(runner.get_build(triggered).state)
            chunk = runner.console(path, 1, offset)
            assert chunk.next_start == offset + len(chunk.text)
            chunks.append(chunk)
            offset = chunk.next_start
            if not chunk.more:
                break
            time.sleep(0.2)
        assert worker.wait(120) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    text = "".join(c.text for c in chunks)
    assert not chunks[-1].more and runner.get_build(triggered).state == BuildState.SUCCEEDED, text
    assert BuildState.RUNNING in states
    running = [c for c in chunks if c.more and c.text]
    assert len(running) >= 3, [c.text for c in chunks]  # read while it ran, in several pieces
    assert all(c.text.endswith("\n") for c in running)  # whole lines only, while it runs
    assert text == whole_console(runner, path, 1)
    assert "==> Test: python tests/check_site.py public" in text and "PORTAL_IMAGE_DIGEST=sha256:" in text
    assert pushed_tags(registry_server, path) == ["v1"]


def test_a_commit_whose_tests_fail_fails_and_pushes_nothing(runner, git_host, registry_server, image_builder):
    name = unique("greeter")
    path, first = new_job(runner, git_host, name, small_app())
    broken = git_host.commit_files(f"dev/{name}", "main", {"greeting.py": b"def greet():\n    return 'bye'\n"},
                                   "Say bye").sha
    before = containers(image_builder)

    build = runner.get_build(runner.trigger_build(path, {"COMMIT": broken, "IMAGE_TAG": broken[:8]}))
    console = whole_console(runner, path, 1)
    assert build.state == BuildState.FAILED, console
    assert "FAIL: test_greets" in console and "AssertionError: 'bye' != 'hello'" in console
    assert console.splitlines()[-1] == "==> Failed: the tests failed (exit status 1)"
    assert "==> Build" not in console
    assert pushed_tags(registry_server, path) == []
    assert containers(image_builder) == before

    # The commit before it still builds: the build takes the commit it is given, not the branch's head.
    assert runner.get_build(runner.trigger_build(path, {"COMMIT": first, "IMAGE_TAG": first[:8]})).state == \
        BuildState.SUCCEEDED, whole_console(runner, path, 2)
    assert pushed_tags(registry_server, path) == [first[:8]]


def test_a_dockerfile_that_does_not_build_fails_with_buildahs_error(runner, git_host, registry_server, image_builder):
    name = unique("unbuildable")
    dockerfile = b"ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo about to fail && exit 3\n"
    path, sha = new_job(runner, git_host, name, small_app(Dockerfile=dockerfile))
    before = containers(image_builder)

    build = runner.get_build(runner.trigger_build(path, {"COMMIT": sha, "IMAGE_TAG": "1"}))
    console = whole_console(runner, path, 1)
    assert build.state == BuildState.FAILED, console
    assert "OK" in console  # the tests passed first
    assert "about to fail" in console and 'building at STEP "RUN echo about to fail && exit 3"' in console
    assert console.splitlines()[-1].startswith("==> Failed: the image build failed (exit status ")
    assert pushed_tags(registry_server, path) == []
    assert containers(image_builder) == before


def test_a_build_past_its_time_limit_is_stopped_with_what_it_ran(make_runner, git_host, registry_server,
                                                                 image_builder):
    runner = make_runner(timeout=40)
    marker = f"sleep {uuid.uuid4().int % 9000 + 1000}"
    name = unique("sleeper")
    path, sha = new_job(runner, git_host, name, small_app(test=marker))
    before = containers(image_builder)

    build = runner.get_build(runner.trigger_build(path, {"COMMIT": sha, "IMAGE_TAG": "1"}))
    console = whole_console(runner, path, 1)
    assert build.state == BuildState.FAILED, console
    assert f"==> Test: {marker}" in console  # stopped in the step that hung
    assert console.splitlines()[-1] == "==> Failed: stopped after 40 s (the build's time limit)"
    assert processes_with(marker) == []
    assert pushed_tags(registry_server, path) == []
    assert containers(image_builder) == before
    assert not (runner.work_root / "jobs" / "dev" / name / "builds" / "1" / "work").exists()
