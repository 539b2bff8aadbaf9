"""`python -m testbed.demo`: the whole portal on this machine, with its embedded providers.

Brings up, and stops again on Ctrl-C, exactly what it starts:
- Redis, if none answers at PORTAL_REDIS_URL;
- the testbed: the registry and two Kubernetes control planes, `dev` and `ops`, with KWOK nodes
  (binaries built once per machine, see testbed/binaries.py), state under instance/testbed;
- the offline Python base image of the templates, in the built-in runner's image store;
- an OpenSearch node for the applications' logs (jars built once per machine, see testbed/search; needs a
  JDK 17 and Maven), unless the caller set PORTAL_LOGS: without Java the demo stops and says how to get it,
  and PORTAL_LOGS=none runs it without, the log panel then reading the pods' own logs;
- the migrations, the two clusters registered for the teams dev and ops (`flask register-cluster`),
- one RQ worker and the web server (gunicorn), configured for the built-in Git host, runner, registry,
  the clusters and the built-in deployer; the cluster cache's watcher (`flask watch-clusters`) and, with
  the OpenSearch node, the built-in log collector (`flask collect-logs`), which ships the applications' pod
  logs there as Fluent Bit would in a real cluster.

`PORTAL_DEMO_TESTBED=0` skips the testbed (and leaves the providers as configured): the portal alone.
Any PORTAL_* variable set by the caller wins over what this sets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from portal.config import INSTANCE_DIR, PROJECT_ROOT, Settings
from testbed.process import MissingComponent, port_open
from testbed.services import RedisServer

TESTBED_DIR = INSTANCE_DIR / "testbed"
TEAMS = ("dev", "ops")


def start_testbed(started: list, log=print) -> dict[str, str]:
    """The registry, a cluster per team, the base image; returns the PORTAL_* settings that use them."""
    from testbed import binaries
    from testbed.base_image import base_images_dir, build_python_base
    from testbed.cluster import Cluster
    from testbed.images import ImageBuilder
    from testbed.registry import RegistryServer

    log("Building or finding the testbed's binaries (minutes the first time on a machine)...")
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "helm"):
        binaries.ensure(name)
    registry = RegistryServer.start(TESTBED_DIR / "registry")
    started.append(registry)
    log(f"Registry at {registry.url}")
    clusters = {}
    for team in TEAMS:
        cluster = Cluster(team, TESTBED_DIR / team, nodes=2).start()
        started.append(cluster)
        inline = cluster.state / "kubeconfig-inline"
        inline.write_text(cluster.inline_kubeconfig())
        inline.chmod(0o600)
        clusters[team] = (cluster, inline)
        log(f"Cluster {team} at {cluster.server}  (KUBECONFIG={cluster.kubeconfig})")
    log("Building or finding the offline Python base image (about 2 minutes the first time)...")
    runner_root = Path(os.environ.get("PORTAL_RUNNER_ROOT") or Settings.from_env().runner_root)
    builder = ImageBuilder(runner_root / "buildah")
    base = build_python_base(builder, base_images_dir())
    # The registry holds the base image too (the runner builds from its own store, where it already is).
    pushed = builder.push(base, f"{registry.host}/portal/python-base:{base.rsplit(':', 1)[1]}", tls_verify=False)
    log(f"Base image {base} (also {pushed.reference}, {pushed.digest[:19]})")
    return {
        "PORTAL_SCM": "builtin", "PORTAL_CI": "builtin", "PORTAL_REGISTRY": "plain",
        "PORTAL_CLUSTER": "kubernetes", "PORTAL_DELIVERY": "builtin",
        "PORTAL_RUNNER_REGISTRY": registry.url, "PORTAL_RUNNER_BASE_IMAGE": base,
        "PORTAL_DEPLOYER_HELM": str(binaries.ensure("helm")), "PORTAL_ENVIRONMENTS": "dev,prod",
        "_clusters": "\n".join(f"{team} {c.server} {inline}" for team, (c, inline) in clusters.items()),
    }


def start_log_search(started: list, log=print) -> dict[str, str]:
    """An OpenSearch node for the applications' logs; returns the PORTAL_* settings that use it."""
    from testbed.search import SearchNode

    log("Building or finding the search engine's jars (minutes the first time on a machine)...")
    try:
        node = SearchNode.start(TESTBED_DIR / "search")
    except MissingComponent as exc:
        raise MissingComponent("The demo's log search (OpenSearch)", f"{str(exc).rstrip('.')}. Or set PORTAL_LOGS=none "
                               "to run the demo without it: the log panel then reads the pods' own logs.") from None
    started.append(node)
    log(f"OpenSearch at {node.url} (the applications' logs, shipped by `flask collect-logs`)")
    return {"PORTAL_LOGS": "opensearch", "PORTAL_LOGS_URL": node.url}


def main() -> int:
    settings = Settings.from_env()
    host = os.environ.get("PORTAL_HOST", "127.0.0.1")
    port = int(os.environ.get("PORTAL_PORT", "5000"))
    started: list = []
    children: list[subprocess.Popen] = []
    redis = urlsplit(settings.redis_url)
    if not port_open(redis.port or 6379, redis.hostname or "127.0.0.1"):
        if redis.hostname not in ("127.0.0.1", "localhost"):
            print(f"Redis at {settings.redis_url} does not answer.", file=sys.stderr)
            return 1
        print(f"Starting Redis on port {redis.port or 6379} (data in instance/redis)")
        started.append(RedisServer.start(workdir=INSTANCE_DIR / "redis", port=redis.port or 6379))

    bin_dir = Path(sys.executable).parent
    env = {"PORTAL_LOG_FORMAT": "text",  # a person reads this terminal; production keeps JSON lines
           **os.environ, "PORTAL_PUBLIC_URL": os.environ.get("PORTAL_PUBLIC_URL", f"http://{host}:{port}")}
    try:
        clusters, collect_logs = "", False
        if os.environ.get("PORTAL_DEMO_TESTBED", "1") != "0":
            embedded = {}
            if "PORTAL_LOGS" not in os.environ:  # else the caller has a log store of their own, or none
                embedded = start_log_search(started)  # first: without Java, say so before minutes of building
                collect_logs = True
            embedded.update(start_testbed(started))
            clusters = embedded.pop("_clusters")
            env = {**embedded, **env}  # the caller's settings win
        flask = [sys.executable, "-m", "flask", "--app", "app"]
        subprocess.run([*flask, "db", "upgrade"], cwd=PROJECT_ROOT, env=env, check=True)
        for line in clusters.splitlines():
            team, server, kubeconfig = line.split(" ")
            subprocess.run([*flask, "register-cluster", f"{team}-local", "--api-url", server, "--kubeconfig",
                            kubeconfig, "--team", team], cwd=PROJECT_ROOT, env=env, check=True)
        children.append(subprocess.Popen([*flask, "worker"], cwd=PROJECT_ROOT, env=env))
        # The built-in runner's builds get a worker of their own: the job following a build waits for it.
        children.append(subprocess.Popen([*flask, "worker", "runner"], cwd=PROJECT_ROOT, env=env))
        # The cluster cache the resource panels and team boards read: one watcher process for every cluster.
        children.append(subprocess.Popen([*flask, "watch-clusters"], cwd=PROJECT_ROOT, env=env))
        if collect_logs:  # what Fluent Bit does in a cluster: the pods' logs into the search engine
            children.append(subprocess.Popen([*flask, "collect-logs"], cwd=PROJECT_ROOT, env=env))
        children.append(subprocess.Popen(
            [str(bin_dir / "gunicorn"), "--bind", f"{host}:{port}", "--workers", "2", "--timeout", "120",
             "--access-logfile", "-", "app:app"], cwd=PROJECT_ROOT, env=env))
        deadline = time.monotonic() + 30
        while not port_open(port, host) and time.monotonic() < deadline:
            if any(c.poll() is not None for c in children):
                raise RuntimeError("the web server or the worker exited at start; see the messages above")
            time.sleep(0.1)
        print(f"\n  Portal running at http://{host}:{port}/  (the first account to sign up becomes admin)\n"
              "  Press Ctrl-C to stop.\n", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    except MissingComponent as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short and leave clusters running.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for c in children:
            if c.poll() is None:
                c.terminate()
        for c in children:
            try:
                c.wait(15)
            except subprocess.TimeoutExpired:
                c.kill()
        for server in reversed(started):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
