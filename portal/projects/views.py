"""Projects: list (filtered, paginated), create (live name check, row swapped in), detail, delete."""

from __future__ import annotations

from flask import Blueprint, current_app, request, url_for
from flask_login import current_user, login_required

from portal.apps.forms import ApplicationForm
from portal.errors import ValidationFailed
from portal.forms import show_errors
from portal.htmx import is_htmx, redirect_to, render, retarget, trigger
from portal.listing_args import page_arg, text_arg
from portal.projects.forms import ProjectForm
from portal.services import access, applications, projects
from portal.services.stacks import stack_choices

bp = Blueprint("projects", __name__)


def _form(**kwargs) -> ProjectForm:
    form = ProjectForm(**kwargs)
    form.team.choices = [(t.name, t.display_name) for t in access.teams_for_creation(current_user)]
    return form


def _list_context(form: ProjectForm) -> dict:
    q = text_arg()
    page = projects.list_projects(current_user, q=q, page=page_arg(), per_page=current_app.config["PORTAL"].page_size)
    return {"page": page, "q": q, "form": form}


@bp.route("/projects")
@login_required
def index():
    return render("projects/index.html", block="project_table", **_list_context(_form()))


@bp.route("/projects/new")
@login_required
def new():
    return render("projects/new.html", form=_form())


@bp.route("/projects", methods=["POST"])
@login_required
def create():
    form = _form()
    if form.validate_on_submit():
        try:
            project = projects.create_project(current_user, form.team.data, form.name.data, form.description.data or "")
        except ValidationFailed as exc:
            show_errors(form, exc)
        else:
            if is_htmx():
                row = render("projects/_row.html", row=projects.ProjectRow(project, project.team.name, 0),
                             fresh=True, form=_form(formdata=None, team=project.team.name))
                # The list page shows the new row on top and gets a fresh, empty form.
                return trigger(row, "project-created", {"name": project.name})
            return redirect_to(url_for("projects.show", team=project.team.name, project=project.name))
    if is_htmx():
        return retarget(render("projects/_form.html", form=form, status=422), "#project-form")
    return render("projects/new.html", form=form, status=422)


@bp.route("/projects/check-name")
@login_required
def check_name():
    try:
        errors = projects.check_project_name(current_user, request.args.get("team", ""), text_arg("name"))
    except ValidationFailed as exc:
        errors = [m for msgs in exc.errors.values() for m in msgs]
    return render("components/_name_feedback.html", errors=errors, name=text_arg("name"))


@bp.route("/t/<team>/<project>")
@login_required
def show(team: str, project: str):
    proj = projects.get_project(current_user, team, project)
    q = text_arg()
    apps = applications.list_applications(
        current_user, q=q, page=page_arg(), per_page=current_app.config["PORTAL"].page_size, project=proj
    )
    form = ApplicationForm()
    form.template.choices = stack_choices()
    return render("projects/show.html", block="app_table", project=proj, page=apps, q=q, form=form,
                  can_delete=access.is_maintainer(current_user, proj.team_id))


@bp.route("/t/<team>/<project>/delete", methods=["POST"])
@login_required
def delete(team: str, project: str):
    projects.delete_project(current_user, team, project)
    return redirect_to(url_for("projects.index"))
