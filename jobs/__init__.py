"""RQ wiring: queue names, the one enqueue helper, and the app context jobs run in.

Jobs are thin: they take ids, load what they need, and call a service. A job
must be safe to run twice. Nothing here touches Redis until a job is enqueued.
"""

from __future__ import annotations

import enum
from typing import Any, Callable

from flask import Flask, current_app
from redis import Redis
from rq import Queue, Retry


class QueueName(str, enum.Enum):
    """Queues by purpose, so that slow builds never hold up provisioning."""

    PROVISIONING = "provisioning"
    BUILDS = "builds"
    DEFAULT = "default"
    RUNNER = "runner"  # the built-in runner's builds, on a worker of their own (the embedded mode)


ALL_QUEUES = [q.value for q in QueueName]
# What a worker serves when told nothing: everything but the runner's queue, which needs a worker of its own
# (a build's follower waits for the build; both on one worker would wait forever).
DEFAULT_QUEUES = [q.value for q in QueueName if q is not QueueName.RUNNER]


def init_app(app: Flask) -> None:
    app.extensions["rq_redis"] = None


def redis_connection() -> Redis:
    app = current_app._get_current_object()
    conn = app.extensions.get("rq_redis")
    if conn is None:
        conn = Redis.from_url(app.config["PORTAL"].redis_url)
        app.extensions["rq_redis"] = conn
    return conn


def get_queue(name: QueueName) -> Queue:
    settings = current_app.config["PORTAL"]
    return Queue(name.value, connection=redis_connection(), is_async=settings.rq_async)


def enqueue(
    func: Callable[..., Any],
    *args: Any,
    queue: QueueName = QueueName.DEFAULT,
    job_id: str | None = None,
    timeout: int | None = None,
    retries: int | None = None,
    **kwargs: Any,
):
    """Enqueue ``func(*args, **kwargs)`` with the portal's job id, timeout, failure TTL and retry policy.

    A given ``job_id`` makes the enqueue idempotent while the job is queued or running.
    """
    settings = current_app.config["PORTAL"]
    q = get_queue(queue)
    if job_id is not None:
        existing = q.fetch_job(job_id)
        if existing is not None and existing.get_status(refresh=True) in ("queued", "started", "deferred", "scheduled"):
            return existing
    n = settings.job_retries if retries is None else retries
    return q.enqueue(
        func,
        args=args,
        job_id=job_id,
        job_timeout=timeout or settings.job_timeout,
        failure_ttl=settings.job_failure_ttl,
        retry=Retry(max=n, interval=[5, 30, 120][:n] or None) if n else None,
        kwargs=kwargs,
    )


def in_app_context(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a job function inside an application context (the worker builds one app per process), its log
    lines carrying the job's id and its duration measured (``portal_job_duration_seconds``)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from portal.logging_config import job_context
        from portal.metrics import timed_job

        with job_context(), timed_job(f"{func.__module__}.{func.__name__}"):
            try:
                current_app._get_current_object()
            except RuntimeError:
                from jobs.worker import worker_app

                with worker_app().app_context():
                    return func(*args, **kwargs)
            return func(*args, **kwargs)

    return wrapper
