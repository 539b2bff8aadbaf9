"""Reading list parameters (filter text, page number) from the query string, tolerant of junk."""

from __future__ import annotations

from flask import request

MAX_QUERY = 100


def page_arg() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 1


def text_arg(name: str = "q") -> str:
    return request.args.get(name, "").strip()[:MAX_QUERY]
