"""Build jobs: follow one build on the CI server, and the sweep that restarts builds whose worker died."""

from __future__ import annotations

from flask import current_app

from jobs import QueueName, enqueue, get_queue, in_app_context


@in_app_context
def run_build(build_id: int) -> str:
    from portal.services.builds import follow_build

    return follow_build(build_id)


def _job_id(build_id: int) -> str:
    return f"build-{build_id}"


def enqueue_build(build_id: int) -> None:
    """Queue the job following a build; one job per build while it is queued or running."""
    settings = current_app.config["PORTAL"]
    enqueue(run_build, build_id, queue=QueueName.BUILDS, job_id=_job_id(build_id),
            timeout=settings.build_timeout + 300, retries=0)


def sweep_builds() -> list[int]:
    """Re-enqueue unfinished builds that no job is following (their worker died). Needs an app context."""
    from portal.services.builds import unfinished_build_ids

    queue = get_queue(QueueName.BUILDS)
    restarted = []
    for build_id in unfinished_build_ids():
        job = queue.fetch_job(_job_id(build_id))
        if job is None or job.get_status(refresh=True) not in ("queued", "started", "deferred", "scheduled"):
            enqueue_build(build_id)
            restarted.append(build_id)
    return restarted
