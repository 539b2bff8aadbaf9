"""The fake GitLab's REST API plumbing: routes on the raw path, error answers, JSON and GitLab's pagination.

Shared by ``tests.fakes.gitlab_server`` (the server, groups, projects, users, members, hooks) and
``tests.fakes.gitlab_repository`` (branches, commits, files, protected branches).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

API = "/api/v4"
ROUTES: list[tuple[str, re.Pattern[str], str]] = []


def endpoint(method: str, pattern: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Route ``method`` on ``/api/v4<pattern>`` (matched on the raw path) to the decorated handler."""

    def register(handler: Callable[..., Response]) -> Callable[..., Response]:
        ROUTES.append((method, re.compile(f"^{API}{pattern}$"), handler.__name__))
        return handler

    return register


class Answer(Exception):
    """An error answer, raised from a handler the way GitLab's API raises ``render_api_error!``."""

    def __init__(self, status: int, body: Any = None):
        super().__init__(status)
        self.status, self.body = status, body


def not_found(what: str) -> Answer:
    return Answer(404, {"message": f"404 {what} Not Found"})


def bad_request(message: Any) -> Answer:
    return Answer(400, {"message": message})


@dataclass
class Call:
    """What a handler gets: the request, the decoded path parameters, the merged query and body parameters."""

    request: Request
    args: dict[str, str]
    params: dict[str, Any]


def required(call: Call, *names: str) -> None:
    missing = [n for n in names if call.params.get(n) in (None, "")]
    if missing:
        raise Answer(400, {"error": ", ".join(f"{n} is missing" for n in missing)})


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    if isinstance(data, (bytes, str)):
        return Response(data, status=status, headers=headers, content_type="text/plain")
    return Response(json.dumps(data), status=status, headers=headers, content_type="application/json")


def paginated(call: Call, items: list[Any]) -> Response:
    """One page of a list with GitLab's pagination headers.

    https://docs.gitlab.com/api/rest/#pagination-response-headers
    """
    page = max(int(call.params.get("page") or 1), 1)
    per_page = min(max(int(call.params.get("per_page") or 20), 1), 100)
    pages = max((len(items) + per_page - 1) // per_page, 1)
    base = call.request.host_url.rstrip("/") + (call.request.environ.get("RAW_URI") or "").split("?", 1)[0]

    def link(n: int) -> str:
        return base + "?" + urlencode({**call.request.args.to_dict(), "page": n, "per_page": per_page})

    rels = {"prev": page - 1 if page > 1 else None, "next": page + 1 if page < pages else None,
            "first": 1, "last": pages}
    headers = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items)),
               "X-Total-Pages": str(pages), "X-Next-Page": str(rels["next"] or ""),
               "X-Prev-Page": str(rels["prev"] or ""),
               "Link": ", ".join(f'<{link(n)}>; rel="{rel}"' for rel, n in rels.items() if n)}
    return json_response(200, items[(page - 1) * per_page:page * per_page], headers)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")
