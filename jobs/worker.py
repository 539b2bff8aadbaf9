"""The worker process: one portal app per process, an app context around every job."""

from __future__ import annotations

import functools

from flask import Flask


@functools.cache
def worker_app() -> Flask:
    """The app of a worker process that was started without one (plain `rq worker`)."""
    from portal import create_app

    return create_app()


def run_worker(queue_names: list[str], burst: bool = False, name: str | None = None) -> bool:
    """Work on the given queues in the current app context until stopped (or, with burst, until empty)."""
    from rq import Worker

    from jobs import get_queue, QueueName, redis_connection

    from jobs.provisioning import sweep

    queues = [get_queue(QueueName(q)) for q in queue_names]
    if QueueName.PROVISIONING.value in queue_names:
        # Resume at once what a dead worker left behind, and keep the periodic sweeper going.
        sweep()
    worker = Worker(queues, connection=redis_connection(), name=name)
    return worker.work(burst=burst, with_scheduler=True)
