"""Template filters and the navigation every page shows."""

from __future__ import annotations

from datetime import datetime, timezone

from flask import Flask
from markupsafe import Markup, escape
from flask_login import current_user

from integrations.cluster_objects import bytes_text, cpu_text
from integrations.log_search import MARK_END, MARK_START
from portal.services.access import navigation
from portal.services.naming import MAX_APPLICATION, MAX_PROJECT
from portal.services.provisioning.chain import step_label


def highlight(text: str) -> Markup:
    """A log line with the search engine's match markers turned into <mark>, everything else escaped."""
    return Markup(str(escape(text)).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>"))


def ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((datetime.now(timezone.utc) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def init_app(app: Flask) -> None:
    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["cpu"] = cpu_text
    app.jinja_env.filters["bytes"] = bytes_text
    app.jinja_env.filters["highlight"] = highlight
    app.jinja_env.filters["when"] = when
    app.jinja_env.globals["step_label"] = step_label
    app.jinja_env.globals["name_limits"] = {"project": MAX_PROJECT, "application": MAX_APPLICATION}

    @app.context_processor
    def nav():
        if current_user.is_authenticated and not current_user.is_pending:
            return {"nav_links": navigation(current_user)}
        return {"nav_links": []}
