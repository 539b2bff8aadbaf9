"""The fakes of the outside systems: contracts honoured, state shared through Redis, injected failures and crashes."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis

from integrations.ci import BuildState, CIServer, JobSpec
from integrations.cluster import ClusterAccess, NamespaceSpec, Quota
from integrations.delivery import Delivery, DeliverySpec
from integrations.errors import AuthFailed, Conflict, InvalidRequest, NotFound, RateLimited, Unavailable
from integrations.logs import LogLine, LogQuery, LogStore
from integrations.registry import ImageRegistry
from integrations.scm import RepositorySpec, SourceControl, WebhookSpec
from portal.config import Settings
from portal.services.providers import build_providers
from tests.fakes import FakeWorld, SimulatedCrash
from tests.fakes.providers import (
    FakeCIServer, FakeClusterAccess, FakeDelivery, FakeImageRegistry, FakeLogStore, FakeSourceControl,
)

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "fake-test"
OWNER = "app-7f3a"
FAKES = [(FakeSourceControl, SourceControl, "scm"), (FakeCIServer, CIServer, "ci"),
         (FakeImageRegistry, ImageRegistry, "registry"), (FakeClusterAccess, ClusterAccess, "cluster"),
         (FakeDelivery, Delivery, "delivery"), (FakeLogStore, LogStore, "logs")]


@pytest.fixture
def world(redis_server):
    world = FakeWorld(redis_server.url, PREFIX)
    world.reset()
    yield world
    world.reset()
    world.close()


@pytest.fixture
def scm(world):
    return FakeSourceControl(world)


def repo_spec(name: str = "shop-api", owner: str = OWNER, **files: bytes) -> RepositorySpec:
    return RepositorySpec(group="dev", name=name, description="The shop", owner=owner, files=files)


# --- the contracts -------------------------------------------------------------------------------

@pytest.mark.parametrize("fake, protocol, contract", FAKES)
def test_each_fake_implements_its_protocol_with_the_same_signatures(world, fake, protocol, contract):
    provider = fake(world)
    assert isinstance(provider, protocol)
    assert provider.system == f"fake-{contract}"
    methods = [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        assert str(inspect.signature(getattr(fake, name))) == str(inspect.signature(getattr(protocol, name))), name


def test_the_portal_builds_the_fakes_from_their_import_paths(world, redis_server):
    paths = {contract: f"tests.fakes.providers:{fake.__name__}.from_settings" for fake, _, contract in FAKES}
    providers = build_providers(Settings().replace({"redis_url": redis_server.url, **paths}))
    for fake, protocol, contract in FAKES:
        provider = providers.get(contract)
        assert type(provider) is fake and isinstance(provider, protocol)
        assert provider.world.prefix == "fake"
        provider.world.close()


# --- source control ------------------------------------------------------------------------------

def test_repository_round_trip_with_first_commit_conflict_and_not_found(world, scm):
    created = scm.create_repository(repo_spec(**{"README.md": b"# shop", "chart/values.yaml": b"replicas: 1"}))
    assert (created.system, created.kind, created.name, created.owner) == ("fake-scm", "repository", "dev/shop-api",
                                                                           OWNER)
    assert scm.find_repository("dev/shop-api") == created
    assert scm.find_repository("dev/other") is None
    assert scm.read_file(created.external_id, "main", "chart/values.yaml") == b"replicas: 1"
    assert [c.message for c in scm.history(created.external_id, "main")] == ["Initial commit"]

    with pytest.raises(Conflict):
        scm.create_repository(repo_spec(owner="someone-else"))
    assert world.creations("repository") == 1 and world.count("repository") == 1

    scm.delete_repository(created.external_id)
    assert scm.find_repository("dev/shop-api") is None and world.count("repository") == 0
    with pytest.raises(NotFound):
        scm.delete_repository(created.external_id)
    again = scm.create_repository(repo_spec())
    assert again.external_id != created.external_id
    assert world.creations_by_name("repository") == {"dev/shop-api": 2}


def test_commits_keep_files_per_branch_and_per_commit(scm):
    repo = scm.create_repository(repo_spec(**{"a.txt": b"one"})).external_id
    first = scm.history(repo, "main")[0]
    commit = scm.commit_files(repo, "main", {"a.txt": b"two", "b.txt": b"new"}, "Update")
    assert commit.message == "Update" and commit.sha != first.sha and len(commit.sha) == 40
    assert scm.read_file(repo, "main", "a.txt") == b"two"
    assert scm.read_file(repo, first.sha, "a.txt") == b"one"
    with pytest.raises(NotFound):
        scm.read_file(repo, first.sha, "b.txt")

    scm.commit_files(repo, "feature", {"c.txt": b"c"}, "Feature")  # a new branch starts from the default one
    assert scm.read_file(repo, "feature", "b.txt") == b"new"
    with pytest.raises(NotFound):
        scm.read_file(repo, "main", "c.txt")
    with pytest.raises(NotFound):
        scm.read_file(repo, "no-such-branch", "a.txt")
    with pytest.raises(InvalidRequest):
        scm.commit_files(repo, "main", {}, "Nothing")
    with pytest.raises(NotFound):
        scm.commit_files("999", "main", {"a": b"a"}, "No repository")


def test_webhooks_round_trip_and_go_with_their_repository(world, scm):
    repo = scm.create_repository(repo_spec()).external_id
    spec = WebhookSpec(repository_id=repo, url="https://portal.example/hooks/scm", secret="s3cret", owner=OWNER)
    hook = scm.create_webhook(spec)
    assert hook.owner == OWNER and hook.attributes["repository_id"] == repo and "s3cret" not in str(hook)
    assert scm.find_webhook(repo, spec.url) == hook
    assert scm.find_webhook(repo, "https://elsewhere") is None
    with pytest.raises(Conflict):
        scm.create_webhook(spec)
    with pytest.raises(NotFound):
        scm.delete_webhook("other-repo", hook.external_id)
    scm.delete_webhook(repo, hook.external_id)
    with pytest.raises(NotFound):
        scm.delete_webhook(repo, hook.external_id)

    scm.create_webhook(spec)
    scm.delete_repository(repo)
    assert world.count("webhook") == 0 and world.creations("webhook") == 2
    with pytest.raises(NotFound):
        scm.create_webhook(spec)


# --- CI, registry, cluster, delivery -------------------------------------------------------------

def test_ci_jobs_and_builds(world):
    ci = FakeCIServer(world)
    job = ci.create_job(JobSpec(folder="dev", name="shop-api", repository_url="https://scm/dev/shop-api.git",
                                owner=OWNER))
    assert ci.find_job("dev/shop-api") == job and job.external_id == "dev/shop-api" and job.owner == OWNER
    with pytest.raises(Conflict):
        ci.create_job(JobSpec(folder="dev", name="shop-api", repository_url="x", owner=OWNER))

    queued = ci.trigger_build("dev/shop-api", {"COMMIT": "abc", "IMAGE_TAG": "1.0"})
    assert queued.state is BuildState.QUEUED and queued.number is None and queued.queue_id
    build = ci.get_build(queued)
    assert build.state is BuildState.SUCCEEDED and build.number == 1 and build.parameters["COMMIT"] == "abc"
    assert ci.get_build(build) == build
    assert ci.get_build(ci.trigger_build("dev/shop-api", {})).number == 2

    whole = ci.console("dev/shop-api", 1)
    assert "COMMIT=abc" in whole.text and whole.text.endswith("Finished: SUCCESS\n") and not whole.more
    rest = ci.console("dev/shop-api", 1, start=10)
    assert rest.text == whole.text[10:] and rest.next_start == whole.next_start == len(whole.text)
    assert ci.console("dev/shop-api", 1, start=whole.next_start).text == ""
    with pytest.raises(NotFound):
        ci.console("dev/shop-api", 3)

    ci.delete_job("dev/shop-api")
    assert world.count("build") == 0 and world.creations("build") == 2
    for call in (lambda: ci.delete_job("dev/shop-api"), lambda: ci.trigger_build("dev/shop-api", {})):
        with pytest.raises(NotFound):
            call()


def test_registry_repositories_credentials_and_tags(world):
    registry = FakeImageRegistry(world)
    repo = registry.create_repository("dev/shop-api", OWNER)
    assert registry.find_repository("dev/shop-api") == repo and repo.owner == OWNER
    with pytest.raises(Conflict):
        registry.create_repository("dev/shop-api", OWNER)
    world.add_image_tag("dev/shop-api", "1.0")
    world.add_image_tag("dev/shop-api", "0.9", digest="sha256:abc")
    assert [(t.tag, t.digest) for t in registry.list_tags("dev/shop-api")][0] == ("0.9", "sha256:abc")
    assert registry.list_tags("dev/shop-api")[1].digest.startswith("sha256:")
    creds = registry.credentials("dev")
    assert creds.server == FakeImageRegistry.server and "dev" in creds.secret_ref
    registry.delete_repository("dev/shop-api")
    for call in (lambda: registry.delete_repository("dev/shop-api"), lambda: registry.list_tags("dev/shop-api")):
        with pytest.raises(NotFound):
            call()


def test_namespaces_converge_and_take_manifests(world):
    cluster = FakeClusterAccess(world)
    spec = NamespaceSpec(name="dev-shop-api-dev", owner=OWNER, labels={"team": "dev"}, team_group="team:dev")
    first = cluster.ensure_namespace(spec)
    second = cluster.ensure_namespace(NamespaceSpec(**{**spec.__dict__, "quota": Quota(cpu="8")}))
    assert first.external_id == second.external_id and second.attributes["quota.cpu"] == "8"
    assert second.attributes["labels.team"] == "dev" and cluster.find_namespace(spec.name) == second
    assert world.creations("namespace") == 1
    with pytest.raises(Conflict):
        cluster.ensure_namespace(NamespaceSpec(**{**spec.__dict__, "owner": "app-other"}))

    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "shop:1"}]}}}}
    applied = cluster.apply(spec.name, [deployment, {"kind": "Service", "metadata": {"name": "web"}}])
    assert [r.kind for r in applied] == ["Deployment", "Service"]
    cluster.apply(spec.name, [{**deployment, "spec": {"replicas": 3}}])
    [workload] = cluster.list_workloads(spec.name)
    assert (workload.name, workload.ready, workload.desired) == ("web", 3, 3)
    assert world.creations("manifest") == 2 and world.count("manifest") == 2
    with pytest.raises(InvalidRequest):
        cluster.apply(spec.name, [{"kind": "Service", "metadata": {"name": "x", "namespace": "kube-system"}}])

    cluster.delete_namespace(spec.name)
    assert world.count("manifest") == 0
    for call in (lambda: cluster.delete_namespace(spec.name), lambda: cluster.apply(spec.name, [deployment]),
                 lambda: cluster.list_workloads(spec.name)):
        with pytest.raises(NotFound):
            call()


def test_things_someone_else_made_carry_no_owner_and_are_not_converged(world):
    world.seed("namespace", "legacy")
    cluster = FakeClusterAccess(world)
    assert cluster.find_namespace("legacy").owner is None and world.creations("namespace") == 0
    with pytest.raises(Conflict):
        cluster.ensure_namespace(NamespaceSpec(name="legacy", owner=OWNER, labels={}, team_group="team:dev"))


def test_delivery_applications_converge_sync_and_report_history(world):
    delivery = FakeDelivery(world)
    spec = DeliverySpec(name="shop-api-dev", owner=OWNER, project="dev", repository_url="https://scm/x.git",
                        path="chart", values_file="values-dev.yaml", cluster="in-cluster", namespace="dev-shop")
    created = delivery.ensure_application(spec)
    updated = delivery.ensure_application(DeliverySpec(**{**spec.__dict__, "revision": "v2"}))
    assert created.external_id == updated.external_id and updated.attributes["revision"] == "v2"
    assert world.creations("delivery_application") == 1 and delivery.find_application(spec.name) == updated
    delivery.sync(spec.name)
    status = delivery.status(spec.name)
    assert (status.sync, status.health, status.revision) == ("Synced", "Healthy", "v2")
    assert [e.revision for e in status.history] == ["main", "v2"]
    delivery.delete_application(spec.name)
    for call in (lambda: delivery.delete_application(spec.name), lambda: delivery.status(spec.name),
                 lambda: delivery.sync(spec.name)):
        with pytest.raises(NotFound):
            call()


# --- logs ----------------------------------------------------------------------------------------

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def logs(world):
    # Ten lines in "shop", three sharing one timestamp, and lines in a namespace the query does not name.
    world.add_log_lines("shop", [LogLine(at(i // 2 if i < 6 else i), f"line {i}", "shop", f"web-{i % 2}", "app",
                                         "stderr" if i == 9 else "stdout") for i in range(10)])
    world.add_log_lines("other", [LogLine(at(3), "secret of another team", "other", "db-0", "db")])
    return FakeLogStore(world)


def test_log_query_filters_by_namespace_text_pod_stream_and_time(logs):
    shop = LogQuery(namespaces=("shop",))
    assert [line.message for line in logs.query(shop).lines] == [f"line {i}" for i in range(10)]
    assert logs.query(LogQuery(namespaces=("shop",), text="SECRET")).lines == []
    assert len(logs.query(LogQuery(namespaces=("shop", "other"), text="secret")).lines) == 1
    assert {line.pod for line in logs.query(LogQuery(namespaces=("shop",), pods=("web-1",))).lines} == {"web-1"}
    assert [line.message for line in logs.query(LogQuery(namespaces=("shop",), streams=("stderr",))).lines] == [
        "line 9"]
    window = logs.query(LogQuery(namespaces=("shop",), since=at(2), until=at(7))).lines
    assert [line.message for line in window] == ["line 4", "line 5", "line 6"]
    nothing = logs.query(LogQuery(namespaces=()))
    assert nothing.lines == [] and nothing.notes
    with pytest.raises(InvalidRequest):
        logs.query(LogQuery(namespaces=("shop",), limit=0))


def test_loading_older_pages_returns_each_line_once_in_a_stable_order(logs):
    query = LogQuery(namespaces=("shop",), limit=3)
    page = logs.query(query)
    seen = [page.lines]
    while page.cursor is not None:
        page = logs.query(query, before=list(page.cursor))  # a cursor that went through JSON comes back a list
        seen.insert(0, page.lines)
    assert [line.message for lines in seen for line in lines] == [f"line {i}" for i in range(10)]
    assert [len(lines) for lines in seen] == [1, 3, 3, 3]


def test_tail_returns_new_lines_exactly_once(world, logs):
    query = LogQuery(namespaces=("shop",), limit=4)
    first = logs.tail(query, after=None)
    assert [line.message for line in first.lines] == ["line 6", "line 7", "line 8", "line 9"]
    assert logs.tail(query, after=first.cursor).lines == []
    assert logs.tail(query, after=first.cursor).cursor == first.cursor
    world.add_log_lines("shop", [LogLine(at(100 + i), f"new {i}", "shop", "web-0", "app") for i in range(6)])
    pages = [logs.tail(query, after=first.cursor)]
    pages.append(logs.tail(query, after=pages[-1].cursor))
    assert [line.message for p in pages for line in p.lines] == [f"new {i}" for i in range(6)]


# --- injection -----------------------------------------------------------------------------------

@pytest.mark.parametrize("error, cls", [
    ("transient", Unavailable), ("permanent", InvalidRequest), ("auth", AuthFailed), ("conflict", Conflict),
    ("invalid", InvalidRequest), ("rate_limited", RateLimited),
])
def test_each_injected_error_fails_the_next_call_only(world, scm, error, cls):
    world.fail("scm.create_repository", error)
    with pytest.raises(cls) as info:
        scm.create_repository(repo_spec())
    assert type(info.value) is cls and info.value.system == "fake-scm"
    assert info.value.message == f"injected {error} failure of scm.create_repository"
    assert info.value.transient == (error in ("transient", "rate_limited"))
    assert world.count("repository") == 0
    assert scm.create_repository(repo_spec()).owner == OWNER
    assert world.calls("scm.create_repository") == 2


def test_rate_limited_says_when_to_retry(world, scm):
    world.fail("scm.find_repository", "rate_limited")
    with pytest.raises(RateLimited) as info:
        scm.find_repository("dev/x")
    assert info.value.retry_after == 0.01 and info.value.status == 429


def test_failures_for_some_times_or_until_cleared(world, scm):
    world.fail("scm.find_repository", times=2, message="gateway timeout")
    for _ in range(2):
        with pytest.raises(Unavailable, match="gateway timeout"):
            scm.find_repository("dev/x")
    assert scm.find_repository("dev/x") is None

    world.fail("scm.find_repository", "auth", times=None)
    world.fail("ci.find_job", "auth", times=None)
    for _ in range(3):
        with pytest.raises(AuthFailed):
            scm.find_repository("dev/x")
    world.clear_failures("scm.find_repository")
    assert scm.find_repository("dev/x") is None
    with pytest.raises(AuthFailed):
        FakeCIServer(world).find_job("dev/x")
    world.clear_failures()
    assert FakeCIServer(world).find_job("dev/x") is None


def test_failure_after_the_effect_leaves_the_thing_created(world, scm):
    world.fail("scm.create_repository", when="after")
    with pytest.raises(Unavailable):
        scm.create_repository(repo_spec())
    assert scm.find_repository("dev/shop-api").owner == OWNER


def test_a_crash_before_changes_nothing_and_passes_through_exception_handlers(world, scm):
    world.crash("scm.create_repository")

    def careless_caller():
        try:
            scm.create_repository(repo_spec())
        except Exception:
            return "swallowed"

    with pytest.raises(SimulatedCrash, match="before scm.create_repository"):
        careless_caller()
    assert world.count("repository") == 0 and world.creations("repository") == 0
    scm.create_repository(repo_spec())
    assert world.creations("repository") == 1


def test_a_crash_after_leaves_the_thing_created_once(world, scm):
    world.crash("scm.create_repository", when="after")
    with pytest.raises(SimulatedCrash):
        scm.create_repository(repo_spec(**{"README.md": b"hi"}))
    found = scm.find_repository("dev/shop-api")
    assert found.owner == OWNER and scm.read_file(found.external_id, "main", "README.md") == b"hi"
    assert world.creations("repository") == 1
    with pytest.raises(Conflict):
        scm.create_repository(repo_spec())
    assert world.creations("repository") == 1


def test_rules_are_consumed_once_under_concurrent_calls(world, scm):
    world.fail("scm.find_repository", times=3)

    def call(_):
        try:
            scm.find_repository("dev/x")
            return "ok"
        except Unavailable:
            return "failed"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(call, range(40)))
    assert outcomes.count("failed") == 3 and world.calls("scm.find_repository") == 40

    def create(_):
        try:
            return scm.create_repository(repo_spec("raced")).external_id
        except Conflict:
            return None

    with ThreadPoolExecutor(16) as pool:
        created = [x for x in pool.map(create, range(16)) if x]
    assert len(created) == 1 and world.creations_by_name("repository") == {"dev/raced": 1}


def test_latency_delays_each_call(world, scm):
    world.latency("scm.find_repository", 0.05)
    started = time.monotonic()
    scm.find_repository("dev/x")
    assert time.monotonic() - started >= 0.05  # a lower bound that sleep guarantees, not a timing
    world.latency("scm.find_repository", 0)
    assert world.redis.hget(world.key("latency"), "scm.find_repository") is None


def test_names_are_checked_so_a_typo_cannot_silently_never_fire(world):
    for call in (lambda: world.fail("scm.create_repo"), lambda: world.fail("scm.create_repository", "flaky"),
                 lambda: world.crash("scm.create_repository", when="during"), lambda: world.objects("repo"),
                 lambda: world.fail("scm.find_repository", times=0)):
        with pytest.raises(ValueError):
            call()


def test_reset_deletes_only_the_worlds_keys(world, redis_server, scm):
    client = redis.Redis.from_url(redis_server.url)
    client.set("unrelated", 1)
    client.set(f"{PREFIX}x:1", 1)
    scm.create_repository(repo_spec())
    world.fail("scm.find_repository", times=None)
    world.reset()
    assert client.exists("unrelated", f"{PREFIX}x:1") == 2
    assert list(client.scan_iter(match=f"{PREFIX}:*")) == []
    assert scm.find_repository("dev/shop-api") is None
    client.delete("unrelated", f"{PREFIX}x:1")
    client.close()


# --- across processes ----------------------------------------------------------------------------

CHILD = """
import sys
from integrations.scm import RepositorySpec
from tests.fakes import FakeWorld
from tests.fakes.providers import FakeSourceControl
world = FakeWorld(sys.argv[1], sys.argv[2])
FakeSourceControl(world).create_repository(RepositorySpec(group="dev", name="shop-api", description="", owner=sys.argv[3]))
"""


@pytest.fixture
def child(redis_server):
    """Start a process that creates repository dev/shop-api through its own world; killed at the end if alive."""
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, redis_server.url, PREFIX, OWNER], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_a_call_paused_in_another_process_resumes_when_released(world, child):
    op = "scm.create_repository"
    world.pause(op)
    proc = child()
    assert world.wait_paused(op) == proc.pid
    assert world.calls(op) == 1 and world.count("repository") == 0
    world.release(op)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert world.creations("repository") == 1
    assert FakeSourceControl(world).find_repository("dev/shop-api").owner == OWNER


def test_a_process_killed_while_paused_after_the_effect_leaves_it_created(world, child):
    op = "scm.create_repository"
    world.pause(op, when="after")
    proc = child()
    pid = world.wait_paused(op)
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert world.creations("repository") == 1
    assert FakeSourceControl(world).find_repository("dev/shop-api").owner == OWNER
    with pytest.raises(TimeoutError, match=op):
        world.wait_paused(op, timeout=0.2)  # the dead process is not reported as paused


def test_a_hard_crash_kills_the_calling_process_after_the_effect(world, child):
    world.crash("scm.create_repository", when="after", kill=True)
    proc = child()
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert world.creations("repository") == 1 and world.count("repository") == 1
    assert world.calls("scm.create_repository") == 1


def test_wait_paused_times_out_when_nothing_pauses(world):
    world.pause("ci.create_job")
    with pytest.raises(TimeoutError, match="ci.create_job"):
        world.wait_paused("ci.create_job", timeout=0.1)
