"""What every namespace of a team's applications gets: a quota and container defaults, set by admins.

Values are Kubernetes quantities (``500m``, ``2``, ``4Gi``); each is checked
with the Kubernetes client's own parser, so what the portal accepts the API
server accepts too.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from kubernetes.utils import parse_quantity

from integrations.cluster import Limits, Quota
from portal.errors import ValidationFailed
from portal.extensions import db
from portal.models import Team, User
from portal.services import audit
from portal.services.access import get_team, require_admin

FIELDS = {f.name: (Quota, f) for f in dataclasses.fields(Quota)} | \
    {f.name: (Limits, f) for f in dataclasses.fields(Limits)}
LABELS = {
    "cpu": "CPU requests, all pods", "memory": "Memory requests, all pods", "pods": "Pods",
    "limits_cpu": "CPU limits, all pods", "limits_memory": "Memory limits, all pods",
    "default_request_cpu": "Default CPU request per container", "default_request_memory":
        "Default memory request per container",
    "default_limit_cpu": "Default CPU limit per container", "default_limit_memory": "Default memory limit per container",
}


def team_quota(team: Team) -> tuple[Quota, Limits]:
    """The team's quota and limits: its own values over the defaults."""
    values = team.resource_defaults or {}
    quota = Quota(**{k: v for k, v in values.items() if FIELDS.get(k, (None,))[0] is Quota})
    limits = Limits(**{k: v for k, v in values.items() if FIELDS.get(k, (None,))[0] is Limits})
    return quota, limits


def current_values(team: Team) -> dict[str, str]:
    quota, limits = team_quota(team)
    return {k: str(v) for k, v in (dataclasses.asdict(quota) | dataclasses.asdict(limits)).items()}


def quantity(value: str) -> Decimal:
    return parse_quantity(value)


def set_resource_defaults(actor: User, team_name: str, values: dict[str, str]) -> Team:
    """Replace the team's quota and container defaults (admins only); every field is checked first."""
    team = get_team(actor, team_name)  # another team's answers 404, as everywhere
    require_admin(actor)
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, object] = {}
    for key, raw in values.items():
        if key not in FIELDS:
            continue
        raw = (raw or "").strip()
        if not raw:
            errors[key] = ["A value is required."]
            continue
        if key == "pods":
            if not raw.isdigit() or int(raw) < 1 or int(raw) > 10000:
                errors[key] = ["A whole number of pods, 1 to 10000."]
            else:
                cleaned[key] = int(raw)
            continue
        try:
            amount = quantity(raw)
        except ValueError:
            errors[key] = [f"Not a Kubernetes quantity: {raw!r} (for example 500m, 2, 512Mi, 4Gi)."]
            continue
        if amount <= 0:
            errors[key] = ["Must be more than zero."]
        else:
            cleaned[key] = raw
    merged = {**current_values(team), **{k: str(v) for k, v in cleaned.items()}}
    for request, limit in (("cpu", "limits_cpu"), ("memory", "limits_memory"),
                           ("default_request_cpu", "default_limit_cpu"),
                           ("default_request_memory", "default_limit_memory")):
        if request in errors or limit in errors:
            continue
        if quantity(merged[request]) > quantity(merged[limit]):
            errors.setdefault(limit, []).append(f"Must be at least the request ({merged[request]}).")
    if errors:
        raise ValidationFailed(errors)
    before = dict(team.resource_defaults or {})
    team.resource_defaults = {**before, **cleaned}
    audit.record(actor, "team.resources_changed", "team", team.name, team.id, team.id,
                 before=before, after=team.resource_defaults)
    db.session.commit()
    return team
