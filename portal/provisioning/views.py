"""The live provisioning panel of an application, its buttons, and the orphans page."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user, login_required

from portal.htmx import polling_status, render
from portal.services import access, applications
from portal.services.provisioning import runs

bp = Blueprint("provisioning", __name__)

def _panel(app):
    view = runs.provisioning_view(current_user, app)
    return render("provisioning/_panel.html", app=app, view=view, status=polling_status(not view.active))


@bp.route("/t/<team>/<project>/<app>/provisioning")
@login_required
def panel(team: str, project: str, app: str):
    return _panel(applications.get_application(current_user, team, project, app))


@bp.route("/t/<team>/<project>/<app>/runs/<int:run_id>/retry", methods=["POST"])
@login_required
def retry(team: str, project: str, app: str, run_id: int):
    application = applications.get_application(current_user, team, project, app)
    runs.retry_run(current_user, application, run_id)
    return _panel(application)


@bp.route("/t/<team>/<project>/<app>/runs/<int:run_id>/cancel", methods=["POST"])
@login_required
def cancel(team: str, project: str, app: str, run_id: int):
    application = applications.get_application(current_user, team, project, app)
    runs.cancel_run(current_user, application, run_id)
    return _panel(application)


@bp.route("/t/<team>/<project>/<app>/reconcile", methods=["POST"])
@login_required
def reconcile(team: str, project: str, app: str):
    application = applications.get_application(current_user, team, project, app)
    runs.reconcile(current_user, application)
    return _panel(application)


@bp.route("/orphans")
@login_required
def orphans():
    items = runs.list_orphans(current_user)
    manageable = {o.id for o in items if access.is_maintainer(current_user, o.team_id)}
    return render("provisioning/orphans.html", orphans=items, manageable=manageable)


@bp.route("/orphans/<int:orphan_id>/retry", methods=["POST"])
@login_required
def orphan_retry(orphan_id: int):
    runs.retry_orphan_removal(current_user, orphan_id)
    return render("provisioning/_orphan_done.html", message="Removed.")


@bp.route("/orphans/<int:orphan_id>/dismiss", methods=["POST"])
@login_required
def orphan_dismiss(orphan_id: int):
    runs.dismiss_orphan(current_user, orphan_id)
    return render("provisioning/_orphan_done.html", message="Dismissed.")
