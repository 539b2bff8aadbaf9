"""The Jenkins adapter: contract tests against the HTTP fake, or unchanged against a real Jenkins.

Set PORTAL_TEST_JENKINS_URL, PORTAL_TEST_JENKINS_USER and PORTAL_TEST_JENKINS_TOKEN (an API token of
a user who may read, create, configure, delete and build jobs, on a Jenkins with the cloudbees-folder,
workflow-job, workflow-cps and git plugins) to run them against that Jenkins. Each test works in a
folder of its own, deleted afterwards. There the builds fail at checkout (their repository does not
exist), so the shared tests wait for any end.

Simulated builds (test_jenkins_builds.py) and injected faults (test_jenkins_faults.py) need the fake:
those tests start a fake of their own whatever the environment says.
"""

from __future__ import annotations

import inspect
import re
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

import pytest
import requests

from integrations.ci import Build, BuildState, CIServer, ConsoleChunk
from integrations.errors import AuthFailed, Conflict, InvalidRequest, NotFound
from integrations.jenkins import FOLDER_CLASS, JenkinsCIServer, job_config
from portal.config import Settings
from tests import jenkins_support
from tests.fakes.jenkins_server import FakeJenkins
from tests.jenkins_support import OWNER, PARAMETERS, REPOSITORY, TOKEN, USER, spec

ENDED = (BuildState.SUCCEEDED, BuildState.FAILED, BuildState.ABORTED)
XML = {"Content-Type": "application/xml"}

# The fixtures shared with the fake-only tests: pytest finds them by these names.
connect, fake = jenkins_support.connect, jenkins_support.fake


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
def target(request):
    real = jenkins_support.real_jenkins()
    if real:
        return Target(*real)
    server = request.getfixturevalue("fake")
    return Target(server.url, USER, TOKEN, server)


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


def config_xml(raw: Raw, path: str) -> requests.Response:
    response = raw.get("".join(f"job/{quote(part, safe='')}/" for part in path.split("/")) + "config.xml")
    assert response.status_code == 200, response.text
    return response


def config_of(raw: Raw, path: str) -> ET.Element:
    return ET.fromstring(config_xml(raw, path).content)


def wait_for(poll: Callable[[], Build], done: Callable[[Build], bool], target: Target) -> Build:
    deadline = time.monotonic() + (10 if target.server else 300)
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
