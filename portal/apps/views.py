"""Applications: the list across teams, create in a project (live name check), detail, delete."""

from __future__ import annotations

from flask import Blueprint, current_app, request, url_for
from flask_login import current_user, login_required

from portal.apps.forms import ApplicationForm
from portal.errors import ValidationFailed
from portal.forms import show_errors
from portal.htmx import is_htmx, redirect_to, render, retarget, trigger
from portal.listing_args import page_arg, text_arg
from portal.services import access, applications, builds, deployments, projects
from portal.services.provisioning import runs
from portal.services.stacks import STACKS, is_stack, stack_choices

bp = Blueprint("apps", __name__)


def _form(**kwargs) -> ApplicationForm:
    form = ApplicationForm(**kwargs)
    form.template.choices = stack_choices()
    return form


@bp.route("/apps")
@login_required
def index():
    q = text_arg()
    template = request.args.get("template", "")
    template = template if is_stack(template) else ""
    page = applications.list_applications(
        current_user, q=q, page=page_arg(), per_page=current_app.config["PORTAL"].page_size, template=template
    )
    return render("apps/index.html", block="app_table", page=page, q=q, template=template, stacks=STACKS)


@bp.route("/t/<team>/<project>/apps/new")
@login_required
def new(team: str, project: str):
    return render("apps/new.html", project=projects.get_project(current_user, team, project), form=_form())


@bp.route("/t/<team>/<project>/apps", methods=["POST"])
@login_required
def create(team: str, project: str):
    proj = projects.get_project(current_user, team, project)
    form = _form()
    if form.validate_on_submit():
        try:
            app = applications.create_application(
                current_user, team, project,
                applications.NewApplication(form.name.data, form.template.data, form.description.data or ""),
            )
        except ValidationFailed as exc:
            show_errors(form, exc)
        else:
            if is_htmx():
                row = render("apps/_row.html", row=applications.ApplicationRow(app, team, proj.name),
                             show_project=False, fresh=True, project=proj,
                             form=_form(formdata=None, template=form.template.data))
                return trigger(row, "application-created", {"name": app.name})
            return redirect_to(url_for("apps.show", team=team, project=project, app=app.name))
    if is_htmx():
        return retarget(render("apps/_form.html", form=form, project=proj, status=422), "#application-form")
    return render("apps/new.html", project=proj, form=form, status=422)


@bp.route("/t/<team>/<project>/apps/check-name")
@login_required
def check_name(team: str, project: str):
    name = text_arg("name")
    return render("components/_name_feedback.html", name=name,
                  errors=applications.check_application_name(current_user, team, project, name))


@bp.route("/t/<team>/<project>/<app>")
@login_required
def show(team: str, project: str, app: str):
    application = applications.get_application(current_user, team, project, app)
    items = builds.recent_builds(current_user, application)
    return render("apps/show.html", app=application, view=runs.provisioning_view(current_user, application),
                  can_delete=access.is_maintainer(current_user, application.team_id),
                  builds=items, active=any(not b.state.over for b in items),
                  environments=deployments.environments_view(current_user, application),
                  can_promote=access.is_maintainer(current_user, application.team_id),
                  clone_url=applications.clone_url(application))


@bp.route("/t/<team>/<project>/<app>/delete", methods=["POST"])
@login_required
def delete(team: str, project: str, app: str):
    applications.delete_application(current_user, team, project, app)
    return redirect_to(url_for("projects.show", team=team, project=project))
