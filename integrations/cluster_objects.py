"""The kinds the resource panels show, and each object cut down to the fields the panels use.

Both the cluster cache (fed by watches) and the direct LIST fallback pass every object through the
same ``slim`` function, so a panel reads the same shape whichever way its figures came. A slim object is a
small JSON-able dict: a 20,000-pod cluster takes a few megabytes, not the gigabyte its full objects would.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, NamedTuple

from kubernetes.utils.quantity import parse_quantity

from integrations.kubernetes_api import Kind

Slim = dict[str, Any]
_MESSAGE = 300  # characters of an event's or a condition's message kept


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("250m", "128Mi", "1.5") as a number (cores, bytes); 0 for what is not one."""
    try:
        return float(parse_quantity(str(value))) if value not in (None, "") else 0.0
    except (ValueError, InvalidOperation, TypeError):
        return 0.0


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _owner(obj: dict[str, Any], kind: str) -> str:
    return next((o.get("name", "") for o in _meta(obj).get("ownerReferences") or [] if o.get("kind") == kind), "")


def _resources(containers: list[dict[str, Any]], which: str) -> dict[str, float]:
    total = {"cpu": 0.0, "memory": 0.0}
    for c in containers:
        for name in total:
            total[name] += quantity(((c.get("resources") or {}).get(which) or {}).get(name))
    return total


def slim_pod(obj: dict[str, Any]) -> Slim:
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    specs = {c.get("name"): c for c in spec.get("containers") or []}
    containers, reason, last_reason = [], status.get("reason", ""), ""
    for cs in status.get("containerStatuses") or []:
        state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated") or {}
        current = next(iter(state), "")
        why = (state.get(current) or {}).get("reason", "") if current in ("waiting", "terminated") else ""
        containers.append({"name": cs.get("name", ""), "image": (specs.get(cs.get("name")) or {}).get("image", "")
                           or cs.get("image", ""), "ready": bool(cs.get("ready")),
                           "restarts": int(cs.get("restartCount") or 0), "state": current, "reason": why,
                           "last_reason": last.get("reason", ""), "last_exit": last.get("exitCode"),
                           "last_finished": last.get("finishedAt", "")})
        reason = reason or why
        last_reason = last_reason or last.get("reason", "")
    if not containers:  # not started yet: the spec says what will run
        containers = [{"name": name, "image": c.get("image", ""), "ready": False, "restarts": 0, "state": "",
                       "reason": "", "last_reason": "", "last_exit": None, "last_finished": ""}
                      for name, c in specs.items()]
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return {
        "name": meta.get("name", ""), "created": meta.get("creationTimestamp", ""),
        "deleting": bool(meta.get("deletionTimestamp")), "owner": _owner(obj, "ReplicaSet"),
        "node": spec.get("nodeName", ""), "phase": status.get("phase", ""), "ready": ready,
        "restarts": sum(c["restarts"] for c in containers), "reason": reason, "last_reason": last_reason,
        "started": status.get("startTime", ""), "ip": status.get("podIP", ""), "containers": containers,
        "requests": _resources(list(specs.values()), "requests"), "limits": _resources(list(specs.values()), "limits"),
    }


# Why a container is not running that means something is wrong (not merely starting).
BAD_REASONS = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "OOMKilled", "Error",
               "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "ContainerCannotRun",
               "Evicted", "DeadlineExceeded"}


def pod_problem(pod: Slim) -> bool:
    """Whether a slim pod is in trouble: failed, crash-looping, or not ready since its last run ended badly."""
    return (pod["phase"] == "Failed" or pod["reason"] in BAD_REASONS
            or (pod["restarts"] > 0 and pod["last_reason"] in BAD_REASONS and not pod["ready"]))


class PodCounts(NamedTuple):
    """The pods of a namespace as a summary counts them; the cluster cache keeps these without decoding a pod."""

    total: int
    not_ready: int
    problems: int

    @classmethod
    def of(cls, pods: list[Slim]) -> "PodCounts":
        return cls(len(pods), sum(not p["ready"] for p in pods), sum(pod_problem(p) for p in pods))


def _condition(status: dict[str, Any], kind: str) -> dict[str, str]:
    found = next((c for c in status.get("conditions") or [] if c.get("type") == kind), None) or {}
    return {"status": found.get("status", ""), "reason": found.get("reason", ""),
            "message": (found.get("message") or "")[:_MESSAGE]}


def slim_deployment(obj: dict[str, Any]) -> Slim:
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    template = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return {
        "name": meta.get("name", ""), "created": meta.get("creationTimestamp", ""),
        "generation": int(meta.get("generation") or 0), "observed": int(status.get("observedGeneration") or 0),
        "desired": int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        "current": int(status.get("replicas") or 0), "ready": int(status.get("readyReplicas") or 0),
        "available": int(status.get("availableReplicas") or 0), "updated": int(status.get("updatedReplicas") or 0),
        "paused": bool(spec.get("paused")), "images": [c.get("image", "") for c in template],
        "progressing": _condition(status, "Progressing"), "available_condition": _condition(status, "Available"),
    }


def slim_replicaset(obj: dict[str, Any]) -> Slim:
    meta, status = _meta(obj), obj.get("status") or {}
    return {"name": meta.get("name", ""), "deployment": _owner(obj, "Deployment"),
            "revision": (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision", ""),
            "replicas": int(status.get("replicas") or 0), "ready": int(status.get("readyReplicas") or 0)}


def slim_service(obj: dict[str, Any]) -> Slim:
    meta, spec = _meta(obj), obj.get("spec") or {}
    balancer = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return {"name": meta.get("name", ""), "type": spec.get("type", "ClusterIP"),
            "cluster_ip": spec.get("clusterIP", ""), "external": [b.get("hostname") or b.get("ip", "") for b in balancer]
            + list(spec.get("externalIPs") or []) + ([spec["externalName"]] if spec.get("externalName") else []),
            "ports": [f"{p.get('port')}{'→' + str(p['targetPort']) if p.get('targetPort') not in (None, p.get('port')) else ''}"
                      f"/{p.get('protocol', 'TCP')}" + (f" (node {p['nodePort']})" if p.get("nodePort") else "")
                      for p in spec.get("ports") or []]}


def slim_ingress(obj: dict[str, Any]) -> Slim:
    meta, spec = _meta(obj), obj.get("spec") or {}
    tls_hosts = {h for t in spec.get("tls") or [] for h in t.get("hosts") or []}
    urls = []
    for rule in spec.get("rules") or []:
        host = rule.get("host", "")
        for path in ((rule.get("http") or {}).get("paths")) or [{"path": "/"}]:
            urls.append(f"{'https' if host in tls_hosts else 'http'}://{host or '*'}{path.get('path') or '/'}")
    balancer = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return {"name": meta.get("name", ""), "class": spec.get("ingressClassName", ""), "urls": urls,
            "addresses": [b.get("hostname") or b.get("ip", "") for b in balancer]}


def slim_hpa(obj: dict[str, Any]) -> Slim:
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    targets = []
    for metric in spec.get("metrics") or []:
        resource = metric.get("resource") or {}
        target = resource.get("target") or {}
        if resource.get("name") and target.get("averageUtilization") is not None:
            current = next((((m.get("resource") or {}).get("current") or {}).get("averageUtilization")
                            for m in status.get("currentMetrics") or []
                            if (m.get("resource") or {}).get("name") == resource["name"]), None)
            targets.append({"resource": resource["name"], "target": target["averageUtilization"], "current": current})
    return {"name": meta.get("name", ""), "target": (spec.get("scaleTargetRef") or {}).get("name", ""),
            "min": int(spec.get("minReplicas") or 1), "max": int(spec.get("maxReplicas") or 0),
            "current": int(status.get("currentReplicas") or 0), "desired": int(status.get("desiredReplicas") or 0),
            "targets": targets}


def slim_event(obj: dict[str, Any]) -> Slim:
    meta, involved = _meta(obj), obj.get("involvedObject") or obj.get("regarding") or {}
    last = (obj.get("lastTimestamp") or (obj.get("series") or {}).get("lastObservedTime") or obj.get("eventTime")
            or meta.get("creationTimestamp", ""))
    return {"name": meta.get("name", ""), "type": obj.get("type", ""), "reason": obj.get("reason", ""),
            "message": (obj.get("message") or obj.get("note") or "")[:_MESSAGE],
            "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
            "count": int(obj.get("count") or (obj.get("series") or {}).get("count") or 1), "last": last}


def slim_quota(obj: dict[str, Any]) -> Slim:
    status = obj.get("status") or {}
    return {"name": _meta(obj).get("name", ""),
            "hard": {k: quantity(v) for k, v in (status.get("hard") or {}).items()},
            "used": {k: quantity(v) for k, v in (status.get("used") or {}).items()}}


def slim_node(obj: dict[str, Any]) -> Slim:
    status = obj.get("status") or {}
    allocatable = status.get("allocatable") or {}
    return {"name": _meta(obj).get("name", ""), "ready": _condition(status, "Ready")["status"] == "True",
            "unschedulable": bool((obj.get("spec") or {}).get("unschedulable")),
            "cpu": quantity(allocatable.get("cpu")), "memory": quantity(allocatable.get("memory")),
            "pods": quantity(allocatable.get("pods"))}


def slim_pod_metrics(obj: dict[str, Any]) -> Slim:
    """A PodMetrics of metrics.k8s.io: usage per container in cores and bytes, and when it was measured."""
    return {"name": _meta(obj).get("name", ""), "timestamp": obj.get("timestamp", ""),
            "containers": {c.get("name", ""): {"cpu": quantity((c.get("usage") or {}).get("cpu")),
                                               "memory": quantity((c.get("usage") or {}).get("memory"))}
                           for c in obj.get("containers") or []}}


@dataclass(frozen=True)
class Watched:
    """A kind the panels use: where it is, how it is cut down, and which of its objects are kept."""

    key: str
    kind: Kind
    slim: Callable[[dict[str, Any]], Slim]
    field_selector: str = ""


WATCHED: tuple[Watched, ...] = (
    Watched("pods", Kind("v1", "Pod", "pods", True), slim_pod),
    Watched("deployments", Kind("apps/v1", "Deployment", "deployments", True), slim_deployment),
    Watched("replicasets", Kind("apps/v1", "ReplicaSet", "replicasets", True), slim_replicaset),
    Watched("services", Kind("v1", "Service", "services", True), slim_service),
    Watched("ingresses", Kind("networking.k8s.io/v1", "Ingress", "ingresses", True), slim_ingress),
    Watched("hpas", Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True), slim_hpa),
    # Only warnings: normal events are most of a busy cluster's events and no panel shows them.
    Watched("events", Kind("v1", "Event", "events", True), slim_event, field_selector="type=Warning"),
    Watched("quotas", Kind("v1", "ResourceQuota", "resourcequotas", True), slim_quota),
    Watched("nodes", Kind("v1", "Node", "nodes", False), slim_node),
)
BY_KEY = {w.key: w for w in WATCHED}
NAMESPACED = tuple(w for w in WATCHED if w.kind.namespaced)
POD_METRICS = Kind("metrics.k8s.io/v1beta1", "PodMetrics", "pods", True)


def cpu_text(cores: float) -> str:
    """CPU in human units: millicores below one core, cores above."""
    if cores <= 0:
        return "0"
    if cores < 1:
        return f"{cores * 1000:.0f}m"
    shown = f"{cores:.2f}".rstrip("0").rstrip(".")
    return f"{shown} core" + ("" if shown == "1" else "s")


def bytes_text(value: float) -> str:
    """Memory in binary units: 512 KiB, 128 MiB, 1.5 GiB."""
    if value <= 0:
        return "0"
    for unit, size in (("TiB", 1024 ** 4), ("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if value >= size:
            shown = value / size
            return f"{shown:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{value:.0f} B"


def amount_text(resource: str, value: float) -> str:
    """A quota figure in the units of its resource."""
    if resource.endswith("cpu") or resource == "cpu":
        return cpu_text(value)
    if "memory" in resource or "storage" in resource:
        return bytes_text(value)
    return f"{Decimal(str(value)).normalize():f}"
