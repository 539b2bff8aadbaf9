"""What the applications run in their team's clusters: resource panels and namespace summaries.

Figures come from the cluster cache (``integrations.cluster_cache``), which ``flask watch-clusters`` keeps by
list-then-watch; viewers never call an API server while it is fresh. Without it (a fresh install, the
watcher down or behind), a panel falls back to a direct, paginated LIST, shared by every viewer for
``PORTAL_CACHE_DIRECT_SECONDS``, and says so. Who may see which namespaces is decided here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flask import current_app

from integrations.cluster_cache import CacheStatus, ClusterCache
from integrations.cluster_objects import NAMESPACED, PodCounts, amount_text, bytes_text, cpu_text, pod_problem
from integrations.cluster_watch import list_namespace
from integrations.errors import IntegrationError
from jobs import redis_connection
from portal.models import Application, Cluster, User
from portal.services.access import require_visible
from portal.services.clusters import cluster_target, team_cluster
from portal.services.naming import ResourceNames
from portal.services.provisioning.chain import environments_of
from portal.services.providers import current_providers

PODS_SHOWN = 200
EVENTS_SHOWN = 10
POD_SORTS = ("status", "name", "restarts", "age", "cpu", "memory", "node")
PANEL_KINDS = tuple(w.key for w in NAMESPACED)
SUMMARY_KINDS = ("pods", "quotas")


@dataclass(frozen=True)
class Freshness:
    """Where figures came from: ``cache`` (age_seconds old), ``direct`` (a LIST just now) or ``unavailable``."""

    source: str
    age_seconds: float | None = None
    stale: bool = False
    message: str = ""


@dataclass(frozen=True)
class QuotaUse:
    resource: str  # requests.cpu, limits.memory, pods, ...
    used: float
    hard: float
    used_text: str
    hard_text: str

    @property
    def fraction(self) -> float | None:
        return self.used / self.hard if self.hard else None


@dataclass(frozen=True)
class NamespaceSummary:
    namespace: str
    pods_ready: int = 0
    pods_total: int = 0
    problems: int = 0  # pods crash-looping, terminated with a reason, or failed
    quota: tuple[QuotaUse, ...] = ()


@dataclass(frozen=True)
class NamespaceSummaries:
    by_namespace: dict[str, NamespaceSummary] = field(default_factory=dict)
    freshness: Freshness = Freshness("unavailable")


@dataclass(frozen=True)
class PodRow:
    name: str
    deployment: str
    status: str  # Running, CrashLoopBackOff, OOMKilled, Pending, Terminating...
    problem: bool
    ready: bool
    ready_text: str
    restarts: int
    last_reason: str
    age_seconds: float
    node: str
    images: list[str]
    cpu: float | None  # cores used, None without metrics
    memory: float | None
    requests: dict[str, float]
    limits: dict[str, float]

    @property
    def age_text(self) -> str:
        return duration_text(self.age_seconds)


@dataclass(frozen=True)
class DeploymentRow:
    name: str
    desired: int
    ready: int
    available: int
    updated: int
    rollout: str  # complete | progressing | failed | paused | scaled to zero
    message: str
    images: list[str]
    autoscaler: dict[str, Any] | None


@dataclass(frozen=True)
class Totals:
    cpu_request: float = 0.0
    cpu_limit: float = 0.0
    memory_request: float = 0.0
    memory_limit: float = 0.0
    cpu_used: float | None = None
    memory_used: float | None = None

    def text(self) -> dict[str, str]:
        return {"cpu_request": cpu_text(self.cpu_request), "cpu_limit": cpu_text(self.cpu_limit),
                "memory_request": bytes_text(self.memory_request), "memory_limit": bytes_text(self.memory_limit),
                "cpu_used": cpu_text(self.cpu_used) if self.cpu_used is not None else "",
                "memory_used": bytes_text(self.memory_used) if self.memory_used is not None else ""}


@dataclass(frozen=True)
class EnvironmentPanel:
    environment: str
    namespace: str
    cluster: str
    freshness: Freshness
    deployments: list[DeploymentRow] = field(default_factory=list)
    pods: list[PodRow] = field(default_factory=list)
    pods_total: int = 0
    pods_ready: int = 0
    services: list[dict[str, Any]] = field(default_factory=list)
    ingresses: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    totals: Totals = Totals()
    usage: str = ""  # why there are no usage figures; "" when there are
    quota: tuple[QuotaUse, ...] = ()


def duration_text(seconds: float) -> str:
    """An age as kubectl shows it: 42s, 5m12s, 3h20m, 2d5h (the second unit only while it matters)."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    for unit, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            whole, rest = divmod(seconds, size)
            rest //= small_size
            return f"{whole}{unit}" + (f"{rest}{small}" if rest and whole < 10 else "")
    return f"{seconds}s"


def _age(timestamp: str, now: float) -> float:
    if not timestamp:
        return 0.0
    try:
        moment = datetime.fromisoformat(timestamp)  # RFC 3339 as the API writes it; a tenth of strptime's time
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, now - moment.timestamp())


# --- reading the cache, or the API server ------------------------------------------------------------


def _cache(cluster: Cluster) -> ClusterCache:
    return ClusterCache(redis_connection(), cluster.name)


def _read(cluster: Cluster | None, namespaces: Sequence[str], kinds: Sequence[str], usage: bool,
          pod_counts: bool = False) -> tuple[dict[str, dict[str, Any]], Freshness, str]:
    """The objects of ``kinds`` in ``namespaces`` from the cache when it is fresh, else listed now; where they
    came from; and why there is no usage ("" when there is). With ``pod_counts`` the cache answers pods with their
    counts ("pod_counts"), a direct LIST still with the pods."""
    if cluster is None:
        return {}, Freshness("unavailable", message="No cluster is bound to this team yet."), ""
    settings = current_app.config["PORTAL"]
    cache = _cache(cluster)
    found, status = cache.read(namespaces, kinds, usage=usage, pod_counts=pod_counts)
    age = status.age(kinds=kinds) if status.api_url == cluster.api_url else None
    if age is not None and age <= settings.cache_stale_seconds:
        return found, Freshness("cache", age, message=f"From the cluster cache, {duration_text(age)} old."), \
            _usage_problem(status, usage)
    why = ("the cluster cache has not synced this cluster yet" if age is None
           else f"the cluster cache is {duration_text(age)} behind")
    try:
        direct, usage_state = _direct(cluster, cache, namespaces, kinds, settings.cache_direct_seconds)
    except IntegrationError as exc:
        if age is None:
            return {}, Freshness("unavailable", message=f"Cannot read the cluster ({exc}); {why}."), ""
        return found, Freshness("cache", age, stale=True, message=(
            f"Stale: from the cluster cache, {duration_text(age)} old; the API server cannot be reached "
            f"({exc}).")), _usage_problem(status, usage)
    return direct, Freshness("direct", 0.0, message=f"Listed from the API server just now: {why}."), (
        usage_state.get("message", "") if usage and usage_state.get("state") != "ok" else "")


def _usage_problem(status: CacheStatus, wanted: bool) -> str:
    if not wanted or status.usage.get("state") == "ok":
        return ""
    return status.usage.get("message") or "no usage figures yet"


def _direct(cluster: Cluster, cache: ClusterCache, namespaces: Sequence[str], kinds: Sequence[str],
            share_for: float) -> tuple[dict[str, dict[str, list]], dict[str, Any]]:
    """``kinds`` of each namespace LISTed from the API server (or shared from a viewer's LIST a moment ago)."""
    connector = current_providers().cluster
    if connector is None:
        raise IntegrationError("kubernetes", "no cluster provider is configured (PORTAL_CLUSTER)")
    api = None
    found, usage_state = {}, {"state": "ok"}
    for namespace in namespaces:
        shared = cache.direct(namespace, kinds)
        if shared is None:
            api = api or connector.connect(cluster_target(cluster)).api
            objects, usage = list_namespace(api, namespace, kinds)
            shared = {"objects": objects, "usage": usage}
            cache.keep_direct(namespace, kinds, shared, share_for)
        found[namespace] = shared["objects"]
        if shared["usage"].get("state") != "ok":
            usage_state = shared["usage"]
    return found, usage_state


# --- what the pages show -----------------------------------------------------------------------------


def _status(pod: dict[str, Any]) -> str:
    if pod["deleting"]:
        return "Terminating"
    return pod["reason"] or pod["phase"] or "Unknown"


def _quota(quotas: list[dict[str, Any]]) -> tuple[QuotaUse, ...]:
    uses = []
    for quota in quotas:
        for resource, hard in sorted(quota["hard"].items()):
            used = quota["used"].get(resource, 0.0)
            uses.append(QuotaUse(resource, used, hard, amount_text(resource, used), amount_text(resource, hard)))
    return tuple(uses)


def _pod_rows(pods: list[dict], replicasets: list[dict], usage: list[dict] | None, now: float) -> list[PodRow]:
    owners = {rs["name"]: rs["deployment"] for rs in replicasets}
    used = {m["name"]: m for m in usage or []}
    rows = []
    for pod in pods:
        metrics = used.get(pod["name"])
        ready = sum(c["ready"] for c in pod["containers"])
        rows.append(PodRow(
            name=pod["name"], deployment=owners.get(pod["owner"], ""), status=_status(pod), problem=pod_problem(pod),
            ready=pod["ready"], ready_text=f"{ready}/{len(pod['containers'])}", restarts=pod["restarts"],
            last_reason=pod["last_reason"], age_seconds=_age(pod["created"], now), node=pod["node"],
            images=sorted({c["image"] for c in pod["containers"]}),
            cpu=sum(c["cpu"] for c in metrics["containers"].values()) if metrics else None,
            memory=sum(c["memory"] for c in metrics["containers"].values()) if metrics else None,
            requests=pod["requests"], limits=pod["limits"]))
    return rows


def _rollout(d: dict[str, Any]) -> tuple[str, str]:
    progressing = d["progressing"]
    if d["paused"]:
        return "paused", ""
    if progressing["reason"] == "ProgressDeadlineExceeded":
        return "failed", progressing["message"]
    if d["desired"] == 0 and d["current"] == 0:
        return "scaled to zero", ""
    if (d["observed"] < d["generation"] or d["updated"] < d["desired"] or d["available"] < d["desired"]
            or d["current"] > d["updated"]):
        return "progressing", progressing["message"]
    return "complete", ""


def _deployment_rows(deployments: list[dict], hpas: list[dict]) -> list[DeploymentRow]:
    scalers = {h["target"]: h for h in hpas}
    rows = []
    for d in sorted(deployments, key=lambda d: d["name"]):
        rollout, message = _rollout(d)
        rows.append(DeploymentRow(d["name"], d["desired"], d["ready"], d["available"], d["updated"], rollout,
                                  message, d["images"], scalers.get(d["name"])))
    return rows


def _sort_key(sort: str):
    keys = {
        "status": lambda p: (not p.problem, p.ready, p.name),
        "name": lambda p: p.name,
        "restarts": lambda p: (p.restarts, p.name),
        "age": lambda p: (p.age_seconds, p.name),
        "cpu": lambda p: (p.cpu or 0.0, p.name),
        "memory": lambda p: (p.memory or 0.0, p.name),
        "node": lambda p: (p.node, p.name),
    }
    return keys.get(sort, keys["status"])


def _panel(environment: str, namespace: str, cluster: Cluster | None, objects: dict[str, list], freshness: Freshness,
           usage_problem: str, sort: str, descending: bool, now: float) -> EnvironmentPanel:
    if not objects:
        return EnvironmentPanel(environment, namespace, cluster.name if cluster else "", freshness)
    pods = _pod_rows(objects["pods"], objects["replicasets"], objects.get("usage"), now)
    has_usage = not usage_problem and any(p.cpu is not None for p in pods)
    totals = Totals(
        cpu_request=sum(p.requests["cpu"] for p in pods), cpu_limit=sum(p.limits["cpu"] for p in pods),
        memory_request=sum(p.requests["memory"] for p in pods), memory_limit=sum(p.limits["memory"] for p in pods),
        cpu_used=sum(p.cpu or 0.0 for p in pods) if has_usage else None,
        memory_used=sum(p.memory or 0.0 for p in pods) if has_usage else None)
    events = [{**e, "age": duration_text(_age(e["last"], now))}
              for e in sorted(objects["events"], key=lambda e: e["last"], reverse=True)[:EVENTS_SHOWN]]
    pods.sort(key=_sort_key(sort), reverse=descending)
    return EnvironmentPanel(
        environment=environment, namespace=namespace, cluster=cluster.name if cluster else "", freshness=freshness,
        deployments=_deployment_rows(objects["deployments"], objects["hpas"]), pods=pods[:PODS_SHOWN],
        pods_total=len(pods), pods_ready=sum(p.ready for p in pods),
        services=sorted(objects["services"], key=lambda s: s["name"]),
        ingresses=sorted(objects["ingresses"], key=lambda i: i["name"]), events=events, totals=totals,
        usage=usage_problem or ("" if has_usage or not pods else "no usage figures for these pods yet"),
        quota=_quota(objects["quotas"]))


def resource_panel(actor: User, app: Application, sort: str = "status",
                   descending: bool = False) -> list[EnvironmentPanel]:
    """Per environment of ``app``: its Deployments, pods, Services, Ingresses, warnings and usage."""
    require_visible(actor, app.team_id, "application")
    environments = environments_of(current_app.config["PORTAL"])
    names = ResourceNames(app.team.name, app.project.name, app.name)
    namespaces = [names.namespace(env) for env in environments]
    cluster = team_cluster(app.team_id)
    objects, freshness, usage_problem = _read(cluster, namespaces, PANEL_KINDS, usage=True)
    now = time.time()
    return [_panel(env, ns, cluster, objects.get(ns, {}), freshness, usage_problem,
                   sort if sort in POD_SORTS else "status", descending, now)
            for env, ns in zip(environments, namespaces)]


def namespace_summaries(cluster: Cluster | None, namespaces: Sequence[str]) -> NamespaceSummaries:
    """Pods ready/total, problems and quota use of each of ``namespaces`` in ``cluster`` (no permission check:
    the caller has decided the namespaces may be seen). A namespace absent from the answer holds nothing yet."""
    objects, freshness, _ = _read(cluster, list(namespaces), SUMMARY_KINDS, usage=False, pod_counts=True)
    summaries = {}
    for namespace, found in objects.items():
        pods, quotas = found.get("pod_counts") or PodCounts.of(found.get("pods") or []), found.get("quotas") or []
        if not pods.total and not quotas:
            continue
        summaries[namespace] = NamespaceSummary(
            namespace, pods_ready=pods.total - pods.not_ready, pods_total=pods.total, problems=pods.problems,
            quota=_quota(quotas))
    return NamespaceSummaries(summaries, freshness)
