"""The search both Elasticsearch and OpenSearch answer, over the documents Fluent Bit ships.

Each engine needs its own client (the ``elasticsearch`` client refuses a server that does not say it is
Elasticsearch, and OpenSearch refuses the client's ``compatible-with`` media types), but the request body
is the same, built here once:

- **Restricted first.** Every query is a ``bool`` whose filters start with the namespaces the portal's service
  decided the user may see; the other filters (pods, containers, streams, levels, time) only narrow it.
  No namespace at all matches nothing.
- **User text is data.** It goes into a ``match`` (every word, in any order) or, quoted, a ``match_phrase``;
  never into ``query_string``, ``simple_query_string`` or a script, so no query syntax in it means anything.
- **A stable sort.** Lines sort by timestamp, then by a tie-breaker field unique per line, so that
  ``search_after`` pages and tails without skipping or repeating lines that share a timestamp.
- **Highlights** come back between two private-use characters that cannot occur in escaped HTML, so a
  template escapes the line first and then turns the markers into ``<mark>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from integrations.logs import LEVELS, MARK_END, MARK_START, LogLine, LogQuery, canonical_level, phrase_of



@dataclass(frozen=True)
class LogFields:
    """Where each part of a line is in a document: Fluent Bit's Kubernetes filter layout by default."""

    timestamp: str = "@timestamp"
    message: str = "log"
    namespace: str = "kubernetes.namespace_name"
    pod: str = "kubernetes.pod_name"
    container: str = "kubernetes.container_name"
    stream: str = "stream"
    level: str = "level"
    tiebreaker: str = "log_id"  # unique per line; a keyword

    @classmethod
    def parse(cls, text: str) -> "LogFields":
        """``name=field,...`` overriding the defaults (ValueError naming what is wrong)."""
        known = {f for f in cls.__dataclass_fields__}
        changes = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition("=")
            if name.strip() not in known or not value.strip():
                raise ValueError(f"log field {item!r}: use name=field with name one of {', '.join(sorted(known))}")
            changes[name.strip()] = value.strip()
        return cls(**changes)

    def mappings(self) -> dict[str, Any]:
        """The index mappings the queries need (what an index template gives the shipped documents):
        keywords for what is filtered and sorted on, text for the message, a date for the time. Every other
        field stays in ``_source`` unindexed (``dynamic: false``), so that no team's JSON can give a field a
        type that gets another team's lines refused."""
        keyword = {"type": "keyword"}
        properties: dict[str, Any] = {}
        for name, kind in ((self.timestamp, {"type": "date_nanos"}), (self.message, {"type": "text"}),
                           (self.namespace, keyword), (self.pod, keyword), (self.container, keyword),
                           (self.stream, keyword), (self.level, keyword), (self.tiebreaker, keyword)):
            *parents, leaf = name.split(".")
            level = properties
            for parent in parents:
                level = level.setdefault(parent, {"properties": {}})["properties"]
            level[leaf] = kind
        return {"dynamic": False, "properties": properties}

    def index_settings(self) -> dict[str, Any]:
        """The index settings the queries are fastest with: the index kept sorted as the panel reads it, newest
        first by time then tie-breaker, so that "the newest 200 lines" stops after 200 matches per segment instead
        of sorting every line of the range (the engine ends early when the request's sort is the index's and no
        total is counted, which ``search_body`` asks for)."""
        return {"sort.field": [self.timestamp, self.tiebreaker], "sort.order": ["desc", "desc"]}

    def source(self) -> list[str]:
        return [self.timestamp, self.message, self.namespace, self.pod, self.container, self.stream, self.level,
                self.tiebreaker]


def text_clause(text: str, field: str) -> dict[str, Any] | None:
    """A plain ``match`` of every word, or a ``match_phrase`` when the text is in double quotes."""
    text = text.strip()
    if not text:
        return None
    phrase = phrase_of(text)
    if phrase is not None:
        return {"match_phrase": {field: {"query": phrase}}}
    return {"match": {field: {"query": text, "operator": "and"}}}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def search_body(query: LogQuery, fields: LogFields, *, newest_first: bool,
                search_after: tuple | None = None) -> dict[str, Any]:
    """The request body: ``query.limit`` lines matching ``query``, newest or oldest first, after a cursor."""
    filters: list[dict[str, Any]] = [{"terms": {fields.namespace: list(query.namespaces)}}]
    levels = tuple(spelling for level in query.levels for spelling in LEVELS.get(level, (level,)))
    for field, values in ((fields.pod, query.pods), (fields.container, query.containers),
                          (fields.stream, query.streams), (fields.level, levels)):
        if values:
            filters.append({"terms": {field: list(values)}})
    if query.since or query.until:
        bounds = {}
        if query.since:
            bounds["gte"] = _iso(query.since)
        if query.until:
            bounds["lte"] = _iso(query.until)
        filters.append({"range": {fields.timestamp: bounds}})
    clause = text_clause(query.text, fields.message)
    order = "desc" if newest_first else "asc"
    body: dict[str, Any] = {
        "size": query.limit,
        "query": {"bool": {"filter": filters, **({"must": [clause]} if clause else {})}},
        "sort": [{fields.timestamp: {"order": order}}, {fields.tiebreaker: {"order": order}}],
        "_source": fields.source(),
        "track_total_hits": False,
    }
    if not query.namespaces:
        body["query"] = {"match_none": {}}
    if clause:
        body["highlight"] = {"fields": {fields.message: {"number_of_fragments": 0}},
                             "pre_tags": [MARK_START], "post_tags": [MARK_END]}
    if search_after:
        body["search_after"] = list(search_after)
    return body


def _get(document: dict[str, Any], dotted: str) -> Any:
    """A field by its dotted name, whether the document nests it (Fluent Bit) or not."""
    if dotted in document:
        return document[dotted]
    value: Any = document
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def parse_timestamp(value: Any) -> datetime:
    text = str(value or "")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, timezone.utc)


def lines_of(response: dict[str, Any], fields: LogFields) -> list[LogLine]:
    """The hits of a search response as lines, each with its sort values as its cursor."""
    lines = []
    for hit in (response.get("hits") or {}).get("hits") or []:
        source = hit.get("_source") or {}
        highlight = ((hit.get("highlight") or {}).get(fields.message) or [None])[0]
        lines.append(LogLine(
            timestamp=parse_timestamp(_get(source, fields.timestamp)),
            message=str(_get(source, fields.message) or "").rstrip("\n"),
            namespace=str(_get(source, fields.namespace) or ""), pod=str(_get(source, fields.pod) or ""),
            container=str(_get(source, fields.container) or ""), stream=str(_get(source, fields.stream) or ""),
            level=canonical_level(str(_get(source, fields.level) or "")), highlighted=(highlight or "").rstrip("\n"),
            sort=tuple(hit.get("sort") or ())))
    return lines
