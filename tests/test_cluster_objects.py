"""Cutting Kubernetes objects down to what the panels use, and the figures in human units."""

from __future__ import annotations

import pytest

from integrations.cluster_objects import amount_text, bytes_text, cpu_text, quantity, slim_event, slim_ingress, slim_pod


def crashed_pod() -> dict:
    return {
        "metadata": {"name": "web-1", "namespace": "n", "creationTimestamp": "2026-12-01T10:00:00Z",
                     "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc"}],
                     "annotations": {"secret-ish": "do not keep"}},
        "spec": {"nodeName": "node-0", "containers": [
            {"name": "web", "image": "reg/web:2", "env": [{"name": "TOKEN", "value": "hush"}],
             "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "sidecar", "image": "reg/side:1"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                   "containerStatuses": [
                       {"name": "web", "ready": False, "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}},
                       {"name": "sidecar", "ready": True, "restartCount": 0, "state": {"running": {}}}]},
    }


def test_a_crashed_pod_keeps_its_reasons_restarts_and_resources_and_nothing_else():
    pod = slim_pod(crashed_pod())
    assert (pod["reason"], pod["last_reason"], pod["restarts"], pod["ready"]) == ("CrashLoopBackOff", "OOMKilled", 4, False)
    assert pod["owner"] == "web-abc" and pod["node"] == "node-0"
    assert pod["requests"] == {"cpu": 0.25, "memory": 128 * 1024 ** 2}
    assert pod["limits"] == {"cpu": 1.0, "memory": 1024 ** 3}
    assert pod["containers"][0]["last_exit"] == 137
    assert "hush" not in repr(pod) and "secret-ish" not in repr(pod)


def test_a_pod_not_started_yet_lists_the_containers_it_will_run():
    raw = crashed_pod()
    raw["status"] = {"phase": "Pending"}
    pod = slim_pod(raw)
    assert [c["name"] for c in pod["containers"]] == ["web", "sidecar"] and pod["phase"] == "Pending"


def test_ingress_urls_follow_tls_and_events_keep_a_short_message():
    ingress = slim_ingress({"metadata": {"name": "web"}, "spec": {
        "tls": [{"hosts": ["a.example.com"]}],
        "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/api"}]}}, {"host": "b.example.com"}]}})
    assert ingress["urls"] == ["https://a.example.com/api", "http://b.example.com/"]
    event = slim_event({"metadata": {"name": "e"}, "type": "Warning", "reason": "BackOff", "message": "x" * 1000,
                        "involvedObject": {"kind": "Pod", "name": "web-1"}, "count": 7,
                        "lastTimestamp": "2026-12-01T10:00:00Z"})
    assert len(event["message"]) == 300 and event["object"] == "Pod/web-1" and event["count"] == 7


@pytest.mark.parametrize("raw, cores", [("250m", 0.25), ("2", 2.0), ("0.5", 0.5), ("", 0.0), ("nonsense", 0.0)])
def test_quantities(raw, cores):
    assert quantity(raw) == cores


def test_human_units():
    assert [cpu_text(v) for v in (0, 0.0125, 0.25, 1, 1.5)] == ["0", "12m", "250m", "1 core", "1.5 cores"]
    assert [bytes_text(v) for v in (0, 512, 2048, 128 * 1024 ** 2, 1.5 * 1024 ** 3)] == [
        "0", "512 B", "2 KiB", "128 MiB", "1.5 GiB"]
    assert (amount_text("requests.memory", 1024 ** 3), amount_text("pods", 20.0)) == ("1 GiB", "20")
