"""The cluster cache's keys in a real Redis: the pod flag sets written with the pods, the counts read from them,
and a cache of another layout reading as never synced."""

from __future__ import annotations

import uuid

import pytest
import redis

from integrations.cluster_cache import ClusterCache, KindStatus
from integrations.cluster_objects import PodCounts


@pytest.fixture
def cache(redis_server):
    cache = ClusterCache(redis.Redis.from_url(redis_server.url), f"test-{uuid.uuid4().hex[:6]}")
    yield cache
    cache.clear()


def pod(name: str, ready: bool = True, reason: str = "", restarts: int = 0, last_reason: str = "") -> dict:
    """A slim pod with the fields a summary reads (see cluster_objects.slim_pod)."""
    return {"name": name, "phase": "Running", "ready": ready, "reason": reason, "restarts": restarts,
            "last_reason": last_reason, "deleting": False}


def counts(cache: ClusterCache, namespace: str) -> PodCounts:
    found, _ = cache.read([namespace], ["pods", "quotas"], pod_counts=True)
    assert "pods" not in found[namespace] and found[namespace]["quotas"] == []
    return found[namespace]["pod_counts"]


def test_pod_counts_follow_each_pod_written_and_removed(cache):
    pods = {"web-1": pod("web-1"), "web-2": pod("web-2", ready=False),
            "worker-1": pod("worker-1", ready=False, reason="CrashLoopBackOff", restarts=3, last_reason="OOMKilled")}
    cache.replace("pods", {"shop": pods})
    assert counts(cache, "shop") == PodCounts(total=3, not_ready=2, problems=1)
    assert counts(cache, "shop") == PodCounts.of(cache.read(["shop"], ["pods"])[0]["shop"]["pods"])

    cache.put("pods", "shop", "web-2", pod("web-2"))  # became ready
    cache.put("pods", "shop", "worker-1", pod("worker-1", restarts=3, last_reason="OOMKilled"))  # recovered
    assert counts(cache, "shop") == PodCounts(total=3, not_ready=0, problems=0)
    cache.put("pods", "shop", "web-3", pod("web-3", ready=False))
    cache.put("pods", "shop", "web-3", pod("web-3", ready=False))  # the same event twice changes nothing
    assert counts(cache, "shop") == PodCounts(total=4, not_ready=1, problems=0)
    cache.remove("pods", "shop", "web-3")
    assert counts(cache, "shop") == PodCounts(total=3, not_ready=0, problems=0)
    assert counts(cache, "elsewhere") == PodCounts(total=0, not_ready=0, problems=0)


def test_a_relist_leaves_no_flag_of_a_namespace_that_emptied(cache):
    cache.replace("pods", {"shop": {"web-1": pod("web-1", ready=False, reason="ImagePullBackOff")}})
    assert counts(cache, "shop") == PodCounts(total=1, not_ready=1, problems=1)
    cache.replace("pods", {"books": {"api-1": pod("api-1")}})
    assert counts(cache, "shop") == PodCounts(total=0, not_ready=0, problems=0)
    assert counts(cache, "books") == PodCounts(total=1, not_ready=0, problems=0)
    assert not list(cache.redis.scan_iter(f"*{cache.cluster}:pods-*"))


def test_a_cache_written_in_another_layout_reads_as_never_synced(cache):
    """A watcher of an earlier version kept no flag sets: its status must not let a reader trust the counts, and
    a watcher of this version finding it lists everything again (it resumes only the kinds the status names)."""
    cache.write_status("https://k8s.example:6443", {"pods": KindStatus(state="watching", synced_at=1.0)})
    assert cache.status().kinds["pods"].synced_at == 1.0
    cache.redis.hdel(cache._status, "layout")
    status = cache.status()
    assert status.kinds == {} and status.age() is None
