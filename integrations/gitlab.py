"""GitLab as the portal's source control, through python-gitlab.

Layout: each team has a subgroup of one parent group, so repository ``<team>/<name>`` is the GitLab
project ``<parent>/<team>/<name>``. The parent group must exist (created by a GitLab administrator,
with the portal's token an Owner or Maintainer of it); a team's subgroup is created on first use, or
adopted when it exists. Groups and projects the portal creates are private.

Ownership marker: the topic ``portal-owner-<owner>`` on a project, and the same text as the
description of a webhook (GitLab keeps a hook description since 17.1). A project or a hook without
it was not created by the portal, and ``owner`` is None.

Requests: idempotent ones (GET, HEAD, PUT, DELETE) are retried ``retries`` times after a connection
error, a timeout or a 5xx, by python-gitlab; a POST never is, since it may have taken effect. A 429 is
not slept through: it is raised at once as RateLimited with GitLab's Retry-After, and the caller
decides when to try again. Projects that GitLab has scheduled for deletion count as gone.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import gitlab
import requests
from gitlab.exceptions import GitlabError, RedirectError

from integrations import http
from integrations.errors import Conflict, IntegrationError, InvalidRequest, NotFound, Unavailable
from integrations.resources import ExternalResource
from integrations.scm import Commit, Member, RepositorySpec, WebhookSpec

log = logging.getLogger(__name__)

SYSTEM = "gitlab"
OWNER_PREFIX = "portal-owner-"
MAINTAINER = 40
ROLES = {"developer": 30, "maintainer": MAINTAINER}
HOOK_EVENTS = {"push": "push_events", "tag_push": "tag_push_events", "merge_request": "merge_requests_events"}
T = TypeVar("T")


class _Client(gitlab.Gitlab):
    """python-gitlab with the portal's retry policy, remembering the Retry-After of each thread's last answer."""

    def __init__(self, url: str, *, retries: int, **kwargs: Any):
        super().__init__(url, **kwargs)
        self._retries = retries
        self._answers = threading.local()
        self.session.hooks["response"].append(self._remember)
        http.measure(self.session, SYSTEM)

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._answers.headers = response.headers

    def last_retry_after(self) -> float | None:
        """Seconds to wait that the last answer on this thread asked for (Retry-After: seconds or a date)."""
        return http.retry_after(getattr(self._answers, "headers", {}))

    def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.update(obey_rate_limit=False, max_retries=self._retries,
                      retry_transient_errors=self._retries > 0 and verb.upper() in http.IDEMPOTENT)
        return super().http_request(verb, path, *args, **kwargs)


class GitLabSourceControl:
    """The SourceControl contract on a GitLab instance (REST API v4)."""

    system = SYSTEM

    def __init__(self, url: str, token: str, parent_group: str, timeout: float = 10.0, retries: int = 2,
                 verify: bool = True, ca_bundle: str = ""):
        if not url:
            raise ValueError("the GitLab URL is empty")
        self._url = url.rstrip("/")
        self._token = token
        self._parent = parent_group.strip("/")
        self._timeout = timeout
        self._verify = verify
        self._gl = _Client(self._url, private_token=token, timeout=timeout, retries=retries,
                           ssl_verify=http.tls_verify(verify, ca_bundle), keep_base_url=True,
                           user_agent="developer-portal (python-gitlab)")

    @classmethod
    def from_settings(cls, settings: Any) -> "GitLabSourceControl":
        """The factory the portal calls with its Settings (PORTAL_GITLAB_*, PORTAL_HTTP_*, PORTAL_TLS_VERIFY, ...)."""
        if not settings.gitlab_url or not settings.gitlab_token:
            raise ValueError("PORTAL_SCM=gitlab needs PORTAL_GITLAB_URL and PORTAL_GITLAB_TOKEN")
        return cls(url=settings.gitlab_url, token=settings.gitlab_token, parent_group=settings.gitlab_parent_group,
                   timeout=settings.http_timeout, retries=settings.http_retries, verify=settings.tls_verify,
                   ca_bundle=settings.ca_bundle)

    # --- repositories ------------------------------------------------------------------------------

    def find_repository(self, path: str) -> ExternalResource | None:
        """The project ``<parent>/<path>``, or None when there is none (or it is scheduled for deletion)."""
        full = f"{self._parent}/{path}"
        project = self._or_none(f"project {full}", lambda: self._gl.projects.get(full).attributes)
        # GitLab answers for an old path of a moved project too: only the project at this path counts.
        if project is None or _scheduled_for_deletion(project):
            return None
        if project["path_with_namespace"].lower() != full.lower():
            return None
        return _repository(project)

    def create_repository(self, spec: RepositorySpec) -> ExternalResource:
        """Create the project in the team's group with ``spec.files`` as one commit, protect its default
        branch (Maintainers push and merge) and add ``spec.members``.

        A member without a GitLab account, or whom GitLab refuses, becomes a warning. When a step after the
        project's creation fails, the project is deleted again (best effort) so that a retry starts afresh.
        """
        namespace_id = self._team_group(spec.group)
        full = f"{self._parent}/{spec.path}"
        with self._call(f"create project {full}"):
            project = self._gl.projects.create({
                "name": spec.name, "path": spec.name, "namespace_id": namespace_id, "description": spec.description,
                "default_branch": spec.default_branch, "topics": [OWNER_PREFIX + spec.owner],
                "visibility": "private", "initialize_with_readme": False,
            })
        try:
            if spec.files:
                self._commit(project, spec.default_branch, None, {p: "create" for p in spec.files}, spec.files,
                             spec.commit_message)
            self._protect(project, spec.default_branch)
            warnings = self._add_members(project, full, spec.members)
        except IntegrationError:
            self._discard(project, full)
            raise
        return _repository(project.attributes, spec.default_branch, tuple(warnings))

    def delete_repository(self, external_id: str) -> None:
        """Delete the project (GitLab may only schedule it for deletion); NotFound when it is already gone."""
        project = self._live_project(external_id)
        with self._call(f"delete project {external_id}"):
            project.delete()

    # --- files -------------------------------------------------------------------------------------

    def commit_files(self, external_id: str, branch: str, files: dict[str, bytes], message: str) -> Commit:
        """One commit of ``files`` on ``branch`` (a new branch starts from the default one).

        Whether each file is an ``update`` or a ``create`` is asked with a HEAD of that file (GitLab's
        file metadata endpoint), so the cost follows the files committed, not the size of the repository.
        """
        if not files:
            raise InvalidRequest(SYSTEM, "a commit needs at least one file", status=400)
        project = self._gl.projects.get(external_id, lazy=True)
        start = None
        with self._call(f"branch {branch} of project {external_id}"):
            try:
                project.branches.get(branch)
            except GitlabError as exc:
                if exc.response_code != 404:
                    raise
                start = self._gl.projects.get(external_id).attributes.get("default_branch")  # 404: no project
        ref = start or branch
        actions = {path: "update" if self._file_exists(project, ref, path) else "create" for path in files}
        commit = self._commit(project, branch, start if start != branch else None, actions, files, message)
        return Commit(sha=commit["id"], message=commit["message"], author=commit.get("author_name") or "",
                      url=commit.get("web_url") or "")

    def read_file(self, external_id: str, ref: str, path: str) -> bytes:
        """The file's bytes at ``ref`` (a branch, tag or commit); NotFound for a missing file, ref or project."""
        with self._call(f"file {path} at {ref} of project {external_id}"):
            return cast(bytes, self._gl.projects.get(external_id, lazy=True).files.raw(path, ref=ref))

    def head(self, external_id: str, branch: str) -> Commit:
        """The tip of ``branch`` (GET /projects/:id/repository/branches/:branch)."""
        with self._call(f"branch {branch} of project {external_id}"):
            commit = self._gl.projects.get(external_id, lazy=True).branches.get(branch).attributes["commit"]
        return Commit(sha=commit["id"], message=commit.get("message") or "", author=commit.get("author_name") or "",
                      url=commit.get("web_url") or "")

    # --- webhooks ----------------------------------------------------------------------------------

    def find_webhook(self, repository_id: str, url: str) -> ExternalResource | None:
        """The project's hook posting to ``url``, or None (also when the project is gone)."""
        try:
            project = self._live_project(repository_id)
        except NotFound:
            return None
        found = self._hook_to(project, url)
        return _webhook(found, repository_id, project.attributes["web_url"]) if found else None

    def create_webhook(self, spec: WebhookSpec) -> ExternalResource:
        """A project hook on ``spec.events`` with ``spec.secret`` as its token; Conflict when one posts to that URL."""
        unknown = set(spec.events) - set(HOOK_EVENTS)
        if unknown:
            raise InvalidRequest(SYSTEM, f"unknown webhook events: {', '.join(sorted(unknown))}", status=400)
        project = self._live_project(spec.repository_id)
        if self._hook_to(project, spec.url) is not None:
            raise Conflict(SYSTEM, f"project {spec.repository_id} has a webhook to {spec.url} already", status=409)
        with self._call(f"create webhook of project {spec.repository_id}"):
            hook = project.hooks.create({
                "url": spec.url, "name": "Developer portal", "description": OWNER_PREFIX + spec.owner,
                "token": spec.secret, "enable_ssl_verification": self._verify,
                **{flag: event in spec.events for event, flag in HOOK_EVENTS.items()},
            })
        return _webhook(hook.attributes, spec.repository_id, project.attributes["web_url"])

    def delete_webhook(self, repository_id: str, external_id: str) -> None:
        """Remove the hook; NotFound when it is gone or belongs to another project."""
        project = self._gl.projects.get(repository_id, lazy=True)
        with self._call(f"webhook {external_id} of project {repository_id}"):
            project.hooks.get(external_id)  # GitLab's DELETE is documented as idempotent: ask first
            project.hooks.delete(external_id)

    # --- steps -------------------------------------------------------------------------------------

    def _team_group(self, team: str) -> int:
        """The id of the team's subgroup, created under the parent group when missing."""
        full = f"{self._parent}/{team}"
        group = self._group(full)
        if group is not None:
            return group["id"]
        parent = self._group(self._parent)
        if parent is None:
            raise NotFound(SYSTEM, f"the parent group {self._parent!r} does not exist: create it in GitLab and make "
                                   "the portal's token an Owner or Maintainer of it", status=404)
        try:
            with self._call(f"create group {full}"):
                return self._gl.groups.create({"name": team, "path": team, "parent_id": parent["id"],
                                               "visibility": "private"}).id
        except Conflict:  # created meanwhile by another worker: adopt it
            group = self._group(full)
            if group is None:
                raise
            return group["id"]

    def _group(self, full_path: str) -> dict[str, Any] | None:
        return self._or_none(f"group {full_path}",
                             lambda: self._gl.groups.get(full_path, with_projects="false").attributes)

    def _live_project(self, external_id: str) -> Any:
        with self._call(f"project {external_id}"):
            project = self._gl.projects.get(external_id)
        if _scheduled_for_deletion(project.attributes):
            raise NotFound(SYSTEM, f"project {external_id} is scheduled for deletion", status=404)
        return project

    def _hook_to(self, project: Any, url: str) -> dict[str, Any] | None:
        with self._call(f"webhooks of project {project.get_id()}"):
            hooks = [h.attributes for h in project.hooks.list(get_all=True)]
        return next((h for h in hooks if h["url"] == url), None)

    def _file_exists(self, project: Any, ref: str, path: str) -> bool:
        return self._or_none(f"file {path} at {ref}", lambda: project.files.head(path, ref=ref)) is not None

    def _commit(self, project: Any, branch: str, start: str | None, actions: dict[str, str],
                files: dict[str, bytes], message: str) -> dict[str, Any]:
        data: dict[str, Any] = {"branch": branch, "commit_message": message, "actions": [
            {"action": actions[path], "file_path": path, "encoding": "base64",
             "content": base64.b64encode(content).decode("ascii")} for path, content in sorted(files.items())]}
        if start:
            data["start_branch"] = start
        with self._call(f"commit to {branch} of project {project.get_id()}"):
            return project.commits.create(data).attributes

    def _protect(self, project: Any, branch: str) -> None:
        """Maintainers push and merge. GitLab may have protected the default branch at its first push
        (its initial default branch protection): kept when it says the same, replaced otherwise."""
        rule = {"name": branch, "push_access_level": MAINTAINER, "merge_access_level": MAINTAINER}
        with self._call(f"protect branch {branch} of project {project.get_id()}"):
            try:
                project.protectedbranches.create(rule)
                return
            except GitlabError as exc:
                if exc.response_code != 409:
                    raise
            existing = project.protectedbranches.get(branch).attributes
            if all({a["access_level"] for a in existing[key]} == {MAINTAINER}
                   for key in ("push_access_levels", "merge_access_levels")):
                return
            project.protectedbranches.delete(branch)
            project.protectedbranches.create(rule)

    def _add_members(self, project: Any, full: str, members: tuple[Member, ...]) -> list[str]:
        warnings = []
        for member in members:
            level = ROLES.get(member.role)
            if level is None:
                warnings.append(f"{member.username} not added to {full}: unknown role {member.role!r}")
                continue
            with self._call(f"user {member.username}"):
                users = self._gl.users.list(username=member.username, get_all=False)
            if not users:
                warnings.append(f"{member.username} not added to {full}: GitLab has no user by that name")
                continue
            try:
                with self._call(f"add {member.username} to {full}"):
                    project.members.create({"user_id": users[0].id, "access_level": level})
            except Conflict:
                pass  # a member already
            except InvalidRequest as exc:  # e.g. a higher role inherited from the group
                warnings.append(f"{member.username} not added to {full} as {member.role}: {exc.message}")
        return warnings

    def _discard(self, project: Any, full: str) -> None:
        try:
            with self._call(f"delete project {full}"):
                project.delete()
        except IntegrationError as exc:
            log.warning("could not delete the half-created GitLab project %s: %s", full, exc.message)

    # --- errors ------------------------------------------------------------------------------------

    def _or_none(self, what: str, fetch: Callable[[], T]) -> T | None:
        try:
            with self._call(what):
                return fetch()
        except NotFound:
            return None

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """Translate python-gitlab's and requests' errors into the portal's, about ``what``."""
        try:
            yield
        except (GitlabError, requests.RequestException) as exc:
            raise self._error(exc, what) from exc

    def _error(self, exc: Exception, what: str) -> IntegrationError:
        if isinstance(exc, requests.Timeout):
            return Unavailable(SYSTEM, self._scrub(f"{what}: no answer within {self._timeout:g}s"))
        if isinstance(exc, requests.RequestException):
            return Unavailable(SYSTEM, self._scrub(f"{what}: {exc}"))
        assert isinstance(exc, GitlabError)
        status = exc.response_code
        message = self._scrub(f"{what}: {_message(exc)}")
        if isinstance(exc, RedirectError):
            return InvalidRequest(SYSTEM, message, status)
        if status is None or status < 400:
            return Unavailable(SYSTEM, message, status)  # an answer that is not GitLab's JSON
        if status == 400 and "has already been taken" in message:  # how GitLab refuses a name that is taken
            return Conflict(SYSTEM, message, status)
        return http.error_for_status(SYSTEM, status, message, self._gl.last_retry_after())

    def _scrub(self, text: str) -> str:
        return http.scrub(text, self._token, mask="[token]")


def _message(exc: GitlabError) -> str:
    """GitLab's own message: ``{"message": ...}`` or ``{"error": ...}``, a string or a dict of field errors."""
    error = exc.error_message
    if isinstance(error, dict):
        return "; ".join(f"{field} {', '.join(map(str, v)) if isinstance(v, list) else v}"
                         for field, v in error.items())
    text = str(error or "").strip()
    return text or (f"HTTP {exc.response_code}" if exc.response_code else type(exc).__name__)


def _owner(marks: Any) -> str | None:
    for mark in [marks] if isinstance(marks, str) else list(marks or ()):
        if mark.startswith(OWNER_PREFIX) and len(mark) > len(OWNER_PREFIX):
            return mark[len(OWNER_PREFIX):]
    return None


def _scheduled_for_deletion(project: dict[str, Any]) -> bool:
    return bool(project.get("marked_for_deletion_at") or project.get("marked_for_deletion_on"))


def _repository(project: dict[str, Any], default_branch: str | None = None,
                warnings: tuple[str, ...] = ()) -> ExternalResource:
    return ExternalResource(
        system=SYSTEM, kind="repository", external_id=str(project["id"]), name=project["path_with_namespace"],
        url=project["web_url"], owner=_owner(project.get("topics") or project.get("tag_list")),
        attributes={"http_url": project["http_url_to_repo"],
                    "default_branch": default_branch or project.get("default_branch") or ""},
        warnings=warnings)


def _webhook(hook: dict[str, Any], repository_id: str, project_url: str) -> ExternalResource:
    return ExternalResource(system=SYSTEM, kind="webhook", external_id=str(hook["id"]), name=hook["url"],
                            url=f"{project_url}/-/hooks", owner=_owner(hook.get("description")),
                            attributes={"repository_id": repository_id})
