"""An application's logs: from the central log store when one is configured, else the pods' logs from the
Kubernetes API of the team's cluster. Which namespaces a query may read is decided here, from the application
the user may see; nothing in the request can widen it."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from flask import current_app

from integrations.errors import IntegrationError
from integrations.logs import LEVELS, LogPage, LogQuery
from integrations.pod_logs import PodLogStore
from portal.errors import Conflict, ValidationFailed
from portal.models import Application, User
from portal.services.access import require_visible
from portal.services.clusters import cluster_target, team_cluster
from portal.services.naming import ResourceNames
from portal.services.provisioning.chain import environments_of
from portal.services.providers import current_providers

RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24), "custom": None}
LONGEST = timedelta(days=31)  # a custom range's widest span
LINES = 200
DOWNLOAD_PAGE, DOWNLOAD_LINES = 1000, 100_000
STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class LogFilters:
    """What a person asks for; every field is checked here before it reaches a store. A custom range is
    ``start`` to ``end`` (ISO 8601; without a zone, UTC), ``end`` empty meaning now."""

    environment: str
    range: str = "1h"
    text: str = ""
    pod: str = ""
    container: str = ""
    stream: str = ""
    level: str = ""
    start: str = ""
    end: str = ""
    previous: bool = False

    def arguments(self) -> dict[str, str]:
        """The filters as the panel's query string has them, for links that keep the current query."""
        return {"environment": self.environment, "range": self.range, "q": self.text, "pod": self.pod,
                "container": self.container, "stream": self.stream, "level": self.level, "start": self.start,
                "end": self.end, "previous": "1" if self.previous else "0"}


def encode_cursor(cursor: tuple | None) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(cursor)).encode()).decode() if cursor else ""


def decode_cursor(text: str) -> tuple | None:
    """A cursor from a request, or ValidationFailed: it is opaque, and anything else is refused."""
    if not text:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed({"cursor": ["This is not a cursor the portal gave."]}) from None
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, int, float)) for v in value):
        raise ValidationFailed({"cursor": ["This is not a cursor the portal gave."]})
    return tuple(value)


def _moment(text: str, errors: dict[str, list[str]], name: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        errors[name] = [f"The {name} must be a date and time such as 2026-12-07T10:30 (UTC unless a zone is given)."]
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _span(filters: LogFilters, errors: dict[str, list[str]]) -> tuple[datetime | None, datetime | None]:
    now = datetime.now(timezone.utc)
    if filters.range != "custom":
        return now - RANGES[filters.range], None
    start, end = _moment(filters.start, errors, "start"), _moment(filters.end, errors, "end")
    if "start" in errors or "end" in errors:
        return None, None
    if start is None:
        errors["start"] = ["A custom range needs its start."]
    elif start >= (end or now):
        errors["end"] = ["The end must come after the start."]
    elif (end or now) - start > LONGEST:
        errors["start"] = [f"A custom range spans at most {LONGEST.days} days; the start is earlier."]
    return start, end


def _query(app: Application, filters: LogFilters, limit: int = LINES) -> LogQuery:
    errors: dict[str, list[str]] = {}
    if filters.environment not in environments_of(current_app.config["PORTAL"]):
        errors["environment"] = ["No such environment."]
    if filters.range not in RANGES:
        errors["range"] = [f"Choose a range among {', '.join(RANGES)}."]
    if filters.stream and filters.stream not in STREAMS:
        errors["stream"] = ["Choose stdout or stderr."]
    if filters.level and filters.level not in LEVELS:
        errors["level"] = [f"Choose a level among {', '.join(LEVELS)}."]
    if len(filters.text) > 200:
        errors["text"] = ["At most 200 characters."]
    for name in ("pod", "container"):
        if len(getattr(filters, name)) > 253:
            errors[name] = ["At most 253 characters."]
    since, until = _span(filters, errors) if "range" not in errors else (None, None)
    if errors:
        raise ValidationFailed(errors)
    names = ResourceNames(app.team.name, app.project.name, app.name)
    return LogQuery(namespaces=(names.namespace(filters.environment),), since=since, until=until,
                    text=filters.text, pods=(filters.pod,) if filters.pod else (),
                    containers=(filters.container,) if filters.container else (),
                    streams=(filters.stream,) if filters.stream else (),
                    levels=(filters.level,) if filters.level else (), limit=limit)


def _store(app: Application, filters: LogFilters):
    central = current_providers().logs
    if central is not None and not filters.previous:
        return central
    cluster = team_cluster(app.team_id)
    connector = current_providers().cluster
    if cluster is None or connector is None:
        raise Conflict("No log store is configured and no cluster is bound to this team.")
    try:
        api = getattr(connector.connect(cluster_target(cluster)), "api", None)
    except IntegrationError as exc:
        raise Conflict(f"The logs cannot be read now: {exc}") from None
    if api is None:
        raise Conflict("No log store is configured, and this cluster provider does not serve pods' logs.")
    return PodLogStore(api)


def environments() -> tuple[str, ...]:
    return environments_of(current_app.config["PORTAL"])


def all_lines(actor: User, app: Application, filters: LogFilters, most: int | None = None):
    """The whole current query up to now, oldest first, at most ``most`` lines: checked now, read a page at a
    time as the caller iterates, so a download starts at once and holds one page in memory. After the last
    line, a final ``None`` says the download was cut at ``most``."""
    require_visible(actor, app.team_id, "application")
    most = most or DOWNLOAD_LINES
    query = _query(app, filters, limit=DOWNLOAD_PAGE)
    if query.until is None:  # a download ends where it began; it does not chase new lines
        query = replace(query, until=datetime.now(timezone.utc))
    store = _store(app, filters)

    def read():
        if filters.previous and isinstance(store, PodLogStore):  # the container before the restart: bounded
            yield store.query(replace(query, limit=most), previous=True).lines
            return
        cursor, sent = None, 0
        while True:
            try:
                page = store.forward(query, cursor)
            except IntegrationError as exc:
                raise Conflict(f"The logs cannot be read now: {exc}") from None
            if not page.lines or page.cursor == cursor:
                return
            yield page.lines[:most - sent]
            sent += len(page.lines)
            if sent >= most:
                yield None
                return
            cursor = page.cursor

    return read()


def read_logs(actor: User, app: Application, filters: LogFilters, before: tuple | None = None,
              after: tuple | None = None, tail: bool = False) -> LogPage:
    """The newest lines (or those before a cursor), or with ``tail`` those after it, of one environment."""
    require_visible(actor, app.team_id, "application")
    query = _query(app, filters)
    store = _store(app, filters)
    try:
        if tail:
            return store.tail(query, after)
        if filters.previous and isinstance(store, PodLogStore):
            return store.query(query, before, previous=True)
        return store.query(query, before)
    except IntegrationError as exc:
        raise Conflict(f"The logs cannot be read now: {exc}") from None
