"""An application's environments: what runs where, its deployment history, rollback, promotion, sync."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user, login_required

from portal.htmx import polling_status, render
from portal.services import access, applications, deployments

bp = Blueprint("deployments", __name__)

def panel(app):
    views = deployments.environments_view(current_user, app)
    active = any(d is not None and not d.state.over for v in views for d in [v.current])
    return render("deployments/_panel.html", app=app, environments=views, active=active,
                  status=polling_status(not active),
                  can_promote=access.is_maintainer(current_user, app.team_id))


@bp.route("/t/<team>/<project>/<app>/deployments")
@login_required
def index(team: str, project: str, app: str):
    return panel(applications.get_application(current_user, team, project, app))


# The actions answer with the panel they changed.
@bp.route("/t/<team>/<project>/<app>/deployments/<int:number>/rollback", methods=["POST"])
@login_required
def rollback(team: str, project: str, app: str, number: int):
    return _act(team, project, app, lambda application: deployments.rollback(current_user, application, number))


@bp.route("/t/<team>/<project>/<app>/environments/<environment>/promote", methods=["POST"])
@login_required
def promote(team: str, project: str, app: str, environment: str):
    return _act(team, project, app, lambda application: deployments.promote(current_user, application, environment))


@bp.route("/t/<team>/<project>/<app>/environments/<environment>/sync", methods=["POST"])
@login_required
def sync(team: str, project: str, app: str, environment: str):
    return _act(team, project, app, lambda application: deployments.sync_now(current_user, application, environment))


@bp.route("/t/<team>/<project>/<app>/environments/<environment>/refresh", methods=["POST"])
@login_required
def refresh(team: str, project: str, app: str, environment: str):
    return _act(team, project, app, lambda application: deployments.sync_now(
        current_user, application, environment, refresh_only=True))


def _act(team: str, project: str, app: str, action):
    application = applications.get_application(current_user, team, project, app)
    action(application)
    return panel(application)
