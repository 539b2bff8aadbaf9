"""The resource panel of an application: what runs in each environment, from the cluster cache."""

from __future__ import annotations

from flask import Blueprint, current_app, request, session
from flask_login import current_user, login_required

from portal.htmx import render
from portal.services import applications, resources

bp = Blueprint("resources", __name__)
# Refresh intervals a person may pick, in seconds; 0 pauses.
INTERVALS = (0, 5, 10, 30, 60)


def _interval() -> int:
    """The interval asked for (kept in the session for the next visit), else the last one, else the default."""
    default = current_app.config["PORTAL"].panel_refresh_seconds
    asked = request.args.get("every", "")
    if asked.isdigit() and int(asked) in INTERVALS:
        session["panel_every"] = int(asked)
        return int(asked)
    remembered = session.get("panel_every")
    return remembered if remembered in INTERVALS else default


@bp.route("/t/<team>/<project>/<app>/resources")
@login_required
def panel(team: str, project: str, app: str):
    application = applications.get_application(current_user, team, project, app)
    sort = request.args.get("sort", "status")
    sort = sort if sort in resources.POD_SORTS else "status"
    descending = request.args.get("desc") == "1"
    panels = resources.resource_panel(current_user, application, sort, descending)
    return render("resources/page.html", block="panel", app=application, panels=panels, sort=sort,
                  descending=descending, every=_interval(), intervals=INTERVALS)
