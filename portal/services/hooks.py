"""Webhooks from the Git host: who sent it, whether we already handled it, and what it asks us to build.

GitLab sends a push event to ``/hooks/gitlab`` with the project's secret in
``X-Gitlab-Token`` and an id per event in ``X-Gitlab-Event-UUID``
(https://docs.gitlab.com/user/project/integrations/webhooks/ and
https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events).
Each application's secret is derived from the portal's secret key and the
application's uid, so nothing secret is stored and a webhook found again after
a crash still verifies.

Answers: 400 for a body that is not a push event's JSON, 401 for a wrong or
missing token, and 200 with the reason for events that are authentic but
build nothing (another branch, a replay, a project we do not know). GitLab
disables a webhook that keeps failing, so events we merely ignore are not errors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from flask import current_app
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import Application, HookDelivery
from portal.services.builds import PushedCommit, default_branch, source_repository, start_build
from portal.services.providers import current_providers

GITLAB = "gitlab"
ZERO_SHA = "0" * 40


def webhook_secret(app_uid: str, secret_key: str | None = None) -> str:
    """The secret token of one application's push webhook."""
    key = (secret_key or current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, f"webhook:{app_uid}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class HookOutcome:
    status: int
    outcome: str  # queued | ignored | refused
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"status": self.outcome, "reason": self.reason, **self.details}


def _parse_push(body: bytes) -> dict[str, Any] | None:
    """The event as a dict with an integer ``project_id`` and a ``ref``, or None for anything else."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict):
        return None
    project_id = event.get("project_id")
    if project_id is None and isinstance(event.get("project"), dict):
        project_id = event["project"].get("id")
    if not isinstance(project_id, int) or isinstance(project_id, bool) or not isinstance(event.get("ref"), str):
        return None
    return {**event, "project_id": project_id}


def _head_commit(event: Mapping[str, Any]) -> PushedCommit:
    sha = event.get("checkout_sha") or event.get("after") or ""
    commits = [c for c in event.get("commits") or [] if isinstance(c, dict)]
    head = next((c for c in commits if c.get("id") == sha), commits[-1] if commits else {})
    author = head.get("author") if isinstance(head.get("author"), dict) else {}
    return PushedCommit(
        sha=str(sha), message=str(head.get("message") or head.get("title") or "").strip(),
        author=str(author.get("name") or event.get("user_name") or ""), url=str(head.get("url") or ""),
        branch=str(event["ref"]).removeprefix("refs/heads/"), pushed_by=str(event.get("user_username") or ""),
    )


def receive_gitlab(headers: Mapping[str, str], body: bytes) -> HookOutcome:
    """Check a GitLab webhook delivery and start a build for a push to the default branch."""
    event = _parse_push(body)
    if event is None:
        return HookOutcome(400, "refused", "The body is not a GitLab push event (JSON with project_id and ref).")
    kind = headers.get("X-Gitlab-Event", "")
    if kind != "Push Hook" or event.get("object_kind", "push") != "push":
        return HookOutcome(200, "ignored", f"Only push events start builds (got {kind or 'no X-Gitlab-Event'}).")
    scm = current_providers().scm
    source = source_repository(scm.system, str(event["project_id"])) if scm is not None else None
    app = db.session.get(Application, source.application_id) if source else None
    if app is None:
        return HookOutcome(200, "ignored", "No application of the portal has this repository.")
    token = headers.get("X-Gitlab-Token", "")
    if not hmac.compare_digest(token.encode(), webhook_secret(app.uid).encode()):
        return HookOutcome(401, "refused", "Wrong or missing X-Gitlab-Token.")
    event_id = headers.get("X-Gitlab-Event-UUID", "").strip()
    if event_id:
        db.session.add(HookDelivery(source=GITLAB, event_id=event_id[:100], outcome="received"))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return HookOutcome(200, "ignored", "This event was delivered before (same X-Gitlab-Event-UUID).")
    commit = _head_commit(event)
    branch = default_branch(source)
    if event["ref"] != f"refs/heads/{branch}":
        return HookOutcome(200, "ignored", f"Only pushes to {branch} are built (this one: {event['ref']}).")
    if not commit.sha or commit.sha == ZERO_SHA:
        return HookOutcome(200, "ignored", "The push deleted the branch.")
    build = start_build(app, commit)
    return HookOutcome(202, "queued", f"Build #{build.number} of {commit.sha[:8]} queued.",
                       {"build": build.number})
