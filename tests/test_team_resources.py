"""Admins set the quota and container defaults of a team's namespaces; bad quantities are named."""

from __future__ import annotations

import html

from portal.extensions import db
from portal.models import AuditEvent, Team
from portal.services.team_resources import team_quota
from tests.support import HTMX


def test_an_admin_sets_the_quota_and_everyone_sees_it(login, admin, dev_member):
    c = login(admin)
    resp = c.post("/teams/dev/resources", data={"cpu": "6", "memory": "12Gi", "pods": "80", "limits_cpu": "12",
                                                "limits_memory": "24Gi"}, headers=HTMX)
    assert resp.status_code == 200 and "Saved" in resp.text
    db.session.expire_all()
    quota, limits = team_quota(Team.by_name("dev"))
    assert (quota.cpu, quota.memory, quota.pods, quota.limits_cpu) == ("6", "12Gi", 80, "12")
    assert limits.default_request_cpu == "100m"  # untouched: the default
    page = login(dev_member).get("/teams/dev").text
    assert 'value="12Gi"' in page and "readonly" in page and "Admins change them" in page
    assert db.session.query(AuditEvent).filter_by(action="team.resources_changed").count() == 1


def test_bad_values_are_refused_field_by_field_and_nothing_changes(login, admin):
    c = login(admin)
    resp = c.post("/teams/dev/resources", data={"cpu": "lots", "memory": "-1Gi", "pods": "0", "limits_cpu": "",
                                                "default_request_memory": "1Gi", "default_limit_memory": "512Mi"},
                  headers=HTMX)
    assert resp.status_code == 422
    text = html.unescape(resp.text)
    assert "Not a Kubernetes quantity: 'lots'" in text
    assert "Must be more than zero." in text and "A whole number of pods" in text and "A value is required." in text
    assert "Must be at least the request (1Gi)." in text
    db.session.expire_all()
    assert Team.by_name("dev").resource_defaults == {}
