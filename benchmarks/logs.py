"""Log search on a million Fluent Bit documents of 100 pods in OpenSearch, through the portal's own store (issue 9).

    .venv/bin/python -m benchmarks.logs [--docs 1000000] [--pods 100] [--namespaces 10] [--iterations 200]
        [--warmup 5] [--heap 1g] [--url URL] [--prefix bench-fluent-bit] [--force-merge] [--keep]

Starts a testbed OpenSearch node with ``--heap`` (the testbed's JVM flags otherwise: C1 only, serial collector)
or uses the node at ``--url``. Writes the lines as Fluent Bit's Logstash_Format does, into daily indices
``<prefix>-YYYY.MM.DD`` read through ``<prefix>-*`` (an index template: LogFields().mappings(), 1 shard, no replica;
the other Kubernetes fields mapped dynamically), spread over the last 48 hours, one in seven in the same millisecond
as the one before; half an application container's (with a level; warnings and errors on stderr), half its
proxy's access log. Loaded by parallel bulk requests with refreshes off, then one refresh, the refresh interval
back to its default and the merges left to finish (``--force-merge``: down to one segment an index).

Then times each call of the store as the panel makes it (the range from now at each call), ``--iterations`` times
after ``--warmup``, with the engine's own "took" next to the wall time on the client:
- tail polls of one namespace (range 1 h) with nothing new, and with 100 new lines written and refreshed before
  each poll (untimed);
- the panel opening (1 h), and searches over 24 h of one namespace: without text, with words (highlighted), with
  words and a level or a stream, with a word in about 40 % of the lines;
- "load older" (search_after) through one namespace's whole history: every page of a walk to the last one, then
  single pages 1,000, 10,000 and 50,000 lines deep and the last; the same pages by from/size, refused beyond
  index.max_result_window (10,000) as the indices come, then timed with the window raised.

Targets (issue 9): tail p95 under 30 ms, search p95 under 200 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from opensearchpy import OpenSearch, exceptions
from opensearchpy.helpers import parallel_bulk

from benchmarks.report import machine, row
from integrations.log_search import MARK_START, LogFields, lines_of, search_body
from integrations.logs import LogPage, LogQuery
from integrations.search_logs import OpenSearchLogStore
from portal.services.naming import ResourceNames
from testbed.search import SearchNode

TAIL_TARGET_MS, SEARCH_TARGET_MS = 30.0, 200.0
HOURS = 48
SAME_MILLISECOND = 1 / 7
APPS = ("orders", "cart", "catalog", "checkout", "payments", "search", "users", "shipping", "inventory", "notify")
FIELDS = LogFields()
LIMIT = LogQuery(namespaces=()).limit  # the panel's page (portal.services.logs.LINES)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    app: str
    uid: str
    host: str


def pods_of(namespaces: int, per_namespace: int, rng: random.Random) -> list[Pod]:
    pods = []
    for i in range(namespaces):
        app = APPS[i % len(APPS)] + (f"{i // len(APPS)}" if i >= len(APPS) else "")
        namespace = ResourceNames("dev", "shop", app).namespace("dev")
        template = f"{rng.getrandbits(36):09x}"
        for _ in range(per_namespace):
            pods.append(Pod(namespace, f"{app}-{template}-{rng.getrandbits(20):05x}", app,
                            f"{rng.getrandbits(128):032x}", f"worker-{rng.randrange(12):02d}"))
    return pods


# --- the documents -------------------------------------------------------------------------------------------

RESOURCES = ("orders", "carts", "products", "customers", "payments", "shipments", "stock", "users")
AGENTS = ("okhttp/4.12.0", "Go-http-client/1.1", "python-requests/2.32.3", "Mozilla/5.0 (X11; Linux x86_64)")


def app_line(rng: random.Random, pod: Pod) -> tuple[str, str, str]:
    """(level, stream, message) of an application's line: mostly info, some warnings and errors."""
    r, n = rng.random(), rng.randrange(100000)
    if r < 0.88:
        return "info", "stdout", rng.choice((
            f"order {n} created for customer {n % 977} with {n % 7 + 1} items",
            f"processed {n % 500} messages from queue {pod.app}-events in {n % 90} ms",
            f"cache hit ratio {n % 100 / 100:.2f} for {rng.choice(RESOURCES)}",
            f"user {n} signed in from 10.{n % 250}.{n % 13}.{n % 7}",
            f"handled {rng.choice(RESOURCES)} request {n:x} in {n % 40} ms"))
    if r < 0.96:
        return "warn", rng.choice(("stderr", "stdout")), rng.choice((
            f"slow query on {rng.choice(RESOURCES)}: {n % 5000} ms (timeout is 5000 ms)",
            f"retrying request to {rng.choice(APPS)}:8080 after timeout (attempt {n % 3 + 1} of 3)",
            f"deprecated header X-Api-Version sent by {rng.choice(AGENTS)}"))
    return "error", "stderr", rng.choice((
        f"connection refused by postgres:5432: dial tcp 10.96.{n % 250}.{n % 9}:5432: connect: connection refused",
        f"request {n:x} failed: upstream timeout after 30000 ms",
        f"unhandled exception in worker {n % 8}: KeyError: '{rng.choice(RESOURCES)}'",
        f"payment {n} declined by provider: card_expired"))


def proxy_line(rng: random.Random, pod: Pod, moment: str) -> str:
    """An Envoy access log line of the pod's sidecar."""
    method = rng.choices(("GET", "POST", "PUT", "DELETE"), (80, 12, 6, 2))[0]
    status, ms = rng.choices((200, 201, 404, 503), (85, 8, 5, 2))[0], rng.randrange(1, 400)
    return (f'[{moment}] "{method} /api/{rng.choice(RESOURCES)}/{rng.randrange(100000)} HTTP/1.1" {status} '
            f'{"UF,URX" if status == 503 else "-"} '
            f'via_upstream - "-" {rng.randrange(2000) if method != "GET" else 0} {rng.randrange(100, 20000)} {ms} '
            f'{max(ms - 2, 0)} "-" "{rng.choice(AGENTS)}" "{rng.getrandbits(64):016x}" "{pod.app}:8080" '
            f'"10.244.{rng.randrange(250)}.{rng.randrange(250)}:8080"')


def document(rng: random.Random, pod: Pod, ms: int, app: bool) -> dict:
    """A line as Fluent Bit's Kubernetes filter ships it, with a unique log_id (a Lua filter's, say)."""
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    stamp = f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"
    doc = {"@timestamp": stamp, "stream": "stdout", "_p": "F", "log_id": f"{rng.getrandbits(80):020x}"}
    if app:
        doc["level"], doc["stream"], message = app_line(rng, pod)
    else:
        message = proxy_line(rng, pod, stamp)
    doc["log"] = message + "\n"
    doc["kubernetes"] = {"namespace_name": pod.namespace, "pod_name": pod.name, "pod_id": pod.uid,
                         "container_name": "app" if app else "proxy", "host": pod.host,
                         "container_image": f"registry.example/dev/shop-{pod.app}:1.4.2" if app
                         else "envoyproxy/envoy:v1.31.2",
                         "labels": {"app": pod.app, "pod-template-hash": pod.name.split("-")[-2]}}
    return doc


def documents(rng: random.Random, pods: list[Pod], count: int, start_ms: int, end_ms: int, prefix: str):
    """``count`` bulk actions, oldest first, evenly spread from ``start_ms`` to ``end_ms``; some lines in the
    same millisecond as the one before (of a pod drawn again, so mostly another)."""
    span, ms = end_ms - start_ms, start_ms
    for n in range(count):
        if n == 0 or rng.random() >= SAME_MILLISECOND:
            ms = max(ms, start_ms + (span * n + rng.randrange(span)) // count)
        yield {"_index": index_of(prefix, ms), "_source": document(rng, rng.choice(pods), ms, rng.random() < 0.5)}


def index_of(prefix: str, ms: int) -> str:
    return f"{prefix}-{datetime.fromtimestamp(ms / 1000, timezone.utc):%Y.%m.%d}"


def load(client: OpenSearch, args, pods: list[Pod], start_ms: int, end_ms: int, rng: random.Random) -> float:
    """Creates the indices and bulk-loads ``args.docs`` lines; returns the seconds it took, refresh included."""
    pattern = f"{args.prefix}-*"
    client.indices.delete(index=pattern, ignore_unavailable=True, allow_no_indices=True)  # an earlier run's
    settings = {"number_of_shards": 1, "number_of_replicas": 0}
    if not args.unsorted:
        settings.update(FIELDS.index_settings())
    client.indices.put_index_template(name=args.prefix, body={"index_patterns": [pattern], "template": {
        "settings": settings, "mappings": FIELDS.mappings()}})
    for index in sorted({index_of(args.prefix, ms) for ms in (*range(start_ms, end_ms, 3600_000), end_ms)}):
        client.indices.create(index=index, body={"settings": {"refresh_interval": "-1"}})
    start = time.perf_counter()
    for ok, item in parallel_bulk(client, documents(rng, pods, args.docs, start_ms, end_ms, args.prefix),
                                  thread_count=2, chunk_size=5000, queue_size=4):
        assert ok, item
    client.indices.refresh(index=pattern)
    seconds = time.perf_counter() - start
    client.indices.put_settings(index=pattern, body={"index": {"refresh_interval": None}})
    if args.force_merge:
        client.indices.forcemerge(index=pattern, max_num_segments=1)
    while client.indices.stats(index=pattern, metric="merge")["_all"]["total"]["merges"]["current"]:
        time.sleep(1)
    return seconds


# --- timing the store's calls --------------------------------------------------------------------------------

Measured = tuple[list[float], list[int]]  # wall times on the client (ms), and the engine's "took" (ms)


@dataclass
class Bench:
    """The store under test, with the engine's "took" of every search its client sends recorded."""

    args: argparse.Namespace
    admin: OpenSearch  # for writing and settings, outside the timed calls
    store: OpenSearchLogStore
    pattern: str
    took: list[int] = field(default_factory=list)
    targets: list[tuple[str, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        search = self.store.client.search

        def recorded(*a, **kw):
            response = search(*a, **kw)
            self.took.append(response.get("took", 0))
            return response
        self.store.client.search = recorded

    def timed(self, call, check, prepare=lambda: None) -> Measured:
        """``--iterations`` calls after ``--warmup`` untimed ones; ``prepare`` runs before each call and ``check``
        on each result, both untimed."""
        times = []
        for i in range(-self.args.warmup, self.args.iterations):
            prepare()
            if i == 0:
                self.took.clear()
            start = time.perf_counter()
            result = call()
            times.append((time.perf_counter() - start) * 1000)
            check(result)
        return times[self.args.warmup:], list(self.took)

    def show(self, call: str, label: str, measured: Measured, target: float | None = None) -> None:
        times, took = measured
        print(row(call, label, times) + f"{statistics.median(took):>8.0f}{percentile(took, 95):>8.0f}"
              f"{os.getloadavg()[0]:>6.1f}", flush=True)
        if target:
            self.targets.append((f"{call}, {label}", percentile(times, 95), target))


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def lines(n: int, texts: tuple[str, ...] = (), at_least: int | None = None):
    """A check of a page: ``n`` lines (or from ``at_least`` to ``n``), each with every text, highlighted."""
    def check(page) -> None:
        assert (n if at_least is None else at_least) <= len(page.lines) <= n, f"{len(page.lines)} lines, not {n}"
        for text in texts:
            assert all(text in ln.message.lower() and MARK_START in ln.highlighted for ln in page.lines), text
    return check


def panel(namespace: str, hours: float, **filters) -> LogQuery:
    """A query of the log panel: one namespace, the last ``hours`` from now (as portal.services.logs makes it)."""
    return LogQuery(namespaces=(namespace,), since=datetime.now(timezone.utc) - timedelta(hours=hours), **filters)


def tail_and_search(bench: Bench, tail_ns: str, search_ns: str) -> None:
    """A tail poll with nothing new; the panel opening; searches over 24 h (and how many lines match each)."""
    store = bench.store
    newest = store.query(panel(tail_ns, 1)).lines[-1].sort
    bench.show("tail", "nothing new (1 h)", bench.timed(lambda: store.tail(panel(tail_ns, 1), newest), lines(0)),
               TAIL_TARGET_MS)
    bench.show("query", "newest 200, 1 h (the panel opens)",
               bench.timed(lambda: store.query(panel(search_ns, 1)), lines(LIMIT, at_least=1)), SEARCH_TARGET_MS)
    matching = []
    for label, filters, words in (
            ("24 h, no text", {}, ()),
            ('24 h, "connection refused"', {"text": "connection refused"}, ("connection", "refused")),
            ('24 h, "connection refused", level error', {"text": "connection refused", "levels": ("error",)},
             ("connection", "refused")),
            ('24 h, "timeout", stderr', {"text": "timeout", "streams": ("stderr",)}, ("timeout",)),
            ('24 h, "GET" (in ~40 % of the lines)', {"text": "GET"}, ("get",))):
        bench.show("query", label, bench.timed(lambda f=filters: store.query(panel(search_ns, 24, **f)),
                                               lines(LIMIT, words, at_least=1)), SEARCH_TARGET_MS)
        body = {"query": search_body(panel(search_ns, 24, **filters), FIELDS, newest_first=True)["query"]}
        matching.append(f"{bench.admin.count(index=bench.pattern, body=body)['count']:,}")
    print(f"{'':<11} (lines matching in 24 h, row by row: {', '.join(matching)})")


def load_older(bench: Bench, namespace: str, count: int, since: datetime) -> None:
    """Walks back the whole history of a namespace of ``count`` lines by search_after, keeping the cursors at the
    depths to time one by one; then the same pages by from/size."""
    store, history = bench.store, LogQuery(namespaces=(namespace,), since=since)
    last = (count - 1) // LIMIT * LIMIT  # the depth of the last page
    depths = sorted({d for d in (1000, 10000, 50000) if d < last} | {last})
    cursors, cursor, walk = {}, None, ([], [])
    for depth in range(0, last + 1, LIMIT):
        if depth in depths:
            cursors[depth] = cursor
        bench.took.clear()
        start = time.perf_counter()
        page = store.query(history, before=cursor)
        walk[0].append((time.perf_counter() - start) * 1000)
        walk[1].extend(bench.took)
        cursor = page.cursor
    bench.show("older", f"walk back, every page to {last:,} deep", walk)
    for depth in depths:
        bench.show("older", f"search_after, {depth:,} deep",
                   bench.timed(lambda: store.query(history, before=cursors[depth]), lines(min(LIMIT, count - depth))))

    def by_offset(depth: int):
        body = {**search_body(history, FIELDS, newest_first=True), "from": depth}
        return lambda: LogPage(list(reversed(lines_of(store.client.search(index=bench.pattern, body=body), FIELDS))))

    def refused(depth: int, exc: exceptions.TransportError) -> None:
        reason = (exc.info or {}).get("error", {}).get("root_cause", [{}])[0].get("reason", str(exc.error))
        print(f"{'from/size':<11} {f'{depth:,} deep: refused':<42}HTTP {exc.status_code}: {reason.split('. ')[0]}")

    for depth in depths:  # as the indices come: refused beyond index.max_result_window
        try:
            found = by_offset(depth)().lines
        except exceptions.TransportError as exc:
            refused(depth, exc)
            continue
        expected = store.query(history, before=cursors[depth]).lines
        assert [ln.sort for ln in found] == [ln.sort for ln in expected], f"from/size differs at {depth}"
    bench.admin.indices.put_settings(index=bench.pattern, body={"index": {"max_result_window": last + LIMIT}})
    print(f"{'':<11} (index.max_result_window raised to {last + LIMIT:,} on {bench.pattern})")
    for depth in depths:
        try:  # deep enough, the engine's memory breaker refuses it too (a 429), and the row says so
            bench.show("from/size", f"{depth:,} deep", bench.timed(by_offset(depth), lines(min(LIMIT, count - depth))))
        except exceptions.TransportError as exc:
            refused(depth, exc)


def tail_new_lines(bench: Bench, pods: list[Pod], rng: random.Random) -> None:
    """Tail polls, each after 100 new lines of the namespace's pods (four a millisecond), written and refreshed."""
    namespace = pods[0].namespace
    state = {"cursor": bench.store.query(panel(namespace, 1)).lines[-1].sort, "ms": 0}

    def write() -> None:
        ms = state["ms"] = max(int(time.time() * 1000), state["ms"] + 26)
        body = []
        for i in range(100):
            body += [{"index": {"_index": index_of(bench.args.prefix, ms + i // 4)}},
                     document(rng, pods[i % len(pods)], ms + i // 4, i % 2 == 0)]
        assert not bench.admin.bulk(body=body)["errors"]
        bench.admin.indices.refresh(index=bench.pattern)

    def poll():
        page = bench.store.tail(panel(namespace, 1), state["cursor"])
        state["cursor"] = page.cursor
        return page
    bench.show("tail", "100 new lines (1 h)", bench.timed(poll, lines(100), prepare=write), TAIL_TARGET_MS)


# --- the run -------------------------------------------------------------------------------------------------


def run(args, url: str, node: SearchNode | None) -> None:
    rng = random.Random(9)
    pods = pods_of(args.namespaces, args.pods // args.namespaces, rng)
    namespaces = sorted({p.namespace for p in pods})
    pattern = f"{args.prefix}-*"
    admin = OpenSearch(hosts=[url], timeout=600)
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - HOURS * 3600 * 1000
    header = machine()  # its load average before the loading
    seconds = load(admin, args, pods, start_ms, end_ms, rng)
    stats = admin.indices.stats(index=pattern, metric="docs,store,segments")
    total, size = stats["_all"]["primaries"], stats["_all"]["primaries"]["store"]["size_in_bytes"]
    jvm = next(iter(admin.nodes.info(metric="jvm")["nodes"].values()))["jvm"]
    flags = [a for a in jvm["input_arguments"] if a.startswith(("-XX:+Use", "-XX:TieredStopAtLevel"))]
    per_namespace = {ns: admin.count(index=pattern, body={"query": {"term": {FIELDS.namespace: ns}}})["count"]
                     for ns in namespaces}

    print(*header, sep="\n")
    where = f"at {url}" if node is None else "a testbed node"
    print(f"search:   OpenSearch {admin.info()['version']['number']}, {where}; JVM {jvm['version']}, heap "
          f"{jvm['mem']['heap_max_in_bytes'] / 1024 ** 3:.2f} GiB, {' '.join(flags)}")
    print(f"data:     {total['docs']['count']:,} lines of {len(pods)} pods (2 containers each) in {len(namespaces)} "
          f"namespaces ({min(per_namespace.values()):,} to {max(per_namespace.values()):,} each) over the last "
          f"{HOURS} h,\n          {len(stats['indices'])} daily indices {', '.join(sorted(stats['indices']))}")
    print(f"loaded:   in {seconds:.1f} s, {args.docs / seconds:,.0f} lines/s (parallel bulk, 2 threads of 5,000, "
          f"refresh off, then one refresh);\n          {size / 1024 ** 2:.0f} MiB on disk, "
          f"{size / total['docs']['count']:.0f} bytes a line, {total['segments']['count']} segments"
          f"{' after a force merge' if args.force_merge else ''};\n          "
          + ("no index sort (--unsorted: the naive way)" if args.unsorted else
             f"index sorted by {', '.join(FIELDS.index_settings()['sort.field'])}, newest first "
             "(LogFields.index_settings(), as the portal's templates have it)"))

    bench = Bench(args, admin, OpenSearchLogStore.connect(url, pattern), pattern)
    tail_ns, search_ns, deep_ns = (namespaces[i % len(namespaces)] for i in range(3))
    print(f"\n{args.iterations} timed calls per row after {args.warmup} warm-up ones, through OpenSearchLogStore. "
          f"took: the engine's own time, ms;\nload: the 1-minute load average after the row. Tail in {tail_ns}, "
          f"searches in {search_ns}, load older in {deep_ns}.\n")
    print(f"{'call':<11} {'case (wall time on the client, ms)':<42}{'median':>8}{'p95':>8}{'p99':>8}{'min':>8}"
          f"{'max':>8}{'took50':>8}{'took95':>8}{'load':>6}", flush=True)
    tail_and_search(bench, tail_ns, search_ns)
    load_older(bench, deep_ns, per_namespace[deep_ns], datetime.fromtimestamp(start_ms / 1000 - 60, timezone.utc))
    tail_new_lines(bench, [p for p in pods if p.namespace == tail_ns], rng)  # last: its refreshes leave segments

    if node is not None:
        print(f"\nsearch node: {node.rss_bytes() / 1024 ** 2:.0f} MiB resident at the end")
    print("load:     {:.2f} {:.2f} {:.2f} (1, 5, 15 min, at the end)".format(*os.getloadavg()))
    print(f"Targets (issue 9): tail p95 < {TAIL_TARGET_MS:.0f} ms, search p95 < {SEARCH_TARGET_MS:.0f} ms.")
    for label, value, target in bench.targets:
        print(f"  {label:<50} p95 {value:7.1f} ms  {'met' if value < target else 'MISSED'}")
    if not args.keep:
        admin.indices.delete(index=pattern)
        admin.indices.delete_index_template(name=args.prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000, help="lines in all (default 1000000)")
    parser.add_argument("--pods", type=int, default=100, help="pods in all, 2 containers each (default 100)")
    parser.add_argument("--namespaces", type=int, default=10, help="namespaces the pods are in (default 10)")
    parser.add_argument("--iterations", type=int, default=200, help="timed calls per row (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before each row (default 5)")
    parser.add_argument("--heap", default="1g", help="the started node's heap (default 1g)")
    parser.add_argument("--url", help="a running OpenSearch node to use rather than starting one")
    parser.add_argument("--prefix", default="bench-fluent-bit", help="of the indices (deleted first if there)")
    parser.add_argument("--force-merge", action="store_true", help="force-merge each index to one segment")
    parser.add_argument("--unsorted", action="store_true",
                        help="indices without LogFields.index_settings()' sort (the naive way, for comparison)")
    parser.add_argument("--keep", action="store_true", help="leave the node running and the indices in place")
    args = parser.parse_args()
    # Ctrl-C (even when started in the background, where SIGINT comes ignored) and SIGTERM stop the node.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    node = None if args.url else SearchNode.start(heap=args.heap)
    try:
        run(args, args.url or node.url, node)
    finally:
        if node and args.keep:
            print(f"node left running at {node.url} (pid {node.process.proc.pid}, files in {node.workdir})")
        elif node:
            node.stop()


if __name__ == "__main__":
    main()
