"""Fixtures: real Redis and PostgreSQL started by the harness, an app per test on each database backend.

The schema is built by the Alembic migrations, once per backend per session;
after each test every row is deleted except those the first migration seeds,
so each test starts from the state of a fresh installation.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from portal import create_app
from portal.extensions import db
from testbed.services import PostgresServer, RedisServer
from tests.support import PortalClient

BACKENDS = os.environ.get("PORTAL_TEST_BACKENDS", "sqlite,postgresql").split(",")
SEEDED_TEAMS = ("dev", "ops")


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def session_tmp():
    with tempfile.TemporaryDirectory(prefix="portal-tests-") as d:
        yield Path(d)


def _migrated_url(request, backend: str, session_tmp: Path) -> str:
    cache = request.config.stash.setdefault(_URLS, {})
    if backend in cache:
        return cache[backend]
    if backend == "sqlite":
        url = f"sqlite:///{session_tmp / 'portal.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database("portal_test")
    app = create_app({"testing": True, "database_url": url, "secret_key": "test"})
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        db.engine.dispose()
    cache[backend] = url
    return url


_URLS = pytest.StashKey[dict]()


def make_app(database_url: str, redis_url: str, **overrides):
    app = create_app({
        "testing": True,
        "database_url": database_url,
        "redis_url": redis_url,
        "secret_key": "test-secret",
        "rq_async": False,
        **overrides,
    })
    app.test_client_class = PortalClient
    return app


def reset_database() -> None:
    """Back to the state the migrations leave: no rows but the seeded teams."""
    tables = [t for t in reversed(db.metadata.sorted_tables)]
    for table in tables:
        if table.name == "teams":
            db.session.execute(delete(table).where(table.c.name.not_in(SEEDED_TEAMS)))
            db.session.execute(update(table).values(resource_defaults={}))
        else:
            db.session.execute(delete(table))
    db.session.commit()


@pytest.fixture(params=BACKENDS)
def db_backend(request) -> str:
    return request.param


@pytest.fixture
def app_overrides() -> dict:
    """Override in a test module to change settings of the `app` fixture."""
    return {}


@pytest.fixture
def app(request, db_backend, session_tmp, redis_server, app_overrides):
    url = _migrated_url(request, db_backend, session_tmp)
    app = make_app(url, redis_server.url, **app_overrides)
    with app.app_context():
        yield app
        db.session.rollback()
        reset_database()
        db.session.remove()
        db.engine.dispose()
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def login(app):
    """A client signed in as the given user: ``login(user)``."""

    def _login(user):
        return app.test_client(user=user)

    return _login


@pytest.fixture
def dev_member(app):
    from tests.factories import member_of

    return member_of("dev", username="devmember")


@pytest.fixture
def dev_maintainer(app):
    from portal.models import Role
    from tests.factories import member_of

    return member_of("dev", Role.MAINTAINER, username="devmaintainer")


@pytest.fixture
def ops_member(app):
    from tests.factories import member_of

    return member_of("ops", username="opsmember")


@pytest.fixture
def admin(app):
    from tests.factories import UserFactory

    return UserFactory(username="theadmin", is_admin=True)



@pytest.fixture
def app_async(app):
    """The app with jobs queued in Redis for real workers instead of run inline."""
    app.config["PORTAL"] = app.config["PORTAL"].replace({"rq_async": True})
    return app


@pytest.fixture
def db_url_for_worker(app) -> str:
    """The test database's URL, for processes started by the test."""
    return app.config["SQLALCHEMY_DATABASE_URI"]


@pytest.fixture(scope="session")
def search_node(session_tmp):
    """One real OpenSearch 2.19 node per test session, run from Maven Central's jars (built once per machine)."""
    from testbed.search import SearchNode

    node = SearchNode.start(session_tmp / "search")
    yield node
    node.stop()


@pytest.fixture(scope="session")
def elasticsearch_node(session_tmp):
    """One real Elasticsearch 8 node per test session, run from Maven Central's jars (built once per machine)."""
    from testbed.search import SearchNode

    node = SearchNode.start(session_tmp / "elasticsearch", engine="elasticsearch")
    yield node
    node.stop()


@pytest.fixture(scope="session")
def control_plane(session_tmp):
    """One real control plane (etcd, API server, controller manager, scheduler, KWOK nodes) per test session."""
    from testbed.cluster import Cluster

    cluster = Cluster("test", session_tmp / "cluster", nodes=3).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kube_api(control_plane):
    from kubernetes import config

    client = config.new_client_from_config(str(control_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def namespace(kube_api, request):
    """A fresh namespace per test, deleted afterwards."""
    import re
    import uuid

    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:5]
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def registry_server(session_tmp):
    """A real OCI registry (the CNCF distribution server) on loopback, for the whole session."""
    from testbed.registry import RegistryServer

    registry = RegistryServer.start(session_tmp / "registry")
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def python_base(image_builder) -> str:
    """The offline Python base image of the application templates (Debian bookworm by debootstrap, cached)."""
    from testbed.base_image import base_images_dir, build_python_base

    return build_python_base(image_builder, base_images_dir())


@pytest.fixture(scope="session")
def image_builder(session_tmp):
    """buildah and skopeo with their own image store, and a local busybox base image built once."""
    from testbed.images import ImageBuilder

    builder = ImageBuilder(session_tmp / "images")
    builder.base_image = builder.busybox_base()
    yield builder
    builder.remove_all()


@pytest.fixture
def world(app, redis_server):
    """The fakes' shared world (in Redis), reset; and a registered cluster bound to each seeded team."""
    from tests.fakes.world import FakeWorld
    from tests.provisioning_support import bind_clusters

    w = FakeWorld(redis_server.url)
    w.reset()
    bind_clusters()
    yield w
    w.close()


@pytest.fixture
def gitlab():
    """The GitLab fake (a real HTTP server on loopback) with the portal's parent group."""
    from tests.fakes.gitlab_server import FakeGitLab

    with FakeGitLab() as server:
        server.add_group("portal")
        yield server


class LiveServer:
    """The app served over HTTP on 127.0.0.1 from a thread, which a test may stop and start again on the same
    port: a portal outage as a browser sees it, connections refused, then the portal back.

    Each request gets its own app context in the server's threads, as in production.
    """

    def __init__(self, app):
        self.app = app
        self.port = 0  # chosen by the first start, kept by the next ones
        self._server = None
        self._thread = None
        self._connections: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LiveServer":
        import threading

        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        accept, close = server.get_request, server.shutdown_request

        def get_request():
            conn, address = accept()
            self._connections.add(conn)
            return conn, address

        def shutdown_request(conn):
            self._connections.discard(conn)
            close(conn)

        server.get_request, server.shutdown_request = get_request, shutdown_request
        self.port, self._server = server.server_port, server
        self._thread = threading.Thread(target=server.serve_forever, name="portal-live-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        import socket

        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
        # A keep-alive connection would go on being served by its thread: cut it, as a dead server would.
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._connections.clear()
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None


@pytest.fixture
def restartable_server(app):
    """The test's app over HTTP (a LiveServer), which the test may stop and start again on the same port."""
    server = LiveServer(app).start()
    yield server
    if server.running:
        server.stop()


@pytest.fixture
def live_server(restartable_server):
    """The test's app served over HTTP on 127.0.0.1 from a thread; yields its base URL.

    The database is the migrated one the ``app`` fixture resets.
    """
    return restartable_server.url
