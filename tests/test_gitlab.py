"""The GitLab adapter against the contract, through python-gitlab and real HTTP.

By default against the fake GitLab server (tests/fakes/gitlab_server.py). The contract tests run
unchanged against a real GitLab when PORTAL_TEST_GITLAB_URL and PORTAL_TEST_GITLAB_TOKEN are set (a
token with the api scope, Owner of the parent group; one of the two without the other fails the tests); the
parent group is PORTAL_TEST_GITLAB_PARENT_GROUP (default ``portal-test``) and must exist, and
PORTAL_TEST_GITLAB_MEMBER names an existing user for the members test. Each test uses new names and deletes
what it created.

The second part, fault injection, always runs against the fake, even when a real GitLab is configured:
it needs a server that fails, throttles or hangs on demand.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import gitlab
import pytest
import requests
from gitlab.exceptions import GitlabError

from integrations.errors import (
    AuthFailed, Conflict, IntegrationError, InvalidRequest, NotFound, RateLimited, Unavailable,
)
from integrations.gitlab import GitLabSourceControl
from integrations.resources import ExternalResource
from integrations.scm import Member, RepositorySpec, SourceControl, WebhookSpec
from portal.config import Settings
from tests import real_servers
from tests.fakes.gitlab_server import FakeGitLab

ENV = ("PORTAL_TEST_GITLAB_URL", "PORTAL_TEST_GITLAB_TOKEN")
PARENT = os.environ.get("PORTAL_TEST_GITLAB_PARENT_GROUP", "portal-test")
FAKE_TOKEN = "glpat-fake-" + uuid.uuid4().hex
TEAM = "contract"
OWNER = uuid.uuid4().hex
HOOK_URL = "https://portal.example/hooks/scm"


@dataclass
class Target:
    """The GitLab the contract tests talk to: the fake unless a real one is configured."""

    url: str
    token: str
    member: str  # an existing username
    fake: FakeGitLab | None


def unique(prefix: str = "repo") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def spec(name: str, owner: str = OWNER, members: tuple[Member, ...] = (), **files: bytes) -> RepositorySpec:
    return RepositorySpec(group=TEAM, name=name, description="Made by the contract tests", owner=owner,
                          files=files, commit_message="First files", members=members)


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    with FakeGitLab(token=FAKE_TOKEN) as server:
        server.add_group(PARENT)
        server.add_user("alice")
        yield server


@pytest.fixture
def target(request) -> Target:
    real = real_servers.configured("GitLab", ENV)
    if real:
        return Target(real[ENV[0]], real[ENV[1]], os.environ.get("PORTAL_TEST_GITLAB_MEMBER", ""), None)
    server = request.getfixturevalue("fake")
    return Target(server.url, server.token, "alice", server)


def adapter(target: Target | FakeGitLab, **overrides) -> GitLabSourceControl:
    settings = {"url": target.url, "token": target.token, "parent_group": PARENT, "timeout": 10.0, "retries": 2,
                "verify": True, "ca_bundle": "", **overrides}
    return GitLabSourceControl(**settings)


@pytest.fixture
def scm(target) -> GitLabSourceControl:
    return adapter(target)


@pytest.fixture
def api(target) -> gitlab.Gitlab:
    """A plain python-gitlab client, to look at what the adapter did from outside it."""
    return gitlab.Gitlab(target.url, private_token=target.token, timeout=10)


class Repositories:
    """Creates repositories through the adapter and deletes them at the end of the test."""

    def __init__(self, scm: GitLabSourceControl):
        self.scm, self.ids = scm, []

    def create(self, repository: RepositorySpec) -> ExternalResource:
        created = self.scm.create_repository(repository)
        self.ids.append(created.external_id)
        return created

    def cleanup(self) -> None:
        for external_id in self.ids:
            try:
                self.scm.delete_repository(external_id)
            except NotFound:
                pass


@pytest.fixture
def repos(scm) -> Iterator[Repositories]:
    made = Repositories(scm)
    yield made
    made.cleanup()


def assert_clean(exc: IntegrationError, token: str) -> None:
    """The error is GitLab's, keeps the library's exception as its cause and never shows the token."""
    assert exc.system == "gitlab"
    assert isinstance(exc.__cause__, (GitlabError, requests.RequestException))
    assert token not in str(exc) and token not in exc.message and token not in repr(exc.args)


# --- the contract ----------------------------------------------------------------------------------

def test_the_adapter_implements_the_protocol_with_the_same_signatures(scm):
    assert isinstance(scm, SourceControl) and scm.system == "gitlab"
    methods = [n for n, v in vars(SourceControl).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        assert str(inspect.signature(getattr(GitLabSourceControl, name))) == str(
            inspect.signature(getattr(SourceControl, name))), name


def test_the_portal_builds_it_from_its_settings(target):
    built = GitLabSourceControl.from_settings(Settings().replace({
        "gitlab_url": target.url, "gitlab_token": target.token, "gitlab_parent_group": PARENT, "http_timeout": 3.0}))
    assert built.find_repository(f"{TEAM}/{unique()}") is None
    with pytest.raises(ValueError, match="PORTAL_GITLAB_URL"):
        GitLabSourceControl.from_settings(Settings())


def test_create_commits_the_files_once_protects_the_branch_and_marks_the_owner(scm, api, repos):
    name = unique()
    files = {"README.md": b"# shop\n", "chart/values.yaml": b"replicas: 1\n", "logo.bin": bytes(range(256))}
    created = repos.create(spec(name, **files))
    assert (created.system, created.kind, created.name, created.owner) == (
        "gitlab", "repository", f"{PARENT}/{TEAM}/{name}", OWNER)
    assert created.attributes["default_branch"] == "main" and created.attributes["http_url"].endswith(".git")
    assert created.url.endswith(f"/{PARENT}/{TEAM}/{name}") and created.warnings == ()
    assert scm.find_repository(f"{TEAM}/{name}") == created

    for path, content in files.items():
        assert scm.read_file(created.external_id, "main", path) == content
    project = api.projects.get(int(created.external_id))
    assert [c.message for c in project.commits.list(ref_name="main", get_all=True)] == ["First files"]
    protection = project.protectedbranches.get("main")
    assert [a["access_level"] for a in protection.push_access_levels] == [40]
    assert [a["access_level"] for a in protection.merge_access_levels] == [40]
    assert project.visibility == "private"


def test_find_returns_none_for_what_does_not_exist(scm):
    assert scm.find_repository(f"{TEAM}/{unique()}") is None
    assert scm.find_repository(f"{unique('team')}/{unique()}") is None


def test_an_existing_repository_is_a_conflict_and_is_left_alone(scm, repos):
    name = unique()
    created = repos.create(spec(name, **{"a.txt": b"one"}))
    with pytest.raises(Conflict, match="has already been taken"):
        scm.create_repository(spec(name, owner="someone-else", **{"a.txt": b"two"}))
    assert scm.find_repository(f"{TEAM}/{name}") == created
    assert scm.read_file(created.external_id, "main", "a.txt") == b"one"


def test_a_project_made_outside_the_portal_carries_no_owner(scm, api, repos):
    repos.create(spec(unique()))  # makes the team's group
    name = unique()
    namespace = api.groups.get(f"{PARENT}/{TEAM}")
    project = api.projects.create({"name": name, "path": name, "namespace_id": namespace.id})
    try:
        found = scm.find_repository(f"{TEAM}/{name}")
        assert found is not None and found.owner is None and found.external_id == str(project.id)
    finally:
        project.delete()


def test_members_get_their_role_and_a_missing_user_is_a_warning(target, scm, api, repos):
    if not target.member:
        pytest.fail("set PORTAL_TEST_GITLAB_MEMBER to the username of an existing GitLab user who is not a member "
                    f"of {PARENT}")
    missing = unique("nobody")
    created = repos.create(spec(unique(), members=(Member(target.member, "maintainer"), Member(missing))))
    assert len(created.warnings) == 1 and missing in created.warnings[0]
    user = api.users.list(username=target.member, get_all=False)[0]
    assert api.projects.get(int(created.external_id)).members.get(user.id).access_level == 40


def test_commit_files_updates_existing_files_and_creates_new_ones_in_one_commit(scm, api, repos):
    repo = repos.create(spec(unique(), **{"a.txt": b"one"})).external_id
    first = api.projects.get(int(repo)).commits.list(ref_name="main", get_all=True)[0].id
    commit = scm.commit_files(repo, "main", {"a.txt": b"two", "dir/b.txt": b"new"}, "Update")
    assert commit.message == "Update" and len(commit.sha) == 40 and commit.sha != first and commit.author
    assert commit.sha in commit.url
    assert scm.read_file(repo, "main", "a.txt") == b"two" and scm.read_file(repo, "main", "dir/b.txt") == b"new"
    assert scm.read_file(repo, first, "a.txt") == b"one"
    shas = [c.id for c in api.projects.get(int(repo)).commits.list(ref_name="main", get_all=True)]
    assert shas == [commit.sha, first]

    scm.commit_files(repo, "feature", {"c.txt": b"c"}, "Feature")  # a new branch starts from the default one
    assert scm.read_file(repo, "feature", "dir/b.txt") == b"new"
    with pytest.raises(NotFound):
        scm.read_file(repo, "main", "c.txt")
    with pytest.raises(InvalidRequest):
        scm.commit_files(repo, "main", {}, "Nothing")


def test_what_is_missing_is_not_found(scm, repos):
    repo = repos.create(spec(unique(), **{"a.txt": b"a"})).external_id
    for call in (lambda: scm.read_file(repo, "main", "nope.txt"), lambda: scm.read_file(repo, "no-branch", "a.txt"),
                 lambda: scm.read_file("999999999", "main", "a.txt"),
                 lambda: scm.commit_files("999999999", "main", {"a": b"a"}, "No repository"),
                 lambda: scm.delete_repository("999999999")):
        with pytest.raises(NotFound):
            call()


def test_delete_then_not_found_and_the_name_is_free_again(scm, repos):
    name = unique()
    created = scm.create_repository(spec(name))
    scm.delete_repository(created.external_id)
    assert scm.find_repository(f"{TEAM}/{name}") is None
    with pytest.raises(NotFound):
        scm.delete_repository(created.external_id)
    assert repos.create(spec(name)).external_id != created.external_id


def test_webhooks_round_trip_and_go_with_their_repository(scm, api, repos):
    repo = repos.create(spec(unique())).external_id
    hook_spec = WebhookSpec(repository_id=repo, url=HOOK_URL, secret="s3cret-" + uuid.uuid4().hex, owner=OWNER)
    hook = scm.create_webhook(hook_spec)
    assert (hook.system, hook.kind, hook.name, hook.owner) == ("gitlab", "webhook", HOOK_URL, OWNER)
    assert hook.attributes["repository_id"] == repo and hook_spec.secret not in str(hook)
    seen = api.projects.get(int(repo)).hooks.get(int(hook.external_id))
    assert seen.push_events and not seen.merge_requests_events and not seen.tag_push_events
    assert seen.enable_ssl_verification and hook_spec.secret not in str(seen.attributes)

    assert scm.find_webhook(repo, HOOK_URL) == hook
    assert scm.find_webhook(repo, "https://elsewhere.example/hook") is None
    with pytest.raises(Conflict):
        scm.create_webhook(hook_spec)
    with pytest.raises(InvalidRequest, match="build"):
        scm.create_webhook(WebhookSpec(repository_id=repo, url=HOOK_URL + "/2", secret="s", owner=OWNER,
                                       events=("push", "build")))
    other = repos.create(spec(unique())).external_id
    with pytest.raises(NotFound):
        scm.delete_webhook(other, hook.external_id)
    scm.delete_webhook(repo, hook.external_id)
    assert scm.find_webhook(repo, HOOK_URL) is None
    with pytest.raises(NotFound):
        scm.delete_webhook(repo, hook.external_id)

    scm.create_webhook(hook_spec)
    scm.delete_repository(repo)
    assert scm.find_webhook(repo, HOOK_URL) is None
    with pytest.raises(NotFound):
        scm.create_webhook(hook_spec)


def test_find_webhook_reads_every_page(scm, repos):
    repo = repos.create(spec(unique())).external_id
    for i in range(22):  # GitLab answers 20 a page by default
        scm.create_webhook(WebhookSpec(repository_id=repo, url=f"{HOOK_URL}/{i}", secret="s", owner=OWNER))
    assert scm.find_webhook(repo, f"{HOOK_URL}/21").name == f"{HOOK_URL}/21"


def test_a_missing_parent_group_says_to_create_it(target):
    parent = unique("no-parent")
    with pytest.raises(NotFound, match="create it") as info:
        adapter(target, parent_group=parent).create_repository(spec(unique()))
    assert parent in info.value.message


def test_a_wrong_token_is_auth_failed_and_never_shown(target):
    wrong = "glpat-wrong-" + uuid.uuid4().hex
    with pytest.raises(AuthFailed, match="401 Unauthorized") as info:
        adapter(target, token=wrong).find_repository(f"{TEAM}/{unique()}")
    assert info.value.status == 401
    assert_clean(info.value, wrong)


# --- fault injection and request counts: always against the fake -------------------------------

@pytest.fixture
def faulty(fake) -> GitLabSourceControl:
    return adapter(fake, retries=0)


def test_create_makes_one_commit_call_and_creates_the_team_group_once(fake):
    scm = adapter(fake)
    for name in ("one", "two"):
        scm.create_repository(spec(name, **{"a.txt": b"a", "b.txt": b"b"}))
    assert len(fake.requests_to("POST", r"^/api/v4/groups$")) == 1
    commits = fake.requests_to("POST", r"^/api/v4/projects/\d+/repository/commits$")
    assert len(commits) == 2
    assert [(a["action"], a["encoding"]) for a in commits[0].body["actions"]] == [("create", "base64")] * 2
    assert fake.projects[int(scm.find_repository(f"{TEAM}/one").external_id)]["topics"] == [f"portal-owner-{OWNER}"]


def test_an_existing_team_group_is_adopted(fake):
    fake.add_group(f"{PARENT}/{TEAM}")
    adapter(fake).create_repository(spec("shop"))
    assert fake.requests_to("POST", r"^/api/v4/groups$") == []


def test_commit_files_asks_for_each_file_and_sends_update_or_create(fake):
    scm = adapter(fake)
    repo = scm.create_repository(spec("shop", **{"a.txt": b"a"})).external_id
    scm.commit_files(repo, "main", {"a.txt": b"A", "b.txt": b"B"}, "Both")
    assert len(fake.requests_to("HEAD", r"/repository/files/")) == 2
    actions = fake.requests_to("POST", r"/repository/commits$")[-1].body["actions"]
    assert {a["file_path"]: a["action"] for a in actions} == {"a.txt": "update", "b.txt": "create"}


@pytest.mark.parametrize("initial", [None, (30, 30), (40, 30), (40, 40)])
def test_the_default_branch_ends_protected_whatever_gitlab_did_at_the_first_push(initial):
    with FakeGitLab(token=FAKE_TOKEN, default_branch_protection=initial) as server:
        server.add_group(PARENT)
        repo = adapter(server).create_repository(spec("shop", **{"a.txt": b"a"})).external_id
        assert server.projects[int(repo)]["protected"]["main"] | {"id": 0} == {"id": 0, "push": 40, "merge": 40}


def test_projects_scheduled_for_deletion_count_as_gone():
    with FakeGitLab(token=FAKE_TOKEN, delayed_deletion=True) as server:
        server.add_group(PARENT)
        scm = adapter(server)
        repo = scm.create_repository(spec("shop")).external_id
        scm.delete_repository(repo)
        assert server.projects[int(repo)]["marked_for_deletion_at"]
        assert scm.find_repository(f"{TEAM}/shop") is None
        with pytest.raises(NotFound, match="scheduled for deletion"):
            scm.delete_repository(repo)
        with pytest.raises(NotFound):
            scm.create_webhook(WebhookSpec(repository_id=repo, url=HOOK_URL, secret="s", owner=OWNER))
        assert scm.create_repository(spec("shop")).external_id != repo


def test_a_member_already_there_is_fine_and_a_refused_one_is_a_warning(fake):
    fake.add_user("bob")
    fake.fail_next("POST", r"/members$", 409, body={"message": "Member already exists"})
    fake.fail_next("POST", r"/members$", 400, body={"message": {"access_level": [
        "should be greater than or equal to Owner inherited membership from group portal-test"]}})
    created = adapter(fake).create_repository(spec("shop", members=(Member("alice"), Member("bob", "maintainer"))))
    assert len(created.warnings) == 1 and "bob" in created.warnings[0] and "inherited" in created.warnings[0]


@pytest.mark.parametrize("status, cls, message", [
    (401, AuthFailed, "401 Unauthorized"), (403, AuthFailed, "403 Forbidden"), (404, NotFound, "404 Project Not Found"),
    (409, Conflict, "Resource lock"), (400, InvalidRequest, "description is too long"),
    (422, InvalidRequest, "Unprocessable"), (500, Unavailable, "500 Internal Server Error"),
    (503, Unavailable, "503 Service Unavailable"),
])
def test_each_status_becomes_its_error_with_gitlabs_message(fake, faulty, status, cls, message):
    fake.fail_next("POST", r"^/api/v4/projects$", status, body={"message": message})
    with pytest.raises(cls, match=message) as info:
        faulty.create_repository(spec("shop"))
    assert type(info.value) is cls and info.value.status == status
    assert_clean(info.value, fake.token)


def test_gitlabs_error_key_is_read_too(fake, faulty):
    fake.fail_next("POST", r"^/api/v4/projects$", 400, body={"error": "namespace_id is invalid"})
    with pytest.raises(InvalidRequest, match="namespace_id is invalid"):
        faulty.create_repository(spec("shop"))


def test_rate_limited_says_when_to_retry_and_is_not_slept_through(fake):
    faulty = adapter(fake, retries=2)  # python-gitlab would sleep and retry a 429 by itself
    fake.fail_next("GET", r"^/api/v4/projects/", 429, headers={"Retry-After": "7"},
                   body={"message": "429 Too Many Requests"})
    with pytest.raises(RateLimited, match="429 Too Many Requests") as info:
        faulty.find_repository(f"{TEAM}/shop")
    assert info.value.retry_after == 7.0 and info.value.status == 429 and info.value.transient
    assert len(fake.requests_to("GET", r"^/api/v4/projects/")) == 1
    assert_clean(info.value, fake.token)

    fake.fail_next("GET", r"^/api/v4/projects/", 429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    with pytest.raises(RateLimited) as info:
        faulty.find_repository(f"{TEAM}/shop")
    assert info.value.retry_after == 0.0  # a date in the past: now


def test_a_timeout_is_unavailable(fake):
    fake.fail_next("GET", r"^/api/v4/projects/", delay=3)
    with pytest.raises(Unavailable, match="no answer within 0.3s") as info:
        adapter(fake, timeout=0.3, retries=0).find_repository(f"{TEAM}/shop")
    assert isinstance(info.value.__cause__, requests.Timeout)
    assert_clean(info.value, fake.token)


def test_idempotent_requests_are_retried_and_posts_are_not(fake):
    scm = adapter(fake, retries=2)
    fake.fail_next("GET", r"^/api/v4/projects/", 502, times=2)
    assert scm.find_repository(f"{TEAM}/shop") is None  # third time lucky
    assert len(fake.requests_to("GET", r"^/api/v4/projects/")) == 3
    fake.fail_next("GET", r"^/api/v4/projects/", 500, times=3)
    with pytest.raises(Unavailable):
        scm.find_repository(f"{TEAM}/shop")

    fake.fail_next("POST", r"^/api/v4/projects$", 500)
    with pytest.raises(Unavailable):
        scm.create_repository(spec("shop"))
    assert len(fake.requests_to("POST", r"^/api/v4/projects$")) == 1


def test_a_failure_after_the_project_exists_removes_it_so_a_retry_starts_afresh(fake, faulty):
    fake.fail_next("POST", r"/repository/commits$", 500)
    with pytest.raises(Unavailable):
        faulty.create_repository(spec("shop", **{"a.txt": b"a"}))
    assert len(fake.requests_to("POST", r"/repository/commits$")) == 1
    assert faulty.find_repository(f"{TEAM}/shop") is None and fake.projects == {}
    assert faulty.create_repository(spec("shop", **{"a.txt": b"a"})).owner == OWNER


def test_an_unreachable_gitlab_is_unavailable(fake):
    scm = adapter(fake, retries=0)
    fake.stop()
    with pytest.raises(Unavailable) as info:
        scm.find_repository(f"{TEAM}/shop")
    assert_clean(info.value, fake.token)


def test_a_token_echoed_by_gitlab_is_scrubbed(fake, faulty):
    fake.fail_next("GET", r"^/api/v4/projects/", 401, body={"message": f"token {fake.token} was revoked"})
    with pytest.raises(AuthFailed, match=r"token \[token\] was revoked") as info:
        faulty.find_repository(f"{TEAM}/shop")
    assert_clean(info.value, fake.token)


def test_the_fake_paginates_and_checks_the_token_as_gitlab_does(fake):
    fake.add_user("bob")
    answer = requests.get(f"{fake.url}/api/v4/users", params={"per_page": 2}, headers={"PRIVATE-TOKEN": fake.token},
                          timeout=5)
    assert answer.status_code == 200 and len(answer.json()) == 2
    assert (answer.headers["X-Total"], answer.headers["X-Page"], answer.headers["X-Next-Page"]) == ("3", "1", "2")
    assert 'rel="next"' in answer.headers["Link"] and "page=2" in answer.links["next"]["url"]
    refused = requests.get(f"{fake.url}/api/v4/users", timeout=5)
    assert refused.status_code == 401 and refused.json() == {"message": "401 Unauthorized"}
