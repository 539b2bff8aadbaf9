"""Shared by the Jenkins tests (test_jenkins.py, the contract; test_jenkins_builds.py and
test_jenkins_faults.py, the fake only): the user, the job, adapters closed after each test, the fake, and
the real Jenkins the contract runs against when the environment names one."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.ci import JobSpec
from integrations.jenkins import JenkinsCIServer
from tests import real_servers
from tests.fakes.jenkins_server import FakeJenkins

USER, TOKEN = "portal", "fake-api-token-5f2c9e"
OWNER = "app-7f3a"
REPOSITORY = "https://gitlab.example.com/dev/shop-api.git"
PARAMETERS = {"COMMIT": "0f3c2a1", "IMAGE_TAG": "1.4.0"}
JOB = "dev/shop-api"  # the job of the fake-only tests, ``spec("dev")``
ENV = ("PORTAL_TEST_JENKINS_URL", "PORTAL_TEST_JENKINS_USER", "PORTAL_TEST_JENKINS_TOKEN")


def spec(folder: str, name: str = "shop-api", **changes: Any) -> JobSpec:
    return JobSpec(**{"folder": folder, "name": name, "repository_url": REPOSITORY, "owner": OWNER, **changes})


def real_jenkins() -> tuple[str, str, str] | None:
    """(URL, user, token) of the real Jenkins named by ENV, or None for the fake (see test_jenkins.py)."""
    values = real_servers.configured("Jenkins", ENV)
    return (values[ENV[0]], values[ENV[1]], values[ENV[2]]) if values else None


@pytest.fixture
def connect(request):
    """``connect(url, user, token, **settings)``: an adapter, closed after the test."""
    def make(url: str, user: str, token: str, **overrides: Any) -> JenkinsCIServer:
        options = dict(credentials_id="gitlab-checkout", timeout=30.0, retries=2, verify=True, ca_bundle="")
        adapter = JenkinsCIServer(url, user, token, **{**options, **overrides})
        request.addfinalizer(adapter.close)
        return adapter

    return make


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
