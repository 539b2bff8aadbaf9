"""A testbed cluster filled with namespaces of Deployments, what its servers count, and the cluster cache's
watcher process: the cluster's side of benchmarks/resources.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from redis import Redis

from integrations.cluster_cache import PREFIX, ClusterCache
from integrations.cluster_objects import BY_KEY
from portal.config import env_name
from testbed.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ("web", "api", "worker", "cron", "auth", "search", "mail", "media", "report", "sync")
# Small pods, so that 20,000 of them fit in the fake nodes and the namespaces' quotas.
POD_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}}


def quota(pods: int) -> dict:
    cores, gib = max(1, pods // 50), max(1, pods // 16)
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "portal-quota"},
            "spec": {"hard": {"pods": str(pods + pods // 4), "requests.cpu": str(cores), "requests.memory": f"{gib}Gi",
                              "limits.cpu": str(10 * cores), "limits.memory": f"{10 * gib}Gi"}}}


def deployment(app: str, component: str, replicas: int, image: str) -> dict:
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/component": component}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"{app}-{component}", "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                         "name": component, "image": image, "resources": POD_RESOURCES}]}}}}


def populate(api, namespaces: dict[str, str], deployments: int, replicas: int, image: str) -> None:
    """Per namespace (→ its application): the namespace, its quota, ``deployments`` Deployments of ``replicas``
    pods running ``image`` ("{app}" in it stands for the application), created from 8 threads."""
    from kubernetes import client

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    components = [COMPONENTS[i] if i < len(COMPONENTS) else f"part{i}" for i in range(deployments)]

    def one(namespace: str, app: str) -> None:
        core.create_namespace({"metadata": {"name": namespace}}, _preload_content=False)
        core.create_namespaced_resource_quota(namespace, quota(deployments * replicas), _preload_content=False)
        for component in components:
            apps.create_namespaced_deployment(namespace, deployment(app, component, replicas, image.format(app=app)),
                                             _preload_content=False)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, namespaces, namespaces.values()))


def wait_ready(api, total: int, timeout: float, stall: float = 180.0) -> tuple[int, float]:
    """Wait until ``total`` pods are ready (from the Deployments' status); give up after ``timeout`` or when no
    progress was made for ``stall`` seconds. Returns the pods ready and the seconds waited."""
    from kubernetes import client

    apps = client.AppsV1Api(api)
    start = last_change = time.monotonic()
    ready = last = 0
    while True:
        listed = json.loads(apps.list_deployment_for_all_namespaces(_preload_content=False).data)["items"]
        created = sum((d.get("status") or {}).get("replicas", 0) for d in listed)
        ready = sum((d.get("status") or {}).get("readyReplicas", 0) for d in listed)
        now = time.monotonic()
        print(f"  {now - start:5.0f} s: {created} pods created, {ready} ready", file=sys.stderr, flush=True)
        if ready != last:
            last, last_change = ready, now
        if ready >= total or now - start > timeout or now - last_change > stall:
            return ready, now - start
        time.sleep(10)


def api_reads(cluster: Cluster) -> Counter:
    """The requests the cluster's API servers completed so far, by (group, resource, verb), from their own
    apiserver_request_total: the API server's, and metrics-server's (metrics.k8s.io, which the API server proxies
    without counting)."""
    servers = [""]
    for process in cluster.processes:
        if process.name == "metrics-server":
            port = next(a.split("=", 1)[1] for a in process.argv if a.startswith("--secure-port="))
            servers.append(f"https://127.0.0.1:{port}")
    counts: Counter = Counter()
    for server in servers:
        for line in cluster.prometheus(server).splitlines():
            if line.startswith("apiserver_request_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line[:line.rindex("}")]))
                counts[labels.get("group", ""), labels.get("resource", ""), labels.get("verb", "")] += \
                    float(line.split()[-1])
    return counts


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of ``pids`` so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# --- the cluster cache's watcher, as production runs it ----------------------------------------------


def start_watcher(database_url: str, redis_url: str, secret_key: str, log: Path) -> subprocess.Popen:
    """`flask watch-clusters` in a process of its own; ``secret_key`` must be the web app's, from which the key
    that encrypted the stored kubeconfigs is derived."""
    env = {**os.environ, env_name("database_url"): database_url, env_name("redis_url"): redis_url,
           env_name("cluster"): "kubernetes", env_name("secret_key"): secret_key}
    flask = Path(sys.executable).with_name("flask")
    argv = [str(flask)] if flask.exists() else [sys.executable, "-m", "flask"]
    with open(log, "ab") as out:
        return subprocess.Popen([*argv, "--app", "app", "watch-clusters"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_watcher(watcher: subprocess.Popen) -> None:
    if watcher.poll() is None:
        watcher.send_signal(signal.SIGTERM)
        try:
            watcher.wait(20)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait()


def wait_synced(cache: ClusterCache, watcher: subprocess.Popen, log: Path, usage: bool, timeout: float) -> float:
    """Seconds until every kind is watched (listed first) and, with ``usage``, pod usage was read."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if watcher.poll() is not None:
            raise RuntimeError(f"watch-clusters exited with {watcher.returncode}:\n{log.read_text()[-3000:]}")
        status = cache.status()
        kinds = all(status.kinds.get(k) and status.kinds[k].state == "watching" for k in BY_KEY)
        if kinds and (not usage or status.usage.get("state") == "ok"):
            return time.monotonic() - start
        time.sleep(0.2)
    raise RuntimeError(f"the cluster cache did not sync in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def cache_memory(redis: Redis, cluster: str) -> tuple[int, int]:
    """Bytes Redis holds for the cache's keys of ``cluster`` (MEMORY USAGE, every field counted), and how many."""
    keys = list(redis.scan_iter(f"{PREFIX}:{cluster}:*", count=1000))
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(n or 0 for n in pipe.execute()), len(keys)
