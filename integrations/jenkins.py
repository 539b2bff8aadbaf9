"""Jenkins: a folder per team, a Pipeline job per application, builds followed from the queue to their end.

python-jenkins makes the calls it has (job config, folder info, deletion, build information, and the
crumb Jenkins wants with POSTs made with a password); a requests Session makes the GETs it lacks (queue
items and build lists as JSON, the progressive console with its headers). Both share one TLS setting
and one retry policy: reads are retried after a connection error or a 5xx, POSTs only when the
connection could not be made.

Each job takes its Jenkinsfile from the application's repository (``CpsScmFlowDefinition`` with a
lightweight Git checkout), so the pipeline itself lives with the code. The portal's ownership marker
is a ``portal-owner: <owner>`` line of the job's description.

Results: ``UNSTABLE`` is FAILED. Jenkins marks a build unstable when tests or checks failed though
the steps ran, and the portal deploys only images from builds that passed everything; the console
says why. ``NOT_BUILT`` (nothing ran) is ABORTED.
"""

from __future__ import annotations

import dataclasses
import html
import re
import xml.etree.ElementTree as ET
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import jenkins
import requests

from integrations import http
from integrations.ci import Build, BuildState, ConsoleChunk, JobSpec
from integrations.errors import Conflict, IntegrationError, InvalidRequest, NotFound, Unavailable
from integrations.resources import ExternalResource

SYSTEM = "jenkins"
OWNER_PREFIX = "portal-owner: "
FOLDER_CLASS = "com.cloudbees.hudson.plugins.folder.Folder"
XML = {"Content-Type": "application/xml; charset=utf-8"}
RESULTS = {
    "SUCCESS": BuildState.SUCCEEDED, "UNSTABLE": BuildState.FAILED, "FAILURE": BuildState.FAILED,
    "ABORTED": BuildState.ABORTED, "NOT_BUILT": BuildState.ABORTED,
}
# The fields of a job's builds that tell which queue item each came from.
BUILDS_TREE = "builds[number,queueId,actions[parameters[name,value]]]"

_OWNER = re.compile(rf"^{OWNER_PREFIX}(.+)$", re.MULTILINE)
_QUEUE_ITEM = re.compile(r"/queue/item/(\d+)/?$")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # characters XML 1.0 cannot carry
_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class JenkinsCIServer:
    """The CIServer contract on Jenkins with the cloudbees-folder, workflow-job, workflow-cps and git plugins."""

    system = SYSTEM

    def __init__(self, url: str, user: str, token: str, credentials_id: str, timeout: float, retries: int,
                 verify: bool, ca_bundle: str):
        if not url:
            raise ValueError("the Jenkins URL is empty: set PORTAL_JENKINS_URL")
        self.url = url.rstrip("/") + "/"
        self.credentials_id = credentials_id
        self.timeout = timeout
        self._token = token
        self._verify = http.tls_verify(verify, ca_bundle)
        self._jenkins = jenkins.Jenkins(self.url, user or None, token if user else None, timeout=timeout)
        # python-jenkins has no TLS or retry settings of its own: its session gets ours.
        http.configure(self._jenkins._session, verify, ca_bundle, retries, SYSTEM)
        self._session = http.session(verify, ca_bundle, retries, auth=(user, token) if user else None,
                                     system=SYSTEM)

    @classmethod
    def from_settings(cls, settings: Any) -> "JenkinsCIServer":
        """The adapter the portal builds from its Settings (``PORTAL_CI=jenkins``)."""
        return cls(url=settings.jenkins_url, user=settings.jenkins_user, token=settings.jenkins_token,
                   credentials_id=settings.jenkins_credentials_id, timeout=settings.http_timeout,
                   retries=settings.http_retries, verify=settings.tls_verify, ca_bundle=settings.ca_bundle)

    def close(self) -> None:
        for session in (self._jenkins._session, self._session):
            session.close()

    # --- jobs ------------------------------------------------------------------------------------

    def find_job(self, path: str) -> ExternalResource | None:
        """The job at ``folder/name`` with the portal's ownership marker (None when unmarked), or None."""
        try:
            config = self._call(self._jenkins.get_job_config, _job_path(path))
        except NotFound:
            return None
        return self._resource(path, config)

    def create_job(self, spec: JobSpec) -> ExternalResource:
        """Create the application's Pipeline job in its team's folder, creating the folder or adopting it.

        Conflict when something already has the job's name; the caller decides whether to adopt it
        by its ownership marker (``find_job``).
        """
        config = job_config(spec, spec.credentials_id or self.credentials_id)
        self._ensure_folder(spec.folder)
        self._post(_item_url(spec.folder) + "createItem", params={"name": spec.name}, data=config, headers=XML)
        return self._resource(spec.path, config.decode())

    def delete_job(self, path: str) -> None:
        """Delete the job and its builds; NotFound when it is gone. The team's folder stays."""
        self._call(self._jenkins.delete_job, _job_path(path))

    def _ensure_folder(self, folder: str) -> None:
        try:
            info = self._call(self._jenkins.get_job_info, folder)
        except NotFound:
            try:
                self._post("createItem", params={"name": folder}, data=folder_config(folder), headers=XML)
            except Conflict:
                pass  # another worker created it a moment ago: adopt it like any existing folder
            return
        if info.get("_class") != FOLDER_CLASS:
            raise Conflict(SYSTEM, f"{folder} exists and is a {info.get('_class')}, not a folder")

    def _resource(self, path: str, config: str) -> ExternalResource:
        try:
            root = ET.fromstring(config)
        except ET.ParseError as exc:
            raise IntegrationError(SYSTEM, f"config.xml of {path} is not XML: {exc}") from exc
        marker = _OWNER.search(root.findtext("description") or "")
        scm, remote = "definition/scm/", "definition/scm/userRemoteConfigs/hudson.plugins.git.UserRemoteConfig/"
        parameters = root.iter("hudson.model.StringParameterDefinition")
        found = {
            "class": root.tag, "repository_url": root.findtext(remote + "url"),
            "credentials_id": root.findtext(remote + "credentialsId"),
            "branch": (root.findtext(scm + "branches/hudson.plugins.git.BranchSpec/name") or "").removeprefix("*/"),
            "script_path": root.findtext("definition/scriptPath"),
            "parameters": ",".join(p.findtext("name") or "" for p in parameters),
        }
        return ExternalResource(system=SYSTEM, kind="job", external_id=path, name=path,
                                url=self.url + _item_url(path), owner=marker.group(1).strip() if marker else None,
                                attributes={k: v for k, v in found.items() if v})

    # --- builds ----------------------------------------------------------------------------------

    def trigger_build(self, path: str, parameters: dict[str, str]) -> Build:
        """Queue a build; Jenkins fills parameters not given with their defaults and ignores unknown ones.

        Jenkins merges a trigger into a waiting queue item of the same job with the same parameters,
        so two such triggers in the quiet period give one build and the same ``queue_id``.
        """
        response = self._post(_item_url(_job_path(path)) + "buildWithParameters", data=dict(parameters))
        location = response.headers.get("Location", "")
        found = _QUEUE_ITEM.search(location)
        if found is None:
            raise IntegrationError(SYSTEM, f"Jenkins answered a build of {path} without a queue item "
                                           f"(Location: {location!r})", status=response.status_code)
        return Build(job=path, number=None, state=BuildState.QUEUED, queue_id=found.group(1),
                     parameters=dict(parameters))

    def get_build(self, build: Build) -> Build:
        """The current state of a build, following a queued one to its number.

        Jenkins forgets a queue item about five minutes after it left the queue; the build it became
        is then found among the job's builds by its ``queueId`` (or, on a Jenkins that does not
        export it, by its parameters, the newest first).
        """
        number = build.number
        if number is None:
            item = self._queue_item(build.queue_id)
            if item is None:
                number = self._started_from(build)
            elif item.get("cancelled"):
                return dataclasses.replace(build, state=BuildState.ABORTED)
            elif not (item.get("executable") or {}).get("number"):
                return dataclasses.replace(build, state=BuildState.QUEUED)  # waiting, or on its way to an executor
            else:
                number = int(item["executable"]["number"])
        info = self._call(self._jenkins.get_build_info, _job_path(build.job), number)
        return _build(build, info)

    def console(self, path: str, number: int, start: int = 0) -> ConsoleChunk:
        """The console from ``start``; while the build runs Jenkins sends whole lines only.

        Offsets are positions in Jenkins' log file, hidden console notes included, so go on only
        from 0 or a ``next_start`` Jenkins answered.
        """
        if start < 0:
            raise InvalidRequest(SYSTEM, f"start must not be negative, not {start}")
        response = self._get(f"{_item_url(_job_path(path))}{int(number)}/logText/progressiveText", start=start)
        return ConsoleChunk(text=response.content.decode("utf-8", errors="replace"),
                            next_start=int(response.headers.get("X-Text-Size", start + len(response.content))),
                            more=response.headers.get("X-More-Data") == "true")

    def _queue_item(self, queue_id: str) -> dict[str, Any] | None:
        if not queue_id.isdigit():
            raise InvalidRequest(SYSTEM, f"a queue item id is a number, not {queue_id!r}")
        try:
            return self._get_json(f"queue/item/{queue_id}/api/json")
        except NotFound:
            return None

    def _started_from(self, build: Build) -> int:
        runs = self._get_json(_item_url(_job_path(build.job)) + "api/json", tree=BUILDS_TREE).get("builds") or []
        for run in runs:  # Jenkins lists the newest first
            if "queueId" in run:
                if str(run["queueId"]) == build.queue_id:
                    return int(run["number"])
            elif build.parameters and _parameters(run).items() >= build.parameters.items():
                return int(run["number"])
        raise NotFound(SYSTEM, f"queue item {build.queue_id} of {build.job} is gone and no build came from it",
                       status=404)

    # --- HTTP and errors -------------------------------------------------------------------------

    def _post(self, path: str, **kwargs: Any) -> requests.Response:
        return self._call(self._jenkins.jenkins_request, requests.Request("POST", self.url + path, **kwargs))

    def _get(self, path: str, **params: Any) -> requests.Response:
        try:
            response = self._session.get(self.url + path, params=params, timeout=self.timeout, verify=self._verify)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise self._error(exc) from exc
        return response

    def _get_json(self, path: str, **params: Any) -> dict[str, Any]:
        response = self._get(path, **params)
        try:
            return response.json()
        except ValueError as exc:
            raise IntegrationError(SYSTEM, f"GET {path} answered something that is not JSON",
                                   status=response.status_code) from exc

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except (jenkins.JenkinsException, requests.RequestException) as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> IntegrationError:
        """Our error for a python-jenkins or requests one, with Jenkins' own message.

        python-jenkins raises its exceptions while handling the requests one, so the response
        (status, headers, body) is found along ``__context__`` even where its message lost it.
        """
        chain = list(_chain(exc))
        for e in chain:
            if isinstance(e, requests.HTTPError) and e.response is not None:
                return self._from_response(e.response)
        request = next((e.request for e in chain if isinstance(e, requests.RequestException) and e.request), None)
        where = f" ({request.method} {urlsplit(request.url).path})" if request is not None else ""
        if any(isinstance(e, (requests.RequestException, jenkins.TimeoutException)) for e in chain):
            return Unavailable(SYSTEM, http.scrub(f"no answer from {self.url}: {exc}{where}", self._token))
        return IntegrationError(SYSTEM, http.scrub(f"{exc}{where}", self._token))

    def _from_response(self, response: requests.Response) -> IntegrationError:
        status, request = response.status_code, response.request
        message = http.scrub(f"{_jenkins_message(response)} ({request.method} {urlsplit(request.url).path}, "
                             f"HTTP {status})", self._token)
        if status == 400 and "already exists" in message.lower():  # how Jenkins refuses a name that is taken
            return Conflict(SYSTEM, message, status)
        return http.error_for_status(SYSTEM, status, message, http.retry_after(response.headers))


# --- config.xml ----------------------------------------------------------------------------------

def job_config(spec: JobSpec, credentials_id: str) -> bytes:
    """config.xml of an application's Pipeline job: parameters, and the Jenkinsfile from its repository."""
    for value in (spec.folder, spec.name, spec.repository_url, spec.owner, credentials_id, spec.branch,
                  spec.script_path, *spec.parameters):
        if _NOT_XML.search(value):
            raise InvalidRequest(SYSTEM, f"{value!r} holds characters that config.xml cannot carry")
    if len(spec.owner.splitlines()) != 1 or not spec.owner.strip():
        raise InvalidRequest(SYSTEM, f"the owner marker must be one non-empty line, not {spec.owner!r}")
    root = ET.Element("flow-definition", plugin="workflow-job")  # XStream's name for WorkflowJob
    _add(root, "description", f"Pipeline of {spec.path}, managed by the developer portal.\n{OWNER_PREFIX}{spec.owner}")
    _add(root, "keepDependencies", "false")
    definitions = _add(_add(_add(root, "properties"), "hudson.model.ParametersDefinitionProperty"),
                       "parameterDefinitions")
    for name in spec.parameters:
        parameter = _add(definitions, "hudson.model.StringParameterDefinition")
        for tag, text in (("name", name), ("defaultValue", ""), ("trim", "true")):
            _add(parameter, tag, text)
    definition = _add(root, "definition", **{"class": "org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition",
                                             "plugin": "workflow-cps"})
    scm = _add(definition, "scm", **{"class": "hudson.plugins.git.GitSCM", "plugin": "git"})
    _add(scm, "configVersion", "2")
    remote = _add(_add(scm, "userRemoteConfigs"), "hudson.plugins.git.UserRemoteConfig")
    _add(remote, "url", spec.repository_url)
    if credentials_id:
        _add(remote, "credentialsId", credentials_id)
    _add(_add(_add(scm, "branches"), "hudson.plugins.git.BranchSpec"), "name", f"*/{spec.branch}")
    _add(scm, "extensions")
    _add(definition, "scriptPath", spec.script_path)
    _add(definition, "lightweight", "true")  # read only the Jenkinsfile, not a whole checkout, on the controller
    _add(root, "triggers")
    _add(root, "disabled", "false")
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def folder_config(team: str) -> bytes:
    """config.xml of a team's folder; the folder plugin fills in views, icon and health metrics."""
    root = ET.Element(FOLDER_CLASS, plugin="cloudbees-folder")
    _add(root, "description", f"Jobs of team {team}, created by the developer portal.")
    _add(root, "properties")
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def _add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = text
    return element


# --- small pieces ----------------------------------------------------------------------------------

def _job_path(path: str) -> str:
    parts = path.split("/")
    if len(parts) != 2 or not all(parts):
        raise InvalidRequest(SYSTEM, f"a job path is folder/name, not {path!r}")
    return path


def _item_url(path: str) -> str:
    return "".join(f"job/{quote(part, safe='')}/" for part in path.split("/"))


def _build(build: Build, info: dict[str, Any]) -> Build:
    running = bool(info.get("building")) or info.get("result") is None  # no result until a Pipeline ends
    state = BuildState.RUNNING if running else RESULTS.get(info["result"], BuildState.FAILED)
    return Build(job=build.job, number=int(info["number"]), state=state, url=info.get("url") or "",
                 duration_ms=None if running else int(info.get("duration") or 0),
                 queue_id=build.queue_id or str(info.get("queueId", "")),
                 parameters=_parameters(info) or dict(build.parameters))


def _parameters(run: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: "" if p.get("value") is None else str(p["value"])
            for action in run.get("actions") or () if action for p in action.get("parameters") or ()}


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _jenkins_message(response: requests.Response) -> str:
    """What Jenkins said: its X-Error header, the permission it reported missing, or its error page's title."""
    if response.headers.get("X-Error"):
        return response.headers["X-Error"]
    if response.headers.get("X-Required-Permission"):
        who = response.headers.get("X-You-Are-Authenticated-As", "the portal's user")
        return f"{who} is missing the {response.headers['X-Required-Permission']} permission"
    text = response.text
    if "html" in response.headers.get("Content-Type", ""):
        title = _TITLE.search(text)
        text = html.unescape(title.group(1) if title else re.sub(r"<[^>]*>", " ", text))
    return " ".join(text.split())[:300] or f"{response.status_code} {response.reason}"
