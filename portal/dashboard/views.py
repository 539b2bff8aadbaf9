from flask import Blueprint
from flask_login import current_user, login_required

from portal.htmx import render
from portal.services.dashboard import dashboard

bp = Blueprint("dashboard", __name__)


@bp.route("/")
@login_required
def index():
    return render("dashboard/index.html", summaries=dashboard(current_user))
