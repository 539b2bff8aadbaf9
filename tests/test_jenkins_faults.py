"""The Jenkins adapter against faults injected into the fake Jenkins: each HTTP failure translated with
Jenkins' own message, timeouts, retries, the masked token, and the CSRF crumb. The fake only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, Callable

import pytest
import requests

from integrations.ci import Build, BuildState
from integrations.errors import (
    AuthFailed, Conflict, IntegrationError, InvalidRequest, NotFound, RateLimited, Unavailable,
)
from integrations.jenkins import JenkinsCIServer
from testbed.process import free_port
from tests import jenkins_support
from tests.fakes.jenkins_server import FakeJenkins
from tests.jenkins_support import JOB, OWNER, PARAMETERS, TOKEN, USER, spec
from tests.real_servers import assert_translated

# The fixtures shared with the other Jenkins tests: pytest finds them by these names.
connect, fake, fake_ci = jenkins_support.connect, jenkins_support.fake, jenkins_support.fake_ci


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
    assert_translated(info.value, error, "jenkins", status, said, headers, TOKEN)
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
    port = free_port()
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
