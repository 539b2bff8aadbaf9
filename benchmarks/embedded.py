"""From "Create application" to a Running, Ready deployment of the template's first commit, in the embedded mode.

    make run                                   # in another terminal: the portal with the testbed
    .venv/bin/python -m benchmarks.embedded --url http://127.0.0.1:5000 --apps 5

Signs up a fresh user of team dev, creates a project, then creates applications one after the other through
the pages (as a browser does, CSRF token included) and waits for each to be deployed Healthy with every pod
Ready in the dev cluster. The phases are read from the portal's database afterwards (the same
PORTAL_DATABASE_URL as the running portal): provisioning steps, the wait before the build, the build (git
checkout, tests and image build in the base image, push), the commit to the deployment repository, and the
deployment (helm render, server-side apply, rollout). What is left between them is the portal's own share:
queueing, polling and bookkeeping.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import uuid

import requests
from sqlalchemy import select

from benchmarks.report import machine


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"', html).group(1)


def _seconds(later, earlier) -> float:
    return (later - earlier).total_seconds()


def drive(url: str, apps: int, timeout: float) -> tuple[str, list[tuple[str, float]]]:
    s = requests.Session()
    user = f"bench{uuid.uuid4().hex[:6]}"
    s.post(f"{url}/signup", data={"csrf_token": _csrf(s.get(f"{url}/signup").text), "username": user,
                                  "email": f"{user}@example.org", "password": "benchmark-password", "team": "dev"})
    project = f"p{uuid.uuid4().hex[:6]}"
    s.post(f"{url}/projects", data={"csrf_token": _csrf(s.get(f"{url}/projects/new").text), "team": "dev",
                                    "name": project})
    results = []
    for n in range(apps):
        name = f"app{n}"
        token = _csrf(s.get(f"{url}/t/dev/{project}/apps/new").text)
        start = time.monotonic()
        resp = s.post(f"{url}/t/dev/{project}/apps", data={"csrf_token": token, "name": name, "template": "python-web"})
        resp.raise_for_status()
        while time.monotonic() - start < timeout:
            panel = s.get(f"{url}/t/dev/{project}/{name}/deployments", headers={"HX-Request": "true"}).text
            if re.search(r'id="environment-dev".*?badge state-healthy', panel, re.S):
                break
            if re.search(r'id="environment-dev".*?badge state-(failed|degraded|timed_out)', panel, re.S):
                raise SystemExit(f"{name}: the deployment failed:\n{panel}")
            time.sleep(0.2)
        else:
            raise SystemExit(f"{name}: not deployed within {timeout} s")
        results.append((name, time.monotonic() - start))
        print(f"{project}/{name}: Running and Ready {results[-1][1]:.1f} s after Create", flush=True)
    return project, results


def phases(project: str, names: list[str]) -> list[dict[str, float]]:
    from portal import create_app
    from portal.models import Application, Build, Deployment, Project, ProvisioningRun

    rows = []
    with create_app().app_context():
        from portal.extensions import db

        for name in names:
            app = db.session.scalar(select(Application).join(Project, Application.project_id == Project.id)
                                    .where(Project.name == project, Application.name == name))
            run = db.session.scalar(select(ProvisioningRun).where(ProvisioningRun.application_id == app.id)
                                    .order_by(ProvisioningRun.id))
            build = db.session.scalar(select(Build).where(Build.application_id == app.id).order_by(Build.id))
            deployment = db.session.scalar(select(Deployment).where(Deployment.application_id == app.id)
                                           .order_by(Deployment.id))
            steps = sum(s.duration_seconds or 0 for s in run.steps)
            row = {
                "provisioning steps": steps,
                "provisioning bookkeeping": _seconds(run.finished_at, run.created_at) - steps,
                "wait for the build": _seconds(build.started_at, run.finished_at),
                "build (checkout, tests, image, push)": _seconds(build.finished_at, build.started_at),
                "commit of the image tag": _seconds(deployment.created_at, build.finished_at),
                "deploy (helm, apply, rollout)": _seconds(deployment.healthy_at, deployment.created_at),
                "total": _seconds(deployment.healthy_at, app.created_at),
            }
            rows.append(row)
            for step in run.steps:
                row[f"  step {step.name}"] = step.duration_seconds or 0
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--apps", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    print("\n".join(machine()))
    project, results = drive(args.url.rstrip("/"), args.apps, args.timeout)
    rows = phases(project, [name for name, _ in results])
    print(f"\n{'phase (seconds)':<44}{'median':>8}{'min':>8}{'max':>8}")
    for key in rows[0]:
        values = [r[key] for r in rows]
        print(f"{key:<44}{statistics.median(values):8.2f}{min(values):8.2f}{max(values):8.2f}")
    overhead = [r["provisioning bookkeeping"] + r["wait for the build"] + r["commit of the image tag"] for r in rows]
    print(f"{'portal overhead between the phases':<44}{statistics.median(overhead):8.2f}{min(overhead):8.2f}"
          f"{max(overhead):8.2f}")
    wall = [t for _, t in results]
    print(f"{'Create to Running, Ready (client clock)':<44}{statistics.median(wall):8.2f}{min(wall):8.2f}"
          f"{max(wall):8.2f}")


if __name__ == "__main__":
    main()
