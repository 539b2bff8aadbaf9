"""HTMX conventions in one place: detection, page-or-fragment rendering, HX-* headers."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, make_response, redirect, render_template, request
from jinja2_fragments.flask import render_block


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


# HTMX stops polling on this status (and still swaps the final state in).
STOP_POLLING = 286


def polling_status(over: bool) -> int:
    """The status of a polled region: 286 once what it shows is over, for HTMX's own GETs only (an action's
    answer, or a whole page, is a plain 200)."""
    return STOP_POLLING if over and is_htmx() and request.method == "GET" else 200


def is_boosted_or_history() -> bool:
    """Whole-page HTMX requests (boosted links, history restore) want the full page."""
    return request.headers.get("HX-Boosted") == "true" or request.headers.get("HX-History-Restore-Request") == "true"


def render(template_name: str, /, block: str | None = None, status: int = 200, **context: Any) -> Response:
    """Render the page, or only its named block for an HTMX request to the same URL."""
    if block and is_htmx() and not is_boosted_or_history():
        body = render_block(template_name, block, **context)
    else:
        body = render_template(template_name, **context)
    resp = make_response(body, status)
    resp.headers.add("Vary", "HX-Request")
    return resp


def redirect_to(url: str) -> Response:
    """A redirect that also works for HTMX requests, which would otherwise swap the target page in."""
    if is_htmx():
        resp = make_response("", 200)
        resp.headers["HX-Redirect"] = url
        return resp
    return redirect(url)


def trigger(resp: Response, event: str, detail: Any = None) -> Response:
    resp.headers["HX-Trigger"] = json.dumps({event: detail if detail is not None else True})
    return resp


def retarget(resp: Response, target: str, swap: str = "outerHTML") -> Response:
    resp.headers["HX-Retarget"] = target
    resp.headers["HX-Reswap"] = swap
    return resp
