"""An application's builds: the timeline on its page, one build with its live console, building again."""

from __future__ import annotations

from flask import Blueprint, request, url_for
from flask_login import current_user, login_required

from portal.errors import ValidationFailed
from portal.htmx import polling_status, redirect_to, render
from portal.services import applications, builds

bp = Blueprint("builds", __name__)

def _timeline(app):
    items = builds.recent_builds(current_user, app)
    active = any(not b.state.over for b in items)
    return render("builds/_timeline.html", app=app, builds=items, active=active, status=polling_status(not active))


@bp.route("/t/<team>/<project>/<app>/builds")
@login_required
def timeline(team: str, project: str, app: str):
    return _timeline(applications.get_application(current_user, team, project, app))


@bp.route("/t/<team>/<project>/<app>/builds/<int:number>")
@login_required
def show(team: str, project: str, app: str, number: int):
    application = applications.get_application(current_user, team, project, app)
    build = builds.get_build(current_user, application, number)
    log = builds.build_log(current_user, application, number)
    return render("builds/show.html", app=application, build=build, log=log)


@bp.route("/t/<team>/<project>/<app>/builds/<int:number>/log")
@login_required
def log(team: str, project: str, app: str, number: int):
    """The console from ``offset`` on: HTMX appends it and asks again until the build is over (286)."""
    raw = request.args.get("offset", "0")
    if not raw.isdigit():
        raise ValidationFailed({"offset": ["Must be a whole number of characters."]})
    application = applications.get_application(current_user, team, project, app)
    piece = builds.build_log(current_user, application, number, int(raw))
    return render("builds/_log_piece.html", app=application, number=number, piece=piece,
                  status=polling_status(piece.over and not piece.text))


@bp.route("/t/<team>/<project>/<app>/builds/<int:number>/rebuild", methods=["POST"])
@login_required
def rebuild(team: str, project: str, app: str, number: int):
    application = applications.get_application(current_user, team, project, app)
    build = builds.rebuild(current_user, application, number)
    return redirect_to(url_for("builds.show", team=team, project=project, app=app, number=build.number))
