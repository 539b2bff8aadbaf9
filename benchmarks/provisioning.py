"""50 applications created at once, provisioned by 2 real RQ workers against near no-op providers.

    .venv/bin/python -m benchmarks.provisioning [--apps 50] [--workers 2] [--sqlite]

Starts throwaway PostgreSQL and Redis servers, migrates, starts the workers
(`flask worker provisioning`) with the contract fakes as providers (each call
is one Redis round trip), creates the applications from as many threads at
once, and waits for every run to end. Reports the total time, each step's
duration (from the steps' own timestamps), the providers' share of it
(the same calls timed alone), and so the engine's overhead per step; and
checks that nothing was created twice. Target (issue): engine overhead per
step under 20 ms median, zero duplicates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import func, select

from benchmarks.report import machine, servers
from portal import create_app
from portal.config import env_name
from portal.extensions import db
from portal.models import Application, Project, ProvisioningRun, RunState, Team, User
from portal.services.applications import NewApplication, create_application
from portal.services.provisioning.chain import chain
from tests.fakes.providers import FakeCIServer, FakeClusterAccess, FakeDelivery, FakeImageRegistry, FakeSourceControl
from tests.fakes.world import FakeWorld
from tests.provisioning_support import ENVIRONMENTS, EXPECTED_KINDS, FAKE_PROVIDERS, TEAM_SHARED, bind_clusters

ROOT = Path(__file__).resolve().parent.parent
CHAIN = chain(ENVIRONMENTS)
TARGET_MS = 20.0


def provider_times(world: FakeWorld, n: int) -> dict[str, list[float]]:
    """The providers' own time per step: the find and create calls each step makes, timed alone."""
    from integrations.cluster import NamespaceSpec
    from integrations.ci import JobSpec
    from integrations.delivery import DeliveryProjectSpec, DeliverySpec
    from integrations.scm import RepositorySpec, WebhookSpec

    scm, ci, reg = FakeSourceControl(world), FakeCIServer(world), FakeImageRegistry(world)
    cluster, delivery = FakeClusterAccess(world), FakeDelivery(world)
    out: dict[str, list[float]] = {s.name: [] for s in CHAIN}

    def timed(step: str, *calls) -> None:
        start = time.perf_counter()
        for call in calls:
            call()
        out[step].append((time.perf_counter() - start) * 1000)

    for i in range(n):
        owner, files = f"probe{i}", {"README.md": b"x"}
        repo = {}
        timed("source_repository", lambda: scm.find_repository(f"probe/a{i}"),
              lambda: repo.setdefault("r", scm.create_repository(RepositorySpec("probe", f"a{i}", "", owner,
                                                                                files=files))))
        timed("deployment_repository", lambda: scm.find_repository(f"probe/d{i}"),
              lambda: scm.create_repository(RepositorySpec("probe", f"d{i}", "", owner, files=files)))
        rid = repo["r"].external_id
        timed("source_webhook", lambda: scm.find_webhook(rid, "http://x/hooks"),
              lambda: scm.create_webhook(WebhookSpec(rid, "http://x/hooks", "s", owner)))
        timed("ci_job", lambda: ci.find_job(f"probe/j{i}"),
              lambda: ci.create_job(JobSpec("probe", f"j{i}", "", owner)))
        timed("image_repository", lambda: reg.find_repository(f"probe/i{i}"),
              lambda: reg.create_repository(f"probe/i{i}", owner))
        pspec = DeliveryProjectSpec(f"probe-p{i}", owner)
        timed("delivery_project", lambda: delivery.find_project(pspec.name), lambda: delivery.ensure_project(pspec))
        for env in ENVIRONMENTS:
            spec = NamespaceSpec(f"probe-n{i}-{env}", owner, {}, "team:probe")
            timed(f"namespace:{env}", lambda: cluster.find_namespace(spec.name),
                  lambda: cluster.ensure_namespace(spec))
            dspec = DeliverySpec(f"probe-d{i}-{env}", owner, "probe", "", "chart", "v.yaml", "probe", spec.name)
            timed(f"delivery_application:{env}", lambda: delivery.find_application(dspec.name),
                  lambda: delivery.ensure_application(dspec))
    return out


def start_workers(n: int, database_url: str, redis_url: str, logdir: Path) -> list[subprocess.Popen]:
    env = {**os.environ, env_name("database_url"): database_url, env_name("redis_url"): redis_url,
           env_name("secret_key"): "benchmark"}
    env.update({env_name(k): str(v) for k, v in FAKE_PROVIDERS.items()})
    procs = []
    for i in range(n):
        with open(logdir / f"worker-{i}.log", "ab") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker", "provisioning"],
                                          cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs


def run(args, database_url: str, redis_url: str, tmp: Path) -> None:
    overrides = {"secret_key": "benchmark", "database_url": database_url, "redis_url": redis_url,
                 "ratelimit_storage_url": "memory://", **FAKE_PROVIDERS}
    app = create_app(overrides)
    world = FakeWorld(redis_url)
    world.reset()
    with app.app_context():
        upgrade()
        dev = Team.by_name("dev")
        user = User(username="bench", email="bench@example.com", password_hash="x", is_admin=True)
        db.session.add_all([user, Project(team_id=dev.id, name="bench")])
        db.session.commit()
        bind_clusters()
        user_id = user.id
    print(*machine(app), sep="\n")
    workers = start_workers(args.workers, database_url, redis_url, tmp)
    try:
        from rq import Worker

        deadline = time.monotonic() + 30
        while len(Worker.all(connection=world.redis)) < args.workers and time.monotonic() < deadline:
            time.sleep(0.05)
        barrier = threading.Barrier(args.apps)

        def create(i: int) -> None:
            barrier.wait()  # all threads go at once; they then share the web process's connection pool
            with app.app_context():
                actor = db.session.get(User, user_id)
                create_application(actor, "dev", "bench", NewApplication(f"app-{i:03d}", "python-web"))

        threads = [threading.Thread(target=create, args=(i,)) for i in range(args.apps)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with app.app_context():
            while True:
                active = db.session.scalar(select(func.count(ProvisioningRun.id)).where(
                    ProvisioningRun.state.in_([RunState.QUEUED, RunState.RUNNING])))
                db.session.rollback()
                if not active:
                    break
                time.sleep(0.05)
            total = time.perf_counter() - start
            runs = list(db.session.scalars(select(ProvisioningRun)))
            states = {r.state.value for r in runs}
            durations: dict[str, list[float]] = {s.name: [] for s in CHAIN}
            for r in runs:
                for s in r.steps:
                    durations[s.name].append((s.finished_at - s.started_at).total_seconds() * 1000)
            apps = db.session.scalar(select(func.count(Application.id)))
            db.engine.dispose()
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(15)

    duplicates = {kind: {n: c for n, c in world.creations_by_name(kind).items() if c > 1} for kind in EXPECTED_KINDS}
    counts = {kind: world.count(kind) for kind in EXPECTED_KINDS}
    alone = provider_times(world, 50)
    print(f"\n{args.apps} applications created at once from {args.apps} threads; {args.workers} workers.")
    print(f"runs: {len(runs)} ({', '.join(sorted(states))}); applications: {apps}")
    print(f"total, first create to last run finished: {total:.2f} s "
          f"({total / args.apps * 1000:.0f} ms per application, {len(CHAIN)} steps each)\n")
    print(f"{'step':<24}{'step median':>12}{'step p95':>10}{'providers':>11}{'engine median':>15}")
    overheads = []
    for s in CHAIN:
        med, p95 = statistics.median(durations[s.name]), statistics.quantiles(durations[s.name], n=20)[18]
        prov = statistics.median(alone[s.name])
        overheads.append(med - prov)
        print(f"{s.name:<24}{med:>10.1f}ms{p95:>8.1f}ms{prov:>9.1f}ms{med - prov:>13.1f}ms")
    print(f"\nengine overhead per step, median over steps: {statistics.median(overheads):.1f} ms "
          f"(target < {TARGET_MS:.0f} ms: {'met' if statistics.median(overheads) < TARGET_MS else 'MISSED'})")
    expected = {kind: n if kind in TEAM_SHARED else n * args.apps for kind, n in EXPECTED_KINDS.items()}
    print(f"things in the fake world: {counts} (expected {expected})")
    print(f"duplicates: {sum(len(d) for d in duplicates.values())}")
    print("load:     {:.2f} {:.2f} {:.2f} (1, 5, 15 min, at the end)".format(*os.getloadavg()))
    if counts != expected or any(duplicates.values()) or states != {"succeeded"}:
        raise SystemExit("FAILED: not every application was provisioned exactly once")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sqlite", action="store_true", help="use a SQLite file instead of PostgreSQL")
    args = parser.parse_args()
    with servers(args.sqlite) as (url, redis_url, tmp):
        run(args, url, redis_url, tmp)


if __name__ == "__main__":
    main()
