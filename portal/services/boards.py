"""The team board: every application of a team with a health badge, its last build and deployments, its pods,
and the quota its namespaces use; seen by a signed-in user or through a kiosk token.

A board costs the same few queries whatever the number of applications: the applications, the latest build
of each (one grouped query), the latest deployment of each application and environment (one grouped query),
the team's cluster, and one ``namespace_summaries`` call for all the team's namespaces on that cluster.

The health badge of an environment is decided here, in Python, from what the deployer said when the
deployment was watched and from the pods the cluster shows now (see ``environment_badge``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from flask import current_app
from sqlalchemy import and_, func, select

from integrations.cluster_objects import amount_text
from portal.errors import NotFound
from portal.extensions import db
from portal.models import Application, Build, BuildState, Deployment, DeploymentState, Project, Team, User
from portal.models.base import utcnow
from portal.services.access import can_see_team
from portal.services.clusters import team_cluster
from portal.services.kiosks import KioskViewer
from portal.services.naming import ResourceNames
from portal.services.provisioning.chain import environments_of
from portal.services.resources import Freshness, NamespaceSummary, namespace_summaries


class Badge(str, enum.Enum):
    HEALTHY = "healthy"
    PROGRESSING = "progressing"
    DEGRADED = "degraded"
    UNKNOWN = "unknown"
    NOT_DEPLOYED = "not-deployed"

    @property
    def label(self) -> str:
        return self.value.replace("-", " ")

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


# Which badge an application shows when its environments differ: the most alarming one.
_SEVERITY = {Badge.NOT_DEPLOYED: 0, Badge.HEALTHY: 1, Badge.UNKNOWN: 2, Badge.PROGRESSING: 3, Badge.DEGRADED: 4}
_FAILED_STATES = (DeploymentState.FAILED, DeploymentState.DEGRADED, DeploymentState.TIMED_OUT)
_WATCHED_STATES = (DeploymentState.COMMITTED, DeploymentState.SYNCED)


# The facts of a board are named tuples: a board of 500 applications makes thousands of them per poll.
class DeploymentFacts(NamedTuple):
    number: int
    state: DeploymentState
    sync_status: str
    health_status: str
    image_tag: str
    created_at: datetime


class BuildFacts(NamedTuple):
    number: int
    state: BuildState
    commit_sha: str
    created_at: datetime

    @property
    def short_sha(self) -> str:
        return self.commit_sha[:8]


def environment_badge(deployment: DeploymentFacts | None, pods: NamespaceSummary | None) -> Badge:
    """The health of one environment of an application. ``pods`` is None when the cluster's figures are
    unavailable (a namespace the cluster does not show holds zero pods, which is a figure).

    In this order, the first rule that holds decides:

    1. not deployed: nothing was ever deployed to the environment;
    2. degraded: any sign of failure: the deployment failed, was degraded or timed out, the deployer last
       said Degraded, or pods are crash-looping or failed (``problems``);
    3. progressing: anything in motion: the deployment is still watched (committed, synced), the deployer
       last said OutOfSync or Progressing, or fewer pods are ready than there are;
    4. healthy: only with every piece of evidence: the deployment became healthy (synced and healthy by the
       deployer's word, nothing else recorded against it) and the cluster shows its pods, all ready;
    5. unknown: anything else: the cluster's figures are unavailable, no pod is seen, or the deployer said
       Missing, Suspended or Unknown.
    """
    if deployment is None:
        return Badge.NOT_DEPLOYED
    if (deployment.state in _FAILED_STATES or deployment.health_status == "Degraded"
            or (pods is not None and pods.problems > 0)):
        return Badge.DEGRADED
    if (deployment.state in _WATCHED_STATES or deployment.sync_status == "OutOfSync"
            or deployment.health_status == "Progressing"
            or (pods is not None and pods.pods_ready < pods.pods_total)):
        return Badge.PROGRESSING
    if (deployment.state == DeploymentState.HEALTHY and deployment.sync_status in ("Synced", "")
            and deployment.health_status in ("Healthy", "") and pods is not None and pods.pods_total > 0):
        return Badge.HEALTHY
    return Badge.UNKNOWN


def application_badge(badges: Iterable[Badge]) -> Badge:
    """The application's badge: its most alarming environment (degraded, progressing, unknown, healthy);
    not deployed only when no environment has anything."""
    return max(badges, key=lambda b: b.severity, default=Badge.NOT_DEPLOYED)


class EnvironmentCell(NamedTuple):
    environment: str
    namespace: str
    deployment: DeploymentFacts | None
    pods: NamespaceSummary | None  # None: the cluster's figures are unavailable
    badge: Badge


class ApplicationRow(NamedTuple):
    project: str
    name: str
    state: str  # provisioning: new, provisioning, ready, failed...
    build: BuildFacts | None
    environments: tuple[EnvironmentCell, ...]
    badge: Badge

    @property
    def pods(self) -> tuple[int, int] | None:
        """Ready and total pods over its environments; None when the cluster's figures are unavailable."""
        known = [c.pods for c in self.environments if c.pods is not None]
        if not known:
            return None
        return sum(p.pods_ready for p in known), sum(p.pods_total for p in known)


@dataclass(frozen=True)
class QuotaTotal:
    """One resource's quota, summed over the team's namespaces."""

    resource: str
    used: float
    hard: float

    @property
    def fraction(self) -> float | None:
        return self.used / self.hard if self.hard else None

    @property
    def used_text(self) -> str:
        return amount_text(self.resource, self.used)

    @property
    def hard_text(self) -> str:
        return amount_text(self.resource, self.hard)


@dataclass(frozen=True)
class TeamBoard:
    team_name: str
    display_name: str
    environments: tuple[str, ...]
    rows: tuple[ApplicationRow, ...]
    quota: tuple[QuotaTotal, ...]
    freshness: Freshness
    cluster_name: str | None
    generated_at: datetime

    @property
    def counts(self) -> dict[Badge, int]:
        """How many applications show each badge, most alarming first, zeros left out."""
        counts: dict[Badge, int] = {}
        for row in self.rows:
            counts[row.badge] = counts.get(row.badge, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[0].severity))

    @property
    def freshness_text(self) -> str:
        """Where the pod and quota figures come from, in words ("figures from the cluster cache, 4 s old")."""
        f = self.freshness
        if f.source == "cache":
            age = f", {f.age_seconds:.0f} s old" if f.age_seconds is not None else ""
            return f"figures from the cluster cache{age}" + (" (stale)" if f.stale else "")
        if f.source == "direct":
            return "figures read from the cluster just now"
        message = f.message.rstrip(". ")
        return "cluster figures unavailable" + (f": {message}" if message else "")


def _require_board_visible(viewer: User | KioskViewer, team_name: str) -> Team:
    """The team, if the viewer may see its board; NotFound otherwise, so that other teams do not show."""
    team = Team.by_name(team_name)
    if isinstance(viewer, KioskViewer):
        visible = team is not None and team.name in viewer.team_names
    else:
        visible = team is not None and can_see_team(viewer, team.id)
    if not visible:
        raise NotFound("No such team.")
    return team


def team_board(viewer: User | KioskViewer, team_name: str) -> TeamBoard:
    """The board of one team: a user sees the teams they may see (every team for admins), a kiosk token only
    the teams it was made for; any other team is NotFound, exactly like one that does not exist."""
    team = _require_board_visible(viewer, team_name)
    team_name = team.name
    environments = environments_of(current_app.config["PORTAL"])
    apps = db.session.execute(
        select(Application.id, Application.name, Application.state, Project.name)
        .join(Project, Project.id == Application.project_id)
        .where(Application.team_id == team.id)
        .order_by(Project.name, Application.name)
    ).tuples().all()
    builds = _latest_builds(team.id)
    deployments = _latest_deployments(team.id, environments)
    namespaces = []  # per application, one per environment
    for _, name, _, project in apps:
        names = ResourceNames(team_name, project, name)
        namespaces.append(tuple(names.namespace(env) for env in environments))
    cluster = team_cluster(team.id)
    team_namespaces = sorted({ns for per_app in namespaces for ns in per_app})
    summaries = namespace_summaries(cluster, team_namespaces)
    figures = summaries.by_namespace if summaries.freshness.source != "unavailable" else None

    rows = []
    for (app_id, name, state, project), per_app in zip(apps, namespaces):
        cells = []
        for env, namespace in zip(environments, per_app):
            deployment = deployments.get((app_id, env))
            # A namespace the cluster does not show holds nothing yet: zero pods, which is a figure too.
            pods = None if figures is None else figures.get(namespace) or NamespaceSummary(namespace)
            cells.append(EnvironmentCell(env, namespace, deployment, pods, environment_badge(deployment, pods)))
        rows.append(ApplicationRow(project, name, state, builds.get(app_id), tuple(cells),
                                   application_badge(c.badge for c in cells)))
    return TeamBoard(
        team_name=team.name, display_name=team.display_name, environments=environments, rows=tuple(rows),
        quota=_quota_totals(summaries.by_namespace.get(ns) for ns in team_namespaces),
        freshness=summaries.freshness, cluster_name=cluster.name if cluster is not None else None,
        generated_at=utcnow(),
    )


def _latest_builds(team_id: int) -> dict[int, BuildFacts]:
    """The latest build of each of the team's applications, in one query (the highest number per application,
    read from the (application_id, number) unique index)."""
    latest = (select(Build.application_id, func.max(Build.number).label("number"))
              .join(Application, Application.id == Build.application_id)
              .where(Application.team_id == team_id)
              .group_by(Build.application_id).subquery())
    rows = db.session.execute(
        select(Build.application_id, Build.number, Build.state, Build.commit_sha, Build.created_at)
        .join(latest, and_(Build.application_id == latest.c.application_id, Build.number == latest.c.number)))
    return {app_id: BuildFacts(*facts) for app_id, *facts in rows.tuples()}


def _latest_deployments(team_id: int, environments: tuple[str, ...]) -> dict[tuple[int, str], DeploymentFacts]:
    """The latest deployment of each application and environment of the team, in one query."""
    latest = (select(Deployment.application_id, Deployment.environment,
                     func.max(Deployment.number).label("number"))
              .join(Application, Application.id == Deployment.application_id)
              .where(Application.team_id == team_id, Deployment.environment.in_(environments))
              .group_by(Deployment.application_id, Deployment.environment).subquery())
    rows = db.session.execute(
        select(Deployment.application_id, Deployment.environment, Deployment.number, Deployment.state,
               Deployment.sync_status, Deployment.health_status, Deployment.image_tag, Deployment.created_at)
        .join(latest, and_(Deployment.application_id == latest.c.application_id,
                           Deployment.number == latest.c.number)))
    return {(app_id, environment): DeploymentFacts(*facts) for app_id, environment, *facts in rows.tuples()}


def _quota_totals(summaries: Iterable[NamespaceSummary | None]) -> tuple[QuotaTotal, ...]:
    used: dict[str, float] = {}
    hard: dict[str, float] = {}
    for summary in summaries:
        for q in summary.quota if summary is not None else ():
            used[q.resource] = used.get(q.resource, 0.0) + q.used
            hard[q.resource] = hard.get(q.resource, 0.0) + q.hard
    return tuple(QuotaTotal(r, used[r], hard[r]) for r in sorted(used))
