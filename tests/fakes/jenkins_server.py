"""A fake Jenkins over real HTTP on 127.0.0.1, for the Jenkins adapter's contract tests.

It answers the endpoints the adapter and python-jenkins call, as Jenkins core, the cloudbees-folder
and workflow-job plugins do, keeping items, the queue and builds in memory. Nothing runs by itself:
a test moves builds along (``start_build``, ``append_console``, ``finish_build``, ``cancel``,
``forget_queue_item``, or ``advance`` for one step of everything), injects faults with
``fail_next``, and reads what was asked in ``requests``.

    with FakeJenkins(user="portal", token="t0ken") as server:
        JenkinsCIServer(server.url, "portal", "t0ken", ...)

Sources: the remote access API (https://www.jenkins.io/doc/book/using/remote-access-api/), the
python-jenkins API (https://python-jenkins.readthedocs.io/en/latest/api.html), and Jenkins' own
code where the pages are silent, cited above each endpoint.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import secrets
import time
import xml.etree.ElementTree as ET
from http import HTTPStatus
from typing import Any, NamedTuple

from werkzeug.wrappers import Request, Response

from tests.fakes.http_server import FakeHTTPServer
from tests.fakes.jenkins_model import (
    CLASSES, FOLDER, RUN_CLASS, Item, QueueItem, Run, check_good_name, item_from_config, item_url,
    parameters_action, parse_tree, select_fields, walk,
)

VERSION = "2.462.3"
SESSION_COOKIE = "JSESSIONID.fake"


class LoggedRequest(NamedTuple):
    method: str
    path: str
    query: str
    status: int


class FakeJenkins(FakeHTTPServer):
    """Jenkins with one user who signs in with an API token (no crumb needed) or a password (crumb needed).

    An injected fault without a body answers the servlet container's error page for its status."""

    thread_name = "fake-jenkins"
    fault_text_type = "text/html;charset=utf-8"

    def __init__(self, user: str = "portal", token: str = "fake-api-token", password: str | None = None,
                 crumbs: bool = True, export_queue_id: bool = True):
        super().__init__()
        self.user, self.token, self.password = user, token, password
        self.crumbs = crumbs
        # Jenkins exports Run.queueId since 1.601; False plays an older one.
        self.export_queue_id = export_queue_id
        self.requests: list[LoggedRequest] = []
        self._secret = secrets.token_hex(16)
        self._root = Item(name="", parent=(), config="", tag="hudson", description="", parameters=[])
        self._queue: dict[int, QueueItem] = {}
        self._next_queue_id = 1

    # --- what a test drives --------------------------------------------------------------------------

    def start_build(self, queue_id: int | str) -> int:
        """An executor takes the waiting queue item: the build gets its number and starts running."""
        with self._lock:
            item = self._queue[int(queue_id)]
            assert not item.left, f"queue item {queue_id} has left the queue"
            job = item.job
            run = Run(number=job.next_number, queue_id=item.id, parameters=item.parameters, started=time.time())
            run.log += f"Started by user {self.user}\n".encode()
            job.builds[run.number] = run
            job.next_number += 1
            item.left, item.number = True, run.number
            return run.number

    def append_console(self, job: str, number: int, text: str) -> None:
        with self._lock:
            self._run(job, number).log += text.encode()

    def finish_build(self, job: str, number: int, result: str = "SUCCESS", duration_ms: int | None = None) -> None:
        """End a running build with ``result`` (SUCCESS, UNSTABLE, FAILURE, ABORTED, NOT_BUILT), as Jenkins logs it."""
        with self._lock:
            run = self._run(job, number)
            run.log += f"Finished: {result}\n".encode()
            run.building, run.result = False, result
            run.duration_ms = int((time.time() - run.started) * 1000) if duration_ms is None else duration_ms

    def cancel(self, queue_id: int | str) -> None:
        """Cancel a waiting queue item (POST /queue/cancelItem in Jenkins)."""
        with self._lock:
            item = self._queue[int(queue_id)]
            item.left, item.cancelled = True, True

    def forget_queue_item(self, queue_id: int | str) -> None:
        """What Jenkins does five minutes after an item left the queue: its URL answers 404."""
        with self._lock:
            del self._queue[int(queue_id)]

    def advance(self) -> None:
        """One step of everything: running builds finish with SUCCESS, then waiting items start."""
        with self._lock:
            for job in walk(self._root):
                for run in job.builds.values():
                    if run.building:
                        self.finish_build("/".join(job.path), run.number)
            for item in list(self._queue.values()):
                if not item.left:
                    self.start_build(item.id)

    def queue_ids(self, job: str) -> list[int]:
        with self._lock:
            return [i.id for i in self._queue.values() if "/".join(i.job.path) == job]

    def _run(self, job: str, number: int) -> Run:
        item = self._root.find(tuple(job.split("/")))
        assert item is not None and number in item.builds, f"no build {job} #{number}"
        return item.builds[number]

    # --- HTTP ----------------------------------------------------------------------------------------

    def fault_body(self, status: int) -> str:
        return _error_page(status, _reason(status))

    def respond(self, request: Request) -> Response:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        with self._lock:
            return self._dispatch(request)

    def answered(self, request: Request, response: Response) -> None:
        response.headers["X-Jenkins"] = VERSION
        with self._lock:
            self.requests.append(LoggedRequest(request.method, request.path, request.query_string.decode(),
                                               response.status_code))

    # https://www.jenkins.io/doc/book/system-administration/authenticating-scripted-clients/ : HTTP basic
    # auth with a user's API token or password; wrong credentials answer 401 (BasicHeaderProcessor),
    # none 403 when anonymous may not read. https://www.jenkins.io/doc/book/security/csrf-protection/ :
    # a POST needs the crumb of the caller's web session, except with an API token (since 2.96).
    def _authenticate(self, request: Request) -> Response | None:
        auth = request.authorization
        if auth is None:
            return Response(_error_page(403, "Authentication required"), 403, content_type="text/html;charset=utf-8")
        with_token = auth.username == self.user and auth.password == self.token
        with_password = self.password is not None and auth.username == self.user and auth.password == self.password
        if not (with_token or with_password):
            return Response(_error_page(401, f"Invalid password/token for user: {auth.username}"), 401,
                            {"WWW-Authenticate": 'Basic realm="Jenkins"'}, content_type="text/html;charset=utf-8")
        if request.method == "POST" and with_password and self.crumbs:
            session = request.cookies.get(SESSION_COOKIE)
            if not session or request.headers.get("Jenkins-Crumb") != self._crumb(session):
                return Response(_error_page(403, "No valid crumb was included in the request"), 403,
                                content_type="text/html;charset=utf-8")
        return None

    def _crumb(self, session: str) -> str:
        return hashlib.sha256(f"{self._secret}:{self.user}:{session}".encode()).hexdigest()

    def _dispatch(self, request: Request) -> Response:
        segments = [s for s in request.path.split("/") if s]
        path: list[str] = []
        while len(segments) >= 2 and segments[0] == "job":
            path.append(segments[1])
            segments = segments[2:]
        rest, method = "/".join(segments), request.method
        item = self._root.find(tuple(path))
        if item is None:
            return _not_found(request)
        if not path and rest == "crumbIssuer/api/json" and method == "GET":
            return self._crumb_issuer(request)
        if not path and (queued := re.fullmatch(r"queue/item/(\d+)/api/json", rest)) and method == "GET":
            return self._queue_json(request, int(queued.group(1)))
        if rest == "" and method == "GET":  # an item's page, where doDelete sends the client
            return Response(f"<html><head><title>{html.escape(item.name or 'Dashboard')} [Jenkins]</title></head>"
                            "<body></body></html>", content_type="text/html;charset=utf-8")
        if rest == "api/json" and method == "GET":
            return _json(request, self._item_json(item, shallow="tree" not in request.args))
        if rest == "createItem" and method == "POST" and (not path or item.tag == FOLDER):
            return self._create_item(request, item)
        if path and rest == "config.xml":
            return self._config_xml(request, item)
        if path and rest == "doDelete" and method == "POST":
            return self._delete(item)
        if path and rest == "buildWithParameters" and method == "POST" and item.tag != FOLDER:
            return self._build_with_parameters(request, item)
        run = re.fullmatch(r"(\d+)/(api/json|logText/progressiveText)", rest)
        if path and run and int(run.group(1)) in item.builds and method in ("GET", "POST"):
            build = item.builds[int(run.group(1))]
            if run.group(2) == "api/json":
                return _json(request, self._run_json(item, build))
            return _progressive_text(request, build)
        return _not_found(request)

    # https://www.jenkins.io/doc/book/security/csrf-protection/ : GET /crumbIssuer/api/json answers the
    # crumb and the header to send it in; 404 when CSRF protection is off (python-jenkins then sends none).
    def _crumb_issuer(self, request: Request) -> Response:
        if not self.crumbs:
            return _not_found(request)
        session = request.cookies.get(SESSION_COOKIE) or secrets.token_hex(8)
        response = _json(request, {"_class": "hudson.security.csrf.DefaultCrumbIssuer", "crumb": self._crumb(session),
                                   "crumbRequestField": "Jenkins-Crumb"})
        response.set_cookie(SESSION_COOKIE, session, httponly=True)
        return response

    # https://www.jenkins.io/doc/book/using/remote-access-api/ ("Create Job": POST config.xml to
    # createItem?name=, in a folder under its URL). ItemGroupMixIn.createTopLevelItem
    # (https://github.com/jenkinsci/jenkins/blob/master/core/src/main/java/hudson/model/ItemGroupMixIn.java)
    # answers 200 with no body; its refusals are hudson.model.Failure, rendered by error.jelly as 400
    # with the message in X-Error (core/src/main/resources/hudson/model/AbstractModelObject/error.jelly).
    # Jenkins quotes names with typographic quotes; a header carries ASCII ones here.
    def _create_item(self, request: Request, parent: Item) -> Response:
        content_type = request.headers.get("Content-Type")
        name = request.args.get("name")
        if content_type is None:
            return _failure("No Content-Type header set")
        if not content_type.startswith(("application/xml", "text/xml")):
            return _failure("No mode given")
        if name is None:
            return _failure("Query parameter 'name' is required")
        name = name.strip()
        refused = check_good_name(name)
        if refused:
            return _failure(refused)
        if name.lower() in parent.children:
            return _failure(f"A job already exists with the name '{name}'")
        try:
            parent.children[name.lower()] = item_from_config(name, parent.path, request.get_data(as_text=True))
        except ET.ParseError as exc:
            return Response(_error_page(500, f"Failed to persist config.xml: {exc}"), 500,
                            content_type="text/html;charset=utf-8")
        return Response(b"", 200)

    # https://www.jenkins.io/doc/book/using/remote-access-api/ ("Fetch/Update config.xml": GET it, or
    # POST a new one to the same URL).
    def _config_xml(self, request: Request, item: Item) -> Response:
        if request.method == "GET":
            return Response(item.config, content_type="application/xml;charset=utf-8")
        if request.method != "POST":
            return Response(_error_page(405, "Method Not Allowed"), 405, content_type="text/html;charset=utf-8")
        updated = item_from_config(item.name, item.parent, request.get_data(as_text=True))
        updated.children, updated.builds, updated.next_number = item.children, item.builds, item.next_number
        self._root.find(item.parent).children[item.name.lower()] = updated
        return Response(b"", 200)

    # https://www.jenkins.io/doc/book/using/remote-access-api/ ("Delete a job": POST doDelete).
    # AbstractItem.doDoDelete (core/src/main/java/hudson/model/AbstractItem.java) redirects (302) to the
    # parent's URL; Jenkins cancels the deleted job's waiting queue items.
    def _delete(self, item: Item) -> Response:
        del self._root.find(item.parent).children[item.name.lower()]
        for queued in self._queue.values():
            if queued.job.path[:len(item.path)] == item.path and not queued.left:
                queued.left = queued.cancelled = True
        return Response(b"", 302, {"Location": self.url + "/" + item_url(item.parent)})

    # https://www.jenkins.io/doc/book/using/remote-access-api/ ("Jobs with parameters",
    # buildWithParameters; "the Location header of the response points to the queue item", 201 since
    # JENKINS-23235). Parameters not given take their defaults; undefined ones are ignored
    # (SECURITY-170). A waiting item of the same job with the same parameters absorbs the new trigger
    # and its URL is answered (ParametersAction.shouldSchedule).
    def _build_with_parameters(self, request: Request, job: Item) -> Response:
        if not job.parameters:
            return _failure(f"{'/'.join(job.path)} is not parameterized")
        values = [(name, (request.values.get(name, default).strip() if trim else request.values.get(name, default)))
                  for name, default, trim in job.parameters]
        existing = next((q for q in self._queue.values() if q.job is job and not q.left and q.parameters == values),
                        None)
        if existing is None:
            existing = QueueItem(self._next_queue_id, job, values, time.time())
            self._queue[existing.id] = existing
            self._next_queue_id += 1
        return Response(b"", 201, {"Location": f"{self.url}/queue/item/{existing.id}/"})

    # https://www.jenkins.io/doc/book/using/remote-access-api/ (queue items) and Queue.java
    # (https://github.com/jenkinsci/jenkins/blob/master/core/src/main/java/hudson/model/Queue.java): a
    # waiting item has "why"; a LeftItem has "cancelled" and "executable" (the build, once it has one).
    # Left items are kept five minutes, then the URL answers 404 (forget_queue_item).
    def _queue_json(self, request: Request, queue_id: int) -> Response:
        item = self._queue.get(queue_id)
        if item is None:
            return _not_found(request)
        job = item.job
        body: dict[str, Any] = {
            "_class": "hudson.model.Queue$LeftItem" if item.left else "hudson.model.Queue$WaitingItem",
            "actions": [parameters_action(item.parameters)], "blocked": False, "buildable": not item.left,
            "id": item.id, "inQueueSince": int(item.since * 1000),
            "params": "".join(f"\n{n}={v}" for n, v in item.parameters), "stuck": False,
            "task": self._job_entry(job),
            "url": f"queue/item/{item.id}/", "why": None if item.left else "Waiting for next available executor",
        }
        if item.left:
            body["cancelled"] = item.cancelled
            body["executable"] = None if item.number is None else {
                "_class": RUN_CLASS, "number": item.number, "url": f"{self.url}/{item_url(job.path)}{item.number}/"}
        return _json(request, body)

    # https://www.jenkins.io/doc/book/using/remote-access-api/ ("api/json", with "tree" choosing the
    # fields; at depth 0 a job's builds carry only number and url).
    def _item_json(self, item: Item, shallow: bool = False) -> dict[str, Any]:
        url = f"{self.url}/{item_url(item.path)}"
        if not item.path:
            return {"_class": "hudson.model.Hudson", "mode": "NORMAL", "nodeDescription": "the built-in node",
                    "numExecutors": 2, "jobs": [self._job_entry(c) for c in item.children.values()],
                    "useCrumbs": self.crumbs, "useSecurity": True, "url": f"{self.url}/"}
        body: dict[str, Any] = {"_class": CLASSES.get(item.tag, item.tag), "description": item.description,
                                "displayName": item.name, "fullName": "/".join(item.path), "name": item.name,
                                "url": url}
        if item.tag == FOLDER:
            body["jobs"] = [self._job_entry(c) for c in item.children.values()]
            return body
        runs = [self._run_json(item, r) for r in sorted(item.builds.values(), key=lambda r: -r.number)]
        body.update({
            "buildable": True, "builds": [{k: r[k] for k in ("_class", "number", "url")} for r in runs] if shallow
            else runs, "color": "notbuilt" if not runs else "blue", "nextBuildNumber": item.next_number,
            "inQueue": any(q.job is item and not q.left for q in self._queue.values()),
            "property": [{"_class": "hudson.model.ParametersDefinitionProperty", "parameterDefinitions": [
                {"_class": "hudson.model.StringParameterDefinition", "name": n, "type": "StringParameterDefinition",
                 "defaultParameterValue": {"_class": "hudson.model.StringParameterValue", "name": n, "value": d}}
                for n, d, _ in item.parameters]}] if item.parameters else [],
        })
        return body

    def _job_entry(self, item: Item) -> dict[str, Any]:
        return {"_class": CLASSES.get(item.tag, item.tag), "name": item.name,
                "url": f"{self.url}/{item_url(item.path)}"}

    # Run's exported fields (core/src/main/java/hudson/model/Run.java): building, result (null while
    # running), duration (0 while running), queueId, actions with the ParametersAction.
    def _run_json(self, job: Item, run: Run) -> dict[str, Any]:
        body = {
            "_class": RUN_CLASS, "actions": [parameters_action(run.parameters), {
                "_class": "hudson.model.CauseAction",
                "causes": [{"_class": "hudson.model.Cause$UserIdCause", "userId": self.user, "userName": self.user,
                            "shortDescription": f"Started by user {self.user}"}]}],
            "building": run.building, "displayName": f"#{run.number}", "duration": run.duration_ms,
            "fullDisplayName": f"{' » '.join(job.path)} #{run.number}", "id": str(run.number),
            "inProgress": run.building, "number": run.number, "result": run.result,
            "timestamp": int(run.started * 1000), "url": f"{self.url}/{item_url(job.path)}{run.number}/",
        }
        if self.export_queue_id:
            body["queueId"] = run.queue_id
        return body


# Stapler's LargeText.doProgressText
# (https://github.com/jenkinsci/stapler/blob/master/core/src/main/java/org/kohsuke/stapler/framework/io/LargeText.java),
# served at <build>/logText/progressiveText: from byte ``start`` (from 0 when start is past the end),
# up to the last line end while the build runs, everything once it is over; X-Text-Size is where to
# continue and X-More-Data: true is sent while the build runs. (Jenkins also stops at 10,000 lines.)
def _progressive_text(request: Request, run: Run) -> Response:
    start = int(request.values.get("start", "0"))
    log = bytes(run.log)
    if start > len(log):
        start = 0
    end = len(log)
    if run.building:
        last_line_end = max(log.rfind(b"\n", start), log.rfind(b"\r", start))
        end = last_line_end + 1 if last_line_end >= 0 else start
    headers = {"X-Text-Size": str(end)}
    if run.building:
        headers["X-More-Data"] = "true"
    return Response(log[start:end], 200, headers, content_type="text/plain;charset=UTF-8")


def _json(request: Request, body: dict[str, Any]) -> Response:
    if "tree" in request.args:
        body = select_fields(body, parse_tree(request.args["tree"]))
    return Response(json.dumps(body), content_type="application/json;charset=utf-8")


def _failure(message: str) -> Response:
    page = f"<html><head><title>Jenkins</title></head><body><h1>Error</h1><p>{html.escape(message)}</p></body></html>"
    return Response(page, 400, {"X-Error": message}, content_type="text/html;charset=utf-8")


def _not_found(request: Request) -> Response:
    return Response(_error_page(404, "Not Found", request.path), 404, content_type="text/html;charset=utf-8")


def _error_page(status: int, message: str, uri: str = "") -> str:
    """The servlet container's (Jetty's) error page."""
    message = html.escape(message)
    return (f"<html><head><meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>"
            f"<title>Error {status} {message}</title></head><body><h2>HTTP ERROR {status} {message}</h2>"
            f"<table><tr><th>URI:</th><td>{html.escape(uri)}</td></tr><tr><th>STATUS:</th><td>{status}</td></tr>"
            f"</table></body></html>")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
