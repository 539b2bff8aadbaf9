"""Deployments as commits: a deploy after a build, a rollback, a promotion each change one environment's
values file in the deployment repository, in one commit; the deployer (Argo CD) syncs from there.

Nothing here talks to the cluster to deploy, and nothing turns auto-sync off:
the repository is the truth, and a rollback is just another commit. After
the commit, a job watches the deployer's status until the commit is synced,
the application healthy and its pods ready, and records when each happened.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta

import yaml
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from integrations.errors import IntegrationError
from portal.errors import Conflict, NotFound, ValidationFailed
from portal.extensions import db
from portal.models import Application, ApplicationResource, Build, Deployment, DeploymentState, User
from portal.models.base import utcnow
from portal.services import audit
from portal.services.access import require_maintainer, require_visible
from portal.services.naming import ResourceNames
from portal.services.provisioning.chain import environments_of
from portal.services.providers import current_providers

log = logging.getLogger(__name__)


# --- the values file -------------------------------------------------------------------------------

def set_image(values: str, repository: str, tag: str, digest: str) -> str:
    """``values`` with its top-level ``image`` block pointing at repository:tag (and digest), comments kept.

    Only the lines of those keys change, so that a reviewer of the commit sees exactly what moved.
    """
    lines = values.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"image:\s*(#.*)?$", line.rstrip("\n"))), None)
    if start is None:
        raise ValidationFailed("The values file has no top-level image: block (its keys on lines of their own) "
                               "to put the image in.")
    wanted = {"repository": repository, "tag": tag, "digest": digest}
    end = start + 1
    indent = "  "
    while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
        match = re.match(r"(\s+)(repository|tag|digest):", lines[end])
        if match:
            indent = match.group(1)
            key = match.group(2)
            lines[end] = f"{indent}{key}: {_quoted(wanted.pop(key))}\n"
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    lines[end:end] = [f"{indent}{key}: {_quoted(value)}\n" for key, value in wanted.items()]
    updated = "".join(lines)
    try:
        image = (yaml.safe_load(updated) or {}).get("image") or {}
    except yaml.YAMLError:
        image = {}
    if (image.get("repository"), str(image.get("tag")), image.get("digest") or "") != (repository, tag, digest):
        raise ValidationFailed("The values file's image: block is not in a form the portal can change safely "
                               "(flow style or anchors?); nothing was committed.")
    return updated


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- making deployments ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Image:
    repository: str
    tag: str
    digest: str = ""
    source_commit: str = ""
    build_id: int | None = None


def _deploy_repository(app: Application) -> ApplicationResource:
    row = ApplicationResource.of(app.id, "deployment_repository")
    if row is None:
        raise Conflict("The application has no deployment repository yet: provisioning has not made it.")
    return row


def _next_number(app_id: int) -> int:
    return (db.session.scalar(select(func.max(Deployment.number)).where(Deployment.application_id == app_id)) or 0) + 1


def deploy_image(app: Application, environment: str, image: Image, kind: str, requested_by: str) -> Deployment:
    """Commit ``image`` into the environment's values file and record the deployment (then watched by a job)."""
    environments = environments_of(current_app.config["PORTAL"])
    if environment not in environments:
        raise ValidationFailed({"environment": [f"Unknown environment {environment!r}; one of {', '.join(environments)}."]})
    scm = current_providers().scm
    if scm is None:
        raise Conflict("No source control is configured (PORTAL_SCM): there is no deployment repository to commit to.")
    repo = _deploy_repository(app)
    branch = (repo.attributes or {}).get("default_branch") or "main"
    path = f"values-{environment}.yaml"
    current = scm.read_file(repo.external_id, branch, path).decode()
    updated = set_image(current, image.repository, image.tag, image.digest)
    if updated == current:
        raise Conflict(f"{environment} already runs {image.repository}:{image.tag}.")
    what = {"deploy": "Deploy", "rollback": "Roll back", "promote": "Promote"}[kind]
    source = f" (source {image.source_commit[:8]})" if image.source_commit else ""
    message = f"{what} {app.name} {environment} to {image.repository}:{image.tag}{source}\n\nBy {requested_by} " \
              f"through the developer portal."
    commit = scm.commit_files(repo.external_id, branch, {path: updated.encode()}, message)
    for earlier in db.session.scalars(select(Deployment).where(
            Deployment.application_id == app.id, Deployment.environment == environment,
            Deployment.state.in_([DeploymentState.COMMITTED, DeploymentState.SYNCED]))):
        earlier.state = DeploymentState.SUPERSEDED
    for _ in range(5):
        deployment = Deployment(
            application_id=app.id, number=_next_number(app.id), environment=environment, kind=kind,
            build_id=image.build_id, image_repository=image.repository, image_tag=image.tag,
            image_digest=image.digest, source_commit=image.source_commit, deploy_commit=commit.sha,
            requested_by=requested_by)
        db.session.add(deployment)
        try:
            db.session.commit()
            break
        except IntegrityError:
            db.session.rollback()
    else:
        raise Conflict("Could not number the deployment; it is committed, refresh to see it.")
    from jobs.deployments import enqueue_watch

    enqueue_watch(deployment.id)
    return deployment


def deploy_build(build: Build) -> Deployment | None:
    """After a successful build: deploy its image to the first environment, when there is a deployer."""
    if current_providers().delivery is None or not build.image_repository:
        return None
    app = db.session.get(Application, build.application_id)
    first = environments_of(current_app.config["PORTAL"])[0]
    image = Image(build.image_repository, build.image_tag, build.image_digest, build.commit_sha, build.id)
    return deploy_image(app, first, image, "deploy", f"build #{build.number}")


def rollback(actor: User, app: Application, number: int) -> Deployment:
    """Put the image of an earlier deployment back into its environment, by a new commit."""
    require_visible(actor, app.team_id, "application")
    target = _deployment(app, number)
    deployment = deploy_image(app, target.environment, _image_of(target), "rollback", actor.username)
    audit.record(actor, "deployment.rollback", "application", _label(app), app.id, app.team_id,
                 environment=target.environment, image=target.image_reference, to_deployment=number)
    db.session.commit()
    return deployment


def promote(actor: User, app: Application, environment: str) -> Deployment:
    """Deploy the image running in ``environment`` to the next one (maintainers only)."""
    require_maintainer(actor, app.team_id, "promote an application")
    environments = environments_of(current_app.config["PORTAL"])
    if environment not in environments[:-1]:
        raise ValidationFailed({"environment": [f"{environment!r} has no next environment to promote to."]})
    current = latest(app, environment)
    if current is None:
        raise Conflict(f"Nothing is deployed in {environment} yet.")
    target = environments[environments.index(environment) + 1]
    deployment = deploy_image(app, target, _image_of(current), "promote", actor.username)
    audit.record(actor, "deployment.promote", "application", _label(app), app.id, app.team_id,
                 environment=target, image=current.image_reference, from_environment=environment)
    db.session.commit()
    return deployment


def _image_of(d: Deployment) -> Image:
    return Image(d.image_repository, d.image_tag, d.image_digest, d.source_commit, d.build_id)


def _label(app: Application) -> str:
    return f"{app.team.name}/{app.project.name}/{app.name}"


def _deployment(app: Application, number: int) -> Deployment:
    d = db.session.scalar(select(Deployment).where(Deployment.application_id == app.id, Deployment.number == number))
    if d is None:
        raise NotFound("No such deployment.")
    return d


def latest(app: Application, environment: str) -> Deployment | None:
    return db.session.scalar(select(Deployment).where(
        Deployment.application_id == app.id, Deployment.environment == environment)
        .order_by(Deployment.number.desc()).limit(1))


# --- watching one ---------------------------------------------------------------------------------

def watch_deployment(deployment_id: int) -> str:
    """Follow the deployer until the commit is synced, the application healthy and its pods ready."""
    settings = current_app.config["PORTAL"]
    deployment = db.session.get(Deployment, deployment_id)
    if deployment is None:
        return "gone"
    app = db.session.get(Application, deployment.application_id)
    names = ResourceNames(app.team.name, app.project.name, app.name)
    delivery = current_providers().delivery
    if delivery is None:
        return _end(deployment, DeploymentState.COMMITTED, "No deployer is configured (PORTAL_DELIVERY).")
    name = names.delivery_application(deployment.environment)
    try:
        delivery.refresh(name)  # so the deployer notices the commit now, not at its next poll
    except IntegrationError as exc:
        deployment.message = f"could not ask for a refresh: {exc}"
    deadline = deployment.created_at + timedelta(seconds=settings.deploy_timeout)
    while not deployment.state.over:
        db.session.refresh(deployment)
        if deployment.state.over:  # superseded meanwhile
            break
        try:
            _observe(deployment, delivery.status(name), app, names)
        except IntegrationError as exc:
            deployment.message = str(exc)
            if not exc.transient:
                return _end(deployment, DeploymentState.FAILED, str(exc))
        db.session.commit()
        if deployment.state.over:
            break
        if utcnow() >= deadline:
            return _end(deployment, DeploymentState.TIMED_OUT,
                        f"Not healthy within {settings.deploy_timeout} s (PORTAL_DEPLOY_TIMEOUT): "
                        f"sync {deployment.sync_status or 'unknown'}, health {deployment.health_status or 'unknown'}.")
        time.sleep(settings.build_poll_interval)
    return deployment.state.value


def _observe(deployment: Deployment, status, app: Application, names: ResourceNames) -> None:
    deployment.sync_status, deployment.health_status = status.sync, status.health
    revision, commit = status.revision or "", deployment.deploy_commit
    if not revision or not (revision.startswith(commit) or commit.startswith(revision)):
        deployment.message = f"the deployer is at {status.revision[:8] or 'no revision'}; waiting for " \
                             f"{deployment.deploy_commit[:8]}"
        return
    if status.operation in ("Failed", "Error"):
        deployment.state, deployment.message = DeploymentState.FAILED, status.message or "the sync failed"
        return
    if status.sync == "Synced" and deployment.synced_at is None:
        deployment.synced_at = utcnow()
        deployment.state = DeploymentState.SYNCED
    if status.health == "Degraded":
        deployment.state, deployment.message = DeploymentState.DEGRADED, status.message or "degraded"
        return
    if status.sync == "Synced" and status.health == "Healthy":
        ready, desired = _pods(app, names, deployment.environment)
        deployment.pods = f"{ready}/{desired} ready" if desired else ""
        if ready >= desired:
            deployment.state, deployment.healthy_at, deployment.message = DeploymentState.HEALTHY, utcnow(), ""


def _pods(app: Application, names: ResourceNames, environment: str) -> tuple[int, int]:
    """Ready and desired replicas of the environment's workloads, when the portal can see the cluster."""
    from portal.services.clusters import cluster_target, team_cluster

    providers = current_providers()
    cluster = team_cluster(app.team_id)
    if providers.cluster is None or cluster is None:
        return 0, 0
    try:
        workloads = providers.cluster.connect(cluster_target(cluster)).list_workloads(names.namespace(environment))
    except IntegrationError:
        return 0, 0
    return sum(w.ready for w in workloads), sum(w.desired for w in workloads)


def _end(deployment: Deployment, state: DeploymentState, message: str) -> str:
    deployment.state, deployment.message = state, message
    db.session.commit()
    return state.value


# --- what people see ------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnvironmentView:
    name: str
    current: Deployment | None
    history: list[Deployment]
    next_environment: str | None


def environments_view(actor: User, app: Application, history: int = 10) -> list[EnvironmentView]:
    require_visible(actor, app.team_id, "application")
    environments = environments_of(current_app.config["PORTAL"])
    views = []
    for i, env in enumerate(environments):
        items = list(db.session.scalars(select(Deployment).where(
            Deployment.application_id == app.id, Deployment.environment == env)
            .order_by(Deployment.number.desc()).limit(history)))
        views.append(EnvironmentView(env, items[0] if items else None, items,
                                     environments[i + 1] if i + 1 < len(environments) else None))
    return views


def sync_now(actor: User, app: Application, environment: str, refresh_only: bool = False) -> None:
    """Ask the deployer to sync (or only to refresh) one environment's application now."""
    require_visible(actor, app.team_id, "application")
    delivery = current_providers().delivery
    if delivery is None:
        raise Conflict("No deployer is configured (PORTAL_DELIVERY).")
    names = ResourceNames(app.team.name, app.project.name, app.name)
    name = names.delivery_application(environment)
    try:
        delivery.refresh(name) if refresh_only else delivery.sync(name)
    except IntegrationError as exc:
        raise Conflict(f"The deployer refused: {exc}") from None
    audit.record(actor, "deployment.refresh" if refresh_only else "deployment.sync", "application", _label(app),
                 app.id, app.team_id, environment=environment)
    db.session.commit()
