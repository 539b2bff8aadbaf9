"""The log panel of an application: filters, newest lines, load older, live tail, download."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request, stream_with_context
from flask_login import current_user, login_required

from portal.htmx import render
from portal.services import applications, logs

bp = Blueprint("logs", __name__)


def _filters(environment_default: str) -> logs.LogFilters:
    args = request.args
    return logs.LogFilters(environment=args.get("environment", environment_default), range=args.get("range", "1h"),
                           text=args.get("q", "").strip(), pod=args.get("pod", "").strip(),
                           container=args.get("container", "").strip(), stream=args.get("stream", ""),
                           level=args.get("level", ""), start=args.get("start", "").strip(),
                           end=args.get("end", "").strip(), previous=args.get("previous") == "1")


@bp.route("/t/<team>/<project>/<app>/logs")
@login_required
def panel(team: str, project: str, app: str):
    application = applications.get_application(current_user, team, project, app)
    filters = _filters(logs.environments()[0])
    before, after = logs.decode_cursor(request.args.get("before", "")), logs.decode_cursor(request.args.get("after", ""))
    live = request.args.get("live", "1") == "1" and not filters.previous and not filters.end
    if request.args.get("tail") == "1":
        page = logs.read_logs(current_user, application, filters, after=after, tail=True)
        return render("logs/_tail.html", app=application, filters=filters, page=page, live=live,
                      cursor=logs.encode_cursor(page.cursor))
    page = logs.read_logs(current_user, application, filters, before=before)
    older = logs.encode_cursor(page.cursor) if len(page.lines) >= logs.LINES else ""  # a full page: maybe more
    if before:
        return render("logs/_older.html", app=application, filters=filters, page=page, older=older)
    newest = page.lines[-1].sort if page.lines else None
    return render("logs/page.html", block="panel", app=application, filters=filters, page=page, live=live,
                  older=older, cursor=logs.encode_cursor(newest),
                  environments=logs.environments(), ranges=list(logs.RANGES), levels=list(logs.LEVELS))


@bp.route("/t/<team>/<project>/<app>/logs/download")
@login_required
def download(team: str, project: str, app: str):
    """The current query's lines, oldest first, as text or NDJSON, streamed page by page."""
    application = applications.get_application(current_user, team, project, app)
    filters = _filters(logs.environments()[0])
    ndjson = request.args.get("format") == "ndjson"
    pages = logs.all_lines(current_user, application, filters)  # checked now, before the response starts

    def body():
        for lines in pages:
            if lines is None:
                cut = f"… the download stops at {logs.DOWNLOAD_LINES:,} lines: narrow the query or the time range."
                yield (json.dumps({"truncated": True, "message": cut}) if ndjson else cut) + "\n"
                return
            for line in lines:
                if ndjson:
                    yield json.dumps({"timestamp": line.timestamp.isoformat(), "namespace": line.namespace,
                                      "pod": line.pod, "container": line.container, "stream": line.stream,
                                      "level": line.level, "message": line.message}) + "\n"
                else:
                    yield f"{line.timestamp.isoformat()} {line.pod}/{line.container} {line.stream} {line.message}\n"

    name = f"{application.name}-{filters.environment}.{'ndjson' if ndjson else 'log'}"
    return Response(stream_with_context(body()), mimetype="application/x-ndjson" if ndjson else "text/plain",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
