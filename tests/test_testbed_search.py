"""The testbed's search engines, driven through their official clients: a real OpenSearch 2.19 node with
opensearch-py and a real Elasticsearch 8 node with elasticsearch-py, each run from Maven Central's jars.

The documents have the layout Fluent Bit's Kubernetes filter ships (``@timestamp``, ``log``,
``kubernetes.*``), with a keyword ``log_id`` unique per line as the sort's tie-breaker.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

LINES = [
    # (log_id, second, namespace, pod, message)
    ("l1", 1, "dev-shop", "web-1", "GET /health 200"),
    ("l2", 2, "dev-shop", "web-1", "connection refused by db:5432, retrying"),
    ("l3", 3, "dev-shop", "worker-1", "job 17 done"),
    ("l4", 3, "dev-shop", "web-2", "connection reset by peer"),  # same second as l3: the tie-breaker decides
    ("l5", 4, "ops-mon", "prom-0", "connection refused scraping web-1"),
    ("l6", 5, "dev-shop", "web-1", "GET /orders 500"),
]

MAPPINGS = {"properties": {
    "@timestamp": {"type": "date"},
    "log": {"type": "text"},
    "log_id": {"type": "keyword"},
    "stream": {"type": "keyword"},
    "kubernetes": {"properties": {
        "namespace_name": {"type": "keyword"},
        "pod_name": {"type": "keyword"},
        "container_name": {"type": "keyword"},
    }},
}}


def opensearch_client(url: str):
    from opensearchpy import OpenSearch

    return OpenSearch(hosts=[url], timeout=30)


def elasticsearch_client(url: str):
    from elasticsearch import Elasticsearch

    return Elasticsearch(url, request_timeout=30)


# Each engine: its session fixture (tests/conftest.py) and its client.
ENGINES = {"opensearch": ("search_node", opensearch_client),
           "elasticsearch": ("elasticsearch_node", elasticsearch_client)}


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def node(engine, request):
    return request.getfixturevalue(ENGINES[engine][0])


@pytest.fixture(scope="module")
def search(engine, node):
    """The engine's official client; both take the same request bodies."""
    client = ENGINES[engine][1](node.url)
    yield client
    client.close()


@pytest.fixture
def logs_index(search, request):
    """An index holding LINES, refreshed so that they are searchable; deleted after the test."""
    index = f"logs-{request.node.originalname.replace('_', '-')}"
    search.indices.create(index=index, body={"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                                             "mappings": MAPPINGS})
    actions = []
    for log_id, second, namespace, pod, message in LINES:
        actions.append({"index": {"_index": index, "_id": log_id}})
        actions.append({"@timestamp": f"2026-12-01T10:00:0{second}.000Z", "log": message, "log_id": log_id,
                        "stream": "stdout",
                        "kubernetes": {"namespace_name": namespace, "pod_name": pod, "container_name": "app"}})
    result = search.bulk(body=actions)
    assert not result["errors"], result
    search.indices.refresh(index=index)
    yield index
    search.indices.delete(index=index)


def ids(response) -> list[str]:
    return [hit["_id"] for hit in response["hits"]["hits"]]


def test_the_node_reports_its_engine_and_version(engine, search, node):
    info = search.info()
    if engine == "opensearch":
        assert info["version"]["distribution"] == "opensearch"
        assert info["version"]["number"].startswith("2.19.")
    else:
        # The client refuses a server whose first 2xx answer lacks "X-Elastic-Product: Elasticsearch": here
        # the server's own REST layer sets it. GET / itself comes from our stand-in for the rest-root module.
        assert "distribution" not in info["version"]
        assert info["version"]["number"].startswith("8.")
        assert info["tagline"] == "You Know, for Search"
    assert info["cluster_name"] == "portal-testbed"
    assert search.cluster.health()["status"] in ("green", "yellow")
    assert node.url.startswith("http://127.0.0.1:")


def test_match_query_finds_lines_with_every_word(search, logs_index):
    response = search.search(index=logs_index, body={
        "query": {"match": {"log": {"query": "Connection REFUSED", "operator": "and"}}}})
    # The standard analyzer lower-cases and splits "db:5432," so the words match wherever they are.
    assert sorted(ids(response)) == ["l2", "l5"]
    assert response["hits"]["total"] == {"value": 2, "relation": "eq"}


def test_term_filter_on_a_keyword_field_is_exact(search, logs_index):
    def in_namespace(namespace: str) -> list[str]:
        return sorted(ids(search.search(index=logs_index, body={
            "query": {"bool": {"must": [{"match": {"log": "connection"}}],
                               "filter": [{"term": {"kubernetes.namespace_name": namespace}}]}}})))

    assert in_namespace("dev-shop") == ["l2", "l4"]
    assert in_namespace("ops-mon") == ["l5"]
    # A keyword is not analysed: neither another case nor a part of the value matches.
    assert in_namespace("DEV-SHOP") == []
    assert in_namespace("dev") == []


def test_sort_by_timestamp_pages_with_search_after(search, logs_index):
    sort = [{"@timestamp": "desc"}, {"log_id": "desc"}]
    query = {"term": {"kubernetes.namespace_name": "dev-shop"}}
    pages, after = [], None
    for _ in range(len(LINES)):  # bounded, should the cursor never run out
        body = {"query": query, "sort": sort, "size": 2, **({"search_after": after} if after else {})}
        hits = search.search(index=logs_index, body=body)["hits"]["hits"]
        if not hits:
            break
        pages.append([hit["_id"] for hit in hits])
        after = hits[-1]["sort"]
    # Newest first; l3 and l4 share a second and come in log_id order, each exactly once across the pages.
    assert pages == [["l6", "l4"], ["l3", "l2"], ["l1"]]
    first = search.search(index=logs_index, body={"query": query, "sort": sort, "size": 1})["hits"]["hits"][0]
    newest = datetime(2026, 12, 1, 10, 0, 5, tzinfo=timezone.utc)
    assert first["sort"] == [int(newest.timestamp() * 1000), "l6"]  # epoch milliseconds, then the tie-breaker


def test_a_missing_or_old_java_says_how_to_get_one(monkeypatch, tmp_path):
    from testbed.process import MissingComponent
    from testbed.search.jars import java

    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(MissingComponent, match="apt-get install openjdk-17-jdk-headless maven"):
        java(17)
    fake = tmp_path / "jdk8" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho \'openjdk version "1.8.0_392"\' >&2\n')
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk8"))
    with pytest.raises(MissingComponent, match=r"Java 11 or newer \(found Java 8 at .*jdk8/bin/java\)"):
        java(11)
