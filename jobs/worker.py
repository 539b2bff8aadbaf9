"""The worker process: one portal app per process, an app context around every job."""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading

from flask import Flask
from rq import Worker

from portal.config import prometheus_multiproc_dir
from portal.metrics import fold_process

# Set in a work horse when its worker was asked to stop (SIGTERM or SIGINT): long jobs check it between steps
# and hand the rest of their work back, rather than hold the pod until Kubernetes kills it mid-step.
_stopping = threading.Event()
STOP_SIGNAL = signal.SIGRTMIN  # from the worker to its horse; the horse's children are not sent it


def stop_requested() -> bool:
    """Whether the worker running this job is shutting down: finish the current step, then release the rest."""
    return _stopping.is_set()


@functools.cache
def worker_app() -> Flask:
    """The app of a worker process that was started without one (plain `rq worker`)."""
    from portal import create_app

    return create_app()


def run_worker(queue_names: list[str], burst: bool = False, name: str | None = None) -> bool:
    """Work on the given queues in the current app context until stopped (or, with burst, until empty)."""
    from flask import current_app

    from jobs import QueueName, get_queue, redis_connection

    settings = current_app.config["PORTAL"]
    queues = [get_queue(QueueName(q)) for q in queue_names]
    interval = max(1, int(settings.provisioning_sweep_interval))
    worker = PortalWorker(
        queues, connection=redis_connection(), name=name,
        # The main loop wakes at least every interval to run maintenance, and so the sweeper.
        maintenance_interval=int(settings.provisioning_sweep_interval), worker_ttl=15 + interval,
    )
    worker.sweeps = QueueName.PROVISIONING.value in queue_names
    worker.sweeps_builds = QueueName.BUILDS.value in queue_names
    return worker.work(burst=burst, with_scheduler=True)


BUILD_SWEEPER_LOCK = "portal:builds:sweeper"


class PortalWorker(Worker):
    """An RQ worker that also sweeps for provisioning runs and builds whose worker died.

    The sweep runs in the worker's main loop, between jobs, not in a thread:
    RQ forks a work horse per job, and a thread holding a lock (logging, the
    connection pool) at the moment of a fork leaves the horse deadlocked.
    """

    sweeps = False
    sweeps_builds = False

    def execute_job(self, job, queue) -> None:
        """Run the job in a work horse, then fold the horse's metrics files into the worker's (multi-process
        mode only), so that they do not pile up one set per job."""
        try:
            super().execute_job(job, queue)
        finally:
            horse, directory = getattr(self, "_last_horse", 0), prometheus_multiproc_dir()
            if horse and directory:
                try:
                    fold_process(directory, horse, f"worker-{os.getpid()}")
                except OSError:
                    logging.getLogger(__name__).warning("could not fold the metrics of work horse %s", horse,
                                                        exc_info=True)

    def fork_work_horse(self, job, queue) -> None:
        super().fork_work_horse(job, queue)
        self._last_horse = self.horse_pid

    def setup_work_horse_signals(self) -> None:
        super().setup_work_horse_signals()
        signal.signal(STOP_SIGNAL, lambda signum, frame: _stopping.set())

    def handle_warm_shutdown_request(self) -> None:
        """The first SIGTERM: stop taking jobs (RQ) and tell the horse, so that its job ends after its current
        step; a second SIGTERM is RQ's cold shutdown. Only the horse is told: its children (buildah, git) would
        die of a signal they do not handle."""
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            try:
                os.kill(self.horse_pid, STOP_SIGNAL)
            except ProcessLookupError:
                pass

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        from jobs.builds import sweep_builds
        from jobs.provisioning import run_if_due, sweep_if_due

        for wanted, name, sweep in ((self.sweeps, "provisioning", sweep_if_due),
                                    (self.sweeps_builds, "builds", lambda: run_if_due(BUILD_SWEEPER_LOCK, sweep_builds))):
            if not wanted:
                continue
            try:
                sweep()
            except Exception:  # the next round retries; one bad round must not stop the worker
                logging.getLogger(__name__).exception("%s sweep failed", name)
