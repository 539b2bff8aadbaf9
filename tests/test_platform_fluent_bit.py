"""platform/fluent-bit: Fluent Bit on the team clusters ships exactly the document layout ``LogFields`` describes,
in the values shape the upstream fluent/fluent-bit chart reads, and the index template, applied to a real engine,
serves the portal's queries.

The field names live in ``integrations.log_search.LogFields`` only: these tests fail when the values, the Lua
script or the template stop producing them. What Fluent Bit itself names (the multiline parsers' ``log`` and
``stream``, the kubernetes filter's ``kubernetes.*``) is stated here once, from its source, with where it comes
from.

The Lua filter's script runs in the harness's Redis, whose EVAL embeds Lua 5.1, the language of Fluent Bit's
LuaJIT; Redis's sandbox has no ``io`` or ``os``, so those two are stood in for.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import json
import re
import uuid
from pathlib import Path

import pytest
import redis
import requests
import yaml

from integrations.log_search import MARK_END, MARK_START, LogFields
from integrations.logs import LogQuery
from integrations.search_logs import ElasticsearchLogStore, OpenSearchLogStore
from portal.config import Settings

PLATFORM = Path(__file__).resolve().parent.parent / "platform" / "fluent-bit"
FIELDS = LogFields()
DEFAULT_INDEX = {f.name: f for f in dataclasses.fields(Settings)}["logs_index"].default

# Top-level keys of the chart's values (fluent/helm-charts, charts/fluent-bit/values.yaml), and the files its
# configmap.yaml makes of config: service, inputs, filters and outputs joined into fluent-bit.conf.
CHART_KEYS = {
    "kind", "replicaCount", "image", "testFramework", "imagePullSecrets", "nameOverride", "fullnameOverride",
    "serviceAccount", "rbac", "podSecurityPolicy", "openShift", "podSecurityContext", "hostNetwork", "dnsPolicy",
    "dnsConfig", "hostAliases", "securityContext", "service", "serviceMonitor", "prometheusRule", "dashboards",
    "lifecycle", "livenessProbe", "readinessProbe", "resources", "ingress", "autoscaling", "podDisruptionBudget",
    "nodeSelector", "tolerations", "affinity", "labels", "annotations", "podAnnotations", "podLabels",
    "minReadySeconds", "terminationGracePeriodSeconds", "priorityClassName", "env", "envWithTpl", "envFrom",
    "extraContainers", "flush", "metricsPort", "extraPorts", "extraVolumes", "extraVolumeMounts", "updateStrategy",
    "existingConfigMap", "networkPolicy", "luaScripts", "config", "volumeMounts", "daemonSetVolumes",
    "daemonSetVolumeMounts", "args", "command", "initContainers", "logLevel", "hotReload",
}
CONFIG_KEYS = {"service", "inputs", "filters", "outputs", "customParsers", "upstream", "extraFiles"}
MAIN_FILE = ("service", "inputs", "filters", "outputs")
LUA_DIR = "/fluent-bit/scripts"  # where the chart's _pod.tpl mounts luaScripts
# What Fluent Bit names: the docker and cri multiline parsers' content and stream keys
# (src/multiline/flb_ml_parser_cri.c, flb_ml_parser_docker.c); the kubernetes filter's map and the keys it
# takes from the log file's name (plugins/filter_kubernetes/kube_meta.c).
PARSED_MESSAGE, PARSED_STREAM = "log", "stream"
KUBERNETES_KEY = "kubernetes"
KUBERNETES_NAMES = {"namespace": "namespace_name", "pod": "pod_name", "container": "container_name"}


def values(*names: str) -> dict:
    """The values Helm would use given these files in order: maps merge, anything else is replaced."""
    def merge(base, overlay):
        if isinstance(base, dict) and isinstance(overlay, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in overlay.items()}}
        return copy.deepcopy(overlay)
    result: dict = {}
    for name in names:
        result = merge(result, yaml.safe_load((PLATFORM / name).read_text()))
    return result


VARIANTS = {"elasticsearch": ("values.yaml",), "opensearch": ("values.yaml", "values-opensearch.yaml")}


@pytest.fixture(params=sorted(VARIANTS))
def chart_values(request) -> dict:
    return values(*VARIANTS[request.param])


def sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """A classic-mode configuration read by Fluent Bit's rules (src/config_format/flb_cf_fluentbit.c): ``[NAME]``
    headers; ``Key value`` lines all at the file's one indentation, keys case-insensitive, the value everything
    after the first space; lines starting with ``#`` (at the start or at that indentation) are comments."""
    result: list[tuple[str, dict[str, str]]] = []
    indent = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            assert line.rstrip().endswith("]"), f"line {number}: bad header {line!r}"
            result.append((line.strip()[1:-1].upper(), {}))
            continue
        indent = indent or line[:len(line) - len(line.lstrip())]
        assert indent and line.startswith(indent) and not line[len(indent)].isspace(), \
            f"line {number}: not at the file's indentation {indent!r}: {line!r}"
        body = line[len(indent):]
        if body.startswith("#"):
            continue
        key, _, value = body.partition(" ")
        assert value.strip(), f"line {number}: {key} has no value"
        assert " #" not in value, f"line {number}: Fluent Bit would read the comment as part of {key}'s value"
        assert result, f"line {number}: a key outside any section"
        result[-1][1][key.lower()] = value.strip()
    return result


def main_config(chart_values: dict) -> list[tuple[str, dict[str, str]]]:
    return sections("\n".join(chart_values["config"][part] for part in MAIN_FILE))


def plugin(chart_values: dict, kind: str, *names: str) -> dict[str, str]:
    """The one section of ``kind`` (INPUT, FILTER, OUTPUT) whose plugin is one of ``names``."""
    found = [keys for section, keys in main_config(chart_values)
             if section == kind and keys.get("name", "").lower() in names]
    assert len(found) == 1, f"expected one {kind} named {' or '.join(names)}, found {len(found)}"
    return found[0]


def on(value: str | None) -> bool:
    return (value or "").lower() in {"on", "true", "yes", "1"}


def lua_script(chart_values: dict) -> tuple[str, str]:
    """(name of the function the lua filter calls, the script's text)."""
    lua = plugin(chart_values, "FILTER", "lua")
    directory, _, name = lua["script"].rpartition("/")
    assert directory == LUA_DIR, f"the chart mounts luaScripts under {LUA_DIR}, not {directory}"
    return lua["call"], chart_values["luaScripts"][name]


def lua_constant(script: str, name: str) -> str:
    match = re.search(rf'^local {name} = "([^"]*)"$', script, re.MULTILINE)
    assert match, f"the Lua script declares no {name}"
    return match.group(1)


def output(chart_values: dict) -> dict[str, str]:
    return plugin(chart_values, "OUTPUT", "es", "opensearch")


def template() -> dict:
    return json.loads((PLATFORM / "index-template.json").read_text())


# --- the values, as the chart reads them -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["values.yaml", "values-opensearch.yaml"])
def test_only_the_charts_own_values_are_set(name):
    unknown = set(yaml.safe_load((PLATFORM / name).read_text())) - CHART_KEYS
    assert not unknown, f"the chart has no values {sorted(unknown)}"


def test_the_values_have_the_shapes_the_chart_reads(chart_values):
    assert chart_values["kind"] == "DaemonSet"
    assert "volumeMounts" not in chart_values, "replacing the chart's volumeMounts unmounts fluent-bit.conf"
    assert set(chart_values["config"]) <= CONFIG_KEYS
    assert all(isinstance(chart_values["config"][part], str) for part in MAIN_FILE)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in chart_values["luaScripts"].items())
    assert {"operator": "Exists"} in chart_values["tolerations"]
    for variable in chart_values["env"]:
        assert set(variable) in ({"name", "value"}, {"name", "valueFrom"}), variable
    volumes = {volume["name"] for volume in chart_values["extraVolumes"]}
    assert {mount["name"] for mount in chart_values["extraVolumeMounts"]} == volumes


def test_the_configuration_reads_as_fluent_bit_classic_mode_with_every_variable_set(chart_values):
    config = main_config(chart_values)
    assert [section for section, _ in config][0] == "SERVICE"
    assert {section for section, _ in config} == {"SERVICE", "INPUT", "FILTER", "OUTPUT"}
    used = set(re.findall(r"\$\{(\w+)\}", "\n".join(chart_values["config"][part] for part in MAIN_FILE)))
    assert used and used <= {variable["name"] for variable in chart_values["env"]}
    assert "{{" not in "".join(chart_values["luaScripts"].values()), "the chart passes Lua scripts through tpl"


def test_lines_wait_on_the_node_while_the_central_engine_is_away(chart_values):
    service = dict(main_config(chart_values))["SERVICE"]
    tail = plugin(chart_values, "INPUT", "tail")
    out = output(chart_values)
    host_paths = {v["name"] for v in chart_values["extraVolumes"] if "hostPath" in v}
    on_node = [m["mountPath"] for m in chart_values["extraVolumeMounts"] if m["name"] in host_paths]
    for path in (service["storage.path"], tail["db"]):
        assert any(path.startswith(mount.rstrip("/") + "/") for mount in on_node), f"{path} is not on the node"
    assert tail["storage.type"] == "filesystem"
    assert out["retry_limit"].lower() in {"no_limits", "false"}
    assert out["storage.total_limit_size"]
    # A chunk whose lines all come back 409 would be retried forever with an id (fluent/fluent-bit#11422).
    assert not {"generate_id", "id_key"} & set(out)


def test_the_output_is_tls_to_a_verified_host(chart_values):
    out = output(chart_values)
    assert on(out["tls"]) and on(out["tls.verify"]) and on(out["tls.verify_hostname"])
    if "tls.ca_file" in out:  # a private CA, from a mounted Secret
        mounts = [mount["mountPath"] for mount in chart_values["extraVolumeMounts"]]
        assert any(out["tls.ca_file"].startswith(mount.rstrip("/") + "/") for mount in mounts)


# --- the document layout: LogFields' names, nothing else --------------------------------------------------


def test_the_line_and_its_stream_are_where_the_parsers_put_them(chart_values):
    tail = plugin(chart_values, "INPUT", "tail")
    assert "cri" in [p.strip() for p in tail["multiline.parser"].split(",")]
    assert tail["tag"] == "kube.*"
    assert (FIELDS.message, FIELDS.stream) == (PARSED_MESSAGE, PARSED_STREAM)


def test_the_kubernetes_filter_yields_the_names_the_portal_filters_on(chart_values):
    kubernetes = plugin(chart_values, "FILTER", "kubernetes")
    assert kubernetes["match"] == "kube.*"
    for field, key in KUBERNETES_NAMES.items():
        assert getattr(FIELDS, field) == f"{KUBERNETES_KEY}.{key}"
    # The line stays in log once merged, and a JSON line's own fields cannot overwrite the portal's.
    assert on(kubernetes.get("keep_log", "on"))
    assert on(kubernetes["merge_log"])
    top_level = {name.split(".")[0] for name in FIELDS.source()}
    assert kubernetes["merge_log_key"] not in top_level


def test_the_lua_filter_adds_the_tie_breaker_and_the_level(chart_values):
    filters = [keys.get("name", "").lower() for section, keys in main_config(chart_values) if section == "FILTER"]
    assert filters.index("lua") > filters.index("kubernetes"), "the level comes from the merged JSON"
    call, script = lua_script(chart_values)
    assert re.search(rf"^function {call}\(tag, timestamp, record\)$", script, re.MULTILINE)
    assert lua_constant(script, "TIEBREAKER") == FIELDS.tiebreaker
    assert lua_constant(script, "LEVEL") == FIELDS.level
    assert lua_constant(script, "MESSAGE") == FIELDS.message
    assert lua_constant(script, "MERGED") == plugin(chart_values, "FILTER", "kubernetes")["merge_log_key"]
    assert "record[TIEBREAKER] = " in script and "record[LEVEL] = " in script
    assert "return 2, timestamp, record" in script  # record changed, timestamp kept


def test_the_output_writes_the_timestamp_and_the_indices_the_portal_reads(chart_values):
    out = output(chart_values)
    assert out.get("time_key", "@timestamp") == FIELDS.timestamp
    timestamp_type = FIELDS.mappings()["properties"][FIELDS.timestamp]["type"]
    assert on(out.get("time_key_nanos")) == (timestamp_type == "date_nanos")
    assert on(out["logstash_format"]) and on(out["suppress_type_name"])
    index = f"{out['logstash_prefix']}-2026.12.07"  # Logstash_DateFormat's default, %Y.%m.%d
    assert "logstash_dateformat" not in out
    assert fnmatch.fnmatchcase(index, DEFAULT_INDEX)
    assert any(fnmatch.fnmatchcase(index, pattern) for pattern in template()["index_patterns"])


# Runs the script as the lua filter would: the HOSTNAME the pod has, ARGV[2] as the kernel's random UUID ("" for
# no /proc), each record of ARGV[1] through the function the filter calls, one process's state throughout.
LUA_HARNESS = """
local os = {getenv = function(name) if name == "HOSTNAME" then return "fluent-bit-x7k2p" end end,
            time = function() return 1765101600 end, clock = function() return 0.25 end}
local io = {open = function(path)
  if path ~= "/proc/sys/kernel/random/uuid" or ARGV[2] == "" then return nil end
  return {read = function(self, format) return ARGV[2] end, close = function(self) end}
end}
local CALL
SCRIPT
local results = {}
for i, record in ipairs(cjson.decode(ARGV[1])) do
  local code, timestamp, changed = CALL("kube.var.log.containers.shop_dev-shop_web-0123.log", 1765101600.5, record)
  results[i] = {code, timestamp, changed}
end
return cjson.encode(results)
"""


@pytest.fixture
def run_lua(redis_server):
    """Records through values.yaml's Lua filter: [(code, timestamp, record), ...]."""
    client = redis.Redis.from_url(redis_server.url)
    call, script = lua_script(values("values.yaml"))

    def run(records: list[dict], uuid_text: str = "3f9a1c2e-5b7d-4e0f-9a8b-0c1d2e3f4a5b") -> list:
        source = LUA_HARNESS.replace("CALL", call).replace("SCRIPT", script)
        return json.loads(client.eval(source, 0, json.dumps(records), uuid_text))

    yield run
    client.close()


def test_the_lua_filter_gives_each_line_a_unique_id_in_reading_order(run_lua):
    results = run_lua([{"log": f"line {n}"} for n in range(12)])
    assert {(code, timestamp) for code, timestamp, _ in results} == {(2, 1765101600.5)}
    ids = [record[FIELDS.tiebreaker] for _, _, record in results]
    assert ids == sorted(ids) and len(set(ids)) == 12  # a keyword sort keeps the order the lines were read
    assert ids[0] == "fluent-bit-x7k2p-3f9a1c2e-000000000000001"
    assert [record["log"] for _, _, record in results] == [f"line {n}" for n in range(12)]
    # Without /proc the random part comes from the clock; it is still there.
    [(_, _, record)] = run_lua([{"log": "x"}], uuid_text="")
    assert re.fullmatch(r"fluent-bit-x7k2p-[0-9a-f]{8}-0{14}1", record[FIELDS.tiebreaker])


@pytest.mark.parametrize("record, level", [
    ({"log": "{}", "log_processed": {"level": "WARNING"}}, "warn"),
    ({"log": "{}", "log_processed": {"level": 50}}, "error"),  # pino
    ({"log": "{}", "log_processed": {"severity": "Verbose"}}, "verbose"),  # the application's own word, kept
    ({"log": "{}", "log_processed": {"log.level": "debug"}}, "debug"),
    ({"log": "ERROR cannot connect", "level": "Fatal"}, "fatal"),  # already set: only normalised
    ({"log": "ERROR cannot connect to db"}, "error"),
    ({"log": "[warn] disk 91% full"}, "warn"),
    ({"log": "I1207 10:00:00.000000       1 main.go:42] started"}, "info"),  # klog
    ({"log": 'time=2026-12-07T10:00:00Z level=debug msg="cache miss"'}, "debug"),  # logfmt
    ({"log": "Information about the run"}, None),
    ({"log": "GET /health 200"}, None),
])
def test_the_lua_filter_sets_the_level_the_line_declares(run_lua, record, level):
    [(_, _, changed)] = run_lua([record])
    assert changed.get(FIELDS.level) == level
    assert changed["log"] == record["log"]


# --- the index template ------------------------------------------------------------------------------------


def test_the_template_maps_exactly_the_log_fields():
    body = template()
    assert body["template"]["mappings"] == FIELDS.mappings() and FIELDS.mappings()["dynamic"] is False
    index = body["template"]["settings"]["index"]
    assert {key: index[key] for key in FIELDS.index_settings()} == FIELDS.index_settings()
    assert body["index_patterns"] == ["fluent-bit-*"]
    assert fnmatch.fnmatchcase("fluent-bit-2026.12.07", DEFAULT_INDEX)


@pytest.fixture(params=["opensearch", "elasticsearch"])
def engine(request):
    """(node URL, store class) of a real engine."""
    if request.param == "opensearch":
        return request.getfixturevalue("search_node").url, OpenSearchLogStore
    return request.getfixturevalue("elasticsearch_node").url, ElasticsearchLogStore


@pytest.fixture
def applied_template(engine):
    """The template as an operator PUTs it, its pattern moved to a prefix of this test's own; (url, store class,
    the prefix). Deleted afterwards, with the indices it made."""
    url, store_class = engine
    suffix = uuid.uuid4().hex[:8]
    prefix = f"platform-test-{suffix}-fluent-bit"
    name = f"portal-logs-test-{suffix}"
    body = template()
    body["index_patterns"] = [f"{prefix}-*"]
    response = requests.put(f"{url}/_index_template/{name}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    yield url, store_class, prefix
    # By name: Elasticsearch 8 refuses to delete indices by a wildcard (action.destructive_requires_name).
    made = requests.get(f"{url}/{prefix}-*", timeout=30).json()
    if made:
        requests.delete(f"{url}/{','.join(made)}", timeout=30)
    requests.delete(f"{url}/_index_template/{name}", timeout=30)


def shipped(log_id: str, nanos: str, namespace: str, message: str, stream: str, level: str, merged: dict) -> dict:
    """A line as values.yaml ships it: the cri parser's fields, the kubernetes filter's map (labels and
    annotations off), the JSON line under log_processed, the Lua filter's log_id and level, the es output's
    @timestamp in nanoseconds."""
    return {"@timestamp": f"2026-12-07T10:00:00.{nanos}Z", "time": f"2026-12-07T10:00:00.{nanos}Z",
            "stream": stream, "_p": "F", "log": message, "log_processed": merged, "level": level, "log_id": log_id,
            "kubernetes": {"pod_name": "shop-7d9f-x2x", "namespace_name": namespace, "pod_id": str(uuid.uuid4()),
                           "host": "node-1", "container_name": "web", "docker_id": "c0ffee" * 10 + "abcd",
                           "container_hash": "registry.example/shop@sha256:" + "0" * 64,
                           "container_image": "registry.example/shop:1.4.2"}}


def test_the_template_serves_the_portals_queries(applied_template):
    url, store_class, prefix = applied_template
    index = f"{prefix}-2026.12.07"
    lines = [
        shipped("fluent-bit-x7k2p-3f9a1c2e-000000000000041", "123456789", "dev-shop",
                '{"status":200,"msg":"GET /health"}', "stdout", "info", {"status": 200, "msg": "GET /health"}),
        # The same nanosecond: only log_id orders the two. Its status is an object where the line above has a
        # number: dynamic mappings would refuse one of them.
        shipped("fluent-bit-x7k2p-3f9a1c2e-000000000000042", "123456789", "dev-shop",
                "upstream timeout after 30s", "stderr", "error", {"status": {"code": "timeout"}}),
        shipped("fluent-bit-q1w2e-77aa00bb-000000000000007", "123456790", "ops-billing",
                "upstream timeout after 30s", "stderr", "error", {}),
    ]
    bulk = "".join(json.dumps(action) + "\n" for line in lines for action in ({"create": {"_index": index}}, line))
    response = requests.post(f"{url}/_bulk?refresh=true", data=bulk,
                             headers={"Content-Type": "application/x-ndjson"}, timeout=30)
    assert response.status_code == 200 and not response.json()["errors"], response.text

    mapping = requests.get(f"{url}/{index}/_mapping", timeout=30).json()[index]["mappings"]
    assert mapping["properties"] == FIELDS.mappings()["properties"]  # nothing mapped but LogFields
    assert str(mapping["dynamic"]).lower() == "false"

    store = store_class.connect(url, f"{prefix}*")
    shop = LogQuery(namespaces=("dev-shop",))
    page = store.query(shop)
    assert [line.message for line in page.lines] == ['{"status":200,"msg":"GET /health"}',
                                                     "upstream timeout after 30s"]
    assert [(line.stream, line.level, line.pod, line.container) for line in page.lines] == [
        ("stdout", "info", "shop-7d9f-x2x", "web"), ("stderr", "error", "shop-7d9f-x2x", "web")]

    newest = store.query(LogQuery(namespaces=("dev-shop",), limit=1))
    older = store.query(LogQuery(namespaces=("dev-shop",), limit=1), before=newest.cursor)
    assert [newest.lines[0].message, older.lines[0].message] == ["upstream timeout after 30s",
                                                                  '{"status":200,"msg":"GET /health"}']

    found = store.query(LogQuery(namespaces=("dev-shop",), text="timeout")).lines
    assert [line.highlighted for line in found] == [f"upstream {MARK_START}timeout{MARK_END} after 30s"]
    assert [line.message for line in store.query(LogQuery(namespaces=("dev-shop",), levels=("info",))).lines] \
        == ['{"status":200,"msg":"GET /health"}']
