"""Sync and refresh through Argo CD's REST API, and its faults.

The shared part runs against the HTTP fake of ``tests.fakes.argocd_server``, which keeps the Applications in
the testbed's API server, or unchanged against a real Argo CD: set PORTAL_TEST_ARGOCD_URL,
PORTAL_TEST_ARGOCD_TOKEN (an account allowed applications get and sync) and PORTAL_TEST_ARGOCD_KUBECONFIG (a
kubeconfig of that Argo CD's cluster allowed to manage AppProjects and Applications in its namespace,
PORTAL_TEST_ARGOCD_NAMESPACE, "argocd" by default); PORTAL_TEST_ARGOCD_USERNAME, when set, is checked as the
sync's initiator. Those tests make a project and an application of their own there, deleted afterwards.

The last part injects faults, which only the fake can do: those tests start a fake of their own
whatever the environment says.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from kubernetes import client, config

from integrations.argocd import ArgoCDDelivery
from integrations.delivery import Destination
from integrations.errors import (
    AuthFailed, Conflict, IntegrationError, InvalidRequest, NotFound, RateLimited, Unavailable,
)
from testbed.process import free_port
from tests import argocd_support, real_servers
from tests.argocd_support import SOURCE, SYNC_OPTIONS, TOKEN, Objects, app_spec, project_spec
from tests.fakes.argocd_server import FakeArgoCD
from tests.real_servers import assert_translated, wait_for

ENV = ("PORTAL_TEST_ARGOCD_URL", "PORTAL_TEST_ARGOCD_TOKEN", "PORTAL_TEST_ARGOCD_KUBECONFIG")

# The fixtures shared with the other Argo CD tests: pytest finds them by these names.
argocd_crds, argo_ns, central = argocd_support.argocd_crds, argocd_support.argo_ns, argocd_support.central
connect, fake, fake_rest = argocd_support.connect, argocd_support.fake, argocd_support.fake_rest
objects = argocd_support.objects


# --- sync and refresh through Argo CD's API: the fake, or a real Argo CD ---------------------------------

@dataclass
class Target:
    """The Argo CD the REST tests talk to, and the central cluster it keeps its applications in."""

    url: str
    token: str
    kube_api: Callable[[], client.ApiClient]
    namespace: str
    username: str | None
    server: FakeArgoCD | None = None
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])


@pytest.fixture
def target(request) -> Target:
    real = real_servers.configured("Argo CD", ENV)
    if real:
        path = real["PORTAL_TEST_ARGOCD_KUBECONFIG"]
        return Target(url=real["PORTAL_TEST_ARGOCD_URL"], token=real["PORTAL_TEST_ARGOCD_TOKEN"],
                      kube_api=lambda: config.new_client_from_config(path),
                      namespace=os.environ.get("PORTAL_TEST_ARGOCD_NAMESPACE", "argocd"),
                      username=os.environ.get("PORTAL_TEST_ARGOCD_USERNAME"))
    server = request.getfixturevalue("fake")
    return Target(server.url, TOKEN, request.getfixturevalue("central"), request.getfixturevalue("argo_ns"),
                  "portal", server)


@pytest.fixture
def rest(target) -> Iterator[tuple[ArgoCDDelivery, Objects, str]]:
    """An adapter with Argo CD's URL and token, the objects, and an application of this test's own there."""
    adapter = ArgoCDDelivery(target.kube_api, namespace=target.namespace, url=target.url, token=target.token,
                             timeout=30.0, retries=0)
    api = target.kube_api()
    objects = Objects(api, target.namespace)
    project, name = f"portal-test-{target.suffix}", f"portal-test-{target.suffix}-dev"
    adapter.ensure_project(project_spec(name=project, destinations=(
        Destination("https://kubernetes.default.svc", f"portal-test-{target.suffix}"),)))
    adapter.ensure_application(app_spec(name=name, project=project, cluster="https://kubernetes.default.svc",
                                        namespace=f"portal-test-{target.suffix}"))
    yield adapter, objects, name
    try:
        adapter.delete_application(name)
    except NotFound:
        pass
    if target.server is not None:
        objects.release(name)  # the fake has no controller to do it
    wait_for(lambda: not objects.exists("applications", name), timeout=120, what="Application deleted")
    adapter.delete_project(project)
    adapter.close()
    api.close()


def requested(app: dict[str, Any]) -> dict[str, Any]:
    """The sync operation asked for: still pending, or taken up by Argo CD's controller already."""
    return app.get("operation") or ((app.get("status") or {}).get("operationState") or {}).get("operation") or {}


def test_a_sync_through_the_api_is_an_operation_of_the_tokens_account(target, rest):
    adapter, objects, name = rest
    adapter.sync(name)
    operation = requested(objects.get("applications", name))
    assert operation["sync"]["prune"] is True and operation["sync"].get("syncOptions") == SYNC_OPTIONS
    initiator = operation["initiatedBy"]["username"]
    assert initiator and initiator != "developer-portal"  # Argo CD's account: not the declarative way
    if target.username:
        assert initiator == target.username


def test_a_refresh_through_the_api_returns_once_argocd_has_reconciled(rest):
    adapter, objects, name = rest
    before = (objects.get("applications", name).get("status") or {}).get("reconciledAt") or ""
    adapter.refresh(name)
    app = objects.get("applications", name)
    assert app["status"]["reconciledAt"] >= before and app["status"]["reconciledAt"]
    assert "argocd.argoproj.io/refresh" not in app["metadata"]["annotations"]


def test_through_the_api_an_unknown_application_is_not_found(rest):
    adapter, _, _ = rest
    for call in (adapter.sync, adapter.refresh):
        with pytest.raises(NotFound):
            call("portal-test-nothing")


def test_a_wrong_token_is_auth_failed_and_never_shown(target, rest):
    _, _, name = rest
    adapter = ArgoCDDelivery(target.kube_api, namespace=target.namespace, url=target.url, token="wrong-secret-token",
                             retries=0)
    for call in (adapter.sync, adapter.refresh):
        with pytest.raises(AuthFailed) as info:
            call(name)
        assert info.value.status == 401 and "wrong-secret-token" not in str(info.value)
        assert "wrong-secret-token" not in repr(adapter)
    adapter.close()

# --- fake only: the fake's controller, and faults ----------------------------------------------------------
def test_the_fake_answers_403_for_unknown_applications_unless_a_project_is_named(fake, fake_rest):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answers = {query: requests.get(f"{fake.url}/api/v1/applications/nothing{query}", headers=headers, timeout=10)
               for query in ("", "?project=dev")}
    assert [(a.status_code, a.json()["message"]) for a in answers.values()] == [
        (403, "permission denied"), (404, 'applications.argoproj.io "nothing" not found')]
    assert requests.get(f"{fake.url}/api/v1/applications/shop-dev", timeout=10).json() == {
        "error": "no session information", "code": 16, "message": "no session information"}


def test_the_adapter_names_the_project_so_that_argocds_404_and_403_mean_what_they_say(fake, fake_rest, objects):
    fake_rest.sync("shop-dev")
    fake_rest.refresh("shop-dev")
    calls = [(r.method, r.path, r.query, r.body) for r in fake.requests]
    assert calls == [("POST", "/api/v1/applications/shop-dev/sync", "",
                      {"name": "shop-dev", "prune": True, "project": "dev"}),
                     ("GET", "/api/v1/applications/shop-dev", "refresh=normal&project=dev", None)]
    fake.denied.add("shop-dev")  # the account's RBAC no longer covers it: the application exists
    with pytest.raises(AuthFailed, match="permission denied"):
        fake_rest.refresh("shop-dev")


def test_a_sync_through_the_api_ends_as_the_controller_writes_it(fake, fake_rest, objects):
    fake_rest.sync("shop-dev")
    app = objects.get("applications", "shop-dev")
    assert app["operation"] == {"sync": {"source": SOURCE, "revision": "main", "prune": True,
                                         "syncOptions": SYNC_OPTIONS}, "initiatedBy": {"username": "portal"}}
    with pytest.raises(Conflict, match="another operation is already in progress") as info:
        fake_rest.sync("shop-dev")
    assert info.value.status == 400
    fake.finish_operation("shop-dev", revision="0f3c2a1", images=("registry.example.com/dev/shop:0f3c2a1",))
    status = fake_rest.status("shop-dev")
    assert (status.sync, status.health, status.operation, status.revision, status.images) == (
        "Synced", "Healthy", "Succeeded", "0f3c2a1", ("registry.example.com/dev/shop:0f3c2a1",))
    assert [(e.id, e.revision) for e in status.history] == [(0, "0f3c2a1")]
    assert "operation" not in objects.get("applications", "shop-dev")
    fake_rest.sync("shop-dev")  # the next one is accepted again


def test_through_the_api_an_application_being_deleted_is_not_synced(fake_rest, objects):
    fake_rest.delete_application("shop-dev")  # it stays until Argo CD's finalizer is done
    with pytest.raises(InvalidRequest, match="application is deleting") as info:
        fake_rest.sync("shop-dev")
    assert info.value.status == 400 and "operation" not in objects.get("applications", "shop-dev")


CALLS: dict[str, Callable[[ArgoCDDelivery], Any]] = {
    "sync": lambda adapter: adapter.sync("shop-dev"),
    "refresh": lambda adapter: adapter.refresh("shop-dev"),
}
ENDPOINT = {"sync": ("POST", r"/sync$"), "refresh": ("GET", r"/applications/shop-dev$")}


def grpc_error(message: str, code: int) -> str:
    return json.dumps({"error": message, "code": code, "message": message})


@pytest.mark.parametrize("call, status, headers, body, error, said", [
    ("refresh", 401, {}, grpc_error("invalid session: token has invalid claims: token is expired", 16), AuthFailed,
     "invalid session: token has invalid claims: token is expired"),
    ("sync", 403, {}, grpc_error("permission denied: applications, sync, dev/shop-dev, sub: portal", 7), AuthFailed,
     "permission denied: applications, sync, dev/shop-dev"),
    ("sync", 404, {}, grpc_error('applications.argoproj.io "shop-dev" not found', 5), NotFound,
     'applications.argoproj.io "shop-dev" not found'),
    ("sync", 400, {}, grpc_error('app is not allowed in project "dev", or the project does not exist', 3),
     InvalidRequest, 'app is not allowed in project "dev"'),
    ("sync", 400, {}, grpc_error("another operation is already in progress", 9), Conflict,
     "another operation is already in progress"),
    ("refresh", 429, {"Retry-After": "7"}, None, RateLimited, "Too Many Requests"),
    ("sync", 500, {}, grpc_error("error setting app operation: etcdserver: request timed out", 13), Unavailable,
     "etcdserver: request timed out"),
    ("refresh", 502, {"Content-Type": "text/plain"}, "Bad Gateway: argocd-server is restarting", Unavailable,
     "Bad Gateway: argocd-server is restarting"),
])
def test_each_failure_is_translated_with_argocds_message(fake, fake_rest, call, status, headers, body, error, said):
    method, where = ENDPOINT[call]
    fake.fail_next(method, where, status, headers=headers, body=body)
    with pytest.raises(error) as info:
        CALLS[call](fake_rest)
    assert_translated(info.value, error, "argocd", status, said, headers, TOKEN)
    CALLS[call](fake_rest)  # the fault was for one request only


@pytest.mark.parametrize("call", ["sync", "refresh"])
def test_an_argocd_that_does_not_answer_in_time_is_unavailable(fake, connect, call):
    adapter = connect(url=fake.url, token=TOKEN, retries=0, timeout=0.3)
    adapter.ensure_project(project_spec())
    adapter.ensure_application(app_spec())
    fake.fail_next(*ENDPOINT[call], None, delay=3)
    with pytest.raises(Unavailable, match="no answer within 0.3s") as info:
        CALLS[call](adapter)
    assert info.value.status is None and info.value.__cause__ is not None


def test_an_argocd_that_is_not_there_is_unavailable(connect):
    adapter = connect(url=f"http://127.0.0.1:{free_port()}", token=TOKEN, retries=0)
    adapter.ensure_application(app_spec())
    with pytest.raises(Unavailable, match="cannot connect"):
        adapter.refresh("shop-dev")


def test_a_refresh_is_retried_after_a_5xx_and_a_sync_is_not(fake, connect):
    adapter = connect(url=fake.url, token=TOKEN, retries=2)
    adapter.ensure_project(project_spec())
    adapter.ensure_application(app_spec())
    fake.fail_next("GET", ENDPOINT["refresh"][1], 503, times=2)
    adapter.refresh("shop-dev")
    assert [r.status for r in fake.requests] == [503, 503, 200]
    fake.fail_next("POST", ENDPOINT["sync"][1], 503)
    with pytest.raises(Unavailable):
        adapter.sync("shop-dev")
    assert [r.status for r in fake.requests if r.method == "POST"] == [503]


def test_the_token_is_masked_even_where_argocd_would_repeat_it(fake, fake_rest):
    fake.fail_next("GET", ENDPOINT["refresh"][1], 401, body=grpc_error(f"invalid session: {TOKEN}", 16))
    with pytest.raises(AuthFailed) as info:
        fake_rest.refresh("shop-dev")
    assert TOKEN not in str(info.value) and "invalid session: ***" in info.value.message


def test_an_answer_that_is_not_json_is_an_error_of_its_own(fake, fake_rest):
    fake.fail_next("POST", ENDPOINT["sync"][1], 200, body="<html>Argo CD</html>")
    with pytest.raises(IntegrationError, match="not JSON") as info:
        fake_rest.sync("shop-dev")
    assert type(info.value) is IntegrationError and not info.value.transient
