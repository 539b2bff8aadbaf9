"""The dashboard: the actor's teams with their projects and most recent applications."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Application, Project, Team, User
from portal.services.access import visible_team_ids

RECENT_APPLICATIONS = 10
PROJECTS_SHOWN = 20


@dataclass(frozen=True)
class TeamSummary:
    team: Team
    project_count: int
    application_count: int
    projects: list[tuple[Project, int]]
    recent_applications: list[tuple[Application, str]]


def dashboard(actor: User) -> list[TeamSummary]:
    """One summary per team the actor belongs to (every team for admins), with bounded lists."""
    visible = visible_team_ids(actor)
    teams_query = select(Team).order_by(Team.name)
    if visible is not None:
        teams_query = teams_query.where(Team.id.in_(visible))
    teams = list(db.session.scalars(teams_query))
    ids = [t.id for t in teams]
    # One grouped query per count rather than two queries per team.
    project_counts = dict(db.session.execute(
        select(Project.team_id, func.count()).where(Project.team_id.in_(ids)).group_by(Project.team_id)).all())
    app_counts = dict(db.session.execute(
        select(Application.team_id, func.count()).where(Application.team_id.in_(ids)).group_by(Application.team_id)
    ).all())
    app_count = (
        select(func.count(Application.id)).where(Application.project_id == Project.id).scalar_subquery()
    )
    summaries = []
    for team in teams:
        projects = list(db.session.execute(
            select(Project, app_count).where(Project.team_id == team.id).order_by(Project.name).limit(PROJECTS_SHOWN)
        ).tuples())
        recent = list(db.session.execute(
            select(Application, Project.name)
            .join(Project, Project.id == Application.project_id)
            .where(Application.team_id == team.id)
            .order_by(Application.created_at.desc(), Application.id.desc())
            .limit(RECENT_APPLICATIONS)
        ).tuples())
        summaries.append(TeamSummary(
            team=team,
            project_count=project_counts.get(team.id, 0),
            application_count=app_counts.get(team.id, 0),
            projects=projects,
            recent_applications=recent,
        ))
    return summaries
