"""An application's logs: from the central log store when one is configured, else the pods' logs from the
Kubernetes API of the team's cluster. Which namespaces a query may read is decided here, from the application
the user may see; nothing in the request can widen it."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app

from integrations.errors import IntegrationError
from integrations.logs import LogPage, LogQuery
from integrations.pod_logs import PodLogStore
from portal.errors import Conflict, ValidationFailed
from portal.models import Application, User
from portal.services.access import require_visible
from portal.services.clusters import cluster_target, team_cluster
from portal.services.naming import ResourceNames
from portal.services.provisioning.chain import environments_of
from portal.services.providers import current_providers

RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}
LINES = 200
STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class LogFilters:
    """What a person asks for; every field is checked here before it reaches a store."""

    environment: str
    range: str = "1h"
    text: str = ""
    pod: str = ""
    container: str = ""
    stream: str = ""
    previous: bool = False


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


def _query(app: Application, filters: LogFilters) -> LogQuery:
    errors: dict[str, list[str]] = {}
    if filters.environment not in environments_of(current_app.config["PORTAL"]):
        errors["environment"] = ["No such environment."]
    if filters.range not in RANGES:
        errors["range"] = [f"Choose one of {', '.join(RANGES)}."]
    if filters.stream and filters.stream not in STREAMS:
        errors["stream"] = ["Choose stdout or stderr."]
    if len(filters.text) > 200:
        errors["text"] = ["At most 200 characters."]
    if errors:
        raise ValidationFailed(errors)
    names = ResourceNames(app.team.name, app.project.name, app.name)
    return LogQuery(namespaces=(names.namespace(filters.environment),),
                    since=datetime.now(timezone.utc) - RANGES[filters.range], text=filters.text,
                    pods=(filters.pod,) if filters.pod else (), containers=(filters.container,) if filters.container
                    else (), streams=(filters.stream,) if filters.stream else (), limit=LINES)


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


def all_lines(actor: User, app: Application, filters: LogFilters, pages: int = 50):
    """The whole current query, oldest first, a page at a time (at most ``pages`` pages of ``LINES``): checked
    now, read as the caller iterates."""
    require_visible(actor, app.team_id, "application")
    query = _query(app, filters)
    store = _store(app, filters)

    def read():
        cursor, collected = None, []
        for _ in range(pages):  # newest pages first, then given back oldest first
            page = store.query(query, cursor)
            if not page.lines:
                break
            collected.append(page.lines)
            cursor = page.cursor
        yield from reversed(collected)

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
