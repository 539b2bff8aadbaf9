"""RQ wiring: the enqueue helper, synchronous jobs for unit tests, and a real worker process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from rq.job import Job

from jobs import ALL_QUEUES, DEFAULT_QUEUES, QueueName, enqueue, get_queue, redis_connection
from jobs.system import ping

ROOT = Path(__file__).resolve().parent.parent


def test_synchronous_mode_runs_the_job_inline(app):
    job = enqueue(ping, "inline", queue=QueueName.DEFAULT)
    assert job.is_finished
    assert job.return_value() == {"token": "inline", "pid": os.getpid(), "app": "portal"}


def test_enqueue_sets_id_timeout_failure_ttl_and_retry(app_async):
    job = enqueue(ping, "x", queue=QueueName.PROVISIONING, job_id="ping-1", timeout=42)
    assert job.id == "ping-1"
    assert job.timeout == 42
    assert job.failure_ttl == app_async.config["PORTAL"].job_failure_ttl
    assert job.retries_left == app_async.config["PORTAL"].job_retries
    assert job.origin == "provisioning"
    assert get_queue(QueueName.PROVISIONING).count == 1


def test_enqueue_with_the_same_id_while_queued_does_not_duplicate(app_async):
    first = enqueue(ping, "x", job_id="same")
    second = enqueue(ping, "x", job_id="same")
    assert first.id == second.id
    assert get_queue(QueueName.DEFAULT).count == 1


@pytest.mark.worker
def test_a_real_worker_process_runs_the_job(app_async, redis_server, db_url_for_worker):
    token = uuid.uuid4().hex
    job = enqueue(ping, token, queue=QueueName.DEFAULT)
    env = {**os.environ, "PORTAL_REDIS_URL": redis_server.url, "PORTAL_DATABASE_URL": db_url_for_worker,
           "PORTAL_SECRET_KEY": "test"}
    proc = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "worker", "--burst", "default"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    job = Job.fetch(job.id, connection=redis_connection())
    assert job.is_finished, proc.stderr
    result = job.return_value()
    assert result["token"] == token and result["pid"] != os.getpid()


def test_worker_command_refuses_unknown_queues(app, redis_server):
    proc = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "worker", "--burst", "nope"],
        cwd=ROOT, env={**os.environ, "PORTAL_REDIS_URL": redis_server.url, "PORTAL_SECRET_KEY": "t"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0 and "unknown queue(s) nope" in proc.stderr
    assert set(ALL_QUEUES) == {"provisioning", "builds", "default", "runner"}
    assert set(DEFAULT_QUEUES) == {"provisioning", "builds", "default"}  # the runner's needs its own worker
