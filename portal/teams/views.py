"""Teams: everyone sees their own; maintainers manage members; admins create teams."""

from __future__ import annotations

from flask import Blueprint, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from portal.errors import ValidationFailed
from portal.forms import show_errors
from portal.htmx import redirect_to, render
from portal.models import Role
from portal.services import team_resources, teams

bp = Blueprint("teams", __name__)


class TeamForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=40)])
    display_name = StringField("Display name", validators=[Length(max=80)])


class MemberForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=40)])
    role = SelectField("Role", choices=[(r.value, r.value) for r in Role], default=Role.MEMBER.value)


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=[(r.value, r.value) for r in Role], validate_choice=False)


@bp.route("/teams")
@login_required
def index():
    return render("teams/index.html", teams=teams.list_teams(current_user), form=TeamForm(),
                  can_create=current_user.is_admin)


@bp.route("/teams", methods=["POST"])
@login_required
def create():
    form = TeamForm()
    if form.validate_on_submit():
        try:
            team = teams.create_team(current_user, form.name.data, form.display_name.data or "")
        except ValidationFailed as exc:
            show_errors(form, exc)
        else:
            return redirect_to(url_for("teams.show", team=team.name))
    return render("teams/index.html", teams=teams.list_teams(current_user), form=form,
                  can_create=current_user.is_admin, status=422)


def _show(team: str, member_form: MemberForm | None = None, status: int = 200):
    view = teams.team_view(current_user, team)
    return render("teams/show.html", block="members", view=view, member_form=member_form or MemberForm(),
                  role_form=RoleForm(), status=status, **_resources_context(view.team))


def _resources_context(team, errors: dict | None = None, values: dict | None = None) -> dict:
    return {"resource_values": values or team_resources.current_values(team), "resource_labels": team_resources.LABELS,
            "resource_errors": errors or {}, "can_edit_resources": current_user.is_admin}


@bp.route("/teams/<team>/resources", methods=["POST"])
@login_required
def resources(team: str):
    """Admins set the quota and container defaults of the team's namespaces."""
    values = {k: request.form[k] for k in team_resources.LABELS if k in request.form}
    try:
        updated = team_resources.set_resource_defaults(current_user, team, values)
    except ValidationFailed as exc:
        view = teams.team_view(current_user, team)
        return render("teams/show.html", block="resources", view=view, status=422, member_form=MemberForm(),
                      role_form=RoleForm(), **_resources_context(view.team, exc.errors, values))
    return render("teams/show.html", block="resources", view=teams.team_view(current_user, team),
                  member_form=MemberForm(), role_form=RoleForm(), **_resources_context(updated), saved=True)


@bp.route("/teams/<team>")
@login_required
def show(team: str):
    return _show(team)


@bp.route("/teams/<team>/members", methods=["POST"])
@login_required
def add_member(team: str):
    form = MemberForm()
    if form.validate_on_submit():
        try:
            teams.add_member(current_user, team, form.username.data, form.role.data)
        except ValidationFailed as exc:
            show_errors(form, exc)
        else:
            return _show(team)
    return _show(team, form, status=422)


@bp.route("/teams/<team>/members/<int:membership_id>/approve", methods=["POST"])
@login_required
def approve(team: str, membership_id: int):
    teams.approve_member(current_user, team, membership_id)
    return _show(team)


@bp.route("/teams/<team>/members/<int:membership_id>/role", methods=["POST"])
@login_required
def set_role(team: str, membership_id: int):
    teams.set_role(current_user, team, membership_id, request.form.get("role", ""))
    return _show(team)


@bp.route("/teams/<team>/members/<int:membership_id>/remove", methods=["POST"])
@login_required
def remove(team: str, membership_id: int):
    teams.remove_member(current_user, team, membership_id)
    return _show(team)

