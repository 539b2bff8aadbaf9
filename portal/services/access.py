"""Who may see and change what. Every service asks here; templates never decide."""

from __future__ import annotations

from sqlalchemy import select

from portal.errors import NotFound, PermissionDenied
from portal.extensions import db
from portal.models import Membership, MembershipStatus, Role, Team, User


def visible_team_ids(actor: User) -> set[int] | None:
    """Teams whose projects the actor may see; None means every team (admins)."""
    if actor.is_admin:
        return None
    return actor.active_team_ids()


def can_see_team(actor: User, team_id: int) -> bool:
    visible = visible_team_ids(actor)
    return visible is None or team_id in visible


def require_visible(actor: User, team_id: int, what: str) -> None:
    """Raise NotFound, not PermissionDenied, so another team's objects do not reveal their existence."""
    if not can_see_team(actor, team_id):
        raise NotFound(f"No such {what}.")


def is_maintainer(actor: User, team_id: int) -> bool:
    if actor.is_admin:
        return True
    m = actor.membership_in(team_id)
    return m is not None and m.status == MembershipStatus.ACTIVE and m.role == Role.MAINTAINER


def require_maintainer(actor: User, team_id: int, action: str) -> None:
    require_visible(actor, team_id, "team")
    if not is_maintainer(actor, team_id):
        raise PermissionDenied(f"Only a maintainer of the team or an admin may {action}.")


def require_admin(actor: User) -> None:
    if not actor.is_admin:
        raise PermissionDenied("Only an admin may do this.")


def teams_for_creation(actor: User) -> list[Team]:
    """Teams in which the actor may create projects."""
    query = select(Team).order_by(Team.name)
    if not actor.is_admin:
        query = query.join(Membership).where(
            Membership.user_id == actor.id, Membership.status == MembershipStatus.ACTIVE
        )
    return list(db.session.scalars(query))


def get_team(actor: User, name: str) -> Team:
    team = Team.by_name(name)
    if team is None or not can_see_team(actor, team.id):
        raise NotFound("No such team.")
    return team


def navigation(actor: User) -> list[tuple[str, str]]:
    """(endpoint, label) of the areas this actor may use."""
    links = [("dashboard.index", "Dashboard"), ("projects.index", "Projects"), ("apps.index", "Applications"),
             ("teams.index", "Teams"), ("provisioning.orphans", "Orphans")]
    if actor.is_admin:
        links += [("admin.users", "Users"), ("admin.clusters_index", "Clusters"), ("admin.kiosks_index", "Kiosks"),
                  ("admin.audit_log", "Audit")]
    return links
