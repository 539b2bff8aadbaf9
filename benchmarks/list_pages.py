"""Server time of the list pages with 10,000 applications, for the README.

    .venv/bin/python -m benchmarks.list_pages [--requests 200] [--sqlite]

Starts throwaway PostgreSQL and Redis servers (testbed.services), migrates a new
database, bulk-seeds 7 teams, 200 projects and 10,000 applications (7,000 in
team dev), then times the pages through the Flask test client (no network) as
a dev member and as an admin, next to the naive way of paginating in Python.
Target (issue): p95 under 50 ms on PostgreSQL for /, /apps and /apps?q=.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from argon2 import PasswordHasher
from flask_login import FlaskLoginClient
from flask_migrate import upgrade
from sqlalchemy import insert, select, text
from sqlalchemy.orm import joinedload

from benchmarks.report import machine, row, servers
from portal import create_app
from portal.extensions import db
from portal.models import Application, Membership, MembershipStatus, Project, Role, Team, User
from portal.services.access import visible_team_ids
from portal.services.applications import list_applications
from portal.services.listing import Page
from portal.services.stacks import STACKS

WORDS = ("api billing cart catalog checkout search store storage history ledger mail notify auth gateway "
         "report invoice order stock price media image video upload export import sync queue cache feed "
         "profile account session admin metrics audit backup config deploy portal web mobile data etl "
         "stream event partner vendor shipping tax loyalty review rating chat support ticket wiki docs "
         "booking calendar").split()
EXTRA_TEAMS = ("data", "mobile", "platform", "security", "web")
# Projects and applications per team: most in dev, so that a dev member sees thousands.
PROJECTS = {"dev": 110, "ops": 30, "data": 15, "mobile": 15, "platform": 10, "security": 10, "web": 10}
APPLICATIONS = {"dev": 7000, "ops": 1200, "data": 600, "mobile": 500, "platform": 300, "security": 200, "web": 200}
TARGET_MS = 50.0


def seed(rng: random.Random) -> dict:
    """Bulk-insert teams, users, projects and applications; return the ids and names the checks need."""
    now = datetime.now(timezone.utc)
    ago = lambda days: now - timedelta(days=rng.uniform(0, days), seconds=rng.randrange(86400))  # noqa: E731
    db.session.execute(insert(Team.__table__), [
        {"name": t, "display_name": t.capitalize(), "created_at": now} for t in EXTRA_TEAMS])
    teams = dict(db.session.execute(select(Team.name, Team.id)).all())
    pw = PasswordHasher().hash("benchmark password")
    users = [{"username": "devmember", "is_admin": False}, {"username": "theadmin", "is_admin": True}]
    users += [{"username": f"user{i}", "is_admin": False} for i in range(40)]
    db.session.execute(insert(User.__table__), [
        {**u, "email": f"{u['username']}@example.com", "password_hash": pw, "created_at": ago(700)} for u in users])
    user_ids = dict(db.session.execute(select(User.username, User.id)).all())
    memberships = [{"user_id": user_ids["devmember"], "team_id": teams["dev"], "role": Role.MEMBER}]
    memberships += [{"user_id": user_ids[f"user{i}"], "team_id": teams[rng.choice(list(PROJECTS))],
                     "role": rng.choice(list(Role))} for i in range(40)]
    db.session.execute(insert(Membership.__table__), [
        {**m, "status": MembershipStatus.ACTIVE, "created_at": now} for m in memberships])
    creators = [user_ids[f"user{i}"] for i in range(40)]
    projects = []
    for team, count in PROJECTS.items():
        names = set()
        while len(names) < count:
            names.add("-".join(rng.sample(WORDS, 2)))
        projects += [{"team_id": teams[team], "name": n, "description": f"The {n.replace('-', ' ')} project.",
                      "created_by_id": rng.choice(creators), "created_at": ago(720)} for n in sorted(names)]
    db.session.execute(insert(Project.__table__), projects)
    by_team: dict[int, list[int]] = {}
    for pid, tid in db.session.execute(select(Project.id, Project.team_id)):
        by_team.setdefault(tid, []).append(pid)
    apps, taken = [], set()
    for team, count in APPLICATIONS.items():
        pids = by_team[teams[team]]
        weights = [1 / (i + 1) for i in range(len(pids))]  # a few big projects, many small ones
        for pid in rng.choices(pids, weights, k=count):
            name = "-".join(rng.sample(WORDS, rng.choice((2, 2, 3))))
            while (pid, name) in taken:
                name = f"{name[:36]}-{rng.randrange(100)}"
            taken.add((pid, name))
            apps.append({"project_id": pid, "team_id": teams[team], "name": name, "template": rng.choice(STACKS).key,
                         "description": f"Serves {rng.choice(WORDS)} for {rng.choice(WORDS)}.",
                         "created_by_id": rng.choice(creators), "created_at": ago(365)})
    db.session.execute(insert(Application.__table__), apps)
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("ANALYZE"))  # as autovacuum would have done on a live database
        db.session.commit()
    return {"teams": teams, "users": user_ids, "apps": apps, "projects": projects}


def expected(data: dict, username: str, q: str) -> dict:
    """What each page must show this user, computed from the seeded rows."""
    dev = data["teams"]["dev"]
    mine = lambda rows: [r for r in rows if username == "theadmin" or r["team_id"] == dev]  # noqa: E731
    apps = mine(data["apps"])
    return {"apps": len(apps), "projects": len(mine(data["projects"])),
            "matching": sum(q.lower() in a["name"] for a in apps),
            "dashboard": f"{PROJECTS['dev']} projects · {APPLICATIONS['dev']} applications"}


def pages(exp: dict, q: str) -> list[tuple[str, str, dict, list[str]]]:
    """(label, URL, headers, texts the answer must contain) of each timed page."""
    htmx, filtered = {"HX-Request": "true"}, f"/apps?q={quote(q)}"
    return [
        ("dashboard /", "/", {}, [exp["dashboard"]]),
        ("/apps", "/apps", {}, [f"{exp['apps']} in all · page 1 of", '<tr id="app-']),
        (f"/apps?q={q}", filtered, {}, [f"{exp['matching']} in all · page 1 of", '<tr id="app-']),
        ("/apps?page=200", "/apps?page=200", {}, [f"{exp['apps']} in all · page 200 of", '<tr id="app-']),
        ("/projects", "/projects", {}, [f"{exp['projects']} in all · page 1 of", '<tr id="project-']),
        (f"/apps?q={q} (HTMX)", filtered, htmx, [f"{exp['matching']} in all", '<tr id="app-']),
    ]


def naive_list(user: User, q: str, page: int, per_page: int) -> Page[Application]:
    """The list as it is often first written: load all the user's applications, filter and slice in Python."""
    query = Application.query.options(joinedload(Application.project), joinedload(Application.team))
    visible = visible_team_ids(user)
    if visible is not None:
        query = query.filter(Application.team_id.in_(visible))
    apps = [a for a in query.all() if q.lower() in a.name.lower()]
    apps.sort(key=lambda a: (a.team.name, a.project.name, a.name))
    return Page(apps[(page - 1) * per_page:page * per_page], page, per_page, len(apps))


def timed(fn, n: int, warmup: int, check) -> list[float]:
    for _ in range(warmup):
        check(fn())
    times, results = [], []
    for _ in range(n):
        start = time.perf_counter()
        results.append(fn())
        times.append((time.perf_counter() - start) * 1000)
    for r in results:  # outside the timed region
        check(r)
    return times


def check_page(texts: list[str], htmx: bool):
    def check(resp) -> None:
        body = resp.get_data(as_text=True)
        assert resp.status_code == 200, f"status {resp.status_code}"
        missing = [t for t in texts if t not in body]
        assert not missing, f"answer lacks {missing}"
        assert ("<html" in body) != htmx, "fragment/page mix-up"
    return check


def run(args, database_url: str, redis_url: str) -> None:
    app = create_app({"testing": False, "secret_key": "benchmark", "database_url": database_url,
                      "redis_url": redis_url, "ratelimit_storage_url": "memory://"})
    app.test_client_class = FlaskLoginClient
    per_page = app.config["PORTAL"].page_size
    with app.app_context():
        upgrade()
        start = time.perf_counter()
        data = seed(random.Random(20261128))
        seeded = time.perf_counter() - start
        clients = {u: app.test_client(user=db.session.get(User, data["users"][u])) for u in ("devmember", "theadmin")}
        db.session.remove()
    print(*machine(app), sep="\n")
    print(f"data:     {len(data['apps'])} applications, {len(data['projects'])} projects, {len(data['teams'])} teams;"
          f" seeded in {seeded:.1f} s. {args.requests} timed requests per row after {args.warmup} warm-up ones.\n")
    print(f"{'user':<11} {'page (server time, ms)':<42}{'median':>8}{'p95':>8}{'p99':>8}{'min':>8}{'max':>8}")
    p95 = {}  # of the pages with a target
    for username, client in clients.items():
        exp = expected(data, username, args.query)
        for label, url, headers, texts in pages(exp, args.query):
            times = timed(lambda: client.get(url, headers=headers), args.requests, args.warmup,
                          check_page(texts, bool(headers)))
            if label in ("dashboard /", "/apps", f"/apps?q={args.query}"):
                p95[username, label] = statistics.quantiles(times, n=100, method="inclusive")[94]
            print(row(username, label, times))

    print("\nThe same list without HTTP: SQL pagination (the service) against loading all and slicing in Python.")
    for username, uid in ((u, data["users"][u]) for u in clients):
        exp = expected(data, username, args.query)
        for q, total in (("", exp["apps"]), (args.query, exp["matching"])):
            for name, lister in (("service", list_applications), ("naive", naive_list)):
                def call(lister=lister, q=q):
                    with app.app_context():
                        result = lister(db.session.get(User, uid), q=q, page=1, per_page=per_page)
                        return result.total, len(result.items)

                def check(result, total=total) -> None:
                    assert result == (total, min(per_page, total)), f"{result} != {total} rows"

                label = f"{name}, {f'q={q}' if q else 'first page'}"
                print(row(username, label, timed(call, args.requests, args.warmup, check)))

    print("\nload:     {:.2f} {:.2f} {:.2f} (1, 5, 15 min, at the end)".format(*os.getloadavg()))
    if database_url.startswith("postgresql"):
        print(f"Target: p95 < {TARGET_MS:.0f} ms on PostgreSQL for /, /apps and /apps?q=.")
        for (username, label), value in p95.items():
            print(f"  {username:<11} {label:<20} p95 {value:6.1f} ms  {'met' if value < TARGET_MS else 'MISSED'}")
    with app.app_context():
        db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests before each page (default 20)")
    parser.add_argument("--query", default="stor", help="substring for the filtered list (default 'stor')")
    parser.add_argument("--sqlite", action="store_true", help="use a SQLite file instead of PostgreSQL")
    args = parser.parse_args()
    with servers(args.sqlite) as (url, redis_url, tmp):
        run(args, url, redis_url)


if __name__ == "__main__":
    main()
