"""Git over HTTP with the built-in Git host: who may clone and push, and what a push starts.

The client has proved who it is with a personal access token (``tokens.authenticate``);
here is decided what that person may do: active members of a repository's
team, and admins, may clone and push; anyone else is refused, whether or not
the repository exists. A push that moves the default branch of an
application's source repository starts a build, exactly as GitLab's push
webhook does (``builds.start_build``); other branches and deployment
repositories start nothing.
"""

from __future__ import annotations

import logging
from typing import Any


from integrations.builtin_git import BuiltinGit, HTTPAnswer, RefUpdate
from integrations.errors import InvalidRequest
from integrations.errors import NotFound as RepositoryNotFound
from portal.errors import DomainError, NotFound, PermissionDenied
from portal.extensions import db
from portal.models import Application, Team, User
from portal.services.access import can_see_team
from portal.services.builds import PushedCommit, default_branch, source_repository, start_build
from portal.services.providers import current_providers

log = logging.getLogger(__name__)


def builtin_host() -> BuiltinGit:
    scm = current_providers().scm
    if not isinstance(scm, BuiltinGit):
        raise NotFound("The built-in Git host is not in use here (PORTAL_SCM).")
    return scm


def serve(actor: User, team_name: str, repository: str, environ: dict[str, Any]) -> HTTPAnswer:
    """Answer one Git smart-HTTP request of ``actor`` for ``<team>/<repository>``.

    Refusals happen before the repository is opened, so they write nothing.
    """
    team = Team.by_name(team_name)
    if team is None or not can_see_team(actor, team.id):
        raise PermissionDenied(f"{actor.username} is not a member of team {team_name}.")
    host = builtin_host()
    external_id = f"{team.name}/{repository}"
    try:
        return host.serve_http(external_id, environ, on_push=lambda updates: pushed(actor, external_id, updates))
    except RepositoryNotFound:
        raise NotFound(f"No repository {external_id}.") from None
    except InvalidRequest as exc:
        raise DomainError(exc.message) from exc


def pushed(actor: User, external_id: str, updates: list[RefUpdate]) -> str:
    """Start a build for a push to the default branch of an application's source repository.

    Returns what to tell the pusher (one line per build), or "" when the push starts nothing.
    """
    resource = source_repository(BuiltinGit.system, external_id)
    if resource is None:  # a deployment repository, or one no application owns
        return ""
    app = db.session.get(Application, resource.application_id)
    branch = default_branch(resource)
    lines = []
    for update in updates:
        if update.ref != f"refs/heads/{branch}" or update.commit is None:  # another branch, or a deletion
            continue
        build = start_build(app, PushedCommit(
            sha=update.new, message=update.commit.message, author=update.commit.author, url=update.commit.url,
            branch=branch, pushed_by=actor.username))
        log.info("push by %s to %s %s: build #%s", actor.username, external_id, branch, build.number)
        lines.append(f"portal: build #{build.number} of {app.project.name}/{app.name} queued for "
                     f"{update.new[:8]}.")
    return "\n".join(lines)
