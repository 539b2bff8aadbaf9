"""A fake of Argo CD's API server over real HTTP on 127.0.0.1, for the Argo CD adapter's REST calls.

Argo CD keeps its applications as Application objects of its Kubernetes namespace; so does this fake:
it reads and writes them in a real API server (the testbed's), given a kube ApiClient. It answers the
two endpoints the adapter calls, as Argo CD's API server does, and plays the part of Argo CD's
application controller where a test asks it to (``finish_operation``) or where the API server itself
waits for the controller (a refresh). It does not resolve revisions (a sync keeps the branch name
where Argo CD would write the commit) and has no repositories or clusters behind it. Faults are
injected with ``fail_next``, as in every HTTP fake (``tests.fakes.http_server``); ``requests`` logs
what was asked.

    with FakeArgoCD(kube_api, "argocd", token="t0ken") as server:
        ArgoCDDelivery(..., url=server.url, token="t0ken")

Sources, cited above each endpoint: the API documentation
(https://argo-cd.readthedocs.io/en/stable/developer-guide/api-docs/), the API's swagger (served by
every Argo CD at /swagger.json; its source is server/application/application.proto), and the API
server's code where the pages are silent (server/application/application.go, util/argo/argo.go).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, NamedTuple
from urllib.parse import unquote

from kubernetes import client as kube
from kubernetes.client.exceptions import ApiException
from werkzeug.wrappers import Request, Response

from tests.fakes.http_server import FakeHTTPServer

GROUP, VERSION = "argoproj.io", "v1alpha1"
MERGE = "application/merge-patch+json"
REFRESH = "argocd.argoproj.io/refresh"
# grpc status codes of the errors, and the HTTP status grpc-gateway answers them with
# (https://github.com/grpc-ecosystem/grpc-gateway/blob/main/runtime/errors.go, HTTPStatusFromCode).
GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 502: 14, 503: 14, 504: 4}
FAILED_PRECONDITION = 9  # answered with 400
PERMISSION_DENIED = "permission denied"


class LoggedRequest(NamedTuple):
    method: str
    path: str
    query: str
    status: int
    body: dict[str, Any] | None


class _ArgoError(Exception):
    def __init__(self, status: int, message: str, code: int | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code if code is not None else GRPC.get(status, 2)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeArgoCD(FakeHTTPServer):
    """Argo CD's API server with one local account, whose token may get and sync every application but ``denied``.

    An injected fault without a body answers grpc-gateway's error object for its status.
    """

    thread_name = "fake-argocd"

    def __init__(self, kube_api: kube.ApiClient, namespace: str, token: str = "fake-argocd-token",
                 username: str = "portal"):
        super().__init__()
        self.namespace, self.token, self.username = namespace, token, username
        self.denied: set[str] = set()  # applications this account's RBAC does not cover
        self.requests: list[LoggedRequest] = []
        self._objects = kube.CustomObjectsApi(kube_api)

    # --- what a test drives --------------------------------------------------------------------------

    def finish_operation(self, name: str, phase: str = "Succeeded", revision: str = "",
                         message: str = "successfully synced (all tasks run)", images: tuple[str, ...] = ()) -> None:
        """What Argo CD's controller does when the requested operation ends: the state, the sync, the history.

        Fields as the controller writes them (setOperationState in controller/appcontroller.go, and
        persistRevisionHistory in controller/state.go, called by controller/sync.go):
        ``status.operationState``, then on success ``status.sync``,
        ``status.health``, a ``status.history`` entry and ``summary.images``; ``.operation`` is removed.
        """
        with self._lock:
            app = self._get(name)
            operation = app.get("operation")
            assert operation, f"application {name} has no operation to finish"
            spec, status = app["spec"], app.get("status") or {}
            revision = revision or operation["sync"].get("revision", "")
            started, finished = now(), now()
            patch_status: dict[str, Any] = {"operationState": {
                "operation": operation, "phase": phase, "message": message, "startedAt": started,
                "finishedAt": finished, "syncResult": {"revision": revision, "source": spec.get("source")}}}
            if phase == "Succeeded":
                history = list(status.get("history") or [])
                history.append({"id": max([h["id"] for h in history], default=-1) + 1, "revision": revision,
                                "deployStartedAt": started, "deployedAt": finished, "source": spec.get("source"),
                                "initiatedBy": operation.get("initiatedBy") or {}})
                patch_status.update({
                    "sync": {"status": "Synced", "revision": revision,
                             "comparedTo": {"source": spec.get("source"), "destination": spec.get("destination")}},
                    "health": {"status": "Healthy"}, "history": history[-10:], "reconciledAt": finished,
                    "summary": {"images": list(images)}})
            self._patch(name, {"operation": None, "status": patch_status})

    # --- HTTP ----------------------------------------------------------------------------------------

    def fault_body(self, status: int) -> dict[str, Any]:
        reason = HTTPStatus(status).phrase
        return {"error": reason, "code": GRPC.get(status, 2), "message": reason}

    def respond(self, request: Request) -> Response:
        try:
            self._authenticate(request)
            return self._dispatch(request)
        except _ArgoError as exc:
            return _json({"error": exc.message, "code": exc.code, "message": exc.message}, exc.status)

    def answered(self, request: Request, response: Any) -> None:
        body = request.get_json(silent=True) if request.method == "POST" else None
        with self._lock:
            self.requests.append(LoggedRequest(request.method, request.path, request.query_string.decode(),
                                               response.status_code, body))

    # https://argo-cd.readthedocs.io/en/stable/developer-guide/api-docs/#authorization : the token in
    # ``Authorization: Bearer`` (or the ``argocd.token`` cookie of the web UI). Without one, Argo CD's
    # interceptor answers Unauthenticated "no session information"; a wrong one "invalid session".
    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else request.cookies.get("argocd.token")
        if not token:
            raise _ArgoError(401, "no session information")
        if token != self.token:
            raise _ArgoError(401, "invalid session: token signature is invalid")

    def _dispatch(self, request: Request) -> Response:
        match = re.fullmatch(r"/api/v1/applications/([^/]+)(/sync)?", request.path)
        if match and request.method == "GET" and not match.group(2):
            return self._get_application(unquote(match.group(1)), request.args)
        if match and request.method == "POST" and match.group(2):
            return self._sync(unquote(match.group(1)), request.get_json(silent=True) or {})
        raise _ArgoError(404, "Not Found")  # grpc-gateway's answer to a route it does not know

    # GET /api/v1/applications/{name} (ApplicationService.Get; query ``refresh`` normal|hard, ``project``).
    # https://argo-cd.readthedocs.io/en/stable/developer-guide/api-docs/ ("How to Avoid 403 Errors for
    # Missing Applications"): without ``project``, an application that does not exist is 403 like one the
    # token may not see; with it, 404. With ``refresh``, the server sets the refresh annotation (util/argo
    # RefreshApp) and answers once the controller has refreshed the application and removed the annotation;
    # here the fake is that controller.
    def _get_application(self, name: str, args: Any) -> Response:
        self._check(name, args.get("project", ""))
        refresh = args.get("refresh")
        if refresh is not None:
            kind = "hard" if refresh == "hard" else "normal"
            self._patch(name, {"metadata": {"annotations": {REFRESH: kind}}})
            self._patch(name, {"metadata": {"annotations": {REFRESH: None}}, "status": {"reconciledAt": now()}})
        return _json(self._get(name))

    # POST /api/v1/applications/{name}/sync, body ApplicationSyncRequest (name, revision, prune, dryRun,
    # project, ...), answers the Application. ApplicationService.Sync and util/argo SetAppOperation:
    # refused (FailedPrecondition, HTTP 400) while the application is being deleted or another
    # operation is set; otherwise ``.operation`` gets the sync (the spec's sync options and retry, the
    # request's prune), initiated by the token's account, and the last operation's state is cleared.
    def _sync(self, name: str, body: dict[str, Any]) -> Response:
        app = self._check(name, body.get("project", ""))
        spec = app["spec"]
        project = spec.get("project") or "default"
        try:
            self._objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "appprojects", project)
        except ApiException as exc:
            if exc.status != 404:
                raise
            raise _ArgoError(400, f'app is not allowed in project "{project}", or the project does not exist')
        if app["metadata"].get("deletionTimestamp"):
            raise _ArgoError(400, "application is deleting", FAILED_PRECONDITION)
        policy, target = spec.get("syncPolicy") or {}, spec["source"].get("targetRevision") or "HEAD"
        revision = body.get("revision") or target
        if policy.get("automated") and revision != target:
            raise _ArgoError(400, f"Cannot sync to {revision}: auto-sync currently set to {target}",
                             FAILED_PRECONDITION)
        if app.get("operation"):
            raise _ArgoError(400, "another operation is already in progress", FAILED_PRECONDITION)
        sync: dict[str, Any] = {"source": spec["source"], "revision": revision}
        for field in ("prune", "dryRun"):
            if body.get(field):
                sync[field] = True
        if policy.get("syncOptions"):
            sync["syncOptions"] = policy["syncOptions"]
        operation: dict[str, Any] = {"sync": sync, "initiatedBy": {"username": self.username}}
        if policy.get("retry"):
            operation["retry"] = policy["retry"]
        patch: dict[str, Any] = {"metadata": {"resourceVersion": app["metadata"]["resourceVersion"]},
                                 "operation": operation}
        if (app.get("status") or {}).get("operationState"):
            patch["status"] = {"operationState": None}
        return _json(self._patch(name, patch))

    # getAppEnforceRBAC (server/application/application.go): what an account may not see, or what does
    # not exist, is "permission denied" unless the request names a project; with one, a missing
    # application is NotFound and one in another project is denied (as the API docs page says).
    def _check(self, name: str, project: str) -> dict[str, Any]:
        if name in self.denied:
            raise _ArgoError(403, PERMISSION_DENIED)
        try:
            app = self._get(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            if project:
                raise _ArgoError(404, f'applications.argoproj.io "{name}" not found') from None
            raise _ArgoError(403, PERMISSION_DENIED) from None
        if project and (app["spec"].get("project") or "default") != project:
            raise _ArgoError(403, PERMISSION_DENIED)
        return app

    def _get(self, name: str) -> dict[str, Any]:
        return self._objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "applications", name)

    def _patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._objects.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "applications", name,
                                                            patch, _content_type=MERGE)


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status, content_type="application/json")
