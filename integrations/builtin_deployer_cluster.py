"""What the built-in deployer does in the destination cluster: apply an application's manifests, prune what it
no longer renders, delete all of it, and judge its health, finding its objects by Argo CD's tracking label.

Pruning lists, per kind, the objects of the namespace carrying ``app.kubernetes.io/instance: <application>``
and deletes those the chart did not render this time, each with its uid as a precondition (an object
re-created meanwhile is not deleted) and in the background (a Deployment's pods follow it). The kinds
looked at are those the portal's chart produces, and every kind the application ever deployed.

Health follows Argo CD's checks (gitops-engine ``pkg/health``): a Deployment is Progressing until its
controller has seen the current generation and every replica is updated and available, Degraded when
its rollout exceeded its progress deadline or its pods cannot be created (``ReplicaFailure``, for example
over the namespace's quota); the application is as healthy as its least healthy workload, and Missing
when a workload it deployed is gone.
"""

from __future__ import annotations

from typing import Any, Iterable

from integrations import kubernetes_objects as objects
from integrations.builtin_deployer_source import INSTANCE
from integrations.errors import InvalidRequest, NotFound
from integrations.kubernetes import WORKLOADS, KubernetesCluster
from integrations.kubernetes_api import Kind

# The kinds the portal's deployment chart produces: looked at by every prune and delete.
CHART_KINDS = (("apps/v1", "Deployment"), ("v1", "Service"), ("networking.k8s.io/v1", "Ingress"),
               ("v1", "ServiceAccount"), ("v1", "ConfigMap"), ("v1", "Secret"),
               ("autoscaling/v2", "HorizontalPodAutoscaler"))
# Argo CD's order of health, best first: the application's is its worst workload's.
HEALTH_ORDER = ("Healthy", "Suspended", "Progressing", "Missing", "Degraded")


def key(manifest: dict[str, Any]) -> tuple[str, str, str]:
    """(API group, kind, name): what identifies an object in one namespace, whatever its API version."""
    group = manifest["apiVersion"].rpartition("/")[0] if "/" in manifest["apiVersion"] else ""
    return group, manifest["kind"], manifest["metadata"]["name"]


def kinds_of(manifests: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted({(m["apiVersion"], m["kind"]) for m in manifests})


def prune(cluster: KubernetesCluster, namespace: str, instance: str, keep: set[tuple[str, str, str]],
          kinds: Iterable[tuple[str, str]]) -> list[str]:
    """Delete the objects labelled as ``instance``'s in ``namespace`` that are not in ``keep``; what went."""
    pruned = []
    for kind in _kinds(cluster, kinds):
        for item in _labelled(cluster, kind, namespace, instance):
            manifest = {**item, "apiVersion": kind.api_version, "kind": kind.kind}
            if key(manifest) in keep:
                continue
            meta = item["metadata"]
            try:
                cluster.api.request("DELETE", kind.path(meta["name"], namespace), body={
                    "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
                    "preconditions": {"uid": meta["uid"]}})
            except NotFound:
                continue  # gone meanwhile: what we wanted
            pruned.append(f"{kind.kind}/{meta['name']}")
    return pruned


def health(cluster: KubernetesCluster, namespace: str, instance: str,
           workloads: Iterable[tuple[str, str]]) -> tuple[str, str, tuple[str, ...]]:
    """(health, message, images) of the application's workloads; ``workloads`` are the (kind, name) it deployed."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in WORKLOADS:
        for item in _labelled(cluster, kind, namespace, instance):
            found[(kind.kind, item["metadata"]["name"])] = item
    judged = [(*_workload_health(kind, item), f"{kind}/{name}") for (kind, name), item in found.items()]
    judged += [("Missing", "it is not in the cluster", f"{kind}/{name}")
               for kind, name in workloads if (kind, name) not in found]
    worst = max((h for h, _, _ in judged), key=HEALTH_ORDER.index, default="Healthy")
    message = "; ".join(f"{what}: {why}" for h, why, what in sorted(judged, key=lambda j: j[2]) if h == worst and why)
    images = sorted({container.get("image", "") for item in found.values() for container in containers(item)} - {""})
    return worst, message, tuple(images)


def _workload_health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
    if (status.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return "Progressing", "waiting for the rollout to start (generation not observed yet)"
    if kind == "Deployment":
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        failure, progressing = conditions.get("ReplicaFailure") or {}, conditions.get("Progressing") or {}
        if failure.get("status") == "True":
            return "Degraded", failure.get("message") or failure.get("reason") or "ReplicaFailure"
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            return "Degraded", progressing.get("message") or "the rollout exceeded its progress deadline"
        if spec.get("paused"):
            return "Suspended", "the Deployment is paused"
        desired = spec.get("replicas", 1)
        updated, available = status.get("updatedReplicas") or 0, status.get("availableReplicas") or 0
        if updated < desired:
            return "Progressing", f"{updated} of {desired} replicas updated"
        if (status.get("replicas") or 0) > updated:
            return "Progressing", f"{status['replicas'] - updated} old replicas are pending termination"
        if available < updated:
            return "Progressing", f"{available} of {updated} updated replicas available"
        return "Healthy", ""
    summary = objects.workload(kind, obj)
    if summary.ready < summary.desired or summary.details["updated"] < summary.desired:
        return "Progressing", f"{summary.ready} of {summary.desired} pods ready"
    return "Healthy", ""


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The init and app containers of a workload's pod template."""
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def _kinds(cluster: KubernetesCluster, kinds: Iterable[tuple[str, str]]) -> list[Kind]:
    """The namespaced kinds among ``kinds`` that the cluster serves (a kind it does not serve holds nothing)."""
    served = []
    for api_version, kind in sorted(set(kinds)):
        try:
            found = cluster.api.kind(api_version, kind)
        except InvalidRequest:
            continue
        if found.namespaced:
            served.append(found)
    return served


def _labelled(cluster: KubernetesCluster, kind: Kind, namespace: str, instance: str) -> list[dict[str, Any]]:
    listed = cluster.api.request("GET", kind.path(namespace=namespace),
                                 query=[("labelSelector", f"{INSTANCE}={instance}")])
    return listed.get("items") or []
