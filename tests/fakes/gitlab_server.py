"""A fake GitLab: a real HTTP server on 127.0.0.1 answering the REST API v4 endpoints the GitLab adapter uses.

Written from GitLab's API documentation (each endpoint names its page), with its state in memory, so
that ``integrations.gitlab`` is tested through python-gitlab and real HTTP. As in GitLab, a project,
group or file path in a URL is one URL-encoded segment (``portal%2Fdev%2Fshop``), so routes match the
raw request path. Lists are paginated with GitLab's headers. A request without the right
``PRIVATE-TOKEN`` is answered 401.

For tests: ``fail_next`` makes the next matching requests answer an error or hang, ``requests`` is the
log of every request received, ``add_group`` and ``add_user`` seed what exists before the portal.
Not implemented, because the adapter does not use them: commit actions ``move`` and ``chmod``,
``initialize_with_readme``, and everything not routed below or in ``tests.fakes.gitlab_repository``
(answered 404 like an unknown route).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import date
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from tests.fakes.gitlab_api import (
    ROUTES, Answer, Call, bad_request, endpoint, flag, json_response, not_found, now, paginated, required,
)
from tests.fakes.gitlab_repository import RepositoryEndpoints
from tests.fakes.http_server import FakeHTTPServer

HOOK_EVENTS = ("push_events", "issues_events", "confidential_issues_events", "merge_requests_events",
               "tag_push_events", "note_events", "confidential_note_events", "job_events", "pipeline_events",
               "wiki_page_events", "deployment_events", "releases_events", "feature_flag_events",
               "resource_access_token_events")


@dataclass
class Recorded:
    """A request the server received: ``path`` is raw (still URL-encoded), without the query string."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


def _raw_path(request: Request) -> str:
    return request.environ.get("RAW_URI", request.path).split("?", 1)[0]


def _body(request: Request) -> Any:
    return request.get_json(silent=True) if request.is_json else (request.form.to_dict() or None)


class FakeGitLab(FakeHTTPServer, RepositoryEndpoints):
    """The fake server. ``default_branch_protection`` is (push, merge) applied to a default branch at its
    first push, as GitLab's initial default branch protection does (None: off); ``delayed_deletion``
    marks deleted projects and renames them instead of removing them, as GitLab 18 does."""

    thread_name = "fake-gitlab"

    def __init__(self, token: str = "fake-gitlab-token", *,
                 default_branch_protection: tuple[int, int] | None = (40, 40), delayed_deletion: bool = False):
        super().__init__()
        self.token, self.protection, self.delayed_deletion = token, default_branch_protection, delayed_deletion
        self.requests: list[Recorded] = []
        self.groups: dict[int, dict[str, Any]] = {}
        self.projects: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.hooks: dict[int, dict[str, Any]] = {}
        self.commits: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.bot = self.add_user("portal-bot", name="Developer Portal")

    # --- for tests ---------------------------------------------------------------------------------

    def requests_to(self, method: str, path_regex: str) -> list[Recorded]:
        """The logged requests with ``method`` whose raw path matches ``path_regex`` (``re.search``)."""
        return [r for r in self.requests if r.method == method.upper() and re.search(path_regex, r.path)]

    def add_group(self, full_path: str, visibility: str = "private") -> dict[str, Any]:
        parent_path, _, path = full_path.rpartition("/")
        parent = self._group_by_path(parent_path) if parent_path else None
        return self._new_group(path, path, parent["id"] if parent else None, visibility)

    def add_user(self, username: str, name: str = "") -> dict[str, Any]:
        user = {"id": next(self._ids), "username": username, "name": name or username.title(), "state": "active",
                "locked": False, "avatar_url": "", "web_url": ""}
        self.users[user["id"]] = user
        return user

    # --- HTTP --------------------------------------------------------------------------------------

    def fault_path(self, request: Request) -> str:
        return _raw_path(request)  # as GitLab routes, and as ``requests`` logs it

    def fault_body(self, status: int) -> Any:
        return {"message": f"{status} {HTTPStatus(status).phrase}"}

    def received(self, request: Request) -> None:
        self.requests.append(Recorded(request.method, _raw_path(request), request.args.to_dict(), _body(request)))

    def respond(self, request: Request) -> Response:
        if request.headers.get("PRIVATE-TOKEN") != self.token:
            return json_response(401, {"message": "401 Unauthorized"})
        raw_path, body = _raw_path(request), _body(request)
        for method, pattern, name in ROUTES:
            match = pattern.match(raw_path)
            if match and method == request.method:
                params = {**request.args.to_dict(), **(body if isinstance(body, dict) else {})}
                call = Call(request, {k: unquote(v) for k, v in match.groupdict().items()}, params)
                try:
                    with self._lock:
                        return getattr(self, name)(call)
                except Answer as answer:
                    return json_response(answer.status, answer.body)
        return json_response(404, {"error": "404 Not Found"})

    # --- groups ------------------------------------------------------------------------------------

    def _new_group(self, name: str, path: str, parent_id: int | None, visibility: str) -> dict[str, Any]:
        parent = self.groups[parent_id] if parent_id else None
        group = {"id": next(self._ids), "name": name, "path": path, "description": "", "visibility": visibility,
                 "full_name": f"{parent['full_name']} / {name}" if parent else name,
                 "full_path": f"{parent['full_path']}/{path}" if parent else path, "parent_id": parent_id,
                 "created_at": now(), "marked_for_deletion_on": None}
        self.groups[group["id"]] = group
        return group

    def _group_by_path(self, ref: str) -> dict[str, Any]:
        found = self.groups.get(int(ref)) if ref.isdigit() else next(
            (g for g in self.groups.values() if g["full_path"].lower() == ref.lower()), None)
        if found is None:
            raise not_found("Group")
        return found

    def _group_json(self, group: dict[str, Any]) -> dict[str, Any]:
        return {**group, "web_url": f"{self.url}/groups/{group['full_path']}"}

    # https://docs.gitlab.com/api/groups/#get-a-single-group
    @endpoint("GET", r"/groups/(?P<group>[^/]+)")
    def get_group(self, call: Call) -> Response:
        group = self._group_json(self._group_by_path(call.args["group"]))
        if flag(call.params.get("with_projects", True)):
            group["projects"] = [self._project_json(p) for p in self.projects.values()
                                 if p["namespace_id"] == group["id"]]
        return json_response(200, group)

    # https://docs.gitlab.com/api/groups/#create-a-group (a subgroup when parent_id is given)
    @endpoint("POST", r"/groups")
    def create_group(self, call: Call) -> Response:
        required(call, "name", "path")
        parent_id = int(call.params["parent_id"]) if call.params.get("parent_id") else None
        if parent_id is not None and parent_id not in self.groups:
            raise not_found("Parent Group")
        prefix = f"{self.groups[parent_id]['full_path']}/" if parent_id else ""
        if any(g["full_path"].lower() == f"{prefix}{call.params['path']}".lower() for g in self.groups.values()):
            raise bad_request('Failed to save group {:path=>["has already been taken"]}')
        group = self._new_group(call.params["name"], call.params["path"], parent_id,
                                call.params.get("visibility") or "private")
        return json_response(201, self._group_json(group))

    # --- projects ----------------------------------------------------------------------------------

    def _project(self, call: Call) -> dict[str, Any]:
        ref = call.args["project"]
        found = self.projects.get(int(ref)) if ref.isdigit() else next(
            (p for p in self.projects.values() if self._full_path(p).lower() == ref.lower()), None)
        if found is None:
            raise not_found("Project")
        return found

    def _full_path(self, project: dict[str, Any]) -> str:
        return f"{self.groups[project['namespace_id']]['full_path']}/{project['path']}"

    def _project_json(self, p: dict[str, Any]) -> dict[str, Any]:
        ns, full = self.groups[p["namespace_id"]], self._full_path(p)
        web = f"{self.url}/{full}"
        return {
            "id": p["id"], "name": p["name"], "path": p["path"], "description": p["description"],
            "name_with_namespace": f"{ns['full_name']} / {p['name']}", "path_with_namespace": full,
            "default_branch": p["default_branch"], "visibility": p["visibility"], "topics": list(p["topics"]),
            "tag_list": list(p["topics"]), "web_url": web, "http_url_to_repo": f"{web}.git",
            "ssh_url_to_repo": f"git@127.0.0.1:{full}.git", "created_at": p["created_at"],
            "namespace": {"id": ns["id"], "name": ns["name"], "path": ns["path"], "kind": "group",
                          "full_path": ns["full_path"], "parent_id": ns["parent_id"],
                          "web_url": f"{self.url}/groups/{ns['full_path']}"},
            "empty_repo": not p["branches"], "archived": False,
            "marked_for_deletion_at": p["marked_for_deletion_at"],
            "marked_for_deletion_on": p["marked_for_deletion_at"],
        }

    # https://docs.gitlab.com/api/projects/#create-a-project
    @endpoint("POST", r"/projects")
    def create_project(self, call: Call) -> Response:
        params = call.params
        if not params.get("name") and not params.get("path"):
            raise Answer(400, {"error": "name, path are missing, at least one parameter must be provided"})
        if flag(params.get("initialize_with_readme")):
            raise Answer(501, {"message": "initialize_with_readme is not implemented by the fake"})
        namespace_id = int(params.get("namespace_id") or 0)
        if namespace_id not in self.groups:
            raise not_found("Namespace")
        name = params.get("name") or params["path"]
        path = params.get("path") or re.sub(r"[^a-z0-9_.-]+", "-", name.lower())
        siblings = [p for p in self.projects.values() if p["namespace_id"] == namespace_id]
        taken = {k: ["has already been taken"] for k, v in (("name", name), ("path", path))
                 if any(p[k].lower() == v.lower() for p in siblings)}
        if taken:
            raise bad_request(taken)
        topics = params.get("topics") or []
        project = {"id": next(self._ids), "name": name, "path": path, "namespace_id": namespace_id,
                   "description": params.get("description") or "", "visibility": params.get("visibility") or "private",
                   "default_branch": params.get("default_branch") or "main", "created_at": now(),
                   "topics": topics.split(",") if isinstance(topics, str) else list(topics),
                   "branches": {}, "protected": {}, "members": {}, "marked_for_deletion_at": None}
        self.projects[project["id"]] = project
        return json_response(201, self._project_json(project))

    # https://docs.gitlab.com/api/projects/#get-a-single-project
    @endpoint("GET", r"/projects/(?P<project>[^/]+)")
    def get_project(self, call: Call) -> Response:
        return json_response(200, self._project_json(self._project(call)))

    # https://docs.gitlab.com/api/projects/#delete-a-project
    @endpoint("DELETE", r"/projects/(?P<project>[^/]+)")
    def delete_project(self, call: Call) -> Response:
        project = self._project(call)
        if self.delayed_deletion:
            if project["marked_for_deletion_at"]:
                raise bad_request("Project has been already marked for deletion")
            project["marked_for_deletion_at"] = date.today().isoformat()
            suffix = f"-deletion_scheduled-{project['id']}"
            project["path"], project["name"] = project["path"] + suffix, project["name"] + suffix
        else:
            del self.projects[project["id"]]
            for hook_id in [h for h, hook in self.hooks.items() if hook["project_id"] == project["id"]]:
                del self.hooks[hook_id]
        return json_response(202, {"message": "202 Accepted"})

    # --- users and members -------------------------------------------------------------------------

    # https://docs.gitlab.com/api/users/#list-users (for a username: that one user or none)
    @endpoint("GET", r"/users")
    def list_users(self, call: Call) -> Response:
        username = (call.params.get("username") or "").lower()
        return paginated(call, [u for u in self.users.values() if not username or u["username"].lower() == username])

    def _member_json(self, user_id: int, level: int) -> dict[str, Any]:
        return {**self.users[user_id], "access_level": level, "created_at": now(), "expires_at": None}

    # https://docs.gitlab.com/api/members/#add-a-member-to-a-group-or-project
    @endpoint("POST", r"/projects/(?P<project>[^/]+)/members")
    def add_member(self, call: Call) -> Response:
        project = self._project(call)
        required(call, "user_id", "access_level")
        user_id, level = int(call.params["user_id"]), int(call.params["access_level"])
        if user_id not in self.users:
            raise not_found("User")
        if level not in (10, 20, 30, 40, 50):
            raise Answer(400, {"error": "access_level does not have a valid value"})
        if user_id in project["members"]:
            raise Answer(409, {"message": "Member already exists"})
        project["members"][user_id] = level
        return json_response(201, self._member_json(user_id, level))

    # https://docs.gitlab.com/api/members/#get-a-member-of-a-group-or-project
    @endpoint("GET", r"/projects/(?P<project>[^/]+)/members/(?P<user>\d+)")
    def get_member(self, call: Call) -> Response:
        project, user_id = self._project(call), int(call.args["user"])
        if user_id not in project["members"]:
            raise not_found("Member")
        return json_response(200, self._member_json(user_id, project["members"][user_id]))

    # --- project webhooks --------------------------------------------------------------------------

    def _hook(self, call: Call) -> dict[str, Any]:
        project, ref = self._project(call), call.args["hook"]
        hook = self.hooks.get(int(ref)) if ref.isdigit() else None
        if hook is None or hook["project_id"] != project["id"]:
            raise not_found("Hook")  # GitLab scopes hooks to their project
        return hook

    @staticmethod
    def _hook_json(hook: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in hook.items() if k != "token"}  # GitLab never returns the secret token

    # https://docs.gitlab.com/api/project_webhooks/#list-webhooks-for-a-project
    @endpoint("GET", r"/projects/(?P<project>[^/]+)/hooks")
    def list_hooks(self, call: Call) -> Response:
        project = self._project(call)
        return paginated(call, [self._hook_json(h) for h in self.hooks.values() if h["project_id"] == project["id"]])

    # https://docs.gitlab.com/api/project_webhooks/#add-a-webhook-to-a-project
    @endpoint("POST", r"/projects/(?P<project>[^/]+)/hooks")
    def add_hook(self, call: Call) -> Response:
        project = self._project(call)
        required(call, "url")
        if not re.match(r"^https?://", call.params["url"]):
            raise Answer(422, {"message": {"url": ["is blocked: Only allowed schemes are http, https"]}})
        hook = {"id": next(self._ids), "url": call.params["url"], "name": call.params.get("name") or "",
                "description": call.params.get("description") or "", "project_id": project["id"],
                "push_events_branch_filter": "", "enable_ssl_verification":
                    flag(call.params.get("enable_ssl_verification", True)),
                "alert_status": "executable", "disabled_until": None, "url_variables": [], "created_at": now(),
                "custom_webhook_template": "", "custom_headers": [], "repository_update_events": False,
                "token": call.params.get("token") or ""}
        for event in HOOK_EVENTS:
            hook[event] = flag(call.params.get(event, event == "push_events"))
        self.hooks[hook["id"]] = hook
        return json_response(201, self._hook_json(hook))

    # https://docs.gitlab.com/api/project_webhooks/#get-a-project-webhook
    @endpoint("GET", r"/projects/(?P<project>[^/]+)/hooks/(?P<hook>[^/]+)")
    def get_hook(self, call: Call) -> Response:
        return json_response(200, self._hook_json(self._hook(call)))

    # https://docs.gitlab.com/api/project_webhooks/#delete-project-webhook
    @endpoint("DELETE", r"/projects/(?P<project>[^/]+)/hooks/(?P<hook>[^/]+)")
    def delete_hook(self, call: Call) -> Response:
        del self.hooks[self._hook(call)["id"]]
        return Response(status=204)
