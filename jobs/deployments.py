"""Deployment jobs: watch one deployment until the deployer has synced it and it is healthy."""

from __future__ import annotations

from flask import current_app

from jobs import QueueName, enqueue, in_app_context


@in_app_context
def watch(deployment_id: int) -> str:
    from portal.services.deployments import watch_deployment

    return watch_deployment(deployment_id)


def enqueue_watch(deployment_id: int) -> None:
    settings = current_app.config["PORTAL"]
    enqueue(watch, deployment_id, queue=QueueName.BUILDS, job_id=f"deployment-{deployment_id}",
            timeout=settings.deploy_timeout + 120, retries=0)
