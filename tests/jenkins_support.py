"""Shared by the Jenkins tests (test_jenkins.py, the contract; test_jenkins_builds.py and
test_jenkins_faults.py, the fake only): the user, the job, adapters closed after each test, the fake."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.ci import JobSpec
from integrations.jenkins import JenkinsCIServer
from tests.fakes.jenkins_server import FakeJenkins

USER, TOKEN = "portal", "fake-api-token-5f2c9e"
OWNER = "app-7f3a"
REPOSITORY = "https://gitlab.example.com/dev/shop-api.git"
PARAMETERS = {"COMMIT": "0f3c2a1", "IMAGE_TAG": "1.4.0"}
JOB = "dev/shop-api"  # the job of the fake-only tests, ``spec("dev")``


def spec(folder: str, name: str = "shop-api", **changes: Any) -> JobSpec:
    return JobSpec(**{"folder": folder, "name": name, "repository_url": REPOSITORY, "owner": OWNER, **changes})


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
def fake():
    with FakeJenkins(user=USER, token=TOKEN) as server:
        yield server


@pytest.fixture
def fake_ci(fake, connect):
    """An adapter on the fake that does not retry, so that each injected fault shows."""
    adapter = connect(fake.url, USER, TOKEN, retries=0, timeout=5.0)
    adapter.create_job(spec("dev"))
    return adapter
