"""The Nexus adapter against the fake Nexus only: failures injected into it, and what only the fake can show
(its request counts, its state, its Docker endpoint's paging and Bearer tokens)."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
import requests

from integrations.errors import AuthFailed, Conflict, InvalidRequest, NotFound, RateLimited, Unavailable
from integrations.nexus import selector_name
from integrations.registry_v2 import RegistryV2
from tests import nexus_support
from tests.fakes.nexus_server import FakeNexus
from tests.nexus_support import MANIFEST, OWNER, Target, push_image

# The fixtures shared with test_nexus.py: pytest finds them by these names.
fake, nexus, pusher = nexus_support.fake, nexus_support.nexus, nexus_support.pusher


@pytest.fixture
def target(fake):
    return Target.of(fake)


@pytest.fixture
def strict(target):
    """An adapter that does not retry, so that one injected failure is the answer."""
    adapter = target.adapter(retries=0, timeout=0.5)
    yield adapter
    adapter.close()


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("status, body, headers, error, said", [
    (401, "", {"WWW-Authenticate": 'BASIC realm="Sonatype Nexus Repository Manager"'}, AuthFailed, "UNAUTHORIZED"),
    (403, "", {}, AuthFailed, "FORBIDDEN"),
    (404, json.dumps("Repository not found"), JSON, NotFound, "Repository not found"),
    (409, json.dumps("The Role id 'x' does not match the id used in the path 'y'."), JSON, Conflict,
     "The Role id 'x' does not match the id used in the path 'y'."),
    (400, [{"id": "PARAMETER name", "message": "Name is already used, must be unique (ignoring case)"}], {},
     InvalidRequest, "Name is already used, must be unique (ignoring case)"),
    (422, json.dumps("Malformed ID"), JSON, InvalidRequest, "Malformed ID"),
    (429, "Too many requests, slow down", {"Retry-After": "7"}, RateLimited, "Too many requests, slow down"),
    (500, "Internal server error: NullPointerException", {}, Unavailable, "NullPointerException"),
    (503, "<html><body>Service Unavailable</body></html>", {"Content-Type": "text/html"}, Unavailable,
     "SERVICE UNAVAILABLE"),
])
def test_each_failure_becomes_its_error_with_the_message_and_the_cause(fake, strict, status, body, headers, error,
                                                                        said):
    fake.fail_next("GET", r"/security/users$", status, headers=headers, body=body)
    with pytest.raises(error) as raised:
        strict.ensure_robot("dev", OWNER)
    exc = raised.value
    assert type(exc) is error and exc.system == "nexus" and exc.status == status
    assert said in exc.message and "GET /service/rest/v1/security/users" in exc.message
    assert isinstance(exc.__cause__, requests.HTTPError) and exc.__cause__.response.status_code == status
    assert exc.transient == (status >= 429)
    if status == 429:
        assert exc.retry_after == 7.0
    assert "admin123" not in str(exc)


def test_a_timeout_and_a_refused_connection_are_unavailable(fake, target, strict):
    fake.repositories["docker-dev"] = {"name": "docker-dev", "docker": {}}
    fake.fail_next("GET", r"/security/content-selectors/", delay=1.5)
    with pytest.raises(Unavailable, match="no answer within 0.5s") as slow:
        strict.find_repository("dev/shop-api")
    assert isinstance(slow.value.__cause__, requests.RequestException)

    closed = target.adapter(url="http://127.0.0.1:9", docker_url="http://127.0.0.1:9", retries=0)
    try:
        with pytest.raises(Unavailable, match="cannot connect") as refused:
            closed.find_repository("dev/shop-api")
        assert isinstance(refused.value.__cause__, requests.ConnectionError)
    finally:
        closed.close()


def test_idempotent_requests_are_retried_and_creations_are_not(fake, target):
    adapter = target.adapter(retries=2)
    try:
        fake.fail_next("GET", r"/repositories/docker/hosted/docker-dev$", 503, times=2)
        assert adapter.find_repository("dev/shop-api") is None
        assert fake.count("GET", r"/repositories/docker/hosted/docker-dev$") == 3

        fake.fail_next("POST", r"/repositories/docker/hosted$", 503, body="busy")
        with pytest.raises(Unavailable, match="busy"):
            adapter.create_repository("dev/shop-api", OWNER)
        assert fake.count("POST", r"/repositories/docker/hosted$") == 1

        fake.fail_next("GET", r"/repositories/docker/hosted/docker-ops$", 429, headers={"Retry-After": "30"})
        with pytest.raises(RateLimited) as limited:
            adapter.find_repository("ops/shop-api")  # not slept through: the engine schedules the retry
        assert limited.value.retry_after == 30.0
        assert fake.count("GET", r"/repositories/docker/hosted/docker-ops$") == 1
    finally:
        adapter.close()


def test_the_second_application_does_not_create_the_team_repository_again(fake, nexus):
    nexus.create_repository("dev/shop-api", OWNER)
    nexus.create_repository("dev/billing", OWNER)
    nexus.ensure_robot("dev", OWNER)
    assert fake.count("POST", r"/repositories/docker/hosted$") == 1
    assert set(fake.repositories) == {"docker-dev"}
    assert set(fake.selectors) == {"portal-dev-shop-api", "portal-dev-billing"}
    assert fake.selectors[selector_name("dev", "shop-api")]["description"] == f"portal-owner: {OWNER}"


def test_a_repository_created_concurrently_is_adopted(fake, nexus):
    fake.fail_next("GET", r"/repositories/docker/hosted/docker-dev$", 404, body=json.dumps("Repository not found"),
                   headers={"Content-Type": "application/json"})
    fake.repositories["docker-dev"] = {"name": "docker-dev", "docker": {}}  # another worker won the race
    assert nexus.create_repository("dev/shop-api", OWNER).owner == OWNER
    assert fake.count("POST", r"/repositories/docker/hosted$") == 1  # refused, "already exists"


def test_the_robots_new_password_authenticates_and_the_old_one_does_not(fake, nexus):
    first = nexus.ensure_robot("dev", OWNER)
    second = nexus.ensure_robot("dev", OWNER)
    assert fake.password_of("portal-dev-robot") == second.password
    assert fake.roles["portal-dev-docker"]["privileges"] == ["nx-repository-view-docker-docker-dev-*"]
    search = f"{fake.url}/service/rest/v1/search"
    with requests.get(search, params={"repository": "docker-dev"}, auth=(second.username, second.password),
                      timeout=5) as ok, \
            requests.get(search, params={"repository": "docker-dev"}, auth=(first.username, first.password),
                         timeout=5) as old, \
            requests.get(search, params={"repository": "docker-ops"}, auth=(second.username, second.password),
                         timeout=5) as other_team:
        assert (ok.status_code, old.status_code, other_team.status_code) == (200, 401, 403)


def test_the_password_is_in_no_error_message_repr_or_log(fake, nexus, strict, caplog):
    caplog.set_level(logging.DEBUG)
    robot = nexus.ensure_robot("dev", OWNER)
    fake.fail_next("PUT", r"/change-password$", 500, body="could not store the password")
    with pytest.raises(Unavailable) as failed:
        strict.ensure_robot("dev", OWNER)
    new_password = fake.password_of("portal-dev-robot")
    assert new_password == robot.password  # the failed reset changed nothing
    for secret in (robot.password, "admin123"):
        assert secret not in str(failed.value) and secret not in repr(failed.value)
        assert secret not in repr(robot) and secret not in repr(nexus) and secret not in caplog.text
    assert "could not store the password" in failed.value.message


def test_delete_follows_the_continuation_tokens_of_the_search(fake, nexus):
    nexus.create_repository("dev/shop-api", OWNER)
    for i in range(120):
        fake.add_component("docker-dev", "shop-api", f"v{i}")
    fake.add_component("docker-dev", "billing", "v1")
    nexus.delete_repository("dev/shop-api")
    assert fake.count("GET", r"/search$") == 3  # pages of 50, 50 and 20
    assert fake.count("DELETE", r"/components/") == 120
    assert [c["name"] for c in fake.components.values()] == ["billing"]


def test_the_docker_endpoint_pages_tags_with_link(fake, target, pusher):
    team = f"f{uuid.uuid4().hex[:8]}"  # the registry behind outlives this fake
    nexus = target.adapter(page_size=3)
    try:
        nexus.create_repository(f"{team}/shop-api", OWNER)
        client = pusher(fake.url, "admin", "admin123")
        pushed = {tag: push_image(client, f"docker-{team}/shop-api", tag) for tag in "abcdefg"}
        # A registry that sends no Docker-Content-Digest on HEAD: the digest of what GET serves.
        fake.fail_next("HEAD", r"/manifests/c$", 200, headers={"Content-Type": MANIFEST})
        assert {t.tag: t.digest for t in nexus.list_tags(f"{team}/shop-api")} == pushed
        assert fake.count("GET", rf"/v2/docker-{team}/shop-api/tags/list$") == 3
        assert fake.count("GET", rf"/v2/docker-{team}/shop-api/manifests/c$") == 1
        assert sorted(c["version"] for c in fake.components.values()) == list("abcdefg")
    finally:
        nexus.close()


def test_a_bearer_challenge_is_answered_with_a_token(registry_server):
    team = f"f{uuid.uuid4().hex[:8]}"  # the registry behind outlives this fake
    with FakeNexus(registry_url=registry_server.url, docker_auth="bearer") as server:
        target = Target.of(server)
        nexus = target.adapter()
        wrong = target.adapter(password="wrong-password-42")
        try:
            nexus.create_repository(f"{team}/shop-api", OWNER)
            client = RegistryV2(server.url, nexus.session, "test", ("admin", "admin123"), 5)
            digest = push_image(client, f"docker-{team}/shop-api", "abc1234")
            assert [(t.tag, t.digest) for t in nexus.list_tags(f"{team}/shop-api")] == [("abc1234", digest)]
            assert server.count("GET", r"^/v2/token$") >= 2  # the pusher's and the adapter's

            with pytest.raises(AuthFailed) as refused:
                wrong.registry.tags(f"docker-{team}/shop-api")
            assert refused.value.status == 401 and "wrong-password-42" not in str(refused.value)
        finally:
            nexus.close()
            wrong.close()
