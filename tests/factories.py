"""factory_boy factories for the portal's models, committing through the app's session."""

from __future__ import annotations

import factory
from argon2 import PasswordHasher
from factory.alchemy import SQLAlchemyModelFactory

from portal.extensions import db
from portal.models import Application, Cluster, Membership, MembershipStatus, Project, Role, Team, User

PASSWORD = "correct horse battery"
# Hashing is deliberately slow; hash the shared test password once.
PASSWORD_HASH = PasswordHasher().hash(PASSWORD)


class Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class UserFactory(Base):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password_hash = PASSWORD_HASH
    is_admin = False


class MembershipFactory(Base):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    team = factory.LazyFunction(lambda: Team.by_name("dev"))
    role = Role.MEMBER
    status = MembershipStatus.ACTIVE


class ProjectFactory(Base):
    class Meta:
        model = Project

    team = factory.LazyFunction(lambda: Team.by_name("dev"))
    team_id = factory.LazyAttribute(lambda p: p.team.id)
    name = factory.Sequence(lambda n: f"project-{n}")
    description = ""


class ApplicationFactory(Base):
    class Meta:
        model = Application

    project = factory.SubFactory(ProjectFactory)
    project_id = factory.LazyAttribute(lambda a: a.project.id)
    team_id = factory.LazyAttribute(lambda a: a.project.team_id)
    name = factory.Sequence(lambda n: f"app-{n}")
    template = "python-web"
    description = ""


class ClusterFactory(Base):
    class Meta:
        model = Cluster

    name = factory.Sequence(lambda n: f"cluster-{n}")
    api_url = "https://127.0.0.1:6443"
    credentials_ref = ""


def member_of(team_name: str, role: Role = Role.MEMBER, **user_kwargs) -> User:
    """A user with an active membership in the team."""
    user = UserFactory(**user_kwargs)
    MembershipFactory(user=user, team=Team.by_name(team_name), role=role)
    return user
