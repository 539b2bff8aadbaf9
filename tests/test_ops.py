"""Operations endpoints against real servers: /healthz, /readyz as Redis and PostgreSQL stop and come back and as
the schema falls behind, /metrics (requests, queues, jobs, outside calls, cluster cache; one process or several
under gunicorn), and the JSON log lines with their request and job ids."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from rq import SimpleWorker

from integrations import http
from integrations.cluster import ClusterTarget
from integrations.cluster_cache import ClusterCache, KindStatus
from integrations.errors import AuthFailed, Unavailable
from integrations.gitlab import GitLabSourceControl
from integrations.kubernetes_api import KubernetesAPI
from jobs import QueueName, enqueue, get_queue, in_app_context
from portal import create_app
from portal.config import ConfigError
from portal.extensions import db
from portal.logging_config import REQUEST_ID, ContextIds, JsonFormatter, _StderrHandler, formatter
from testbed.process import free_port
from testbed.services import PostgresServer, RedisServer
from tests.conftest import BACKENDS, make_app

ROOT = Path(__file__).resolve().parent.parent
HEAD = "0005"
# Tests about the endpoints, not the database: one backend is enough.
ONE_BACKEND = pytest.mark.parametrize("db_backend", BACKENDS[:1])
log = logging.getLogger("tests.ops")


# --- jobs the tests enqueue (importable, so that a real worker can run them) ----------------------------

@in_app_context
def chatty(message: str) -> str:
    log.info("chatty says %s", message)
    return message


@in_app_context
def explode(message: str) -> None:
    try:
        raise RuntimeError(message)
    except RuntimeError:
        log.exception("explode failed on purpose")
        raise


# --- helpers ---------------------------------------------------------------------------------------------

def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of sample ``name`` with exactly ``labels`` in a scrape, or None when there is none."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def scrape(client, **headers) -> str:
    resp = client.get("/metrics", headers=headers)
    assert resp.status_code == 200, resp.status_code
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    return resp.get_data(as_text=True)


def json_lines(err: str) -> list[dict]:
    """The JSON objects among captured stderr lines (other lines, e.g. a library's print, are left out)."""
    found = []
    for line in err.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def work_burst(queue) -> bool:
    """Run ``queue``'s jobs with a real RQ worker in this process, leaving pytest's signal handlers as they were."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return SimpleWorker([queue], connection=queue.connection).work(burst=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


# --- /healthz --------------------------------------------------------------------------------------------

def test_healthz_answers_with_neither_database_nor_redis_reachable():
    app = create_app({"testing": True, "secret_key": "x", "rq_async": False,
                      "database_url": f"postgresql+psycopg://portal:pw@127.0.0.1:{closed_port()}/none",
                      "redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "ok\n"
    assert resp.headers["Cache-Control"] == "no-store"


# --- /readyz ---------------------------------------------------------------------------------------------

@ONE_BACKEND
def test_readyz_fails_while_redis_is_stopped_and_recovers_when_it_is_back(app, tmp_path):
    own = RedisServer.start(tmp_path / "redis")
    try:
        second = make_app(app.config["SQLALCHEMY_DATABASE_URI"], own.url)
        client = second.test_client()
        resp = client.get("/readyz")
        assert resp.status_code == 200, resp.json
        assert resp.json == {"database": "ok", "redis": "ok", "migrations": "ok"}

        own.stop()
        resp = client.get("/readyz")
        assert resp.status_code == 503
        assert resp.json == {"database": "ok", "redis": "unreachable: ConnectionError", "migrations": "ok"}
        assert str(own.port) not in resp.get_data(as_text=True)

        own = RedisServer.start(tmp_path / "redis", port=own.port)
        resp = client.get("/readyz")
        assert resp.status_code == 200, resp.json
    finally:
        own.stop()


def test_readyz_fails_while_postgresql_is_stopped_and_recovers_when_it_is_back(redis_server):
    server = PostgresServer.start()
    try:
        url = server.create_database("portal_ready")
        second = make_app(url, redis_server.url)
        with second.app_context():
            from flask_migrate import upgrade

            upgrade()
            client = second.test_client()
            assert client.get("/readyz").status_code == 200

            # A fast shutdown, as when the server's pod is deleted: the pooled connections are cut.
            os.killpg(server.process.proc.pid, signal.SIGINT)
            server.process.proc.wait(30)
            resp = client.get("/readyz")
            assert resp.status_code == 503
            assert resp.json == {"database": "unreachable: OperationalError", "redis": "ok",
                                 "migrations": "unknown: the database is unreachable"}
            assert str(server.port) not in resp.get_data(as_text=True)

            server.process.start()
            resp = client.get("/readyz")
            assert resp.status_code == 200, resp.json
            db.engine.dispose()
    finally:
        server.stop()


def test_readyz_names_an_unreachable_database_without_its_url(redis_server):
    port = closed_port()
    second = make_app(f"postgresql+psycopg://portal:hunter2@127.0.0.1:{port}/portal", redis_server.url)
    with second.app_context():
        resp = second.test_client().get("/readyz")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 503 and resp.json["database"] == "unreachable: OperationalError"
    assert "hunter2" not in body and str(port) not in body and "postgresql" not in body


def test_readyz_fails_while_the_schema_is_behind_the_migrations(db_backend, redis_server, request, tmp_path):
    from flask_migrate import upgrade

    if db_backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'behind.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(f"portal_behind_{uuid.uuid4().hex[:8]}")
    second = make_app(url, redis_server.url)
    with second.app_context():
        client = second.test_client()
        resp = client.get("/readyz")
        assert resp.status_code == 503 and resp.json["migrations"] == f"at no revision, head is {HEAD}"

        upgrade(revision="0004")
        resp = client.get("/readyz")
        assert resp.status_code == 503
        assert resp.json == {"database": "ok", "redis": "ok", "migrations": f"at 0004, head is {HEAD}"}

        upgrade()
        resp = client.get("/readyz")
        assert resp.status_code == 200 and resp.json["migrations"] == "ok"

        # A newer release migrated first (helm's pre-upgrade hook): this code still serves.
        with db.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_newer'")
        assert client.get("/readyz").status_code == 200
        db.engine.dispose()


def test_the_head_is_the_newest_migration_script():
    newest = sorted(p.name for p in (ROOT / "migrations" / "versions").glob("0*.py"))[-1]
    assert newest.startswith(HEAD + "_"), f"a migration was added: update HEAD in this module ({newest})"


# --- /metrics --------------------------------------------------------------------------------------------

@ONE_BACKEND
def test_request_latency_is_counted_by_endpoint_never_by_path(app, login, dev_member):
    client = login(dev_member)
    labels = {"endpoint": "teams.show", "method": "GET", "status": "2xx"}
    before = metric(scrape(client), "portal_http_request_duration_seconds_count", **labels) or 0
    for _ in range(3):
        assert client.get("/teams/dev").status_code == 200
    missing = f"/nowhere/{uuid.uuid4().hex}"
    assert client.get(missing).status_code == 404
    text = scrape(client)
    assert metric(text, "portal_http_request_duration_seconds_count", **labels) == before + 3
    assert metric(text, "portal_http_request_duration_seconds_count", endpoint="none", method="GET",
                  status="4xx") >= 1
    assert missing not in text and "/teams/dev" not in text


@ONE_BACKEND
def test_queue_depths_and_failed_jobs_are_read_from_redis_at_each_scrape(app_async, client):
    for n in range(3):
        enqueue(chatty, f"queued {n}", queue=QueueName.DEFAULT)
    enqueue(chatty, "a build", queue=QueueName.BUILDS)
    text = scrape(client)
    assert metric(text, "portal_redis_up") == 1
    assert metric(text, "portal_rq_jobs", queue="default", state="queued") == 3
    assert metric(text, "portal_rq_jobs", queue="builds", state="queued") == 1
    assert metric(text, "portal_rq_jobs", queue="provisioning", state="queued") == 0
    assert metric(text, "portal_rq_jobs", queue="default", state="failed") == 0

    before = metric(text, "portal_job_duration_seconds_count", job="tests.test_ops.explode", outcome="failed") or 0
    enqueue(explode, "on purpose", queue=QueueName.PROVISIONING, retries=0)
    queue = get_queue(QueueName.PROVISIONING)
    assert work_burst(queue)
    text = scrape(client)
    assert metric(text, "portal_rq_jobs", queue="provisioning", state="failed") == 1
    assert metric(text, "portal_rq_jobs", queue="provisioning", state="queued") == 0
    assert metric(text, "portal_rq_jobs", queue="default", state="queued") == 3
    assert metric(text, "portal_job_duration_seconds_count", job="tests.test_ops.explode",
                  outcome="failed") == before + 1


@ONE_BACKEND
def test_a_scrape_without_redis_says_so_and_still_answers(app):
    second = make_app(app.config["SQLALCHEMY_DATABASE_URI"], f"redis://127.0.0.1:{closed_port()}/0")
    text = scrape(second.test_client())
    assert metric(text, "portal_redis_up") == 0
    assert "portal_rq_jobs" not in text and "portal_http_request_duration_seconds" in text


@ONE_BACKEND
def test_cluster_cache_freshness_is_the_age_of_its_heartbeat_and_of_each_kind(app, client, redis_server):
    cluster = f"ops-{uuid.uuid4().hex[:6]}"
    cache = ClusterCache(redis.Redis.from_url(redis_server.url), cluster)
    cache.put("services", "status", "web", {"name": "web"})  # a namespace called "status" is not a cluster
    cache.write_status("https://10.0.0.1:6443", {
        "pods": KindStatus(state="watching", synced_at=time.time() - 120),
        "services": KindStatus(state="listing"),  # never in sync yet
    })
    text = scrape(client)
    heartbeat = metric(text, "portal_cluster_cache_heartbeat_age_seconds", cluster=cluster)
    assert heartbeat is not None and 0 <= heartbeat < 60
    assert 120 <= metric(text, "portal_cluster_cache_sync_age_seconds", cluster=cluster, kind="pods") < 180
    assert metric(text, "portal_cluster_cache_sync_age_seconds", cluster=cluster, kind="services") == float("inf")
    assert f'cluster="{cluster}:obj' not in text


@ONE_BACKEND
@pytest.mark.parametrize("app_overrides", [{"metrics_token": "s3cret-metrics"}])
def test_a_metrics_token_is_asked_for_and_compared(app, client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic s3cret-metrics"}).status_code == 401
    assert "portal_redis_up 1.0" in scrape(client, Authorization="Bearer s3cret-metrics")
    assert client.get("/healthz").status_code == 200  # the probes ask for nothing


def _calls(system: str, outcome: str) -> float:
    return metric(generate_latest().decode(), "portal_integration_request_duration_seconds_count",
                  system=system, outcome=outcome) or 0


def _errors(system: str, outcome: str) -> float:
    return metric(generate_latest().decode(), "portal_integration_errors_total", system=system, outcome=outcome) or 0


def test_kubernetes_api_calls_are_measured_by_outcome(control_plane):
    api = KubernetesAPI.of(ClusterTarget(name="test", api_url=control_plane.server,
                                         kubeconfig=control_plane.kubeconfig.read_text()), timeout=10)
    ok, missing = _calls("kubernetes", "ok"), _calls("kubernetes", "client_error")
    assert api.get("/api/v1/namespaces/default") is not None
    assert api.get(f"/api/v1/namespaces/none-{uuid.uuid4().hex[:6]}") is None
    api.close()
    assert _calls("kubernetes", "ok") == ok + 1 and _calls("kubernetes", "client_error") == missing + 1

    gone = KubernetesAPI.of(ClusterTarget(name="gone", api_url=f"https://127.0.0.1:{closed_port()}", token="t"),
                            timeout=2)
    unreachable, errors = _calls("kubernetes", "unreachable"), _errors("kubernetes", "unreachable")
    with pytest.raises(Unavailable):
        gone.get("/api/v1/namespaces/default")
    assert _calls("kubernetes", "unreachable") == unreachable + 1
    assert _errors("kubernetes", "unreachable") == errors + 1


def test_http_calls_are_measured_by_system_through_a_client_library_and_our_own_sessions(gitlab):
    missing = _calls("gitlab", "client_error")
    scm = GitLabSourceControl(gitlab.url, gitlab.token, "portal", timeout=5, retries=0)
    assert scm.find_repository(f"dev/none-{uuid.uuid4().hex[:6]}") is None
    assert _calls("gitlab", "client_error") >= missing + 1

    denied = _errors("gitlab", "denied")
    with pytest.raises(AuthFailed):
        GitLabSourceControl(gitlab.url, "wrong-token", "portal", timeout=5, retries=0).find_repository("dev/x")
    assert _errors("gitlab", "denied") >= denied + 1

    session = http.session(True, "", 0, system="ops-test")
    ok, unreachable, errors = _calls("ops-test", "ok"), _calls("ops-test", "unreachable"), _errors("ops-test",
                                                                                                  "unreachable")
    assert session.get(gitlab.url + "/api/v4/groups/portal", headers={"PRIVATE-TOKEN": gitlab.token},
                       timeout=5).status_code == 200
    assert _calls("ops-test", "ok") == ok + 1
    with pytest.raises(requests.ConnectionError):
        session.get(f"http://127.0.0.1:{closed_port()}/", timeout=2)
    assert _calls("ops-test", "unreachable") == unreachable + 1 and _errors("ops-test", "unreachable") == errors + 1
    assert _errors("ops-test", "ok") == 0  # an answer is not an error


@ONE_BACKEND
def test_observe_step_counts_a_provisioning_step(app, client):
    from portal.metrics import observe_step

    before = metric(scrape(client), "portal_provisioning_step_duration_seconds_count", step="ops_test_step",
                    outcome="done") or 0
    observe_step("ops_test_step", "done", 0.25)
    text = scrape(client)
    assert metric(text, "portal_provisioning_step_duration_seconds_count", step="ops_test_step",
                  outcome="done") == before + 1
    assert metric(text, "portal_provisioning_step_duration_seconds_sum", step="ops_test_step",
                  outcome="done") >= 0.25


class Gunicorn:
    """gunicorn serving the portal from the checkout on a free port, started and stopped by the test."""

    def __init__(self, env: dict[str, str], workers: int = 2, log: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(log or os.devnull, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                                          "--workers", str(workers), "app:app"], cwd=ROOT, env=env,
                                         stdout=out, stderr=out)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.url + "/healthz", timeout=10).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or its workers still loading the app
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("gunicorn did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


@ONE_BACKEND
def test_several_gunicorn_workers_answer_with_the_sum_of_every_workers_figures(app, db_url_for_worker, redis_server,
                                                                                 tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {**os.environ, "PORTAL_DATABASE_URL": db_url_for_worker, "PORTAL_REDIS_URL": redis_server.url,
           "PORTAL_SECRET_KEY": "test", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}

    def probes(server: Gunicorn, count: int) -> list[str]:
        def probe(_):
            resp = requests.get(server.url + "/readyz", headers={"Connection": "close"}, timeout=10)
            assert resp.status_code == 200, resp.text
            return resp.headers["X-Request-ID"]

        with ThreadPoolExecutor(8) as pool:  # concurrent, so that both workers take some
            return list(pool.map(probe, range(count)))

    # Two servers one after the other on the same folder, as when a container restarts within its pod: the
    # figures of the first one's processes, gone by then, still count, so at least two processes answered.
    first = Gunicorn(env)
    try:
        ids = probes(first, 25)
    finally:
        first.stop()
    second = Gunicorn(env)
    try:
        ids += probes(second, 15)
        assert len(set(ids)) == 40
        assert len(list(metrics_dir.glob("histogram_*.db"))) >= 2
        for _ in range(4):  # whichever worker answers the scrape counts every process's requests
            text = requests.get(second.url + "/metrics", timeout=10).text
            assert metric(text, "portal_http_request_duration_seconds_count", endpoint="ops.readyz", method="GET",
                          status="2xx") == 40
            assert metric(text, "portal_redis_up") == 1
    finally:
        second.stop()


# --- structured logs -------------------------------------------------------------------------------------

@ONE_BACKEND
def test_every_line_of_a_gunicorn_container_is_json_its_own_included(app, db_url_for_worker, redis_server,
                                                                    tmp_path):
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "PORTAL_DATABASE_URL": db_url_for_worker, "PORTAL_REDIS_URL": redis_server.url,
           "PORTAL_SECRET_KEY": "test", "PORTAL_LOG_FORMAT": "json"}
    server = Gunicorn(env, workers=1, log=log)
    try:
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
    finally:
        server.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    assert any(line["logger"] == "gunicorn.error" and "Shutting down" in line["message"] for line in lines)



@ONE_BACKEND
def test_lines_logged_during_a_request_carry_its_id_which_comes_back_in_the_response(app, capsys):
    second = make_app(app.config["SQLALCHEMY_DATABASE_URI"], f"redis://127.0.0.1:{closed_port()}/0")
    client = second.test_client()
    capsys.readouterr()
    resp = client.get("/readyz", headers={"X-Request-ID": "lb-7f3a.2_x"})
    assert resp.status_code == 503 and resp.headers["X-Request-ID"] == "lb-7f3a.2_x"
    lines = [line for line in json_lines(capsys.readouterr().err) if line["logger"] == "portal.services.readiness"]
    assert lines and lines[0]["request_id"] == "lb-7f3a.2_x" and lines[0]["level"] == "WARNING"
    assert lines[0]["time"].endswith("Z") and "Redis is unreachable" in lines[0]["message"]
    assert "job_id" not in lines[0]

    for bad in ("has spaces", "x" * 65, "quote\"d", ""):
        resp = client.get("/readyz", headers={"X-Request-ID": bad})
        made = resp.headers["X-Request-ID"]
        assert made != bad and len(made) == 32 and made.isalnum()
        assert all(line["request_id"] == made for line in json_lines(capsys.readouterr().err)
                   if line["logger"] == "portal.services.readiness")
    resp = client.get("/healthz")
    assert resp.headers["X-Request-ID"] != made  # a new id per request


@ONE_BACKEND
def test_lines_logged_by_a_job_carry_its_id_and_an_exception_its_traceback(app_async, capsys):
    job = enqueue(explode, "kaboom", queue=QueueName.DEFAULT, retries=0)
    queue = get_queue(QueueName.DEFAULT)
    capsys.readouterr()
    assert work_burst(queue)
    lines = [line for line in json_lines(capsys.readouterr().err) if line["logger"] == "tests.ops"]
    assert len(lines) == 1, lines
    assert lines[0]["job_id"] == job.id and lines[0]["message"] == "explode failed on purpose"
    assert "RuntimeError: kaboom" in lines[0]["traceback"] and "request_id" not in lines[0]


@ONE_BACKEND
def test_a_synchronous_job_started_by_a_request_carries_both_ids(app, capsys):
    from flask import g

    with app.test_request_context("/", headers={"X-Request-ID": "req-1"}):
        app.preprocess_request()
        capsys.readouterr()
        job = enqueue(chatty, "inline")
        assert g.request_id == "req-1"
    lines = [line for line in json_lines(capsys.readouterr().err) if line["logger"] == "tests.ops"]
    assert [(line["request_id"], line["job_id"], line["message"]) for line in lines] == [
        ("req-1", job.id, "chatty says inline")]


@pytest.mark.worker
@ONE_BACKEND
def test_a_real_worker_writes_json_lines_with_the_job_id_and_its_figures_for_a_scrape(app_async, redis_server,
                                                                                      db_url_for_worker, tmp_path):
    metrics_dir = tmp_path / "prometheus"  # not there yet, as under an emptyDir mounted over /tmp: made at start
    job = enqueue(chatty, "from a worker", queue=QueueName.DEFAULT)
    env = {**os.environ, "PORTAL_REDIS_URL": redis_server.url, "PORTAL_DATABASE_URL": db_url_for_worker,
           "PORTAL_SECRET_KEY": "test", "PORTAL_LOG_FORMAT": "json", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    proc = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "worker", "--burst", "default"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = json_lines(proc.stderr)
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
    said = [line for line in lines if line["logger"] == "tests.ops"]
    assert [(line["message"], line["job_id"]) for line in said] == [("chatty says from a worker", job.id)]
    assert any(line["logger"].startswith("rq.") for line in lines), "RQ's own lines go through the same handler"

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    text = generate_latest(registry).decode()
    assert metric(text, "portal_job_duration_seconds_count", job="tests.test_ops.chatty", outcome="succeeded") == 1


def test_a_worker_folds_each_work_horse_s_figures_and_its_sidecar_serves_them(app_async, redis_server,
                                                                                db_url_for_worker, tmp_path):
    """RQ forks a work horse per job; each would leave its own metrics files. The worker folds them into its
    own after each job, so six jobs leave one set, and `flask metrics-server` serves their sum."""
    metrics_dir = tmp_path / "prometheus"
    jobs = [enqueue(chatty, f"job {n}", queue=QueueName.DEFAULT) for n in range(6)]
    env = {**os.environ, "PORTAL_REDIS_URL": redis_server.url, "PORTAL_DATABASE_URL": db_url_for_worker,
           "PORTAL_SECRET_KEY": "test", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "PORTAL_METRICS_TOKEN": "scrape-me"}
    proc = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "worker", "--burst", "default"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert all(job.get_status(refresh=True) == "finished" for job in jobs)
    histograms = sorted(p.name for p in metrics_dir.glob("histogram_*.db"))
    assert len(histograms) == 1 and histograms[0].startswith("histogram_worker-"), histograms

    port = free_port()
    output = tmp_path / "metrics-server.log"
    with open(output, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "metrics-server", "--port",
                                   str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/healthz", timeout=2).raise_for_status()
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, output.read_text()
                time.sleep(0.2)
        assert requests.get(url + "/metrics", timeout=10).status_code == 401
        text = requests.get(url + "/metrics", headers={"Authorization": "Bearer scrape-me"}, timeout=10).text
        assert metric(text, "portal_job_duration_seconds_count", job="tests.test_ops.chatty", outcome="succeeded") == 6
        assert "portal_rq_jobs" not in text  # the queues are the web's to report
        server.send_signal(signal.SIGTERM)
        try:
            assert server.wait(timeout=10) == 0
        except subprocess.TimeoutExpired:
            server.kill()
            raise AssertionError(f"the metrics server did not stop on SIGTERM:\n{output.read_text()}") from None
    finally:
        if server.poll() is None:
            server.kill()


def test_the_text_format_and_bad_settings():
    record = logging.LogRecord("portal.x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    token = REQUEST_ID.set("abc")
    try:
        ContextIds().filter(record)
    finally:
        REQUEST_ID.reset(token)
    assert formatter("text").format(record).endswith(" INFO portal.x [request=abc]: hello there")
    assert json.loads(JsonFormatter().format(record))["request_id"] == "abc"
    with pytest.raises(ConfigError, match="PORTAL_LOG_FORMAT must be one of json, text"):
        formatter("xml")


def test_logging_is_configured_once_however_many_apps_are_built():
    for _ in range(3):
        create_app({"testing": True, "secret_key": "x"})
    assert sum(isinstance(h, _StderrHandler) for h in logging.getLogger().handlers) == 1


def test_the_level_and_format_are_read_from_the_environment():
    program = "from app import app; import logging; logging.getLogger('portal.x').info('quiet'); " \
              "logging.getLogger('portal.x').warning('loud')"
    env = {**os.environ, "PORTAL_LOG_FORMAT": "text", "PORTAL_LOG_LEVEL": "warning", "PORTAL_SECRET_KEY": "x"}
    proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "quiet" not in proc.stderr and proc.stderr.strip().endswith("WARNING portal.x: loud")

    env["PORTAL_LOG_LEVEL"] = "chatty"
    proc = subprocess.run([sys.executable, "-c", "from app import app"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "PORTAL_LOG_LEVEL must be a level name" in proc.stderr


def test_the_migrations_write_json_lines_too(tmp_path):
    env = {**os.environ, "PORTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}", "PORTAL_SECRET_KEY": "x",
           "PORTAL_LOG_FORMAT": "json"}
    proc = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith("{") for line in lines), proc.stderr
    assert any(f"-> {HEAD}" in line["message"] for line in json_lines(proc.stderr))
