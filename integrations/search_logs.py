"""The log store over a search engine: Elasticsearch through ``elasticsearch``, OpenSearch through
``opensearch-py``. The request bodies are ``integrations.log_search``'s; only the client call and its errors
differ.

``query`` returns the newest lines matching (or those older than a cursor, for "load older") oldest first,
as a panel shows them; ``tail`` returns the lines after a cursor, in order, each exactly once, with the same
sort, so a live panel asks only for what is new. A missing index (nothing shipped yet) is no lines.

The built-in collector (``integrations.log_collector``) also writes through a store: ``ensure_template`` gives
the pattern's indices the mappings the queries need, and ``write`` bulk-writes documents into daily indices named
as Fluent Bit's ``Logstash_Format`` names them (``fluent-bit*`` → ``fluent-bit-2026.12.07``, by each line's own
date), each document under its ``log_id`` as ``_id``, so that writing a line again replaces it, never doubles it.
"""

from __future__ import annotations

from typing import Any

from integrations.errors import IntegrationError, Unavailable
from integrations.http import error_for_status, scrub
from integrations.log_search import LogFields, _get, lines_of, search_body
from integrations.logs import LogPage, LogQuery


class SearchLogStore:
    """The LogStore contract over one engine's client; subclasses send the search and map its errors."""

    system = "search"

    def __init__(self, client: Any, index: str, fields: LogFields | None = None, secrets: tuple[str, ...] = ()):
        self.client = client
        self.index = index
        self.fields = fields or LogFields()
        self._secrets = tuple(s for s in secrets if s)

    def query(self, query: LogQuery, before: tuple | None = None) -> LogPage:
        body = search_body(query, self.fields, newest_first=True, search_after=before)
        lines = list(reversed(lines_of(self._search(body), self.fields)))
        return LogPage(lines=lines, cursor=lines[0].sort if lines else before)

    def tail(self, query: LogQuery, after: tuple | None) -> LogPage:
        if after is None:
            page = self.query(query)
            return LogPage(page.lines, page.lines[-1].sort if page.lines else None, page.notes)
        return self.forward(query, after)

    def forward(self, query: LogQuery, after: tuple | None = None) -> LogPage:
        body = search_body(query, self.fields, newest_first=False, search_after=after)
        lines = lines_of(self._search(body), self.fields)
        return LogPage(lines=lines, cursor=lines[-1].sort if lines else after)

    @classmethod
    def from_settings(cls, settings: Any) -> "SearchLogStore":
        """The store PORTAL_LOGS_* describe (URL, credentials, index pattern, field names, TLS, timeout)."""
        return cls.connect(settings.logs_url, settings.logs_index, user=settings.logs_user,
                           password=settings.logs_password, verify=settings.tls_verify, ca_bundle=settings.ca_bundle,
                           timeout=settings.http_timeout, fields=LogFields.parse(settings.logs_fields),
                           **({"api_key": settings.logs_api_key} if settings.logs_api_key else {}))

    @classmethod
    def connect(cls, url: str, index: str, **options: Any) -> "SearchLogStore":
        raise NotImplementedError

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _starting(status: int | None, error: Any) -> bool:
        """A 503 "all shards failed" naming no failed shard: an index just made (Fluent Bit's first line of a day)
        whose shards are not started yet. Nothing can be in it yet: no lines, rather than an outage."""
        inner = error.get("error") if isinstance(error, dict) else None
        return (status == 503 and isinstance(inner, dict) and inner.get("type") == "search_phase_execution_exception"
                and not inner.get("failed_shards") and not inner.get("root_cause"))

    # --- writing, for the built-in collector ---------------------------------------------------------

    def write_pattern(self) -> str:
        """The index pattern written to: the first of the configured ones, which must name a prefix."""
        pattern = self.index.split(",")[0].strip()
        if not pattern.rstrip("*").strip("-_.") or "*" in pattern.rstrip("*"):
            raise ValueError(f"cannot write to the index pattern {self.index!r}: use a prefix and one trailing *, "
                             "as fluent-bit*")
        return pattern

    def write_index(self, timestamp: str) -> str:
        """The index a line of ``timestamp`` (RFC 3339, UTC) goes to: ``<prefix>-YYYY.MM.DD`` for a pattern, else
        the one index the setting names."""
        pattern = self.write_pattern()
        if not pattern.endswith("*"):
            return pattern
        return f"{pattern.rstrip('*').rstrip('-_.')}-{timestamp[:10].replace('-', '.')}"

    def ensure_template(self) -> None:
        """An index template giving every index of the pattern the mappings the queries need (idempotent), as
        platform/fluent-bit/index-template.json does for Fluent Bit's indices."""
        pattern = self.write_pattern()
        name = "portal-logs-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in pattern.rstrip("*")).strip("-")
        self._put_template(name, {"index_patterns": [pattern], "priority": 200,
                                  "template": {"settings": {"index": self.fields.index_settings()},
                                               "mappings": self.fields.mappings()}})

    def write(self, documents: list[dict[str, Any]], refresh: bool = False) -> list[str]:
        """Bulk-write ``documents``, each into the index of its date under its tie-breaker (``log_id``) as ``_id``.
        Returns why documents the engine refused as malformed were (writing them again would not help); raises
        IntegrationError when the write as a whole, or a document for a passing reason (429, 5xx), failed."""
        if not documents:
            return []
        operations: list[dict[str, Any]] = []
        for document in documents:
            operations.append({"index": {"_index": self.write_index(str(_get(document, self.fields.timestamp))),
                                         "_id": str(_get(document, self.fields.tiebreaker))}})
            operations.append(document)
        response = self._bulk(operations, refresh)
        if not response.get("errors"):
            return []
        refused, passing = [], None
        for item in response.get("items") or []:
            result = next(iter(item.values()), {})
            status = int(result.get("status") or 0)
            if status < 300:
                continue
            reason = result.get("error") or {}
            said = f"{reason.get('type', '')}: {reason.get('reason', '')}" if isinstance(reason, dict) else str(reason)
            if status == 429 or status >= 500:
                passing = passing or (status, said)
            else:
                refused.append(f"{result.get('_id')}: {said}"[:300])
        if passing:
            raise self._error(passing[0], f"bulk write failed: {passing[1]}")
        return refused

    def _put_template(self, name: str, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def _bulk(self, operations: list[dict[str, Any]], refresh: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _error(self, status: int | None, message: str) -> IntegrationError:
        message = scrub(message, *self._secrets)[:500]
        return Unavailable(self.system, message) if status is None else error_for_status(self.system, status, message)


class OpenSearchLogStore(SearchLogStore):
    system = "opensearch"

    @classmethod
    def connect(cls, url: str, index: str, user: str = "", password: str = "", verify: bool = True,
                ca_bundle: str = "", timeout: float = 10.0, fields: LogFields | None = None) -> "OpenSearchLogStore":
        from opensearchpy import OpenSearch

        client = OpenSearch(hosts=[url], http_auth=(user, password) if user else None, verify_certs=verify,
                            ca_certs=ca_bundle or None, timeout=timeout, max_retries=1, retry_on_timeout=False)
        return cls(client, index, fields, secrets=(password,))

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        from opensearchpy import exceptions

        try:
            return self.client.search(index=self.index, body=body, ignore_unavailable=True, allow_no_indices=True)
        except exceptions.NotFoundError:
            return {}
        except exceptions.ConnectionError as exc:  # timeouts are ConnectionErrors here too
            raise self._error(None, f"cannot reach the search engine: {type(exc).__name__}") from exc
        except exceptions.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 502
            if self._starting(status, exc.info):
                return {}
            raise self._error(status, f"search failed: {exc.error}") from exc

    def _put_template(self, name: str, body: dict[str, Any]) -> None:
        self._write(lambda: self.client.indices.put_index_template(name=name, body=body), "index template")

    def _bulk(self, operations: list[dict[str, Any]], refresh: bool) -> dict[str, Any]:
        return self._write(lambda: self.client.bulk(body=operations, refresh=refresh), "bulk write")

    def _write(self, call, what: str) -> Any:
        from opensearchpy import exceptions

        try:
            return call()
        except exceptions.ConnectionError as exc:
            raise self._error(None, f"cannot reach the search engine: {type(exc).__name__}") from exc
        except exceptions.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 502
            raise self._error(status, f"{what} failed: {exc.error}") from exc


class ElasticsearchLogStore(SearchLogStore):
    system = "elasticsearch"

    @classmethod
    def connect(cls, url: str, index: str, user: str = "", password: str = "", api_key: str = "",
                verify: bool = True, ca_bundle: str = "", timeout: float = 10.0,
                fields: LogFields | None = None) -> "ElasticsearchLogStore":
        from elasticsearch import Elasticsearch

        auth: dict[str, Any] = {"api_key": api_key} if api_key else (
            {"basic_auth": (user, password)} if user else {})
        client = Elasticsearch(url, verify_certs=verify, ca_certs=ca_bundle or None, request_timeout=timeout,
                               max_retries=1, retry_on_timeout=False, **auth)
        return cls(client, index, fields, secrets=(password, api_key))

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        import elastic_transport
        from elasticsearch import ApiError, NotFoundError

        arguments = {("source" if key == "_source" else key): value for key, value in body.items()}
        try:
            return dict(self.client.search(index=self.index, ignore_unavailable=True, allow_no_indices=True,
                                           **arguments))
        except NotFoundError:
            return {}
        except ApiError as exc:
            if self._starting(exc.meta.status, exc.body):
                return {}
            raise self._error(exc.meta.status, f"search failed: {exc.message}") from exc
        except elastic_transport.TransportError as exc:
            raise self._error(None, f"cannot reach the search engine: {type(exc).__name__}") from exc

    def _put_template(self, name: str, body: dict[str, Any]) -> None:
        self._write(lambda: self.client.indices.put_index_template(name=name, **body), "index template")

    def _bulk(self, operations: list[dict[str, Any]], refresh: bool) -> dict[str, Any]:
        return dict(self._write(lambda: self.client.bulk(operations=operations, refresh=refresh), "bulk write"))

    def _write(self, call, what: str) -> Any:
        import elastic_transport
        from elasticsearch import ApiError

        try:
            return call()
        except ApiError as exc:
            raise self._error(exc.meta.status, f"{what} failed: {exc.message}") from exc
        except elastic_transport.TransportError as exc:
            raise self._error(None, f"cannot reach the search engine: {type(exc).__name__}") from exc
