"""The repository endpoints of the fake GitLab: branches, commits with actions, files, protected branches.

A mixin of ``tests.fakes.gitlab_server.FakeGitLab``, whose state (projects, commits, the bot user, the
initial default branch protection) it reads and changes; split from it to keep each module one API area.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
from typing import Any

from werkzeug.wrappers import Response

from tests.fakes.gitlab_api import (
    Answer, Call, bad_request, endpoint, json_response, not_found, now, paginated, required,
)

LEVELS = {0: "No one", 30: "Developers + Maintainers", 40: "Maintainers", 60: "Admins"}


class RepositoryEndpoints:
    """The endpoints of a project's repository. The host class provides ``_project(call)`` (the project the URL
    names, or 404), ``_full_path(project)`` and the attributes below."""

    url: str
    bot: dict[str, Any]
    commits: dict[str, dict[str, Any]]
    protection: tuple[int, int] | None
    _ids: itertools.count

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
        return json_response(200, {
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
        return paginated(call, history)

    # https://docs.gitlab.com/api/commits/#create-a-commit-with-multiple-files-and-actions
    @endpoint("POST", r"/projects/(?P<project>[^/]+)/repository/commits")
    def create_commit(self, call: Call) -> Response:
        project = self._project(call)
        required(call, "branch", "commit_message", "actions")
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
                             "parent_ids": [parent] if parent else [], "created_at": now(),
                             "author_name": call.params.get("author_name") or self.bot["name"],
                             "author_email": call.params.get("author_email") or "portal-bot@example.invalid"}
        heads[branch] = sha
        first_push = not parent and branch == project["default_branch"]
        if first_push and self.protection and branch not in project["protected"]:
            project["protected"][branch] = {"id": next(self._ids), "push": self.protection[0],
                                            "merge": self.protection[1]}
        return json_response(201, {**self._commit_json(project, self.commits[sha]), "status": None,
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
        required(call, "ref")
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
        return json_response(200, self._protected_json(name, project["protected"][name]))

    # https://docs.gitlab.com/api/protected_branches/#protect-repository-branches
    @endpoint("POST", r"/projects/(?P<project>[^/]+)/protected_branches")
    def protect_branch(self, call: Call) -> Response:
        project = self._project(call)
        required(call, "name")
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
        return json_response(201, self._protected_json(name, rule))

    # https://docs.gitlab.com/api/protected_branches/#unprotect-repository-branches
    @endpoint("DELETE", r"/projects/(?P<project>[^/]+)/protected_branches/(?P<name>[^/]+)")
    def unprotect_branch(self, call: Call) -> Response:
        project = self._project(call)
        if project["protected"].pop(call.args["name"], None) is None:
            raise Answer(404, {"message": "404 Not found"})
        return Response(status=204)
