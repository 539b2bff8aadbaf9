"""The portal's own log lines: one JSON object a line (or plain text), with the id of the request or job they
belong to.

``configure(settings)`` installs one handler on the root logger, writing to stderr, once per process: every
library's lines (Flask, RQ, werkzeug, the portal's) go through it; later calls (tests build many apps) change
nothing. A JSON line has ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``, ``request_id`` during a
request, ``job_id`` during an RQ job, and ``traceback`` when an exception is logged. Headers and bodies are never
logged here: a line holds what the code logged and the ids, nothing else.

The request id is the caller's ``X-Request-ID`` when it is a plausible one (a proxy's or a load balancer's, so
that lines can be followed across them), else a new one; the response carries it back in ``X-Request-ID``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime, timezone

from flask import Flask, Response, g, request

from portal.config import ConfigError, Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("portal_request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("portal_job_id", default=None)
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s"


class ContextIds(logging.Filter):
    """Puts the current request and job ids on each record (as ``request_id``, ``job_id`` and, for text, ``ids``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.job_id = JOB_ID.get()
        record.ids = "".join(f" [{name}={value}]" for name, value in (("request", record.request_id),
                                                                       ("job", record.job_id)) if value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the ids, the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "job_id"):
            value = getattr(record, name, None)
            if value:
                line[name] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (as logging's last resort does), so that a replaced
    stderr (pytest's capture, a daemon's redirection) is honoured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def formatter(log_format: str) -> logging.Formatter:
    if log_format not in FORMATS:
        raise ConfigError(f"PORTAL_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {log_format!r}")
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(settings: Settings) -> None:
    """Send every log line of this process to stderr in ``settings.log_format`` at ``settings.log_level``.

    Once per process: when the portal's handler is already in place, nothing changes.
    """
    root = logging.getLogger()
    if any(isinstance(h, _StderrHandler) for h in root.handlers):
        return
    level = settings.log_level.strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ConfigError(f"PORTAL_LOG_LEVEL must be a level name (DEBUG, INFO, WARNING, ERROR), got "
                          f"{settings.log_level!r}")
    handler = _StderrHandler()
    handler.setFormatter(formatter(settings.log_format))
    handler.addFilter(ContextIds())
    root.addHandler(handler)
    root.setLevel(level)
    # Flask gives the app's logger a handler of its own when it is first used without one in place: that
    # would write each of the app's lines twice.
    from flask.logging import default_handler

    logging.getLogger("portal").removeHandler(default_handler)


def request_id_of(header: str | None) -> str:
    """The caller's request id when it is one we can safely repeat, else a new one."""
    if header and _VALID_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


@contextlib.contextmanager
def job_context(job_id: str | None = None) -> Iterator[None]:
    """Lines logged inside carry ``job_id`` (by default the id of the RQ job running now, if any)."""
    if job_id is None:
        from rq import get_current_job

        job = get_current_job()
        job_id = job.id if job is not None else None
    token = JOB_ID.set(job_id)
    try:
        yield
    finally:
        JOB_ID.reset(token)


def init_app(app: Flask) -> None:
    """Give each request its id: set for its log lines, returned in its ``X-Request-ID`` header."""

    @app.before_request
    def start_request_id() -> None:
        g.request_id = request_id_of(request.headers.get(REQUEST_ID_HEADER))
        g.request_id_token = REQUEST_ID.set(g.request_id)

    @app.after_request
    def send_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers[REQUEST_ID_HEADER] = g.request_id
        return response

    @app.teardown_request
    def end_request_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            try:
                REQUEST_ID.reset(token)
            except ValueError:  # torn down in another context than it was set in (an async view's)
                REQUEST_ID.set(None)
