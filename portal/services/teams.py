"""Teams and their memberships: admins create teams, maintainers manage their own."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.errors import NotFound, ValidationFailed
from portal.extensions import db
from portal.models import Membership, MembershipStatus, Role, Team, User
from portal.services import audit
from portal.services.access import get_team, is_maintainer, require_admin, require_maintainer, visible_team_ids
from portal.services.naming import MAX_TEAM, label_errors


@dataclass(frozen=True)
class TeamView:
    team: Team
    members: list[Membership]
    can_manage: bool


def list_teams(actor: User) -> list[Team]:
    visible = visible_team_ids(actor)
    query = select(Team).order_by(Team.name)
    if visible is not None:
        query = query.where(Team.id.in_(visible))
    return list(db.session.scalars(query))


def all_team_names() -> list[tuple[str, str]]:
    """(name, display name) of every team, as offered at sign-up."""
    return [(t.name, t.display_name) for t in db.session.scalars(select(Team).order_by(Team.name))]


def create_team(actor: User, name: str, display_name: str) -> Team:
    require_admin(actor)
    name = name.strip()
    errors = {}
    if e := label_errors(name, MAX_TEAM):
        errors["name"] = e
    elif Team.by_name(name):
        errors["name"] = ["A team with this name exists already."]
    display_name = display_name.strip() or name.capitalize()
    if len(display_name) > 80:
        errors["display_name"] = ["At most 80 characters."]
    if errors:
        raise ValidationFailed(errors)
    team = Team(name=name, display_name=display_name)
    db.session.add(team)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ValidationFailed({"name": ["A team with this name exists already."]}) from None
    audit.record(actor, "team.created", "team", name, team.id, team.id)
    db.session.commit()
    return team


def team_view(actor: User, team_name: str) -> TeamView:
    team = get_team(actor, team_name)
    members = list(db.session.scalars(
        select(Membership).join(User).where(Membership.team_id == team.id)
        .order_by(Membership.status.desc(), User.username)
    ))
    return TeamView(team=team, members=members, can_manage=is_maintainer(actor, team.id))


def _membership(actor: User, team_name: str, membership_id: int) -> Membership:
    team = get_team(actor, team_name)
    require_maintainer(actor, team.id, "manage the team's members")
    m = db.session.get(Membership, membership_id)
    if m is None or m.team_id != team.id:
        raise NotFound("No such membership.")
    return m


def add_member(actor: User, team_name: str, username: str, role: str) -> Membership:
    team = get_team(actor, team_name)
    require_maintainer(actor, team.id, "add members")
    user = db.session.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        raise ValidationFailed({"username": [f"No user named {username.strip()!r}."]})
    role_value = _role(role)
    if user.membership_in(team.id):
        raise ValidationFailed({"username": [f"{user.username} is already in {team.name}."]})
    m = Membership(user=user, team=team, role=role_value, status=MembershipStatus.ACTIVE)
    db.session.add(m)
    db.session.flush()
    audit.record(actor, "membership.added", "user", user.username, user.id, team.id, role=role_value.value)
    db.session.commit()
    return m


def approve_member(actor: User, team_name: str, membership_id: int) -> Membership:
    m = _membership(actor, team_name, membership_id)
    if m.status != MembershipStatus.ACTIVE:
        m.status = MembershipStatus.ACTIVE
        audit.record(actor, "membership.approved", "user", m.user.username, m.user_id, m.team_id)
        db.session.commit()
    return m


def set_role(actor: User, team_name: str, membership_id: int, role: str) -> Membership:
    m = _membership(actor, team_name, membership_id)
    role_value = _role(role)
    if m.role != role_value:
        m.role = role_value
        audit.record(actor, "membership.role_changed", "user", m.user.username, m.user_id, m.team_id,
                     role=role_value.value)
        db.session.commit()
    return m


def remove_member(actor: User, team_name: str, membership_id: int) -> None:
    m = _membership(actor, team_name, membership_id)
    audit.record(actor, "membership.removed", "user", m.user.username, m.user_id, m.team_id)
    db.session.delete(m)
    db.session.commit()


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationFailed({"role": ["Role must be 'member' or 'maintainer'."]}) from None
