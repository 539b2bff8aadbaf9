"""Projects: created by a team's members, seen only by that team (and admins)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.errors import Conflict, NotFound, ValidationFailed
from portal.extensions import db
from portal.models import Application, Project, Team, User
from portal.services import audit
from portal.services.access import get_team, require_maintainer, teams_for_creation, visible_team_ids
from portal.services.listing import Page, contains, paginate
from portal.services.naming import MAX_PROJECT, label_errors

MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class ProjectRow:
    project: Project
    team_name: str
    application_count: int


def _name_errors(team: Team, name: str) -> list[str]:
    errors = label_errors(name, MAX_PROJECT)
    if not errors and db.session.scalar(
        select(Project.id).where(Project.team_id == team.id, Project.name == name)
    ):
        errors = [f"{team.name} already has a project named {name}."]
    return errors


def check_project_name(actor: User, team_name: str, name: str) -> list[str]:
    """What is wrong with this name for a new project of the team (availability included)."""
    team = _creatable_team(actor, team_name)
    return _name_errors(team, name)


def _creatable_team(actor: User, team_name: str) -> Team:
    team = Team.by_name(team_name)
    if team is None or team not in teams_for_creation(actor):
        raise ValidationFailed({"team": ["Choose one of your teams."]})
    return team


def create_project(actor: User, team_name: str, name: str, description: str = "") -> Project:
    name = name.strip()
    team = _creatable_team(actor, team_name)
    errors: dict[str, list[str]] = {}
    if e := _name_errors(team, name):
        errors["name"] = e
    if len(description) > MAX_DESCRIPTION:
        errors["description"] = [f"At most {MAX_DESCRIPTION} characters; this one has {len(description)}."]
    if errors:
        raise ValidationFailed(errors)
    project = Project(team_id=team.id, name=name, description=description.strip(), created_by_id=actor.id)
    db.session.add(project)
    try:
        db.session.flush()
    except IntegrityError:  # a concurrent request took the name between the check and the insert
        db.session.rollback()
        raise ValidationFailed({"name": [f"{team.name} already has a project named {name}."]}) from None
    audit.record(actor, "project.created", "project", f"{team.name}/{name}", project.id, team.id)
    db.session.commit()
    return project


def list_projects(actor: User, q: str = "", page: int = 1, per_page: int = 25) -> Page[ProjectRow]:
    app_count = (
        select(func.count(Application.id)).where(Application.project_id == Project.id).scalar_subquery()
    )
    query = (
        select(Project, Team.name, app_count)
        .join(Team, Team.id == Project.team_id)
        .order_by(Team.name, Project.name)
    )
    visible = visible_team_ids(actor)
    if visible is not None:
        query = query.where(Project.team_id.in_(visible))
    if q:
        query = query.where(contains(Project.name, q.strip()))
    result = paginate(query, page, per_page, scalars=False)
    rows = [ProjectRow(project=p, team_name=t, application_count=c) for p, t, c in result.items]
    return Page(items=rows, number=result.number, per_page=result.per_page, total=result.total)


def get_project(actor: User, team_name: str, project_name: str) -> Project:
    team = get_team(actor, team_name)
    project = db.session.scalar(select(Project).where(Project.team_id == team.id, Project.name == project_name))
    if project is None:
        raise NotFound("No such project.")
    return project


def delete_project(actor: User, team_name: str, project_name: str) -> None:
    project = get_project(actor, team_name, project_name)
    require_maintainer(actor, project.team_id, "delete projects")
    if db.session.scalar(select(func.count(Application.id)).where(Application.project_id == project.id)):
        raise Conflict("Delete the project's applications first.")
    audit.record(actor, "project.deleted", "project", f"{team_name}/{project.name}", project.id, project.team_id)
    db.session.delete(project)
    db.session.commit()

