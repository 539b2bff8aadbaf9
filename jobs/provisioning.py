"""Provisioning jobs: run (or resume) a run, and the sweeper that finds runs whose worker died."""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask import current_app

from jobs import QueueName, enqueue, get_queue, in_app_context, redis_connection

SWEEPER_LOCK = "portal:provisioning:sweeper"


@in_app_context
def run_provisioning(run_id: int) -> str:
    from portal.services.provisioning.engine import execute_run

    return execute_run(run_id)


def enqueue_run(run_id: int) -> None:
    """Queue a run. Duplicate jobs are harmless: only the holder of the run's lease works on it."""
    enqueue(run_provisioning, run_id, queue=QueueName.PROVISIONING, job_id=f"run-{run_id}-{uuid.uuid4().hex[:8]}",
            retries=0)


def schedule_run(run_id: int, delay: float) -> None:
    """Come back to a run after a retry delay, without holding a worker meanwhile."""
    settings = current_app.config["PORTAL"]
    get_queue(QueueName.PROVISIONING).enqueue_in(
        timedelta(seconds=delay), run_provisioning, run_id, job_id=f"run-{run_id}-{uuid.uuid4().hex[:8]}",
        job_timeout=settings.job_timeout, failure_ttl=settings.job_failure_ttl,
    )


def sweep() -> list[int]:
    """Re-enqueue runs whose lease expired (their worker died) or whose job was lost. Needs an app context."""
    from portal.services.provisioning.engine import sweep_stalled_runs

    ids = sweep_stalled_runs()
    for run_id in ids:
        enqueue_run(run_id)
    return ids


def sweep_if_due() -> list[int] | None:
    """Sweep unless another process of any worker swept less than an interval ago."""
    return run_if_due(SWEEPER_LOCK, sweep)


def run_if_due(lock: str, func):
    """``func()`` unless any worker ran it less than a sweep interval ago (a Redis key set with NX and a TTL)."""
    interval = current_app.config["PORTAL"].provisioning_sweep_interval
    if redis_connection().set(lock, "1", nx=True, px=max(1, int(interval * 900))):
        return func()
    return None
