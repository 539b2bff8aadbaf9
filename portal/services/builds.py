"""Builds: from a pushed commit to an image. Start one, follow it on the CI server while keeping its console,
record the image it produced, and show all of it to the team.

A build is followed by one job (``jobs.builds``) that can be run again after a
crash: what the CI server said so far (its queue item, its build number, how
much of the console was read) is committed as soon as it is known, so a second
run resumes instead of triggering the build twice.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from integrations.ci import Build as CIBuild
from integrations.ci import BuildState as CIState
from integrations.errors import IntegrationError
from jobs.worker import stop_requested
from portal.errors import Conflict, NotFound
from portal.extensions import db
from portal.models import Application, ApplicationResource, Build, BuildLogChunk, BuildState, User
from portal.models.base import utcnow
from portal.services import audit
from portal.services.access import require_visible
from portal.services.naming import ResourceNames
from portal.services.providers import current_providers

log = logging.getLogger(__name__)

TAG_LENGTH = 8  # the image tag is the commit's short SHA, as GitLab shows it
MAX_CONSECUTIVE_OUTAGES = 30  # polls in a row the CI server may be unreachable before the build is given up
_CI_STATES = {CIState.QUEUED: BuildState.TRIGGERED, CIState.RUNNING: BuildState.RUNNING,
              CIState.SUCCEEDED: BuildState.SUCCEEDED, CIState.FAILED: BuildState.FAILED,
              CIState.ABORTED: BuildState.ABORTED}
_DIGEST = re.compile(r"digest\W+(sha256:[0-9a-f]{64})", re.IGNORECASE)


@dataclass(frozen=True)
class PushedCommit:
    sha: str
    message: str
    author: str
    url: str
    branch: str
    pushed_by: str = ""


def start_build(app: Application, commit: PushedCommit) -> Build:
    """Record a build of ``commit`` with the application's next number, and queue the job that runs it."""
    for _ in range(5):
        number = (db.session.scalar(select(func.max(Build.number)).where(Build.application_id == app.id)) or 0) + 1
        build = Build(application_id=app.id, number=number, commit_sha=commit.sha, commit_message=commit.message[:4000],
                      commit_author=commit.author[:200], commit_url=commit.url[:500], branch=commit.branch[:200],
                      pushed_by=commit.pushed_by[:200])
        db.session.add(build)
        try:
            db.session.commit()
            break
        except IntegrityError:  # two pushes at once took the same number: take the next
            db.session.rollback()
    else:
        raise Conflict("Could not number the build; try again.")
    enqueue_build(build.id)
    return build


def source_repository(system: str, external_id: str) -> ApplicationResource | None:
    """The record of the application's source repository that is ``external_id`` in ``system``, if any:
    how a push (a webhook, or the built-in Git host) finds what to build."""
    return db.session.scalar(select(ApplicationResource).where(
        ApplicationResource.system == system, ApplicationResource.external_id == external_id,
        ApplicationResource.step == "source_repository"))


def default_branch(resource: ApplicationResource) -> str:
    return (resource.attributes or {}).get("default_branch") or "main"


def build_first_commit(application_id: int) -> Build | None:
    """Once an application is provisioned, build the template's first commit, so that it runs without
    waiting for a push (the Git host's webhook did not exist yet when that commit was made)."""
    settings = current_app.config["PORTAL"]
    providers = current_providers()
    app = db.session.get(Application, application_id)
    if not settings.build_on_create or providers.ci is None or providers.scm is None or app is None:
        return None
    source = ApplicationResource.of(app.id, "source_repository")
    if source is None or db.session.scalar(select(Build.id).where(Build.application_id == app.id).limit(1)):
        return None
    branch = default_branch(source)
    try:
        head = providers.scm.head(source.external_id, branch)
    except IntegrationError as exc:
        log.warning("no first build of application %s: %s", app.id, exc)
        return None
    return start_build(app, PushedCommit(sha=head.sha, message=head.message, author=head.author, url=head.url,
                                         branch=branch, pushed_by="portal (first commit)"))


def enqueue_build(build_id: int) -> None:
    from jobs.builds import enqueue_build as enqueue

    enqueue(build_id)


def rebuild(actor: User, app: Application, number: int) -> Build:
    """Build the same commit again (after a failure, or to get a fresh image)."""
    previous = get_build(actor, app, number)
    build = start_build(app, PushedCommit(sha=previous.commit_sha, message=previous.commit_message,
                                          author=previous.commit_author, url=previous.commit_url,
                                          branch=previous.branch, pushed_by=actor.username))
    audit.record(actor, "build.restart", "application", f"{app.team.name}/{app.project.name}/{app.name}",
                 app.id, details={"build": build.number, "commit": build.commit_sha})
    db.session.commit()
    return build


# --- following a build on the CI server --------------------------------------------------------------

def _job_path(app: Application, names: ResourceNames) -> str:
    job = ApplicationResource.of(app.id, "ci_job")
    return job.external_id if job else f"{names.team}/{names.ci_job}"


def _append(build: Build, text: str) -> None:
    if text:
        db.session.add(BuildLogChunk(build_id=build.id, offset=build.log_size, text=text))
        build.log_size += len(text)


def _note(build: Build, message: str) -> None:
    """A line from the portal itself in the build's log, marked as such."""
    _append(build, f"[portal] {message}\n")


def follow_build(build_id: int) -> str:
    """Trigger the build on the CI server if not yet done, then follow it to its end. Returns its final state."""
    settings = current_app.config["PORTAL"]
    build = db.session.get(Build, build_id)
    if build is None:
        return "gone"
    if build.state.over:
        return build.state.value
    app = db.session.get(Application, build.application_id)
    names = ResourceNames(app.team.name, app.project.name, app.name)
    ci = current_providers().ci
    if ci is None:
        return _finish(build, BuildState.ERROR, "No CI server is configured (PORTAL_CI).")
    path = _job_path(app, names)
    build.ci_system = ci.system
    if not build.ci_queue_id and build.ci_number is None:
        try:
            triggered = ci.trigger_build(path, {"COMMIT": build.commit_sha, "IMAGE_TAG": build.commit_sha[:TAG_LENGTH]})
        except IntegrationError as exc:
            return _finish(build, BuildState.ERROR, f"Could not start the build: {exc}")
        build.ci_queue_id = triggered.queue_id
        build.state = BuildState.TRIGGERED
        build.started_at = utcnow()
        _note(build, f"triggered {ci.system} job {path} for {build.commit_sha[:TAG_LENGTH]}")
        db.session.commit()
    current = CIBuild(job=path, number=build.ci_number, state=CIState.QUEUED, queue_id=build.ci_queue_id)
    deadline = (build.started_at or utcnow()) + timedelta(seconds=settings.build_timeout)
    outages = 0
    while True:
        try:
            current = ci.get_build(current)
            if current.number is not None and build.ci_number is None:
                build.ci_number, build.ci_url = current.number, current.url
            if current.number is not None:
                more = _read_console(ci, build, path, current.number)
            else:
                more = True
            outages = 0
        except IntegrationError as exc:
            if not exc.transient:
                return _finish(build, BuildState.ERROR, f"Lost the build: {exc}")
            outages += 1
            if outages >= MAX_CONSECUTIVE_OUTAGES:
                return _finish(build, BuildState.ERROR, f"The CI server stayed unreachable: {exc}")
            _note(build, f"{exc} (will ask again)")
            more = True
        else:
            state = _CI_STATES[current.state]
            if state.over and not more:
                return _finish(build, state, "", current.duration_ms)
            build.state = state
        db.session.commit()
        if utcnow() >= deadline:
            return _finish(build, BuildState.ERROR, f"Gave up after {settings.build_timeout} s (PORTAL_BUILD_TIMEOUT).")
        if stop_requested():  # the worker is shutting down: the builds sweep hands the build to another worker,
            return "released"  # which resumes from what is committed (queue item, number, console offset)
        time.sleep(settings.build_poll_interval)


def _read_console(ci, build: Build, path: str, number: int) -> bool:
    """Append what is new in the console; True while the CI server says more will come."""
    while True:
        chunk = ci.console(path, number, build.ci_console_offset)
        _append(build, chunk.text)
        build.ci_console_offset = chunk.next_start
        db.session.commit()
        if not chunk.more or not chunk.text:
            return chunk.more


def _finish(build: Build, state: BuildState, error: str, duration_ms: int | None = None) -> str:
    build.state = state
    build.error = error
    build.finished_at = utcnow()
    if duration_ms is not None and build.started_at is not None:
        build.started_at = build.finished_at - timedelta(milliseconds=duration_ms)
    if error:
        _note(build, error)
    if state == BuildState.SUCCEEDED:
        _record_image(build)
    db.session.commit()
    log.info("build %s of application %s: %s", build.number, build.application_id, state.value)
    if state == BuildState.SUCCEEDED:
        _deploy(build)
    return state.value


def _deploy(build: Build) -> None:
    """The image goes to the first environment by a commit to the deployment repository."""
    from portal.errors import DomainError
    from portal.services.deployments import deploy_build

    try:
        deployment = deploy_build(build)
    except (DomainError, IntegrationError) as exc:
        _note(build, f"not deployed: {exc}")
    else:
        if deployment is not None:
            _note(build, f"deploying to {deployment.environment}: commit {deployment.deploy_commit[:8]} "
                         f"in the deployment repository")
    db.session.commit()


def _record_image(build: Build) -> None:
    """Where the image went: registry host and repository, the short SHA as tag, and its digest when known."""
    app = db.session.get(Application, build.application_id)
    names = ResourceNames(app.team.name, app.project.name, app.name)
    build.image_tag = build.commit_sha[:TAG_LENGTH]
    registry = current_providers().registry
    if registry is None:
        build.image_repository = names.image_repository
        return
    try:
        build.image_repository = registry.image_name(names.image_repository)
        tag = next((t for t in registry.list_tags(names.image_repository) if t.tag == build.image_tag), None)
        build.image_digest = tag.digest if tag else ""
    except IntegrationError as exc:
        _note(build, f"could not read the image's digest from the registry: {exc}")
    if not build.image_digest:
        found = _DIGEST.findall(full_log(build))
        build.image_digest = found[-1] if found else ""


def full_log(build: Build) -> str:
    return "".join(db.session.scalars(select(BuildLogChunk.text).where(BuildLogChunk.build_id == build.id)
                                      .order_by(BuildLogChunk.offset)))


# --- what people see ------------------------------------------------------------------------------

def recent_builds(actor: User, app: Application, limit: int = 10) -> list[Build]:
    require_visible(actor, app.team_id, "application")
    return list(db.session.scalars(select(Build).where(Build.application_id == app.id)
                                   .order_by(Build.number.desc()).limit(limit)))


def get_build(actor: User, app: Application, number: int) -> Build:
    require_visible(actor, app.team_id, "application")
    build = db.session.scalar(select(Build).where(Build.application_id == app.id, Build.number == number))
    if build is None:
        raise NotFound("No such build.")
    return build


def unfinished_build_ids(older_than: float = 30.0) -> list[int]:
    """Builds not over that were created more than ``older_than`` seconds ago, for the sweep."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    over = [s for s in BuildState if s.over]
    return list(db.session.scalars(select(Build.id).where(Build.state.not_in(over), Build.created_at < cutoff)))
