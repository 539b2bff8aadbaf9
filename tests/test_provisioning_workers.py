"""Real RQ worker processes killed with SIGKILL in the middle of a step: the run still finishes,
on another worker, and every outside resource exists exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portal.config import env_name
from portal.models import RunState, StepState
from portal.services.applications import NewApplication, create_application
from portal.services.provisioning.chain import step_for
from tests.factories import ProjectFactory
from tests.provisioning_support import FAKE_PROVIDERS, FAST, STEP_CREATES, STEP_NAMES, app_named, \
    assert_fully_provisioned, latest_run

pytestmark = pytest.mark.worker
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_overrides():
    return {**FAKE_PROVIDERS, **FAST, "rq_async": True}




@pytest.fixture
def workers(app, redis_server, tmp_path):
    """Start worker processes with the test app's settings; all are killed at the end."""
    started: list[subprocess.Popen] = []
    settings = app.config["PORTAL"]
    env = {**os.environ, env_name("database_url"): app.config["SQLALCHEMY_DATABASE_URI"],
           env_name("redis_url"): redis_server.url, env_name("secret_key"): "test"}
    for key, value in {**FAKE_PROVIDERS, **FAST}.items():
        env[env_name(key)] = str(value)
    assert settings.provisioning_lease == FAST["provisioning_lease"]

    def start() -> subprocess.Popen:
        with open(tmp_path / f"worker-{len(started)}.log", "ab") as log:  # read when a test fails
            proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker", "provisioning"],
                                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    """The worker and everything it started: RQ puts each work horse in a process group of its own,
    but they all stay in the session the worker was started in."""
    subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
    proc.wait()


def _wait_for_end(app_id: int, timeout: float = 40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = latest_run(app_id)
        if not run.state.active:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run still {run.state.value} after {timeout} s: {[(s.name, s.state.value) for s in run.steps]}")


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("step", STEP_NAMES)
def test_worker_killed_during_a_step(app, dev_member, world, workers, step, when, tmp_path):
    """`before`: killed as the step starts its call; `after`: killed once the outside system acted
    but before the portal recorded it, the case that would make a duplicate if steps did not adopt."""
    ProjectFactory(name="shop")
    op, skip, _ = STEP_CREATES[step]
    world.pause(op, when=when, skip=skip)
    first = workers()
    application = create_application(dev_member, "dev", "shop", NewApplication("cart", "python-web"))
    try:
        horse = world.wait_paused(op, timeout=30)
    except TimeoutError as exc:
        logs = "\n".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("worker-*.log")))
        raise AssertionError(f"{exc}\nrun: {latest_run(application.id).state}\nworker logs:\n{logs}") from None
    os.kill(horse, signal.SIGKILL)  # RQ's work horse runs the step in its own session
    _kill(first)
    world.release(op)
    assert latest_run(application.id).state == RunState.RUNNING

    workers()
    run = _wait_for_end(application.id)
    assert run.state == RunState.SUCCEEDED, run.error
    killed = next(s for s in run.steps if s.name == step)
    assert killed.attempts == 2
    if when == "after":
        assert killed.refs["adopted"] is True or step_for(step).converge
    assert all(s.state == StepState.SUCCEEDED for s in run.steps)
    assert_fully_provisioned(world, app_named("cart").uid)


def test_two_workers_share_a_burst_of_runs_without_duplicates(app, dev_member, world, workers):
    ProjectFactory(name="shop")
    workers()
    workers()
    apps = [create_application(dev_member, "dev", "shop", NewApplication(f"app-{i}", "static-site")) for i in range(8)]
    for a in apps:
        assert _wait_for_end(a.id).state == RunState.SUCCEEDED
    for a in apps:
        assert_fully_provisioned(world, app_named(a.name).uid)
    assert world.creations("repository") == 16


def test_a_worker_told_to_stop_finishes_its_step_and_hands_the_run_on(app, dev_member, world, workers, tmp_path):
    """SIGTERM, as Kubernetes sends it to a pod it stops: the step under way completes, the run is queued again
    at once (not left for its lease to lapse), the worker exits by itself, and another worker resumes."""
    ProjectFactory(name="shop")
    op, skip, _ = STEP_CREATES["ci_job"]
    world.pause(op, when="before", skip=skip)
    first = workers()
    application = create_application(dev_member, "dev", "shop", NewApplication("cart", "python-web"))
    world.wait_paused(op, timeout=30)
    first.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the worker tells its horse; the step is still in its call
    world.release(op)
    try:
        assert first.wait(timeout=30) == 0, "the worker did not stop by itself"
    except subprocess.TimeoutExpired:
        logs = "\n".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("worker-*.log")))
        raise AssertionError(f"the worker is still running\n{logs}") from None
    run = latest_run(application.id)
    assert run.state == RunState.QUEUED and run.lease_owner is None
    steps = {s.name: s for s in run.steps}
    assert steps["ci_job"].state == StepState.SUCCEEDED and steps["ci_job"].attempts == 1
    following = STEP_NAMES[STEP_NAMES.index("ci_job") + 1]
    assert steps[following].state == StepState.PENDING and steps[following].attempts == 0

    workers()
    run = _wait_for_end(application.id)
    assert run.state == RunState.SUCCEEDED, run.error
    assert [s.attempts for s in run.steps] == [1] * len(run.steps)  # nothing was done twice
    assert_fully_provisioned(world, app_named("cart").uid)
