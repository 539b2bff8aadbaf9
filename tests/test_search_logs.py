"""The log store over real search engines: the testbed's OpenSearch 2.19 and Elasticsearch 8 nodes, each
through its own client, with Fluent Bit's document layout and the same request bodies."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from integrations.log_search import MARK_END, MARK_START, LogFields, search_body
from integrations.logs import LogQuery
from integrations.search_logs import ElasticsearchLogStore, OpenSearchLogStore, SearchLogStore

FIELDS = LogFields()
T0 = datetime(2026, 12, 7, 10, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["opensearch", "elasticsearch"])
def engine(request):
    """(store, index one document) for a fresh index on each engine."""
    index = f"logs-{uuid.uuid4().hex[:8]}"
    if request.param == "opensearch":
        node = request.getfixturevalue("search_node")
        store = OpenSearchLogStore.connect(node.url, f"{index}*")
        store.client.indices.create(index=index, body={"mappings": FIELDS.mappings(),
                                                       "settings": {"index": FIELDS.index_settings()}})

        def write(docs):
            body = []
            for doc in docs:
                body += [{"index": {"_index": index}}, doc]
            store.client.bulk(body=body, refresh=True)
    else:
        node = request.getfixturevalue("elasticsearch_node")
        store = ElasticsearchLogStore.connect(node.url, f"{index}*")
        store.client.indices.create(index=index, mappings=FIELDS.mappings(), settings={"index": FIELDS.index_settings()})

        def write(docs):
            operations = []
            for doc in docs:
                operations += [{"index": {"_index": index}}, doc]
            store.client.bulk(operations=operations, refresh=True)
    yield store, write
    store.client.indices.delete(index=index)


def doc(n: int, second: float, namespace: str, pod: str, message: str, stream: str = "stdout") -> dict:
    """A line as Fluent Bit's Kubernetes filter ships it, with a unique log_id."""
    return {"@timestamp": (T0 + timedelta(seconds=second)).isoformat().replace("+00:00", "Z"), "log": message + "\n",
            "stream": stream, "log_id": f"{n:08d}",
            "kubernetes": {"namespace_name": namespace, "pod_name": pod, "container_name": "web"}}


def keys(value) -> set[str]:
    """Every key of every mapping in a request body."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


def test_the_newest_lines_come_oldest_first_and_load_older_continues_without_gaps(engine):
    store, write = engine
    write([doc(i, i // 3, "dev-shop", f"web-{i % 3}", f"line {i}") for i in range(30)])  # three per timestamp
    query = LogQuery(namespaces=("dev-shop",), limit=10)
    page = store.query(query)
    assert [line.message for line in page.lines] == [f"line {i}" for i in range(20, 30)]
    older = store.query(query, before=page.cursor)
    assert [line.message for line in older.lines] == [f"line {i}" for i in range(10, 20)]
    assert page.lines[0].pod == "web-2" and page.lines[0].container == "web" and page.lines[0].stream == "stdout"


def test_a_tail_returns_each_line_once_in_order_while_lines_keep_arriving(engine):
    """Lines of several pods with equal timestamps, written in batches between polls: none skipped or repeated."""
    store, write = engine
    query = LogQuery(namespaces=("dev-shop",), limit=7)
    seen, cursor, n = [], None, 0
    write([doc(n := n + 1, 0, "dev-shop", f"web-{n % 4}", f"line {n}") for _ in range(5)])
    for batch in range(8):
        page = store.tail(query, cursor)
        seen += [line.message for line in page.lines]
        cursor = page.cursor
        # Some in the same second as the last seen (equal timestamps across pods), some later.
        write([doc(n := n + 1, batch // 2, "dev-shop", f"web-{n % 4}", f"line {n}") for _ in range(3)])
    while (page := store.tail(query, cursor)).lines:
        seen += [line.message for line in page.lines]
        cursor = page.cursor
    assert sorted(seen, key=lambda m: int(m.split()[1])) == [f"line {i}" for i in range(1, n + 1)]
    assert len(seen) == len(set(seen)) == n


def test_user_text_is_matched_as_text_never_as_query_syntax(engine):
    store, write = engine
    write([doc(1, 1, "dev-shop", "web-1", "connection refused by db"),
           doc(2, 2, "ops-mon", "prom-0", "connection refused scraping"),
           doc(3, 3, "dev-shop", "web-1", "GET /health 200")])
    mine = ("dev-shop",)
    for hostile in ("*", "kubernetes.namespace_name:ops-mon", "log:* OR kubernetes.namespace_name:*",
                    '") OR 1=1 OR ("', "{\"script\": \"true\"}", "ops-mon"):
        body = search_body(LogQuery(namespaces=mine, text=hostile), FIELDS, newest_first=True)
        assert not {"query_string", "simple_query_string", "script", "script_score", "wildcard"} & keys(body)
        # Every word must be in a line of ours: none is, so nothing comes back (and never ops-mon's line).
        assert store.query(LogQuery(namespaces=mine, text=hostile)).lines == []

    found = store.query(LogQuery(namespaces=mine, text="refused connection")).lines
    assert [line.message for line in found] == ["connection refused by db"]
    assert found[0].highlighted == f"{MARK_START}connection{MARK_END} {MARK_START}refused{MARK_END} by db"
    assert store.query(LogQuery(namespaces=mine, text='"refused connection"')).lines == []  # a phrase keeps order


def test_nothing_outside_the_namespaces_the_service_gave_whatever_the_filters_say(engine):
    store, write = engine
    write([doc(1, 1, "ops-mon", "prom-0", "ops secret"), doc(2, 2, "dev-shop", "web-1", "dev line")])
    assert store.query(LogQuery(namespaces=("dev-shop",), pods=("prom-0",))).lines == []
    assert store.query(LogQuery(namespaces=())).lines == []
    assert store.tail(LogQuery(namespaces=(), pods=("prom-0",)), None).lines == []
    assert [line.message for line in store.query(LogQuery(namespaces=("dev-shop",))).lines] == ["dev line"]


def test_filters_by_stream_and_time(engine):
    store, write = engine
    write([doc(1, 1, "dev-shop", "web-1", "out"), doc(2, 2, "dev-shop", "web-1", "err", stream="stderr"),
           doc(3, 100, "dev-shop", "web-1", "later")])
    assert [line.message for line in store.query(LogQuery(namespaces=("dev-shop",), streams=("stderr",))).lines] \
        == ["err"]
    window = LogQuery(namespaces=("dev-shop",), since=T0, until=T0 + timedelta(seconds=10))
    assert [line.message for line in store.query(window).lines] == ["out", "err"]


def test_a_missing_index_is_no_lines(engine):
    store, _ = engine
    store.index = f"nothing-{uuid.uuid4().hex[:6]}*"
    assert store.query(LogQuery(namespaces=("dev-shop",))).lines == []


def test_a_level_matches_every_spelling_programs_write_it_with(engine):
    store, write = engine
    spelled = [("ERROR", "e1"), ("error", "e2"), ("fatal", "e3"), ("WARNING", "w1"), ("warn", "w2"), ("INFO", "i1")]
    docs = [dict(doc(n, n, "dev-shop", "web-1", message), level=level) for n, (level, message) in enumerate(spelled)]
    write(docs + [doc(99, 99, "dev-shop", "web-1", "no level")])
    errors = store.query(LogQuery(namespaces=("dev-shop",), levels=("error",))).lines
    assert [(line.message, line.level) for line in errors] == [("e1", "error"), ("e2", "error"), ("e3", "error")]
    warnings = store.query(LogQuery(namespaces=("dev-shop",), levels=("warn", "error"))).lines
    assert [line.message for line in warnings] == ["e1", "e2", "e3", "w1", "w2"]


def test_forward_reads_the_whole_range_oldest_first_a_page_at_a_time(engine):
    store, write = engine
    write([doc(n, n // 3, "dev-shop", f"web-{n % 3}", f"line {n}") for n in range(25)])
    query = LogQuery(namespaces=("dev-shop",), since=T0, until=T0 + timedelta(seconds=7), limit=4)
    seen, cursor = [], None
    while True:
        page = store.forward(query, cursor)
        if not page.lines:
            break
        seen += [line.message for line in page.lines]
        cursor = page.cursor
    assert seen == [f"line {n}" for n in range(24)]  # seconds 0..7 hold lines 0..23, each once, in order


def test_an_index_whose_shards_are_starting_is_no_lines_but_a_failed_shard_is_an_error():
    """The answer both engines give for an index made a moment ago (seen in CI right after the collector's
    first write of a day), as against a shard that failed."""
    starting = {"error": {"root_cause": [], "type": "search_phase_execution_exception", "reason": "all shards failed",
                          "phase": "query", "grouped": True, "failed_shards": []}, "status": 503}
    failed = {"error": {"root_cause": [{"type": "query_shard_exception"}], "type": "search_phase_execution_exception",
                        "failed_shards": [{"shard": 0}]}, "status": 503}
    assert SearchLogStore._starting(503, starting)
    assert not SearchLogStore._starting(503, failed) and not SearchLogStore._starting(500, starting)
    assert not SearchLogStore._starting(503, "Service Unavailable")
