"""The Nexus adapter: the contract against Nexus over HTTP, and its Registry v2 client against a real registry.

The contract tests run against ``tests.fakes.nexus_server.FakeNexus`` (backed by the testbed's real
Docker registry for ``/v2``) unless ``PORTAL_TEST_NEXUS_URL``, ``PORTAL_TEST_NEXUS_USER`` and
``PORTAL_TEST_NEXUS_PASSWORD`` name a real Nexus 3, whose Docker endpoint (path-based routing, the Docker
Bearer Token Realm or "force basic auth") is ``PORTAL_TEST_NEXUS_DOCKER_URL`` or the same URL. They create
teams named ``t<random>`` there and delete what they created afterwards. The fault-injection tests, in
test_nexus_faults.py, always use the fake: only it can be told to fail.
"""

from __future__ import annotations

import inspect
import uuid

import pytest
import requests

from integrations import http
from integrations.errors import AuthFailed, Conflict, InvalidRequest, NotFound
from integrations.nexus import NexusImageRegistry, robot_role, robot_user, team_repository
from integrations.registry import ImageRegistry
from integrations.registry_v2 import RegistryV2
from tests import nexus_support
from tests.nexus_support import OTHER, OWNER, Target, push_image

# The fixtures shared with test_nexus_faults.py: pytest finds them by these names.
fake, nexus, pusher = nexus_support.fake, nexus_support.nexus, nexus_support.pusher


@pytest.fixture
def target(request):
    return Target.real() or Target.of(request.getfixturevalue("fake"))


@pytest.fixture
def team(target):
    """A team of its own per test; on a real Nexus, what the test created there is deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    if target.fake is None:
        _clean_real_nexus(target, name)


def _clean_real_nexus(target: Target, team: str) -> None:
    with requests.Session() as s:
        s.auth = (target.user, target.password)
        api = f"{target.url.rstrip('/')}/service/rest/v1"
        listed = s.get(f"{api}/security/content-selectors", timeout=10)
        for selector in listed.json() if listed.ok else []:
            if selector["name"].startswith(f"portal-{team}-"):
                s.delete(f"{api}/security/content-selectors/{selector['name']}", timeout=10)
        s.delete(f"{api}/security/users/{robot_user(team)}", timeout=10)
        s.delete(f"{api}/security/roles/{robot_role(team)}", timeout=10)
        s.delete(f"{api}/repositories/{team_repository(team)}", timeout=30)


# --- the contract (the fake, or a real Nexus) -------------------------------------------------------

def test_the_adapter_implements_the_protocol_with_the_same_signatures(nexus):
    assert isinstance(nexus, ImageRegistry)
    assert nexus.system == "nexus"
    methods = [n for n, v in vars(ImageRegistry).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        assert str(inspect.signature(getattr(NexusImageRegistry, name))) == \
            str(inspect.signature(getattr(ImageRegistry, name))), name


def test_the_team_repository_is_created_once_and_adopted_by_the_next_application(nexus, target, team):
    assert nexus.find_repository(f"{team}/shop-api") is None

    shop = nexus.create_repository(f"{team}/shop-api", OWNER)
    assert (shop.system, shop.kind, shop.external_id, shop.name, shop.owner) == \
        ("nexus", "image_repository", f"{team}/shop-api", f"{team}/shop-api", OWNER)
    assert shop.attributes["nexus_repository"] == f"docker-{team}"
    assert shop.attributes["image"] == f"{nexus.docker_host}/docker-{team}/shop-api"
    assert nexus.find_repository(f"{team}/shop-api") == shop

    # A second application of the team: its repository exists already (a second creation would be refused).
    billing = nexus.create_repository(f"{team}/billing", OTHER)
    assert billing.owner == OTHER and billing.attributes["nexus_repository"] == f"docker-{team}"
    assert nexus.find_repository(f"{team}/billing").owner == OTHER
    assert nexus.create_repository(f"{team}/shop-api", OWNER) == shop  # idempotent
    with pytest.raises(Conflict, match="not owned by app-9b1c"):
        nexus.create_repository(f"{team}/shop-api", OTHER)

    with requests.get(f"{target.url}/service/rest/v1/repositories/docker/hosted/docker-{team}",
                      auth=(target.user, target.password), timeout=10) as response:
        config = response.json()
    assert config["storage"]["writePolicy"].lower() == "allow_once"
    assert (config["docker"]["v1Enabled"], config["docker"]["forceBasicAuth"]) == (False, True)


def test_the_robot_is_created_then_its_password_reset_and_it_can_push(nexus, target, pusher, team):
    first = nexus.ensure_robot(team, OWNER)
    assert (first.server, first.username) == (nexus.docker_host, f"portal-{team}-robot")
    assert first.password not in repr(first)
    credentials = nexus.credentials(team)
    assert (credentials.server, credentials.username, credentials.secret_ref) == \
        (nexus.docker_host, first.username, f"registry-robot-{team}")

    second = nexus.ensure_robot(team, OWNER)
    assert second.username == first.username and second.password != first.password

    name = nexus.registry_name(f"{team}/robot-check")
    push_image(pusher(target.docker_url, second.username, second.password), name, "abc1234")  # the role works
    with pytest.raises(AuthFailed) as refused:
        push_image(pusher(target.docker_url, first.username, first.password), name, "def5678")
    assert first.password not in str(refused.value)

    with pytest.raises(Conflict, match="not owned by app-9b1c"):
        nexus.ensure_robot(team, OTHER)


def test_list_tags_follows_every_page_and_reports_the_registry_digests(target, pusher, team):
    nexus = target.adapter(page_size=3)
    try:
        nexus.create_repository(f"{team}/shop-api", OWNER)
        assert nexus.list_tags(f"{team}/shop-api") == []  # recorded, nothing pushed yet

        client = pusher(target.docker_url, target.user, target.password)
        name = nexus.registry_name(f"{team}/shop-api")
        pushed = {tag: push_image(client, name, tag) for tag in ("a1", "b2", "c3", "d4", "e5", "f6", "g7")}
        pages = []
        nexus.session.hooks["response"].append(
            lambda r, *a, **k: pages.append(r.links.get("next")) if r.ok and r.url.split("?")[0].endswith(
                "/tags/list") else None)

        tags = nexus.list_tags(f"{team}/shop-api")

        assert [(t.repository, t.tag, t.digest) for t in tags] == \
            [(f"{team}/shop-api", tag, digest) for tag, digest in sorted(pushed.items())]
        assert len(set(pushed.values())) == 7
        assert pages[-1] is None and all(pages[:-1])  # followed each Link, stopped at the page without one
        with pytest.raises(NotFound):
            nexus.list_tags(f"{team}/never-created")
    finally:
        nexus.close()


def test_delete_removes_every_component_of_the_image_and_nothing_else(nexus, target, pusher, team):
    nexus.create_repository(f"{team}/shop-api", OWNER)
    nexus.create_repository(f"{team}/billing", OWNER)
    client = pusher(target.docker_url, target.user, target.password)
    for i in range(55):  # more than one page of the search (50)
        push_image(client, nexus.registry_name(f"{team}/shop-api"), f"s{i:03d}")
    kept = push_image(client, nexus.registry_name(f"{team}/billing"), "b001")

    nexus.delete_repository(f"{team}/shop-api")

    assert nexus.find_repository(f"{team}/shop-api") is None
    with pytest.raises(NotFound):
        nexus.list_tags(f"{team}/shop-api")
    assert [(t.tag, t.digest) for t in nexus.list_tags(f"{team}/billing")] == [("b001", kept)]
    with pytest.raises(NotFound):
        nexus.delete_repository(f"{team}/shop-api")
    assert nexus.create_repository(f"{team}/shop-api", OTHER).owner == OTHER  # the name is free again


def test_images_pushed_outside_the_portal_have_no_owner(nexus, target, pusher, team):
    nexus.create_repository(f"{team}/shop-api", OWNER)
    push_image(pusher(target.docker_url, target.user, target.password), nexus.registry_name(f"{team}/manual"), "v1")
    found = nexus.find_repository(f"{team}/manual")
    assert found is not None and found.owner is None


def test_nexus_refusals_become_our_errors_with_its_message(target, nexus, team):
    with pytest.raises(InvalidRequest) as invalid:
        nexus.create_repository("bad team/shop-api", OWNER)  # Nexus' validation of the repository name
    assert invalid.value.status == 400 and "Only letters, digits" in invalid.value.message
    assert "POST /service/rest/v1/repositories/docker/hosted" in invalid.value.message

    wrong = target.adapter(password="not-the-password-123")
    try:
        with pytest.raises(AuthFailed) as refused:
            wrong.find_repository(f"{team}/shop-api")
        assert refused.value.status == 401 and "not-the-password-123" not in str(refused.value)
        assert "not-the-password-123" not in repr(wrong)
    finally:
        wrong.close()

    robot = nexus.ensure_robot(team, OWNER)
    as_robot = target.adapter(user=robot.username, password=robot.password)
    try:
        with pytest.raises(AuthFailed) as forbidden:
            as_robot.create_repository(f"{team}/shop-api", OWNER)
        assert forbidden.value.status == 403
    finally:
        as_robot.close()
    with pytest.raises(NotFound):
        nexus.delete_repository(f"{team}x/never")


# --- the Registry v2 client against the real registry ---------------------------------------------

def test_registry_v2_lists_tags_and_digests_of_a_plain_registry(registry_server):
    """Debian's docker-registry (distribution 2.8) ignores ``n`` and answers every tag at once without Link:
    the client must stop there. (The Link path is the fake Nexus' endpoint's, in test_nexus_faults.py.)"""
    session = http.session(True, "", 0)
    try:
        client = RegistryV2(registry_server.url, session, "registry", None, 5, page_size=2)
        name = f"plain/{uuid.uuid4().hex[:8]}"
        pushed = {tag: push_image(client, name, tag) for tag in ("v1", "v2", "v3", "v4", "v5")}
        responses = []
        session.hooks["response"].append(lambda r, *a, **k: responses.append(r))

        assert sorted(client.tags(name)) == sorted(pushed) == sorted(registry_server.tags(name))
        assert len(responses) == 1 + sum(1 for r in responses if r.links.get("next"))
        assert {t: client.digest(name, t) for t in pushed} == pushed
        with pytest.raises(NotFound, match="repository name not known to registry"):
            client.tags("plain/unknown")
    finally:
        session.close()
