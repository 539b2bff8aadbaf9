"""The Nexus adapter: the contract against Nexus over HTTP, its Registry v2 client against a real registry,
and failures injected into the fake Nexus.

The contract tests run against ``tests.fakes.nexus_server.FakeNexus`` (backed by the testbed's real
Docker registry for ``/v2``) unless ``PORTAL_TEST_NEXUS_URL``, ``PORTAL_TEST_NEXUS_USER`` and
``PORTAL_TEST_NEXUS_PASSWORD`` name a real Nexus 3, whose Docker endpoint (path-based routing, the Docker
Bearer Token Realm or "force basic auth") is ``PORTAL_TEST_NEXUS_DOCKER_URL`` or the same URL. They create
teams named ``t<random>`` there and delete what they created afterwards. The fault-injection tests always
use the fake: only it can be told to fail.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import inspect
import io
import json
import logging
import os
import tarfile
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from integrations.errors import AuthFailed, Conflict, InvalidRequest, NotFound, RateLimited, Unavailable
from integrations.nexus import NexusImageRegistry, robot_role, robot_user, selector_name, team_repository
from integrations.registry import ImageRegistry
from integrations.registry_v2 import RegistryV2, http_session
from tests.fakes.nexus_server import FakeNexus

OWNER, OTHER = "app-7f3a", "app-9b1c"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REAL_NEXUS = bool(os.environ.get("PORTAL_TEST_NEXUS_URL"))


@dataclass
class Target:
    url: str
    user: str
    password: str = field(repr=False)
    docker_url: str
    fake: FakeNexus | None = None

    def adapter(self, **overrides) -> NexusImageRegistry:
        options = dict(url=self.url, user=self.user, password=self.password, docker_url=self.docker_url,
                       timeout=10.0, retries=2, verify=True, ca_bundle="")
        return NexusImageRegistry(**{**options, **overrides})


@pytest.fixture
def registry(registry_server):
    """The testbed's registry (Debian's docker-registry, distribution 2.8), shared by the session."""
    return registry_server


@pytest.fixture
def fake(registry):
    with FakeNexus(registry_url=registry.url) as server:
        yield server


@pytest.fixture
def target(request):
    if REAL_NEXUS:
        env = os.environ
        url = env["PORTAL_TEST_NEXUS_URL"]
        yield Target(url, env["PORTAL_TEST_NEXUS_USER"], env["PORTAL_TEST_NEXUS_PASSWORD"],
                     env.get("PORTAL_TEST_NEXUS_DOCKER_URL") or url)
        return
    server = request.getfixturevalue("fake")
    yield Target(server.url, "admin", "admin123", server.url, fake=server)


@pytest.fixture
def nexus(target):
    adapter = target.adapter()
    yield adapter
    adapter.close()


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


# --- pushing real images ----------------------------------------------------------------------------

@functools.cache
def _layer() -> tuple[bytes, str]:
    """One gzipped tar holding a small file, and its diff id (the digest of the tar itself)."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        archive.addfile(info, io.BytesIO(b"hello\n"))
    return gzip.compress(tar.getvalue(), mtime=0), "sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()


def push_image(registry: RegistryV2, name: str, tag: str) -> str:
    """A minimal OCI image (one layer, a config naming the tag) uploaded by the Registry v2 push protocol;
    returns the digest of its manifest."""
    layer, diff_id = _layer()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"tag": tag}},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    descriptors = [_upload(registry, name, data, media) for data, media in (
        (config, "application/vnd.oci.image.config.v1+json"),
        (layer, "application/vnd.oci.image.layer.v1.tar+gzip"))]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": descriptors[0], "layers": [descriptors[1]]}).encode()
    response = registry.request("PUT", f"/v2/{name}/manifests/{tag}", data=manifest,
                                headers={"Content-Type": MANIFEST})
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert response.headers.get("Docker-Content-Digest", digest) == digest
    return digest


def _upload(registry: RegistryV2, name: str, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        registry.request("HEAD", f"/v2/{name}/blobs/{digest}")
    except NotFound:
        started = registry.request("POST", f"/v2/{name}/blobs/uploads/")
        registry.request("PUT", started.headers["Location"], params={"digest": digest}, data=data,
                         headers={"Content-Type": "application/octet-stream"})
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


@pytest.fixture
def pusher():
    """Registry v2 clients of a Docker endpoint, as a given user, to push with."""
    sessions = []

    def _client(url: str, user: str, password: str) -> RegistryV2:
        session = http_session(None, True, "", 0)
        sessions.append(session)
        return RegistryV2(url, session, "test", (user, password), 10)

    yield _client
    for session in sessions:
        session.close()


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

def test_registry_v2_lists_tags_and_digests_of_a_plain_registry(registry):
    """Debian's docker-registry (distribution 2.8) ignores ``n`` and answers every tag at once without Link:
    the client must stop there. (The Link path is the fake Nexus' endpoint's, below.)"""
    session = http_session(None, True, "", 0)
    try:
        client = RegistryV2(registry.url, session, "registry", None, 5, page_size=2)
        name = f"plain/{uuid.uuid4().hex[:8]}"
        pushed = {tag: push_image(client, name, tag) for tag in ("v1", "v2", "v3", "v4", "v5")}
        responses = []
        session.hooks["response"].append(lambda r, *a, **k: responses.append(r))

        assert sorted(client.tags(name)) == sorted(pushed) == sorted(registry.tags(name))
        assert len(responses) == 1 + sum(1 for r in responses if r.links.get("next"))
        assert {t: client.digest(name, t) for t in pushed} == pushed
        with pytest.raises(NotFound, match="repository name not known to registry"):
            client.tags("plain/unknown")
    finally:
        session.close()


# --- failures, injected: the fake only ------------------------------------------------------------

@pytest.fixture
def fake_target(fake):
    return Target(fake.url, "admin", "admin123", fake.url, fake=fake)


@pytest.fixture
def fake_nexus(fake_target):
    adapter = fake_target.adapter()
    yield adapter
    adapter.close()


@pytest.fixture
def strict(fake_target):
    """An adapter that does not retry, so that one injected failure is the answer."""
    adapter = fake_target.adapter(retries=0, timeout=0.5)
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


def test_a_timeout_and_a_refused_connection_are_unavailable(fake, fake_target, strict):
    fake.repositories["docker-dev"] = {"name": "docker-dev", "docker": {}}
    fake.fail_next("GET", r"/security/content-selectors/", delay=1.5)
    with pytest.raises(Unavailable, match="no answer within 0.5s") as slow:
        strict.find_repository("dev/shop-api")
    assert isinstance(slow.value.__cause__, requests.RequestException)

    closed = fake_target.adapter(url="http://127.0.0.1:9", docker_url="http://127.0.0.1:9", retries=0)
    try:
        with pytest.raises(Unavailable, match="cannot connect") as refused:
            closed.find_repository("dev/shop-api")
        assert isinstance(refused.value.__cause__, requests.ConnectionError)
    finally:
        closed.close()


def test_idempotent_requests_are_retried_and_creations_are_not(fake, fake_target):
    adapter = fake_target.adapter(retries=2)
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


def test_the_second_application_does_not_create_the_team_repository_again(fake, fake_nexus):
    fake_nexus.create_repository("dev/shop-api", OWNER)
    fake_nexus.create_repository("dev/billing", OWNER)
    fake_nexus.ensure_robot("dev", OWNER)
    assert fake.count("POST", r"/repositories/docker/hosted$") == 1
    assert set(fake.repositories) == {"docker-dev"}
    assert set(fake.selectors) == {"portal-dev-shop-api", "portal-dev-billing"}
    assert fake.selectors[selector_name("dev", "shop-api")]["description"] == f"portal-owner: {OWNER}"


def test_a_repository_created_concurrently_is_adopted(fake, fake_nexus):
    fake.fail_next("GET", r"/repositories/docker/hosted/docker-dev$", 404, body=json.dumps("Repository not found"),
                   headers={"Content-Type": "application/json"})
    fake.repositories["docker-dev"] = {"name": "docker-dev", "docker": {}}  # another worker won the race
    assert fake_nexus.create_repository("dev/shop-api", OWNER).owner == OWNER
    assert fake.count("POST", r"/repositories/docker/hosted$") == 1  # refused, "already exists"


def test_the_robots_new_password_authenticates_and_the_old_one_does_not(fake, fake_nexus):
    first = fake_nexus.ensure_robot("dev", OWNER)
    second = fake_nexus.ensure_robot("dev", OWNER)
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


def test_the_password_is_in_no_error_message_repr_or_log(fake, fake_nexus, strict, caplog):
    caplog.set_level(logging.DEBUG)
    robot = fake_nexus.ensure_robot("dev", OWNER)
    fake.fail_next("PUT", r"/change-password$", 500, body="could not store the password")
    with pytest.raises(Unavailable) as failed:
        strict.ensure_robot("dev", OWNER)
    new_password = fake.password_of("portal-dev-robot")
    assert new_password == robot.password  # the failed reset changed nothing
    for secret in (robot.password, "admin123"):
        assert secret not in str(failed.value) and secret not in repr(failed.value)
        assert secret not in repr(robot) and secret not in repr(fake_nexus) and secret not in caplog.text
    assert "could not store the password" in failed.value.message


def test_delete_follows_the_continuation_tokens_of_the_search(fake, fake_nexus):
    fake_nexus.create_repository("dev/shop-api", OWNER)
    for i in range(120):
        fake.add_component("docker-dev", "shop-api", f"v{i}")
    fake.add_component("docker-dev", "billing", "v1")
    fake_nexus.delete_repository("dev/shop-api")
    assert fake.count("GET", r"/search$") == 3  # pages of 50, 50 and 20
    assert fake.count("DELETE", r"/components/") == 120
    assert [c["name"] for c in fake.components.values()] == ["billing"]


def test_the_docker_endpoint_pages_tags_with_link(fake, fake_target, pusher):
    team = f"f{uuid.uuid4().hex[:8]}"  # the registry behind outlives this fake
    nexus = fake_target.adapter(page_size=3)
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


def test_a_bearer_challenge_is_answered_with_a_token(registry):
    team = f"f{uuid.uuid4().hex[:8]}"  # the registry behind outlives this fake
    with FakeNexus(registry_url=registry.url, docker_auth="bearer") as server:
        target = Target(server.url, "admin", "admin123", server.url, fake=server)
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
