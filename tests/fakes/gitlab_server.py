"""A fake GitLab: a real HTTP server on 127.0.0.1 answering the REST API v4 endpoints the GitLab adapter uses.

Written from GitLab's API documentation (each endpoint names its page), with its state in memory, so
that ``integrations.gitlab`` is tested through python-gitlab and real HTTP. As in GitLab, a project,
group or file path in a URL is one URL-encoded segment (``portal%2Fdev%2Fshop``), so routes match the
raw request path. Lists are paginated with GitLab's headers. A request without the right
``PRIVATE-TOKEN`` is answered 401.

For tests: ``fail_next`` makes the next matching requests answer an error or hang, ``requests`` is the
log of every request received, ``add_group`` and ``add_user`` seed what exists before the portal.
Not implemented, because the adapter does not use them: commit actions ``move`` and ``chmod``,
``initialize_with_readme``, and everything not routed below (answered 404 like an unknown route).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass
from datetime import date, datetime, timezone
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import unquote, urlencode

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

API = "/api/v4"
LEVELS = {0: "No one", 30: "Developers + Maintainers", 40: "Maintainers", 60: "Admins"}
HOOK_EVENTS = ("push_events", "issues_events", "confidential_issues_events", "merge_requests_events",
               "tag_push_events", "note_events", "confidential_note_events", "job_events", "pipeline_events",
               "wiki_page_events", "deployment_events", "releases_events", "feature_flag_events",
               "resource_access_token_events")
_ROUTES: list[tuple[str, re.Pattern[str], str]] = []


def endpoint(method: str, pattern: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Route ``method`` on ``/api/v4<pattern>`` (matched on the raw path) to the decorated handler."""

    def register(handler: Callable[..., Response]) -> Callable[..., Response]:
        _ROUTES.append((method, re.compile(f"^{API}{pattern}$"), handler.__name__))
        return handler

    return register


class Answer(Exception):
    """An error answer, raised from a handler the way GitLab's API raises ``render_api_error!``."""

    def __init__(self, status: int, body: Any = None):
        super().__init__(status)
        self.status, self.body = status, body


def not_found(what: str) -> Answer:
    return Answer(404, {"message": f"404 {what} Not Found"})


def bad_request(message: Any) -> Answer:
    return Answer(400, {"message": message})


@dataclass
class Recorded:
    """A request the server received: ``path`` is raw (still URL-encoded), without the query string."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int | None
    headers: dict[str, str]
    body: Any
    delay: float | None
    times: int


@dataclass
class Call:
    """What a handler gets: the request, the decoded path parameters, the merged query and body parameters."""

    request: Request
    args: dict[str, str]
    params: dict[str, Any]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:  # the request log is ``FakeGitLab.requests``
        pass


class FakeGitLab:
    """The fake server. ``default_branch_protection`` is (push, merge) applied to a default branch at its
    first push, as GitLab's initial default branch protection does (None: off); ``delayed_deletion``
    marks deleted projects and renames them instead of removing them, as GitLab 18 does."""

    def __init__(self, token: str = "fake-gitlab-token", *,
                 default_branch_protection: tuple[int, int] | None = (40, 40), delayed_deletion: bool = False):
        self.token, self.protection, self.delayed_deletion = token, default_branch_protection, delayed_deletion
        self.requests: list[Recorded] = []
        self.groups: dict[int, dict[str, Any]] = {}
        self.projects: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.hooks: dict[int, dict[str, Any]] = {}
        self.commits: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.bot = self.add_user("portal-bot", name="Developer Portal")

    # --- running -----------------------------------------------------------------------------------

    def start(self) -> "FakeGitLab":
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-gitlab", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers that hang on purpose
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> "FakeGitLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- for tests ---------------------------------------------------------------------------------

    def fail_next(self, method: str, path_regex: str, status: int | None = None, headers: dict[str, str] | None = None,
                  body: Any = None, delay: float | None = None, times: int = 1) -> None:
        """Make the next ``times`` requests whose method and raw path (``re.search``) match answer ``status``
        with ``body`` (default: GitLab's ``{"message": "<status> <reason>"}``) after ``delay`` seconds;
        with no status, they are only delayed, then answered normally."""
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(path_regex), status, dict(headers or {}), body,
                                      delay, times))

    def requests_to(self, method: str, path_regex: str) -> list[Recorded]:
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

    # --- plumbing ----------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        raw_path = environ.get("RAW_URI", request.path).split("?", 1)[0]
        body = request.get_json(silent=True) if request.is_json else (request.form.to_dict() or None)
        with self._lock:
            self.requests.append(Recorded(request.method, raw_path, request.args.to_dict(), body))
            fault = next((f for f in self._faults if f.method == request.method and f.path.search(raw_path)), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
        if fault is not None and fault.delay:
            self._stopping.wait(fault.delay)
        if fault is not None and fault.status is not None:
            response = self._json(fault.status, fault.body if fault.body is not None else
                                  {"message": f"{fault.status} {HTTPStatus(fault.status).phrase}"}, fault.headers)
        else:
            response = self._dispatch(request, raw_path, body)
        return response(environ, start_response)

    def _dispatch(self, request: Request, raw_path: str, body: Any) -> Response:
        if request.headers.get("PRIVATE-TOKEN") != self.token:
            return self._json(401, {"message": "401 Unauthorized"})
        for method, pattern, name in _ROUTES:
            match = pattern.match(raw_path)
            if match and method == request.method:
                params = {**request.args.to_dict(), **(body if isinstance(body, dict) else {})}
                call = Call(request, {k: unquote(v) for k, v in match.groupdict().items()}, params)
                try:
                    with self._lock:
                        return getattr(self, name)(call)
                except Answer as answer:
                    return self._json(answer.status, answer.body)
        return self._json(404, {"error": "404 Not Found"})

    @staticmethod
    def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        if isinstance(data, (bytes, str)):
            return Response(data, status=status, headers=headers, content_type="text/plain")
        return Response(json.dumps(data), status=status, headers=headers, content_type="application/json")

    def _page(self, call: Call, items: list[Any]) -> Response:
        """One page of a list with GitLab's pagination headers.

        https://docs.gitlab.com/api/rest/#pagination-response-headers
        """
        page = max(int(call.params.get("page") or 1), 1)
        per_page = min(max(int(call.params.get("per_page") or 20), 1), 100)
        pages = max((len(items) + per_page - 1) // per_page, 1)
        base = call.request.host_url.rstrip("/") + (call.request.environ.get("RAW_URI") or "").split("?", 1)[0]

        def link(n: int) -> str:
            return base + "?" + urlencode({**call.request.args.to_dict(), "page": n, "per_page": per_page})

        rels = {"prev": page - 1 if page > 1 else None, "next": page + 1 if page < pages else None,
                "first": 1, "last": pages}
        headers = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items)),
                   "X-Total-Pages": str(pages), "X-Next-Page": str(rels["next"] or ""),
                   "X-Prev-Page": str(rels["prev"] or ""),
                   "Link": ", ".join(f'<{link(n)}>; rel="{rel}"' for rel, n in rels.items() if n)}
        return self._json(200, items[(page - 1) * per_page:page * per_page], headers)

    def _required(self, call: Call, *names: str) -> None:
        missing = [n for n in names if call.params.get(n) in (None, "")]
        if missing:
            raise Answer(400, {"error": ", ".join(f"{n} is missing" for n in missing)})

    # --- groups ------------------------------------------------------------------------------------

    def _new_group(self, name: str, path: str, parent_id: int | None, visibility: str) -> dict[str, Any]:
        parent = self.groups[parent_id] if parent_id else None
        group = {"id": next(self._ids), "name": name, "path": path, "description": "", "visibility": visibility,
                 "full_name": f"{parent['full_name']} / {name}" if parent else name,
                 "full_path": f"{parent['full_path']}/{path}" if parent else path, "parent_id": parent_id,
                 "created_at": _now(), "marked_for_deletion_on": None}
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
        if _flag(call.params.get("with_projects", True)):
            group["projects"] = [self._project_json(p) for p in self.projects.values()
                                 if p["namespace_id"] == group["id"]]
        return self._json(200, group)

    # https://docs.gitlab.com/api/groups/#create-a-group (a subgroup when parent_id is given)
    @endpoint("POST", r"/groups")
    def create_group(self, call: Call) -> Response:
        self._required(call, "name", "path")
        parent_id = int(call.params["parent_id"]) if call.params.get("parent_id") else None
        if parent_id is not None and parent_id not in self.groups:
            raise not_found("Parent Group")
        prefix = f"{self.groups[parent_id]['full_path']}/" if parent_id else ""
        if any(g["full_path"].lower() == f"{prefix}{call.params['path']}".lower() for g in self.groups.values()):
            raise bad_request('Failed to save group {:path=>["has already been taken"]}')
        group = self._new_group(call.params["name"], call.params["path"], parent_id,
                                call.params.get("visibility") or "private")
        return self._json(201, self._group_json(group))

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
        if _flag(params.get("initialize_with_readme")):
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
                   "default_branch": params.get("default_branch") or "main", "created_at": _now(),
                   "topics": topics.split(",") if isinstance(topics, str) else list(topics),
                   "branches": {}, "protected": {}, "members": {}, "marked_for_deletion_at": None}
        self.projects[project["id"]] = project
        return self._json(201, self._project_json(project))

    # https://docs.gitlab.com/api/projects/#get-a-single-project
    @endpoint("GET", r"/projects/(?P<project>[^/]+)")
    def get_project(self, call: Call) -> Response:
        return self._json(200, self._project_json(self._project(call)))

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
        return self._json(202, {"message": "202 Accepted"})

    # --- repository --------------------------------------------------------------------------------

    def _resolve(self, project: dict[str, Any], ref: str | None) -> str | None:
        ref = ref or project["default_branch"]
        if ref in project["branches"]:
            return project["branches"][ref]
        commit = self.commits.get(ref)
        return ref if commit and commit["project_id"] == project["id"] else None

    def _commit_json(self, project: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
        return {"id": c["id"], "short_id": c["id"][:8], "title": c["message"].split("\n", 1)[0],
                "message": c["message"], "parent_ids": c["parent_ids"], "author_name": c["author_name"],
                "author_email": c["author_email"], "authored_date": c["created_at"],
                "committer_name": self.bot["name"], "committer_email": "portal-bot@example.invalid",
                "committed_date": c["created_at"], "created_at": c["created_at"],
                "web_url": f"{self.url}/{self._full_path(project)}/-/commit/{c['id']}"}

    # https://docs.gitlab.com/api/branches/#get-single-repository-branch
    @endpoint("GET", r"/projects/(?P<project>[^/]+)/repository/branches/(?P<branch>[^/]+)")
    def get_branch(self, call: Call) -> Response:
        project, name = self._project(call), call.args["branch"]
        if name not in project["branches"]:
            raise not_found("Branch")
        rule = project["protected"].get(name)
        return self._json(200, {
            "name": name, "merged": False, "protected": rule is not None, "default": name == project["default_branch"],
            "developers_can_push": bool(rule) and rule["push"] <= 30,
            "developers_can_merge": bool(rule) and rule["merge"] <= 30,
            "can_push": True, "web_url": f"{self.url}/{self._full_path(project)}/-/tree/{name}",
            "commit": self._commit_json(project, self.commits[project["branches"][name]])})

    # https://docs.gitlab.com/api/commits/#list-repository-commits
    @endpoint("GET", r"/projects/(?P<project>[^/]+)/repository/commits")
    def list_commits(self, call: Call) -> Response:
        project = self._project(call)
        sha, history = self._resolve(project, call.params.get("ref_name")), []
        while sha:
            history.append(self._commit_json(project, self.commits[sha]))
            sha = (self.commits[sha]["parent_ids"] or [None])[0]
        return self._page(call, history)

    # https://docs.gitlab.com/api/commits/#create-a-commit-with-multiple-files-and-actions
    @endpoint("POST", r"/projects/(?P<project>[^/]+)/repository/commits")
    def create_commit(self, call: Call) -> Response:
        project = self._project(call)
        self._required(call, "branch", "commit_message", "actions")
        branch, heads = call.params["branch"], project["branches"]
        start = call.params.get("start_branch") or branch
        if heads and start not in heads:
            raise bad_request("You can only create or edit files when you are on a branch")
        if heads and start != branch and branch in heads:
            raise bad_request(f"A branch called '{branch}' already exists. "
                              "Switch to that branch in order to make changes")
        parent = heads.get(start)
        tree = dict(self.commits[parent]["tree"]) if parent else {}
        for i, action in enumerate(call.params["actions"]):
            self._apply(tree, i, action)
        message = call.params["commit_message"]
        sha = hashlib.sha1(f"{project['id']}:{parent}:{message}:{next(self._ids)}".encode()).hexdigest()
        self.commits[sha] = {"id": sha, "project_id": project["id"], "message": message, "tree": tree,
                             "parent_ids": [parent] if parent else [], "created_at": _now(),
                             "author_name": call.params.get("author_name") or self.bot["name"],
                             "author_email": call.params.get("author_email") or "portal-bot@example.invalid"}
        heads[branch] = sha
        first_push = not parent and branch == project["default_branch"]
        if first_push and self.protection and branch not in project["protected"]:
            project["protected"][branch] = {"id": next(self._ids), "push": self.protection[0],
                                            "merge": self.protection[1]}
        return self._json(201, {**self._commit_json(project, self.commits[sha]), "status": None,
                                "stats": {"additions": 0, "deletions": 0, "total": 0}})

    @staticmethod
    def _apply(tree: dict[str, bytes], i: int, action: dict[str, Any]) -> None:
        kind, path = action.get("action"), action.get("file_path")
        if kind not in ("create", "update", "delete"):
            raise Answer(400, {"error": f"actions[{i}][action] does not have a valid value"})
        if not path:
            raise Answer(400, {"error": f"actions[{i}][file_path] is missing"})
        if kind == "create" and path in tree:
            raise bad_request("A file with this name already exists")
        if kind in ("update", "delete") and path not in tree:
            raise bad_request("A file with this name doesn't exist")
        if kind == "delete":
            del tree[path]
            return
        encoding, content = action.get("encoding") or "text", action.get("content") or ""
        if encoding not in ("text", "base64"):
            raise Answer(400, {"error": f"actions[{i}][encoding] does not have a valid value"})
        try:
            tree[path] = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
        except binascii.Error:
            raise bad_request("Invalid base64") from None

    def _blob(self, call: Call) -> tuple[dict[str, Any], str, bytes]:
        project = self._project(call)
        sha = self._resolve(project, call.params.get("ref"))
        if sha is None:
            raise not_found("Commit")
        content = self.commits[sha]["tree"].get(call.args["file"])
        if content is None:
            raise not_found("File")
        return project, sha, content

    # https://docs.gitlab.com/api/repository_files/#get-file-metadata-only
    @endpoint("HEAD", r"/projects/(?P<project>[^/]+)/repository/files/(?P<file>[^/]+)")
    def head_file(self, call: Call) -> Response:
        self._required(call, "ref")
        _, sha, content = self._blob(call)
        path = call.args["file"]
        return Response(b"", status=200, headers={
            "X-Gitlab-Blob-Id": hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest(),
            "X-Gitlab-Commit-Id": sha, "X-Gitlab-Content-Sha256": hashlib.sha256(content).hexdigest(),
            "X-Gitlab-Encoding": "base64", "X-Gitlab-File-Name": path.rsplit("/", 1)[-1],
            "X-Gitlab-File-Path": path, "X-Gitlab-Last-Commit-Id": sha, "X-Gitlab-Ref": call.params["ref"],
            "X-Gitlab-Size": str(len(content)), "X-Gitlab-Execute-Filemode": "false"})

    # https://docs.gitlab.com/api/repository_files/#get-raw-file-from-repository
    @endpoint("GET", r"/projects/(?P<project>[^/]+)/repository/files/(?P<file>[^/]+)/raw")
    def raw_file(self, call: Call) -> Response:
        return Response(self._blob(call)[2], status=200, content_type="text/plain; charset=utf-8")

    # --- protected branches ------------------------------------------------------------------------

    def _protected_json(self, name: str, rule: dict[str, Any]) -> dict[str, Any]:
        def levels(level: int) -> list[dict[str, Any]]:
            return [{"id": rule["id"], "access_level": level, "access_level_description": LEVELS[level],
                     "user_id": None, "group_id": None}]

        return {"id": rule["id"], "name": name, "push_access_levels": levels(rule["push"]),
                "merge_access_levels": levels(rule["merge"]), "unprotect_access_levels": [],
                "allow_force_push": False, "code_owner_approval_required": False}

    # https://docs.gitlab.com/api/protected_branches/#get-a-single-protected-branch-or-wildcard-protected-branch
    @endpoint("GET", r"/projects/(?P<project>[^/]+)/protected_branches/(?P<name>[^/]+)")
    def get_protected_branch(self, call: Call) -> Response:
        project, name = self._project(call), call.args["name"]
        if name not in project["protected"]:
            raise Answer(404, {"message": "404 Not found"})
        return self._json(200, self._protected_json(name, project["protected"][name]))

    # https://docs.gitlab.com/api/protected_branches/#protect-repository-branches
    @endpoint("POST", r"/projects/(?P<project>[^/]+)/protected_branches")
    def protect_branch(self, call: Call) -> Response:
        project = self._project(call)
        self._required(call, "name")
        name = call.params["name"]
        if name in project["protected"]:
            raise Answer(409, {"message": f"Protected branch '{name}' already exists"})
        rule = {"id": next(self._ids)}
        for key in ("push", "merge"):
            level = int(call.params.get(f"{key}_access_level", 40))
            if level not in LEVELS:
                raise Answer(400, {"error": f"{key}_access_level does not have a valid value"})
            rule[key] = level
        project["protected"][name] = rule
        return self._json(201, self._protected_json(name, rule))

    # https://docs.gitlab.com/api/protected_branches/#unprotect-repository-branches
    @endpoint("DELETE", r"/projects/(?P<project>[^/]+)/protected_branches/(?P<name>[^/]+)")
    def unprotect_branch(self, call: Call) -> Response:
        project = self._project(call)
        if project["protected"].pop(call.args["name"], None) is None:
            raise Answer(404, {"message": "404 Not found"})
        return Response(status=204)

    # --- users and members -------------------------------------------------------------------------

    # https://docs.gitlab.com/api/users/#list-users (for a username: that one user or none)
    @endpoint("GET", r"/users")
    def list_users(self, call: Call) -> Response:
        username = (call.params.get("username") or "").lower()
        return self._page(call, [u for u in self.users.values() if not username or u["username"].lower() == username])

    def _member_json(self, user_id: int, level: int) -> dict[str, Any]:
        return {**self.users[user_id], "access_level": level, "created_at": _now(), "expires_at": None}

    # https://docs.gitlab.com/api/members/#add-a-member-to-a-group-or-project
    @endpoint("POST", r"/projects/(?P<project>[^/]+)/members")
    def add_member(self, call: Call) -> Response:
        project = self._project(call)
        self._required(call, "user_id", "access_level")
        user_id, level = int(call.params["user_id"]), int(call.params["access_level"])
        if user_id not in self.users:
            raise not_found("User")
        if level not in (10, 20, 30, 40, 50):
            raise Answer(400, {"error": "access_level does not have a valid value"})
        if user_id in project["members"]:
            raise Answer(409, {"message": "Member already exists"})
        project["members"][user_id] = level
        return self._json(201, self._member_json(user_id, level))

    # https://docs.gitlab.com/api/members/#get-a-member-of-a-group-or-project
    @endpoint("GET", r"/projects/(?P<project>[^/]+)/members/(?P<user>\d+)")
    def get_member(self, call: Call) -> Response:
        project, user_id = self._project(call), int(call.args["user"])
        if user_id not in project["members"]:
            raise not_found("Member")
        return self._json(200, self._member_json(user_id, project["members"][user_id]))

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
        return self._page(call, [self._hook_json(h) for h in self.hooks.values() if h["project_id"] == project["id"]])

    # https://docs.gitlab.com/api/project_webhooks/#add-a-webhook-to-a-project
    @endpoint("POST", r"/projects/(?P<project>[^/]+)/hooks")
    def add_hook(self, call: Call) -> Response:
        project = self._project(call)
        self._required(call, "url")
        if not re.match(r"^https?://", call.params["url"]):
            raise Answer(422, {"message": {"url": ["is blocked: Only allowed schemes are http, https"]}})
        hook = {"id": next(self._ids), "url": call.params["url"], "name": call.params.get("name") or "",
                "description": call.params.get("description") or "", "project_id": project["id"],
                "push_events_branch_filter": "", "enable_ssl_verification":
                    _flag(call.params.get("enable_ssl_verification", True)),
                "alert_status": "executable", "disabled_until": None, "url_variables": [], "created_at": _now(),
                "custom_webhook_template": "", "custom_headers": [], "repository_update_events": False,
                "token": call.params.get("token") or ""}
        for event in HOOK_EVENTS:
            hook[event] = _flag(call.params.get(event, event == "push_events"))
        self.hooks[hook["id"]] = hook
        return self._json(201, self._hook_json(hook))

    # https://docs.gitlab.com/api/project_webhooks/#get-a-project-webhook
    @endpoint("GET", r"/projects/(?P<project>[^/]+)/hooks/(?P<hook>[^/]+)")
    def get_hook(self, call: Call) -> Response:
        return self._json(200, self._hook_json(self._hook(call)))

    # https://docs.gitlab.com/api/project_webhooks/#delete-project-webhook
    @endpoint("DELETE", r"/projects/(?P<project>[^/]+)/hooks/(?P<hook>[^/]+)")
    def delete_hook(self, call: Call) -> Response:
        del self.hooks[self._hook(call)["id"]]
        return Response(status=204)
