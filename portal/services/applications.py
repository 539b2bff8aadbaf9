"""Applications: created in a project by the team's members."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.errors import NotFound, ValidationFailed
from portal.extensions import db
from portal.models import Application, Project, Team, User
from portal.services import audit
from portal.models import RunKind
from portal.services.access import visible_team_ids
from portal.services.provisioning.runs import enqueue_run, new_run, request_delete
from portal.services.listing import Page, contains, paginate
from portal.services.naming import MAX_APPLICATION, label_errors
from portal.services.projects import MAX_DESCRIPTION, get_project
from portal.services.stacks import STACKS, is_stack


@dataclass(frozen=True)
class ApplicationRow:
    application: Application
    team_name: str
    project_name: str


@dataclass(frozen=True)
class NewApplication:
    name: str
    template: str
    description: str = ""


def _name_errors(project: Project, name: str) -> list[str]:
    errors = label_errors(name, MAX_APPLICATION)
    if not errors and db.session.scalar(
        select(Application.id).where(Application.project_id == project.id, Application.name == name)
    ):
        errors = [f"Project {project.name} already has an application named {name}."]
    return errors


def check_application_name(actor: User, team_name: str, project_name: str, name: str) -> list[str]:
    """What is wrong with this name for a new application of the project (availability included)."""
    return _name_errors(get_project(actor, team_name, project_name), name)


def create_application(actor: User, team_name: str, project_name: str, data: NewApplication) -> Application:
    project = get_project(actor, team_name, project_name)
    name = data.name.strip()
    errors: dict[str, list[str]] = {}
    if e := _name_errors(project, name):
        errors["name"] = e
    if not is_stack(data.template):
        errors["template"] = ["Choose one of: " + ", ".join(s.key for s in STACKS) + "."]
    if len(data.description) > MAX_DESCRIPTION:
        errors["description"] = [f"At most {MAX_DESCRIPTION} characters; this one has {len(data.description)}."]
    if errors:
        raise ValidationFailed(errors)
    app = Application(
        project_id=project.id,
        team_id=project.team_id,
        name=name,
        description=data.description.strip(),
        template=data.template,
        created_by_id=actor.id,
    )
    db.session.add(app)
    try:
        db.session.flush()
    except IntegrityError:  # a concurrent request took the name between the check and the insert
        db.session.rollback()
        raise ValidationFailed({"name": [f"Project {project.name} already has an application named {name}."]}) from None
    audit.record(actor, "application.created", "application", f"{team_name}/{project.name}/{name}", app.id,
                 project.team_id, template=data.template)
    # The application and its first run commit together: no application without its provisioning.
    run = new_run(app, RunKind.CREATE, actor)
    db.session.commit()
    enqueue_run(run.id)
    return app


def list_applications(
    actor: User,
    q: str = "",
    page: int = 1,
    per_page: int = 25,
    project: Project | None = None,
    template: str = "",
) -> Page[ApplicationRow]:
    """The applications the actor may see, sorted by team, project and name, filtered server-side."""
    query = (
        select(Application, Team.name, Project.name)
        .join(Project, Project.id == Application.project_id)
        .join(Team, Team.id == Application.team_id)
    )
    if project is not None:
        query = query.where(Application.project_id == project.id).order_by(Application.name)
    else:
        query = query.order_by(Team.name, Project.name, Application.name)
    visible = visible_team_ids(actor)
    if visible is not None:
        query = query.where(Application.team_id.in_(visible))
    if q:
        query = query.where(contains(Application.name, q.strip()))
    if template:
        query = query.where(Application.template == template)
    result = paginate(query, page, per_page, scalars=False)
    rows = [ApplicationRow(application=a, team_name=t, project_name=p) for a, t, p in result.items]
    return Page(items=rows, number=result.number, per_page=result.per_page, total=result.total)


def get_application(actor: User, team_name: str, project_name: str, app_name: str) -> Application:
    project = get_project(actor, team_name, project_name)
    app = db.session.scalar(
        select(Application).where(Application.project_id == project.id, Application.name == app_name)
    )
    if app is None:
        raise NotFound("No such application.")
    return app


def delete_application(actor: User, team_name: str, project_name: str, app_name: str) -> None:
    """Delete by running the provisioning chain backwards; the row goes when everything outside is gone."""
    app = get_application(actor, team_name, project_name, app_name)
    request_delete(actor, app)


def clone_url(app: Application) -> str:
    """The source repository's clone URL, once provisioning has made it ("" before)."""
    from portal.models import ApplicationResource

    source = ApplicationResource.of(app.id, "source_repository")
    return (source.attributes or {}).get("http_url", "") if source else ""
