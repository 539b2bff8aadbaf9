"""An application's builds: the timeline on its page, one build with its live console, building again."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request, stream_with_context, url_for
from flask_login import current_user, login_required

from portal.errors import ValidationFailed
from portal.htmx import polling_status, redirect_to, render
from portal.services import applications, build_console, builds

bp = Blueprint("builds", __name__)


def _timeline(app):
    items = builds.recent_builds(current_user, app)
    active = any(not b.state.over for b in items)
    return render("builds/_timeline.html", app=app, builds=items, active=active, status=polling_status(not active))


@bp.route("/t/<team>/<project>/<app>/builds")
@login_required
def timeline(team: str, project: str, app: str):
    return _timeline(applications.get_application(current_user, team, project, app))


def _whole_number(name: str, default: int | None = None) -> int | None:
    raw = request.args.get(name, "")
    if not raw:
        return default
    if not raw.isdigit():
        raise ValidationFailed({name: ["Must be a whole number."]})
    return int(raw)


@bp.route("/t/<team>/<project>/<app>/builds/<int:number>")
@login_required
def show(team: str, project: str, app: str, number: int):
    """The build, and its console as a log panel (the panel alone for the panel's own filter form)."""
    application = applications.get_application(current_user, team, project, app)
    build = builds.get_build(current_user, application, number)
    text = request.args.get("q", "")
    page = build_console.console(current_user, application, number, text)
    live = request.args.get("live", "1") == "1" and not page.over
    return render("builds/show.html", block="console", app=application, build=build, page=page, text=text.strip(),
                  live=live)


@bp.route("/t/<team>/<project>/<app>/builds/<int:number>/log")
@login_required
def log(team: str, project: str, app: str, number: int):
    """Lines of the console: with ``after`` (a position) and ``line`` (the next line's number), the whole lines
    written since, which HTMX appends, asking again until the build is over (286); with ``before``, the lines
    before that line, for "load older"."""
    application = applications.get_application(current_user, team, project, app)
    text = request.args.get("q", "")
    before = _whole_number("before")
    if before is not None:
        page = build_console.console(current_user, application, number, text, before=before)
        return render("builds/_console_older.html", app=application, number=number, page=page, text=text.strip())
    offset, line = _whole_number("after", 0), _whole_number("line", 1)
    page = build_console.tail(current_user, application, number, offset, max(line, 1), text)
    return render("builds/_console_tail.html", app=application, number=number, page=page, text=text.strip(),
                  status=polling_status(page.over and not page.lines))


@bp.route("/t/<team>/<project>/<app>/builds/<int:number>/log/download")
@login_required
def download(team: str, project: str, app: str, number: int):
    """The console (the lines matching ``q``, if given) as text or NDJSON, streamed from the portal's copy."""
    application = applications.get_application(current_user, team, project, app)
    ndjson = request.args.get("format") == "ndjson"
    found = build_console.lines(current_user, application, number, request.args.get("q", ""))

    def body():
        for line in found:
            yield (json.dumps({"line": line.number, "text": line.text}) if ndjson else line.text) + "\n"

    name = f"{application.name}-build-{number}.{'ndjson' if ndjson else 'log'}"
    return Response(stream_with_context(body()), mimetype="application/x-ndjson" if ndjson else "text/plain",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/t/<team>/<project>/<app>/builds/<int:number>/rebuild", methods=["POST"])
@login_required
def rebuild(team: str, project: str, app: str, number: int):
    application = applications.get_application(current_user, team, project, app)
    build = builds.rebuild(current_user, application, number)
    return redirect_to(url_for("builds.show", team=team, project=project, app=app, number=build.number))
