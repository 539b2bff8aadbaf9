"""The worker process: one portal app per process, an app context around every job."""

from __future__ import annotations

import functools
import logging
import threading

from flask import Flask


@functools.cache
def worker_app() -> Flask:
    """The app of a worker process that was started without one (plain `rq worker`)."""
    from portal import create_app

    return create_app()


def run_worker(queue_names: list[str], burst: bool = False, name: str | None = None) -> bool:
    """Work on the given queues in the current app context until stopped (or, with burst, until empty)."""
    from flask import current_app
    from rq import Worker

    from jobs import QueueName, get_queue, redis_connection

    queues = [get_queue(QueueName(q)) for q in queue_names]
    sweeper = None
    if QueueName.PROVISIONING.value in queue_names:
        sweeper = Sweeper(current_app._get_current_object())
        sweeper.start()
    try:
        worker = Worker(queues, connection=redis_connection(), name=name)
        return worker.work(burst=burst, with_scheduler=True)
    finally:
        if sweeper is not None:
            sweeper.stop()


class Sweeper(threading.Thread):
    """Finds runs whose worker died and re-enqueues them, every interval, in one process at a time.

    A thread of the worker rather than a scheduled job: RQ's scheduler lock
    outlives a killed worker by a minute, and resuming must not wait for it.
    """

    def __init__(self, app: Flask):
        super().__init__(name="provisioning-sweeper", daemon=True)
        self.app = app
        self.interval = app.config["PORTAL"].provisioning_sweep_interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        from jobs.provisioning import sweep_if_due

        while True:
            try:
                with self.app.app_context():
                    sweep_if_due()
            except Exception:  # the next round retries; a sweeper must not die of one bad round
                logging.getLogger(__name__).exception("provisioning sweep failed")
            if self._stop_event.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop_event.set()
