"""The log panel: an application's logs from the real OpenSearch node or, without a central store, from the
pods through the testbed's API server; the namespaces a query reads are the service's, whatever is asked."""

from __future__ import annotations

import json
import uuid

import pytest

from integrations.log_search import LogFields
from portal.errors import NotFound
from portal.services import logs
from portal.services.naming import ResourceNames
from tests.factories import ApplicationFactory
from tests.test_search_logs import doc
from tests.test_resources import cluster, running  # noqa: F401,F811  (fixtures: the testbed cluster, pods)


@pytest.fixture
def index():
    return f"fluent-bit-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def app_overrides(request, index):
    overrides = {"cluster": "kubernetes", "environments": "dev,prod"}
    if "search_node" in request.fixturenames:
        node = request.getfixturevalue("search_node")
        overrides.update({"logs": "opensearch", "logs_url": node.url, "logs_index": f"{index}*"})
    return overrides


@pytest.fixture
def application(app):
    return ApplicationFactory()


@pytest.fixture
def shipped(app, search_node, index, application):
    """Lines of our application's dev namespace and of another team's, as Fluent Bit ships them."""
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[search_node.url])
    client.indices.create(index=index, body={"mappings": LogFields().mappings()})
    ours = ResourceNames(application.team.name, application.project.name, application.name).namespace("dev")
    body = []
    for d in [doc(1, 1, ours, "web-1", "GET /health 200"), doc(2, 2, ours, "web-2", "connection refused", "stderr"),
              doc(3, 3, "ops-secret-dev", "vault-0", "root token is hunter2")]:
        d["@timestamp"] = __import__("datetime").datetime.now(__import__("datetime").timezone.utc).isoformat()
        body += [{"index": {"_index": index}}, d]
    client.bulk(body=body, refresh=True)
    yield ours
    client.indices.delete(index=index)


def url(application, path="logs"):
    return f"/t/{application.team.name}/{application.project.name}/{application.name}/{path}"


def test_the_panel_shows_our_lines_from_the_central_store_and_nothing_of_another_team(
        login, dev_member, application, shipped):
    c = login(dev_member)
    resp = c.get(url(application), headers={"HX-Request": "true"})
    assert resp.status_code == 200 and "connection refused" in resp.text and "GET /health 200" in resp.text
    assert "hunter2" not in resp.text and 'id="log-tail"' in resp.text
    # Parameters that would widen the query do not: another namespace's pod, another environment's name.
    for args in ("?pod=vault-0", "?q=hunter2", "?namespace=ops-secret-dev", "?q=token&pod=vault-0"):
        assert "root token is" not in c.get(url(application) + args, headers={"HX-Request": "true"}).text
    assert c.get(url(application) + "?environment=ops-secret", headers={"HX-Request": "true"}).status_code == 422
    highlighted = c.get(url(application) + "?q=refused", headers={"HX-Request": "true"}).text
    assert "<mark>refused</mark>" in highlighted and "GET /health" not in highlighted


def test_another_team_gets_nothing(login, ops_member, application, shipped):
    with pytest.raises(NotFound):
        logs.read_logs(ops_member, application, logs.LogFilters("dev"))
    assert login(ops_member).get(url(application)).status_code == 404
    assert login(ops_member).get(url(application, "logs/download")).status_code == 404


def test_the_tail_brings_only_new_lines_and_a_bad_cursor_is_refused(login, dev_member, application, shipped):
    c = login(dev_member)
    page = logs.read_logs(dev_member, application, logs.LogFilters("dev"))
    cursor = logs.encode_cursor(page.lines[-1].sort)
    tail = c.get(url(application) + f"?tail=1&after={cursor}", headers={"HX-Request": "true"})
    assert tail.status_code == 200 and "log-line" not in tail.text and 'id="log-tail"' in tail.text
    assert c.get(url(application) + "?tail=1&after=bm90LWpzb24", headers={"HX-Request": "true"}).status_code == 422
    assert c.get(url(application) + "?before=%%%", headers={"HX-Request": "true"}).status_code == 422


def test_download_streams_the_query_as_text_or_ndjson(login, dev_member, application, shipped):
    c = login(dev_member)
    text = c.get(url(application, "logs/download"))
    assert text.status_code == 200 and text.mimetype == "text/plain"
    assert text.text.splitlines()[-1].endswith("connection refused") and "hunter2" not in text.text
    ndjson = c.get(url(application, "logs/download") + "?format=ndjson&stream=stderr")
    assert [json.loads(line)["message"] for line in ndjson.text.splitlines()] == ["connection refused"]


def test_without_a_central_store_the_pods_logs_come_from_the_api_server(
        login, dev_member, application, running, control_plane):  # noqa: F811
    current, previous = control_plane.pod_logs
    now = __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    current.write_text(f"{stamp} stdout F serving on :8000\n")
    previous.write_text(f"{stamp} stdout F killed: out of memory\n")
    try:
        c = login(dev_member)
        live = c.get(url(application), headers={"HX-Request": "true"}).text
        assert live.count("serving on :8000") == 3  # each of the three replicas
        crashed = c.get(url(application) + "?previous=1", headers={"HX-Request": "true"}).text
        assert "killed: out of memory" in crashed and "serving on" not in crashed
    finally:
        current.write_text("")
        previous.write_text("")


def test_a_custom_range_and_a_level_narrow_the_panel_and_bad_ones_are_refused(
        login, dev_member, application, shipped, search_node, index):
    from opensearchpy import OpenSearch

    old = doc(7, 0, shipped, "web-1", "ERROR yesterday's failure")
    old.update({"@timestamp": "2026-12-06T10:00:00Z", "level": "ERROR"})
    OpenSearch(hosts=[search_node.url]).index(index=index, body=old, refresh=True)
    c = login(dev_member)
    hx = {"HX-Request": "true"}
    day = c.get(url(application) + "?range=custom&start=2026-12-06T09:00&end=2026-12-06T11:00", headers=hx)
    assert day.status_code == 200 and "yesterday&#39;s failure" in day.text and "connection refused" not in day.text
    assert 'id="log-tail"' not in day.text  # a range that has ended is not followed
    assert "GET /health" not in c.get(url(application) + "?range=custom&start=2026-12-06T09:00&level=error",
                                      headers=hx).text
    for args, says in (("?range=custom", "needs its start"), ("?range=custom&start=yesterday", "The start must"),
                       ("?range=custom&start=2026-12-06T11:00&end=2026-12-06T09:00", "end must come after"),
                       ("?range=custom&start=2025-01-01T00:00", "at most 31 days"), ("?level=loud", "a level"),
                       ("?range=7d", "a range among")):
        resp = c.get(url(application) + args, headers=hx)
        assert resp.status_code == 422 and says in resp.text, (args, resp.status_code, resp.text)
    resp = c.get(url(application, "logs/download") + "?range=custom&start=nonsense")
    assert resp.status_code == 422


def test_a_download_is_read_page_by_page_and_says_where_it_stopped(
        login, dev_member, application, shipped, monkeypatch):
    monkeypatch.setattr(logs, "DOWNLOAD_PAGE", 1)
    c = login(dev_member)
    whole = c.get(url(application, "logs/download")).text.splitlines()
    assert [line.split(" ", 3)[-1] for line in whole] == ["GET /health 200", "connection refused"]
    monkeypatch.setattr(logs, "DOWNLOAD_LINES", 1)
    cut = c.get(url(application, "logs/download") + "?format=ndjson").text.splitlines()
    assert json.loads(cut[0])["message"] == "GET /health 200"
    end = json.loads(cut[1])
    assert end["truncated"] is True and "stops at 1 lines" in end["message"] and len(cut) == 2
