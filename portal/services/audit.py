"""Writing and reading the audit trail. Events join the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, User
from portal.services.access import require_admin
from portal.services.listing import Page, paginate


def record(
    actor: User | None,
    action: str,
    target_type: str,
    target_name: str,
    target_id: int | None = None,
    team_id: int | None = None,
    actor_name: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an audit event to the current transaction; it commits (or not) with the change it describes."""
    event = AuditEvent(
        actor_id=actor.id if actor is not None else None,
        actor_name=actor_name or (actor.username if actor is not None else "anonymous"),
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_name=target_name,
        team_id=team_id,
        details=details,
    )
    db.session.add(event)
    return event


def list_events(actor: User, page: int = 1, per_page: int = 50, action: str = "") -> Page[AuditEvent]:
    require_admin(actor)
    query = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    if action:
        query = query.where(AuditEvent.action == action)
    return paginate(query, page, per_page)
