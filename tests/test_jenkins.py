"""The Jenkins adapter: contract tests against the HTTP fake, or unchanged against a real Jenkins.

Set PORTAL_TEST_JENKINS_URL, PORTAL_TEST_JENKINS_USER and PORTAL_TEST_JENKINS_TOKEN (an API token of
a user who may read, create, configure, delete and build jobs, on a Jenkins with the cloudbees-folder,
workflow-job, workflow-cps and git plugins) to run the first part against that Jenkins. Each test
works in a folder of its own, deleted afterwards. There the builds fail at checkout (their
repository does not exist), so the shared tests wait for any end.

The second part drives simulated builds and injects faults, which only the fake can do: those
tests start a fake of their own whatever the environment says.
"""

from __future__ import annotations

import inspect
import os
import re
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, Callable
from urllib.parse import quote

import pytest
import requests

from integrations.ci import Build, BuildState, CIServer, ConsoleChunk, JobSpec
from integrations.errors import (
    AuthFailed, Conflict, IntegrationError, InvalidRequest, NotFound, RateLimited, Unavailable,
)
from integrations.jenkins import FOLDER_CLASS, JenkinsCIServer, job_config
from portal.config import Settings
from tests.fakes.jenkins_server import FakeJenkins

ENV = ("PORTAL_TEST_JENKINS_URL", "PORTAL_TEST_JENKINS_USER", "PORTAL_TEST_JENKINS_TOKEN")
REAL = all(os.environ.get(name) for name in ENV)
USER, TOKEN = "portal", "fake-api-token-5f2c9e"
OWNER = "app-7f3a"
REPOSITORY = "https://gitlab.example.com/dev/shop-api.git"
PARAMETERS = {"COMMIT": "0f3c2a1", "IMAGE_TAG": "1.4.0"}
ENDED = (BuildState.SUCCEEDED, BuildState.FAILED, BuildState.ABORTED)
XML = {"Content-Type": "application/xml"}


@dataclass
class Target:
    """The Jenkins the shared tests talk to; ``tick`` lets time pass there."""

    url: str
    user: str
    token: str
    server: FakeJenkins | None = None

    def tick(self) -> None:
        if self.server is not None:
            self.server.advance()
        else:
            time.sleep(1)


class Raw:
    """Plain HTTP to the same Jenkins, to set up and inspect what the adapter is not asked to."""

    def __init__(self, target: Target):
        self.url = target.url.rstrip("/") + "/"
        self.session = requests.Session()
        self.session.auth = (target.user, target.token)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.url + path, params=params, timeout=30)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url + path, timeout=30, **kwargs)


@pytest.fixture
def target():
    if not REAL and any(os.environ.get(name) for name in ENV):
        pytest.fail(f"set all of {', '.join(ENV)} to test a real Jenkins, or none of them to test the fake")
    if REAL:
        yield Target(*(os.environ[name] for name in ENV))
        return
    with FakeJenkins(user=USER, token=TOKEN) as server:
        yield Target(server.url, USER, TOKEN, server)


@pytest.fixture
def connect():
    """``connect(url, user, token, **settings)``: an adapter, closed after the test."""
    made: list[JenkinsCIServer] = []

    def make(url: str, user: str, token: str, **overrides: Any) -> JenkinsCIServer:
        options = dict(credentials_id="gitlab-checkout", timeout=30.0, retries=2, verify=True, ca_bundle="")
        adapter = JenkinsCIServer(url, user, token, **{**options, **overrides})
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def ci(target, connect):
    return connect(target.url, target.user, target.token)


@pytest.fixture
def raw(target):
    raw = Raw(target)
    yield raw
    raw.session.close()


@pytest.fixture
def folder(raw):
    """A team folder name of the test's own; whatever has that name at the root is deleted afterwards."""
    name = f"portal-test-{uuid.uuid4().hex[:8]}"
    yield name
    raw.post(f"job/{name}/doDelete")


def spec(folder: str, name: str = "shop-api", **changes: Any) -> JobSpec:
    return JobSpec(**{"folder": folder, "name": name, "repository_url": REPOSITORY, "owner": OWNER, **changes})


def config_xml(raw: Raw, path: str) -> requests.Response:
    response = raw.get("".join(f"job/{quote(part, safe='')}/" for part in path.split("/")) + "config.xml")
    assert response.status_code == 200, response.text
    return response


def config_of(raw: Raw, path: str) -> ET.Element:
    return ET.fromstring(config_xml(raw, path).content)


def wait_for(poll: Callable[[], Build], done: Callable[[Build], bool], target: Target) -> Build:
    deadline = time.monotonic() + (300 if REAL else 10)
    while True:
        build = poll()
        if done(build):
            return build
        assert time.monotonic() < deadline, f"still {build}"
        target.tick()


# --- the contract ----------------------------------------------------------------------------------

def test_the_adapter_implements_the_protocol_with_the_same_signatures():
    adapter = JenkinsCIServer("http://jenkins.invalid", USER, TOKEN, "gitlab-checkout", 1.0, 0, True, "")
    assert isinstance(adapter, CIServer) and adapter.system == "jenkins"
    methods = [n for n, v in vars(CIServer).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        assert str(inspect.signature(getattr(JenkinsCIServer, name))) == str(inspect.signature(getattr(CIServer, name)))
    adapter.close()


def test_the_adapter_is_built_from_the_settings(target):
    settings = Settings().replace({"jenkins_url": target.url, "jenkins_user": target.user,
                                   "jenkins_token": target.token, "jenkins_credentials_id": "team-checkout",
                                   "http_timeout": 7.5})
    adapter = JenkinsCIServer.from_settings(settings)
    assert (adapter.url, adapter.credentials_id, adapter.timeout) == (
        target.url.rstrip("/") + "/", "team-checkout", 7.5)
    assert adapter.find_job(f"portal-test-{uuid.uuid4().hex[:8]}/nothing") is None  # it reaches Jenkins, signed in
    adapter.close()
    with pytest.raises(ValueError, match="PORTAL_JENKINS_URL"):
        JenkinsCIServer.from_settings(Settings())


# --- jobs --------------------------------------------------------------------------------------------

def test_a_job_is_created_in_a_new_folder_with_its_pipeline_from_the_repository(target, ci, raw, folder):
    created = ci.create_job(spec(folder, branch="develop", script_path="ci/Jenkinsfile"))
    path = f"{folder}/shop-api"
    assert (created.system, created.kind, created.external_id, created.name, created.owner) == (
        "jenkins", "job", path, path, OWNER)
    assert created.url == f"{target.url.rstrip('/')}/job/{folder}/job/shop-api/"
    assert ci.find_job(path) == created
    assert raw.get(f"job/{folder}/api/json").json()["_class"] == FOLDER_CLASS

    config = config_of(raw, path)
    assert config.tag == "flow-definition"  # XStream's name for org.jenkinsci.plugins.workflow.job.WorkflowJob
    assert f"portal-owner: {OWNER}" in config.findtext("description").splitlines()
    definition = config.find("definition")
    assert definition.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition"
    scm = definition.find("scm")
    assert scm.get("class") == "hudson.plugins.git.GitSCM"
    remote = scm.find("userRemoteConfigs/hudson.plugins.git.UserRemoteConfig")
    assert (remote.findtext("url"), remote.findtext("credentialsId")) == (REPOSITORY, "gitlab-checkout")
    assert scm.findtext("branches/hudson.plugins.git.BranchSpec/name") == "*/develop"
    assert (definition.findtext("scriptPath"), definition.findtext("lightweight")) == ("ci/Jenkinsfile", "true")
    parameters = config.findall("properties/hudson.model.ParametersDefinitionProperty/parameterDefinitions/"
                                "hudson.model.StringParameterDefinition")
    assert [p.findtext("name") for p in parameters] == ["COMMIT", "IMAGE_TAG"]
    assert created.attributes["repository_url"] == REPOSITORY and created.attributes["branch"] == "develop"


def test_the_specs_credentials_id_wins_over_the_adapters(ci, raw, folder):
    ci.create_job(spec(folder, credentials_id="dev-checkout"))
    remote = config_of(raw, f"{folder}/shop-api").find(
        "definition/scm/userRemoteConfigs/hudson.plugins.git.UserRemoteConfig")
    assert remote.findtext("credentialsId") == "dev-checkout"


def test_an_existing_folder_is_adopted_as_it_is(ci, raw, folder):
    by_hand = (f"<{FOLDER_CLASS}><description>Made by hand</description><properties/></{FOLDER_CLASS}>").encode()
    assert raw.post("createItem", params={"name": folder}, data=by_hand, headers=XML).status_code == 200
    ci.create_job(spec(folder))
    ci.create_job(spec(folder, "shop-web"))
    assert raw.get(f"job/{folder}/api/json").json()["description"] == "Made by hand"
    assert ci.find_job(f"{folder}/shop-api").owner == ci.find_job(f"{folder}/shop-web").owner == OWNER


def test_creating_a_job_that_exists_is_a_conflict_and_changes_nothing(ci, folder):
    ci.create_job(spec(folder))
    with pytest.raises(Conflict) as info:
        ci.create_job(spec(folder, repository_url="https://elsewhere.example.com/x.git", owner="someone-else"))
    assert "already exists" in info.value.message and info.value.status == 400
    assert info.value.__cause__ is not None
    found = ci.find_job(f"{folder}/shop-api")
    assert found.owner == OWNER and found.attributes["repository_url"] == REPOSITORY


def test_a_folder_name_taken_by_a_job_is_a_conflict(ci, raw, folder):
    config = job_config(spec("elsewhere", owner="nobody"), "")
    assert raw.post("createItem", params={"name": folder}, data=config, headers=XML).status_code == 200
    with pytest.raises(Conflict, match="not a folder"):
        ci.create_job(spec(folder))


def test_a_name_jenkins_refuses_is_an_invalid_request_with_its_message(ci, folder):
    with pytest.raises(InvalidRequest) as info:
        ci.create_job(spec(folder, "shop:api"))
    assert "unsafe character" in info.value.message and info.value.status == 400


def test_unknown_jobs_are_none_and_acting_on_them_is_not_found(ci, folder):
    assert ci.find_job(f"{folder}/nothing") is None  # no such folder
    ci.create_job(spec(folder))
    assert ci.find_job(f"{folder}/nothing") is None  # no such job in the folder
    for call in (lambda: ci.delete_job(f"{folder}/nothing"), lambda: ci.trigger_build(f"{folder}/nothing", {}),
                 lambda: ci.console(f"{folder}/shop-api", 99)):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(InvalidRequest):
        ci.find_job("no-folder")


def test_a_deleted_job_is_gone_and_deleting_it_again_is_not_found(ci, folder):
    ci.create_job(spec(folder))
    ci.delete_job(f"{folder}/shop-api")
    assert ci.find_job(f"{folder}/shop-api") is None
    with pytest.raises(NotFound):
        ci.delete_job(f"{folder}/shop-api")
    assert ci.create_job(spec(folder)).owner == OWNER  # the folder stayed and takes the name again


def test_a_job_the_portal_did_not_create_has_no_owner(ci, raw, folder):
    ci.create_job(spec(folder))
    config = job_config(spec(folder, "by-hand"), "").replace(f"portal-owner: {OWNER}".encode(), b"Made by hand")
    assert raw.post(f"job/{folder}/createItem", params={"name": "by-hand"}, data=config, headers=XML).status_code == 200
    found = ci.find_job(f"{folder}/by-hand")
    assert found is not None and found.owner is None and found.attributes["repository_url"] == REPOSITORY


def test_xml_special_characters_are_escaped_and_read_back(ci, raw, folder):
    name = "shop \"api\" 'v2'"  # Jenkins refuses <, > and & in names, not quotes or spaces
    repository = "https://gitlab.example.com/dev/shop.git?a=1&b=<2>\"'"
    owner = "app-<7f3a>&\"'"
    created = ci.create_job(spec(folder, name, repository_url=repository, owner=owner, branch="fix/a&b"))
    path = f"{folder}/{name}"
    text = config_xml(raw, path).text
    assert "a=1&amp;b=&lt;2&gt;" in text and "app-&lt;7f3a&gt;&amp;" in text
    config = config_of(raw, path)
    assert config.findtext("definition/scm/userRemoteConfigs/hudson.plugins.git.UserRemoteConfig/url") == repository
    assert config.findtext("definition/scm/branches/hudson.plugins.git.BranchSpec/name") == "*/fix/a&b"
    assert f"Pipeline of {path}," in config.findtext("description")
    assert created == ci.find_job(path) and created.owner == owner and created.name == path
    ci.delete_job(path)
    assert ci.find_job(path) is None


# --- builds ------------------------------------------------------------------------------------------

def test_a_build_goes_from_the_queue_to_its_end_and_its_console_reads_on(target, ci, folder):
    ci.create_job(spec(folder))
    path = f"{folder}/shop-api"
    queued = ci.trigger_build(path, PARAMETERS)
    assert queued.state is BuildState.QUEUED and queued.number is None and queued.queue_id.isdigit()
    assert queued.parameters == PARAMETERS and queued.job == path

    started = wait_for(lambda: ci.get_build(queued), lambda b: b.number is not None, target)
    assert started.number == 1 and started.queue_id == queued.queue_id and started.parameters == PARAMETERS
    assert started.url.endswith(f"/job/{folder}/job/shop-api/1/")
    ended = wait_for(lambda: ci.get_build(started), lambda b: b.state in ENDED, target)
    assert ended.number == 1 and ended.duration_ms is not None and ended.duration_ms >= 0
    assert ci.get_build(ended) == ended

    # Offsets are Jenkins' positions in its log file, hidden console notes included: only the
    # ``next_start`` it answered is a place to go on from (the fake-only tests read in chunks).
    whole = ci.console(path, 1)
    assert not whole.more and re.search(r"Finished: (SUCCESS|FAILURE|UNSTABLE|ABORTED)\n$", whole.text)
    assert whole.next_start >= len(whole.text.encode())
    assert ci.console(path, 1, start=whole.next_start) == ConsoleChunk("", whole.next_start, False)
    with pytest.raises(InvalidRequest):
        ci.console(path, 1, start=-1)


def test_wrong_credentials_are_auth_failed_and_the_token_is_never_shown(target, connect, folder):
    wrong = "wrong-token-9d1e4b"
    adapter = connect(target.url, target.user, wrong)
    with pytest.raises(AuthFailed) as info:
        adapter.find_job(f"{folder}/shop-api")
    assert info.value.status == 401 and "401" in info.value.message
    for exc in (info.value, info.value.__cause__):
        assert wrong not in str(exc) and wrong not in repr(exc.args)


# --- fake only: simulated builds ------------------------------------------------------------------

@pytest.fixture
def fake():
    with FakeJenkins(user=USER, token=TOKEN) as server:
        yield server


@pytest.fixture
def fake_ci(fake, connect):
    """An adapter on the fake that does not retry, so that each injected fault shows."""
    adapter = connect(fake.url, USER, TOKEN, retries=0, timeout=5.0)
    adapter.create_job(spec("dev"))
    return adapter


JOB = "dev/shop-api"


def test_the_console_is_read_in_chunks_with_byte_offsets_while_the_build_runs(fake, fake_ci):
    queued = fake_ci.trigger_build(JOB, PARAMETERS)
    assert fake_ci.get_build(queued).state is BuildState.QUEUED
    number = fake.start_build(queued.queue_id)
    running = fake_ci.get_build(queued)
    assert (running.state, running.number, running.duration_ms) == (BuildState.RUNNING, number, None)

    first = fake_ci.console(JOB, number)
    assert (first.text, first.more, first.next_start) == ("Started by user portal\n", True, 23)
    fake.append_console(JOB, number, "Step 1\nStep 2 is half")
    second = fake_ci.console(JOB, number, first.next_start)
    assert (second.text, second.more, second.next_start) == ("Step 1\n", True, 30)  # whole lines only
    fake.append_console(JOB, number, " done, café\n")
    third = fake_ci.console(JOB, number, second.next_start)
    assert third.text == "Step 2 is half done, café\n" and third.more
    assert third.next_start == 30 + len("Step 2 is half done, café\n".encode())  # bytes, not characters
    assert fake_ci.console(JOB, number, third.next_start) == ConsoleChunk("", third.next_start, True)

    fake.finish_build(JOB, number, "SUCCESS", duration_ms=4321)
    last = fake_ci.console(JOB, number, third.next_start)
    assert (last.text, last.more) == ("Finished: SUCCESS\n", False)
    assert fake_ci.console(JOB, number).text == first.text + second.text + third.text + last.text
    assert fake_ci.get_build(running) == Build(job=JOB, number=number, state=BuildState.SUCCEEDED,
                                               url=f"{fake.url}/job/dev/job/shop-api/1/", duration_ms=4321,
                                               queue_id=queued.queue_id, parameters=PARAMETERS)


@pytest.mark.parametrize("result, state", [
    ("SUCCESS", BuildState.SUCCEEDED), ("UNSTABLE", BuildState.FAILED), ("FAILURE", BuildState.FAILED),
    ("ABORTED", BuildState.ABORTED), ("NOT_BUILT", BuildState.ABORTED),
])
def test_jenkins_results_become_build_states(fake, fake_ci, result, state):
    queued = fake_ci.trigger_build(JOB, PARAMETERS)
    number = fake.start_build(queued.queue_id)
    fake.finish_build(JOB, number, result, duration_ms=900)
    build = fake_ci.get_build(queued)
    assert (build.state, build.duration_ms) == (state, 900)


def test_a_cancelled_queue_item_is_aborted_without_a_number(fake, fake_ci):
    queued = fake_ci.trigger_build(JOB, PARAMETERS)
    fake.cancel(queued.queue_id)
    assert fake_ci.get_build(queued) == Build(job=JOB, number=None, state=BuildState.ABORTED,
                                              queue_id=queued.queue_id, parameters=PARAMETERS)


@pytest.mark.parametrize("export_queue_id", [True, False], ids=["by-queue-id", "by-parameters"])
def test_a_forgotten_queue_item_still_finds_its_build(connect, export_queue_id):
    with FakeJenkins(user=USER, token=TOKEN, export_queue_id=export_queue_id) as server:
        adapter = connect(server.url, USER, TOKEN)
        adapter.create_job(spec("dev"))
        triggered = []
        for commit in ("aaa111", "bbb222", "aaa111"):  # the third repeats the first once that one has started
            triggered.append(adapter.trigger_build(JOB, {**PARAMETERS, "COMMIT": commit}))
            server.start_build(triggered[-1].queue_id)
        for build in triggered:
            server.forget_queue_item(build.queue_id)
        found = [adapter.get_build(build) for build in triggered]
        # Without queueId the newest build with the same parameters is taken: the first trigger finds the third.
        assert [b.number for b in found] == ([1, 2, 3] if export_queue_id else [3, 2, 3])
        assert all(b.state is BuildState.RUNNING for b in found)
        assert ("GET", "/queue/item/1/api/json", "", 404) in server.requests


def test_a_forgotten_queue_item_that_never_started_is_not_found(fake, fake_ci):
    queued = fake_ci.trigger_build(JOB, PARAMETERS)
    fake.cancel(queued.queue_id)
    fake.forget_queue_item(queued.queue_id)
    with pytest.raises(NotFound, match="is gone"):
        fake_ci.get_build(queued)


def test_identical_triggers_while_queued_share_one_queue_item(fake, fake_ci):
    first = fake_ci.trigger_build(JOB, PARAMETERS)
    assert fake_ci.trigger_build(JOB, dict(PARAMETERS)).queue_id == first.queue_id
    assert fake_ci.trigger_build(JOB, {**PARAMETERS, "IMAGE_TAG": "1.4.1"}).queue_id != first.queue_id
    assert fake.queue_ids(JOB) == [1, 2]


# --- fake only: faults ---------------------------------------------------------------------------------

def _queued(ci: JenkinsCIServer) -> Build:
    return ci.trigger_build(JOB, PARAMETERS)


CALLS: dict[str, Callable[[JenkinsCIServer], Any]] = {
    "find_job": lambda ci: ci.find_job(JOB),
    "create_job": lambda ci: ci.create_job(spec("dev", "shop-web")),
    "delete_job": lambda ci: ci.delete_job(JOB),
    "trigger_build": lambda ci: ci.trigger_build(JOB, PARAMETERS),
    "get_build": lambda ci: ci.get_build(Build(job=JOB, number=None, state=BuildState.QUEUED, queue_id="1")),
    "console": lambda ci: ci.console(JOB, 1),
}


@pytest.mark.parametrize("call, method, where, status, headers, body, error, said", [
    ("find_job", "GET", r"/config\.xml$", 401, {"WWW-Authenticate": 'Basic realm="Jenkins"'}, None, AuthFailed,
     "Error 401 Unauthorized"),
    ("create_job", "POST", r"/job/dev/createItem$", 403,
     {"X-You-Are-Authenticated-As": "portal", "X-Required-Permission": "hudson.model.Item.Create"}, None,
     AuthFailed, "portal is missing the hudson.model.Item.Create permission"),
    ("console", "GET", r"/progressiveText$", 404, {}, None, NotFound, "Error 404 Not Found"),
    ("trigger_build", "POST", r"/buildWithParameters$", 409, {"X-Error": "The job is being renamed"}, None,
     Conflict, "The job is being renamed"),
    ("create_job", "POST", r"/createItem$", 400, {"X-Error": "No mode given"}, None, InvalidRequest,
     "No mode given"),
    ("get_build", "GET", r"/queue/item/1/", 429, {"Retry-After": "7"}, None, RateLimited, "Too Many Requests"),
    ("delete_job", "POST", r"/doDelete$", 500, {},
     "<html><head><title>Error 500 java.lang.NullPointerException</title></head></html>", Unavailable,
     "java.lang.NullPointerException"),
    ("find_job", "GET", r"/config\.xml$", 502, {"Content-Type": "text/plain"}, "Bad Gateway: jenkins is restarting",
     Unavailable, "Bad Gateway: jenkins is restarting"),
])
def test_each_failure_is_translated_with_jenkins_message(fake, fake_ci, call, method, where, status, headers, body,
                                                         error, said):
    if call in ("get_build", "console"):
        fake.start_build(_queued(fake_ci).queue_id)
    fake.fail_next(method, where, status, headers=headers, body=body)
    with pytest.raises(error) as info:
        CALLS[call](fake_ci)
    assert type(info.value) is error and info.value.system == "jenkins" and info.value.status == status
    assert said in info.value.message and f"HTTP {status}" in info.value.message
    assert info.value.__cause__ is not None and TOKEN not in str(info.value)
    if error is RateLimited:
        assert info.value.retry_after == 7.0
    CALLS[call](fake_ci)  # the fault was for one request only


def test_retry_after_may_be_a_date(fake, fake_ci):
    when = datetime.now(timezone.utc) + timedelta(seconds=120)
    fake.fail_next("GET", r"/config\.xml$", 429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    with pytest.raises(RateLimited) as info:
        fake_ci.find_job(JOB)
    assert 0 < info.value.retry_after <= 120


@pytest.mark.parametrize("call, method, where", [
    ("find_job", "GET", r"/config\.xml$"), ("trigger_build", "POST", r"/buildWithParameters$"),
    ("console", "GET", r"/progressiveText$"),
])
def test_a_jenkins_that_does_not_answer_in_time_is_unavailable(fake, connect, call, method, where):
    adapter = connect(fake.url, USER, TOKEN, retries=0, timeout=0.3)
    adapter.create_job(spec("dev"))
    fake.fail_next(method, where, None, delay=3)
    with pytest.raises(Unavailable, match="timed out") as info:
        CALLS[call](adapter)
    assert info.value.status is None and info.value.__cause__ is not None


def test_a_jenkins_that_is_not_there_is_unavailable(connect):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = connect(f"http://127.0.0.1:{port}", USER, TOKEN, retries=0)
    with pytest.raises(Unavailable, match=f"no answer from http://127.0.0.1:{port}/"):
        adapter.find_job(JOB)


def test_reads_are_retried_after_a_5xx_and_posts_are_not(fake, connect):
    adapter = connect(fake.url, USER, TOKEN, retries=2)
    adapter.create_job(spec("dev"))
    fake.fail_next("GET", r"/config\.xml$", 503, times=2)
    assert adapter.find_job(JOB).owner == OWNER
    assert [r.status for r in fake.requests if r.path.endswith("/config.xml")] == [503, 503, 200]
    fake.fail_next("POST", r"/buildWithParameters$", 503)
    with pytest.raises(Unavailable):
        adapter.trigger_build(JOB, PARAMETERS)
    assert [r.status for r in fake.requests if r.path.endswith("/buildWithParameters")] == [503]


def test_the_token_is_masked_even_where_jenkins_would_repeat_it(fake, fake_ci):
    fake.fail_next("GET", r"/config\.xml$", 500, headers={"X-Error": f"bad header Authorization: {TOKEN}"})
    with pytest.raises(Unavailable) as info:
        fake_ci.find_job(JOB)
    assert TOKEN not in str(info.value) and "Authorization: ***" in info.value.message


def test_an_answer_that_is_not_json_is_an_error_of_its_own(fake, fake_ci):
    fake.start_build(_queued(fake_ci).queue_id)
    fake.fail_next("GET", r"/queue/item/", 200, body="<html>Sign in</html>")
    with pytest.raises(IntegrationError, match="not JSON") as info:
        CALLS["get_build"](fake_ci)
    assert type(info.value) is IntegrationError and not info.value.transient


def test_with_a_password_posts_carry_the_crumb_of_the_session(connect):
    with FakeJenkins(user=USER, token=TOKEN, password="s3cret-password") as server:
        adapter = connect(server.url, USER, "s3cret-password")
        adapter.create_job(spec("dev"))
        assert adapter.trigger_build(JOB, PARAMETERS).queue_id == "1"
        assert ("GET", "/crumbIssuer/api/json", "", 200) in server.requests
        without = requests.post(f"{server.url}/job/dev/job/shop-api/buildWithParameters",
                                auth=(USER, "s3cret-password"), timeout=5)
        assert without.status_code == 403 and "No valid crumb" in without.text


def test_without_csrf_protection_no_crumb_is_sent(connect):
    with FakeJenkins(user=USER, token=TOKEN, crumbs=False) as server:
        adapter = connect(server.url, USER, TOKEN)
        adapter.create_job(spec("dev"))
        assert adapter.find_job(JOB).owner == OWNER
        assert ("GET", "/crumbIssuer/api/json", "", 404) in server.requests
