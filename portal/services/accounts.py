"""Signing up, signing in, passwords, and the admin's view of users."""

from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal.errors import NotFound, ValidationFailed
from portal.extensions import db
from portal.models import Membership, MembershipStatus, Role, Team, User
from portal.models.base import utcnow
from portal.services import audit
from portal.services.access import require_admin
from portal.services.listing import Page, contains, paginate

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both paths take the same time.
_DUMMY_HASH = _hasher.hash("not a real password")
_USERNAME = re.compile(r"[a-z][a-z0-9_.-]*")
MIN_PASSWORD = 10
MAX_PASSWORD = 256


@dataclass(frozen=True)
class SignUp:
    username: str
    email: str
    password: str
    team: str


def _username_errors(username: str) -> list[str]:
    if not username:
        return ["A username is required."]
    errors = []
    if not 3 <= len(username) <= 40:
        errors.append(f"Between 3 and 40 characters; this one has {len(username)}.")
    if not _USERNAME.fullmatch(username):
        errors.append("Lowercase letters, digits, '.', '_' and '-', starting with a letter.")
    return errors


def password_errors(password: str) -> list[str]:
    if len(password) < MIN_PASSWORD:
        return [f"At least {MIN_PASSWORD} characters."]
    if len(password) > MAX_PASSWORD:
        return [f"At most {MAX_PASSWORD} characters."]
    return []


def sign_up(data: SignUp, approval_required: bool) -> User:
    """Create a user in the chosen team. The very first user becomes an admin.

    With ``approval_required`` the membership waits for a maintainer, except for
    that first user, since nobody could approve them.
    """
    errors: dict[str, list[str]] = {}
    username = data.username.strip()
    if e := _username_errors(username):
        errors["username"] = e
    try:
        email = validate_email(data.email.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        errors["email"] = [str(exc)]
        email = ""
    if e := password_errors(data.password):
        errors["password"] = e
    team = Team.by_name(data.team)
    if team is None:
        errors["team"] = ["Choose one of the listed teams."]
    if not errors:
        if db.session.scalar(select(User.id).where(User.username == username)):
            errors["username"] = ["This username is taken."]
        if db.session.scalar(select(User.id).where(func.lower(User.email) == email.lower())):
            errors["email"] = ["An account with this e-mail exists already."]
    if errors:
        raise ValidationFailed(errors)
    assert team is not None

    first = db.session.scalar(select(func.count(User.id))) == 0
    user = User(username=username, email=email, password_hash=_hasher.hash(data.password))
    status = MembershipStatus.PENDING if approval_required and not first else MembershipStatus.ACTIVE
    user.memberships.append(Membership(team=team, role=Role.MEMBER, status=status))
    db.session.add(user)
    try:
        db.session.flush()
        audit.record(user, "user.signed_up", "user", username, user.id, team.id, membership=status.value)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ValidationFailed({"username": ["This username or e-mail was just taken."]}) from None

    if first:
        _promote_if_first(user)
    return user


def _promote_if_first(user: User) -> None:
    # Decided after commit: of two concurrent first sign-ups, only the lowest id wins.
    first_id = select(func.min(User.id)).scalar_subquery()
    result = db.session.execute(
        update(User).where(User.id == user.id, User.id == first_id).values(is_admin=True)
    )
    if result.rowcount:
        audit.record(user, "user.admin_granted", "user", user.username, user.id, reason="first user")
        for m in user.memberships:
            m.status = MembershipStatus.ACTIVE
    db.session.commit()
    db.session.refresh(user)


def authenticate(username: str, password: str) -> User | None:
    """The user with these credentials, or None. Both outcomes are audited."""
    username = username.strip()
    user = db.session.scalar(select(User).where(User.username == username)) if username else None
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None:
        audit.record(None, "auth.login_failed", "user", username[:200], actor_name=username[:40] or "anonymous")
        db.session.commit()
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    audit.record(user, "auth.login", "user", user.username, user.id)
    db.session.commit()
    return user


def record_logout(user: User) -> None:
    audit.record(user, "auth.logout", "user", user.username, user.id)
    db.session.commit()


def change_password(actor: User, current: str, new: str) -> None:
    try:
        _hasher.verify(actor.password_hash, current)
    except (VerificationError, InvalidHashError):
        raise ValidationFailed({"current_password": ["The current password is wrong."]}) from None
    if e := password_errors(new):
        raise ValidationFailed({"new_password": e})
    actor.password_hash = _hasher.hash(new)
    audit.record(actor, "user.password_changed", "user", actor.username, actor.id)
    db.session.commit()


def list_users(actor: User, q: str = "", page: int = 1, per_page: int = 25) -> Page[User]:
    require_admin(actor)
    query = select(User).order_by(User.username)
    if q:
        query = query.where(or_(contains(User.username, q), contains(User.email, q)))
    return paginate(query, page, per_page)


def set_admin(actor: User, user_id: int, is_admin: bool) -> User:
    require_admin(actor)
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    if not is_admin and user.is_admin:
        admins = db.session.scalar(select(func.count(User.id)).where(User.is_admin.is_(True)))
        if admins <= 1:
            raise ValidationFailed("At least one admin must remain.")
    if user.is_admin != is_admin:
        user.is_admin = is_admin
        audit.record(actor, "user.admin_granted" if is_admin else "user.admin_revoked", "user",
                     user.username, user.id)
        db.session.commit()
    return user

