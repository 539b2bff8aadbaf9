"""The built-in Git host: the SourceControl adapter on local bare repositories, provisioning with it, and Git's
smart HTTP protocol served by the portal, driven by the real ``git`` command over real HTTP.

The portal runs in a live server (werkzeug, in a thread) on a free port; jobs
run inline, so a push to ``main`` records a build, which ends in error as no
CI server is configured.
"""

from __future__ import annotations

import inspect
import os
import subprocess
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from integrations.builtin_git import BuiltinGit
from integrations.errors import Conflict, InvalidRequest, NotFound
from integrations.scm import RepositorySpec, SourceControl, WebhookSpec
from portal.config import Settings
from portal.extensions import db
from portal.models import ApplicationResource, Build, BuildState, RunState, StepState
from portal.services import tokens
from portal.services.applications import NewApplication, create_application
from portal.services.provisioning.runs import reconcile, request_delete
from tests.factories import ProjectFactory, UserFactory
from tests.provisioning_support import FAST, app_named, latest_run

GIT = os.environ.get("GIT", "/usr/bin/git")
BUILTIN = "integrations.builtin_git:BuiltinGit.from_settings"
OWNER = "app-7f3a"
BASE_URL = "http://portal.test"


def _git_binary() -> str:
    if not os.access(GIT, os.X_OK):
        pytest.fail(f"git is missing at {GIT}: install it with `apt-get install git`, or set GIT to its path.",
                    pytrace=False)
    return GIT


def run_git(*args: str, cwd: Path | None = None, home: Path, check: bool = True) -> subprocess.CompletedProcess:
    """The real git, with no user or system configuration and never a prompt."""
    db.session.commit()  # the live server writes to the database meanwhile: hold no transaction open
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
           "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false"}
    done = subprocess.run([_git_binary(), "-c", "user.name=Ada Lovelace", "-c", "user.email=ada@example.com",
                           "-c", "init.defaultBranch=main", "-c", "credential.helper=", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    """Every file of a repository with its size and modification time: any write shows."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


def spec(name: str = "shop-cart", owner: str = OWNER, **files: bytes) -> RepositorySpec:
    return RepositorySpec(group="dev", name=name, description="The shop's cart", owner=owner, files=files,
                          commit_message="Start from the template")


# --- the adapter's contract ----------------------------------------------------------------------------

@pytest.fixture
def host(tmp_path) -> BuiltinGit:
    return BuiltinGit(tmp_path / "git", BASE_URL + "/")


def log_of(host: BuiltinGit, external_id: str, ref: str = "main") -> list[str]:
    done = subprocess.run([_git_binary(), "--git-dir", str(host.repository_path(external_id)), "log",
                           "--format=%H %an <%ae> %s", ref], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_it_implements_source_control_with_the_same_signatures(host):
    assert isinstance(host, SourceControl)
    assert host.system == "builtin-git"
    methods = [n for n, v in vars(SourceControl).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        assert str(inspect.signature(getattr(BuiltinGit, name))) == \
            str(inspect.signature(getattr(SourceControl, name))), name


def test_from_settings_uses_the_git_root_and_the_public_url(tmp_path):
    settings = Settings().replace({"git_root": str(tmp_path), "public_url": "https://p.example/"})
    built = BuiltinGit.from_settings(settings)
    assert built.root == tmp_path
    assert built.clone_url("dev/x") == "https://p.example/git/dev/x.git"


def test_create_puts_every_file_in_one_commit_and_marks_the_owner(host):
    files = {"README.md": b"# Cart\n", "chart/templates/deployment.yaml": b"kind: Deployment\n",
             "bin/blob": bytes(range(256))}
    created = host.create_repository(RepositorySpec(group="dev", name="shop-cart", description="The shop's cart",
                                                    owner=OWNER, files=files, commit_message="Start here"))
    assert created.external_id == "dev/shop-cart" and created.kind == "repository" and created.owner == OWNER
    assert created.url == created.attributes["http_url"] == f"{BASE_URL}/git/dev/shop-cart.git"
    assert created.attributes["default_branch"] == "main"
    for path, content in files.items():
        assert host.read_file("dev/shop-cart", "main", path) == content
    history = log_of(host, "dev/shop-cart")
    assert len(history) == 1 and history[0].endswith("Developer Portal <portal@localhost> Start here")
    assert host.find_repository("dev/shop-cart") == created
    path = host.repository_path("dev/shop-cart")
    assert path == host.root / "dev" / "shop-cart.git"
    assert (path / "description").read_text() == "The shop's cart"
    subprocess.run([_git_binary(), "--git-dir", str(path), "fsck", "--strict"], check=True, capture_output=True)
    assert [p.name for p in path.parent.iterdir()] == ["shop-cart.git"]  # no staging folder left behind


def test_a_repository_without_the_marker_has_no_owner_and_a_taken_name_is_refused(host):
    path = host.repository_path("dev/shop-cart")
    path.parent.mkdir(parents=True)
    subprocess.run([_git_binary(), "init", "--bare", "-q", str(path)], check=True)
    found = host.find_repository("dev/shop-cart")
    assert found is not None and found.owner is None
    with pytest.raises(Conflict):
        host.create_repository(spec())
    assert host.find_repository("dev/elsewhere") is None


def test_commit_files_adds_one_commit_on_top_of_the_branch(host):
    host.create_repository(spec(**{"README.md": b"one\n", "keep.txt": b"kept\n"}))
    first = log_of(host, "dev/shop-cart")[0].split()[0]
    commit = host.commit_files("dev/shop-cart", "main", {"README.md": b"two\n", "values/dev.yaml": b"tag: abc\n"},
                               "Deploy abc")
    assert commit.author == "Developer Portal" and commit.message == "Deploy abc"
    history = log_of(host, "dev/shop-cart")
    assert [line.split()[0] for line in history] == [commit.sha, first]
    assert host.read_file("dev/shop-cart", "main", "README.md") == b"two\n"
    assert host.read_file("dev/shop-cart", "main", "values/dev.yaml") == b"tag: abc\n"
    assert host.read_file("dev/shop-cart", "main", "keep.txt") == b"kept\n"
    assert host.read_file("dev/shop-cart", first, "README.md") == b"one\n"  # by commit SHA
    changed = subprocess.run([_git_binary(), "--git-dir", str(host.repository_path("dev/shop-cart")), "show",
                              "--name-status", "--format=", commit.sha], capture_output=True, text=True, check=True)
    assert changed.stdout.split() == ["M", "README.md", "A", "values/dev.yaml"]
    # A new branch starts from the default branch.
    side = host.commit_files("dev/shop-cart", "feature", {"new.txt": b"n"}, "On a branch")
    assert log_of(host, "dev/shop-cart", "feature")[1].split()[0] == commit.sha
    assert host.read_file("dev/shop-cart", "feature", "keep.txt") == b"kept\n"
    assert side.sha != commit.sha
    with pytest.raises(InvalidRequest):
        host.commit_files("dev/shop-cart", "main", {}, "Nothing")
    with pytest.raises(InvalidRequest):
        host.commit_files("dev/shop-cart", "main", {"../escape": b"x"}, "Out")


def test_read_file_says_not_found_for_a_missing_path_ref_or_repository(host):
    host.create_repository(spec(**{"README.md": b"x"}))
    host.commit_files("dev/shop-cart", "main", {"chart/values.yaml": b"v"}, "Chart")
    for ref, path in [("main", "missing.txt"), ("main", "chart"), ("main", "README.md/deeper"),
                      ("no-such-branch", "README.md"), ("0" * 40, "README.md")]:
        with pytest.raises(NotFound):
            host.read_file("dev/shop-cart", ref, path)
    with pytest.raises(NotFound):
        host.read_file("dev/nothing", "main", "README.md")


def test_delete_removes_the_repository_then_says_not_found(host):
    host.create_repository(spec(**{"README.md": b"x"}))
    host.delete_repository("dev/shop-cart")
    assert not host.repository_path("dev/shop-cart").exists()
    assert host.find_repository("dev/shop-cart") is None
    assert list(host.repository_path("dev/shop-cart").parent.iterdir()) == []
    with pytest.raises(NotFound):
        host.delete_repository("dev/shop-cart")
    with pytest.raises(NotFound):
        host.read_file("dev/shop-cart", "main", "README.md")
    with pytest.raises(NotFound):
        host.commit_files("dev/shop-cart", "main", {"a": b"b"}, "Gone")


def test_webhooks_are_recorded_found_and_removed(host):
    host.create_repository(spec())
    url = "http://portal.test/hooks/gitlab"
    assert host.find_webhook("dev/shop-cart", url) is None
    hook = host.create_webhook(WebhookSpec(repository_id="dev/shop-cart", url=url, secret="s3cret", owner=OWNER))
    assert hook.kind == "webhook" and hook.owner == OWNER and hook.name == url
    assert hook.attributes["repository_id"] == "dev/shop-cart"
    assert host.find_webhook("dev/shop-cart", url) == hook
    assert host.find_webhook("dev/shop-cart", "http://elsewhere.test/") is None
    assert "s3cret" not in (host.repository_path("dev/shop-cart") / "config").read_text()
    with pytest.raises(Conflict):
        host.create_webhook(WebhookSpec(repository_id="dev/shop-cart", url=url, secret="s", owner="someone"))
    host.delete_webhook("dev/shop-cart", hook.external_id)
    assert host.find_webhook("dev/shop-cart", url) is None
    assert host.find_repository("dev/shop-cart").owner == OWNER  # the repository's own marker stays
    with pytest.raises(NotFound):
        host.delete_webhook("dev/shop-cart", hook.external_id)
    with pytest.raises(NotFound):
        host.create_webhook(WebhookSpec(repository_id="dev/nothing", url=url, secret="s", owner=OWNER))


@pytest.mark.parametrize("external_id", ["../etc", "dev/../x", "dev/.hidden", "Dev/x", "dev", "dev/x/y", "/dev/x"])
def test_names_that_could_leave_the_root_are_refused(host, external_id):
    with pytest.raises(InvalidRequest):
        host.repository_path(external_id)
    with pytest.raises(InvalidRequest):
        host.find_repository(external_id)


# --- the portal with the built-in host --------------------------------------------------------------------

@pytest.fixture
def app_overrides(tmp_path):
    return {"scm": BUILTIN, "git_root": str(tmp_path / "git"), **FAST}


@pytest.fixture
def git_root(app) -> Path:
    return Path(app.config["PORTAL"].git_root)


@pytest.fixture
def cart(app, dev_member):
    """dev/shop/cart provisioned with the built-in host: source and deployment repositories, the webhook."""
    ProjectFactory(name="shop")
    create_application(dev_member, "dev", "shop", NewApplication("cart", "python-web"))
    return app_named("cart")


def test_provisioning_creates_both_repositories_adopts_them_again_and_deletes_them(
        cart, dev_member, dev_maintainer, git_root):
    run = latest_run(cart.id)
    assert run.state == RunState.SUCCEEDED
    states = {s.name: s.state for s in run.steps}
    assert states["source_repository"] == states["deployment_repository"] == states["source_webhook"] == \
        StepState.SUCCEEDED
    resources = {r.step: r for r in db.session.scalars(select(ApplicationResource))}
    assert resources["source_repository"].external_id == "dev/shop-cart"
    assert resources["source_repository"].system == "builtin-git"
    assert resources["deployment_repository"].external_id == "dev/shop-cart-deploy"
    assert resources["source_webhook"].attributes["repository_id"] == "dev/shop-cart"
    for name in ("shop-cart", "shop-cart-deploy"):
        assert (git_root / "dev" / f"{name}.git" / "HEAD").is_file()
    host = BuiltinGit(git_root, BASE_URL)
    assert host.find_repository("dev/shop-cart").owner == cart.uid
    assert b"kaniko" in host.read_file("dev/shop-cart", "main", "Jenkinsfile")
    assert b"name:" in host.read_file("dev/shop-cart-deploy", "main", "chart/Chart.yaml")
    assert len(log_of(host, "dev/shop-cart")) == len(log_of(host, "dev/shop-cart-deploy")) == 1

    reconcile(dev_member, cart)
    again = latest_run(cart.id)
    assert again.state == RunState.SUCCEEDED
    scm_steps = [s for s in again.steps if s.name in ("source_repository", "deployment_repository", "source_webhook")]
    assert all(s.state == StepState.SUCCEEDED and s.refs.get("adopted") for s in scm_steps)
    assert len(log_of(host, "dev/shop-cart")) == 1  # found, not made again

    request_delete(dev_maintainer, cart)
    assert not (git_root / "dev" / "shop-cart.git").exists()
    assert not (git_root / "dev" / "shop-cart-deploy.git").exists()




@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def repo_url(base: str, username: str, secret: str, repository: str = "shop-cart", team: str = "dev") -> str:
    host = base.removeprefix("http://")
    return f"http://{username}:{secret}@{host}/git/{team}/{repository}.git"


def token_for(user, name: str = "laptop", scopes: tuple[str, ...] = ("git",)) -> str:
    return tokens.create_token(user, name, scopes).secret


def builds() -> list[Build]:
    db.session.commit()
    db.session.expire_all()
    return list(db.session.scalars(select(Build).order_by(Build.number)))


def clone(base, user, secret, home, repository="shop-cart", where="work") -> Path:
    target = home / where
    run_git("clone", "-q", repo_url(base, user.username, secret, repository), str(target), home=home)
    return target


def commit(work: Path, home: Path, path: str, content: str, message: str) -> str:
    (work / path).write_text(content)
    run_git("add", path, cwd=work, home=home)
    run_git("commit", "-q", "-m", message, cwd=work, home=home)
    return run_git("rev-parse", "HEAD", cwd=work, home=home).stdout.strip()


def test_a_member_clones_and_a_push_to_main_starts_a_build(cart, dev_member, live_server, home, git_root):
    secret = token_for(dev_member)
    work = clone(live_server, dev_member, secret, home)
    assert (work / "Jenkinsfile").is_file() and (work / "portal.yaml").is_file()
    sha = commit(work, home, "hello.txt", "Hello\n", "Say hello\n\nWith a body.")
    pushed = run_git("push", "origin", "main", cwd=work, home=home)
    assert f"portal: build #1 of shop/cart queued for {sha[:8]}." in pushed.stderr
    [build] = builds()
    assert build.application_id == cart.id and build.number == 1
    assert (build.commit_sha, build.commit_author, build.branch, build.pushed_by) == \
        (sha, "Ada Lovelace", "main", "devmember")
    assert build.commit_message == "Say hello\n\nWith a body."
    assert build.state == BuildState.ERROR and "No CI server is configured" in build.error
    host = BuiltinGit(git_root, BASE_URL)
    assert host.read_file("dev/shop-cart", "main", "hello.txt") == b"Hello\n"
    token = db.session.scalar(select(tokens.PersonalAccessToken).where(tokens.PersonalAccessToken.name == "laptop"))
    assert token.last_used_at is not None


def test_pushes_to_another_branch_or_to_the_deployment_repository_start_nothing(
        cart, dev_member, live_server, home):
    secret = token_for(dev_member)
    work = clone(live_server, dev_member, secret, home)
    commit(work, home, "wip.txt", "wip\n", "Work in progress")
    pushed = run_git("push", "origin", "HEAD:refs/heads/feature", cwd=work, home=home)
    assert "portal:" not in pushed.stderr
    deploy = clone(live_server, dev_member, secret, home, "shop-cart-deploy", "deploy")
    commit(deploy, home, "values-dev.yaml", "replicas: 2\n", "Two replicas")
    run_git("push", "origin", "main", cwd=deploy, home=home)
    # Deleting the default branch builds nothing either.
    run_git("push", "origin", ":feature", cwd=work, home=home)
    assert builds() == []


def test_a_big_push_goes_through_chunked_and_is_built(cart, dev_member, live_server, home, git_root):
    # Above git's 1 MiB http.postBuffer the request body is sent with chunked transfer encoding.
    secret = token_for(dev_member)
    work = clone(live_server, dev_member, secret, home)
    blob = os.urandom(3 * 1024 * 1024)
    (work / "big.bin").write_bytes(blob)
    run_git("add", "big.bin", cwd=work, home=home)
    run_git("commit", "-q", "-m", "A big file", cwd=work, home=home)
    run_git("push", "origin", "main", cwd=work, home=home)
    assert BuiltinGit(git_root, BASE_URL).read_file("dev/shop-cart", "main", "big.bin") == blob
    assert [b.commit_message for b in builds()] == ["A big file"]


def test_admins_may_clone_and_push(cart, admin, live_server, home):
    secret = token_for(admin)
    work = clone(live_server, admin, secret, home)
    commit(work, home, "admin.txt", "a\n", "From an admin")
    run_git("push", "origin", "main", cwd=work, home=home)
    assert [(b.commit_message, b.pushed_by) for b in builds()] == [("From an admin", "theadmin")]


@pytest.fixture
def ready_push(cart, dev_member, live_server, home, git_root):
    """A clone by a member with a commit ready to push, and a snapshot of the repository before it."""
    work = clone(live_server, dev_member, token_for(dev_member, "setup"), home)
    commit(work, home, "refused.txt", "no\n", "Should never land")
    repository = git_root / "dev" / "shop-cart.git"
    return work, repository, snapshot(repository)


def _push_as(work: Path, home: Path, url: str) -> subprocess.CompletedProcess:
    return run_git("push", url, "main", cwd=work, home=home, check=False)


def test_a_wrong_token_is_refused_with_401_and_writes_nothing(ready_push, dev_member, live_server, home):
    work, repository, before = ready_push
    done = _push_as(work, home, repo_url(live_server, dev_member.username, "pat_wrong"))
    assert done.returncode != 0 and "Authentication failed" in done.stderr
    # The right token with someone else's username fails the same way.
    secret = token_for(UserFactory(username="stranger"))
    done = _push_as(work, home, repo_url(live_server, dev_member.username, secret))
    assert done.returncode != 0 and "Authentication failed" in done.stderr
    assert snapshot(repository) == before
    assert builds() == []


def test_a_revoked_token_is_refused_with_401(ready_push, dev_member, live_server, home):
    work, repository, before = ready_push
    new = tokens.create_token(dev_member, "soon revoked")
    tokens.revoke_token(dev_member, new.token.id)
    done = _push_as(work, home, repo_url(live_server, dev_member.username, new.secret))
    assert done.returncode != 0 and "Authentication failed" in done.stderr
    resp = requests.get(f"{live_server}/git/dev/shop-cart.git/info/refs?service=git-upload-pack",
                        auth=(dev_member.username, new.secret), timeout=30)
    assert resp.status_code == 401
    assert snapshot(repository) == before


def test_a_token_without_the_git_scope_is_refused(cart, dev_member, live_server):
    secret = token_for(dev_member, "api only", ("read",))
    resp = requests.get(f"{live_server}/git/dev/shop-cart.git/info/refs?service=git-upload-pack",
                        auth=(dev_member.username, secret), timeout=30)
    assert resp.status_code == 401


def test_another_teams_member_is_refused_with_403_and_writes_nothing(ready_push, ops_member, live_server, home):
    work, repository, before = ready_push
    secret = token_for(ops_member)
    done = run_git("clone", repo_url(live_server, ops_member.username, secret), str(home / "theirs"),
                   home=home, check=False)
    assert done.returncode != 0 and "403" in done.stderr
    done = _push_as(work, home, repo_url(live_server, ops_member.username, secret))
    assert done.returncode != 0 and "403" in done.stderr
    # Even a request straight to the push service, past the ref advertisement, is refused before reading it.
    resp = requests.post(f"{live_server}/git/dev/shop-cart.git/git-receive-pack", data=b"0000",
                         headers={"Content-Type": "application/x-git-receive-pack-request"},
                         auth=(ops_member.username, secret), timeout=30)
    assert resp.status_code == 403 and resp.headers["Content-Type"].startswith("text/plain")
    assert snapshot(repository) == before
    assert builds() == []


def test_a_member_whose_membership_waits_for_approval_is_refused(cart, live_server):
    from portal.models import MembershipStatus
    from tests.factories import MembershipFactory

    waiting = UserFactory(username="waiting")
    MembershipFactory(user=waiting, status=MembershipStatus.PENDING)
    resp = requests.get(f"{live_server}/git/dev/shop-cart.git/info/refs?service=git-upload-pack",
                        auth=("waiting", token_for(waiting)), timeout=30)
    assert resp.status_code == 403


def test_anonymous_clone_and_push_get_401_with_a_basic_challenge(ready_push, live_server, home):
    work, repository, before = ready_push
    done = run_git("clone", f"{live_server}/git/dev/shop-cart.git", str(home / "anon"), home=home, check=False)
    assert done.returncode != 0 and not (home / "anon").exists()
    done = _push_as(work, home, f"{live_server}/git/dev/shop-cart.git")
    assert done.returncode != 0
    for method, path in [("GET", "info/refs?service=git-upload-pack"), ("GET", "info/refs?service=git-receive-pack"),
                         ("POST", "git-upload-pack"), ("POST", "git-receive-pack")]:
        resp = requests.request(method, f"{live_server}/git/dev/shop-cart.git/{path}", timeout=30,
                                headers={"Content-Type": f"application/x-{path.split('?')[0]}-request"})
        assert resp.status_code == 401, (method, path)
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="portal git"'
        assert "Set-Cookie" not in resp.headers
    assert snapshot(repository) == before


def test_answers_carry_no_session_cookie_and_unknown_repositories_are_404(cart, dev_member, ops_member, live_server):
    secret = token_for(dev_member)
    resp = requests.get(f"{live_server}/git/dev/shop-cart.git/info/refs?service=git-upload-pack",
                        auth=(dev_member.username, secret), timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    assert "Set-Cookie" not in resp.headers and b"refs/heads/main" in resp.content
    missing = requests.get(f"{live_server}/git/dev/nothing.git/info/refs?service=git-upload-pack",
                           auth=(dev_member.username, secret), timeout=30)
    assert missing.status_code == 404
    # For someone outside the team, a missing repository and an existing one look the same.
    outsider = (ops_member.username, token_for(ops_member))
    for name in ("nothing", "shop-cart"):
        resp = requests.get(f"{live_server}/git/dev/{name}.git/info/refs?service=git-upload-pack", auth=outsider,
                            timeout=30)
        assert resp.status_code == 403
    bad = requests.get(f"{live_server}/git/dev/..%2Fops.git/info/refs", auth=(dev_member.username, secret),
                       timeout=30)
    assert bad.status_code in (400, 404)


def test_the_route_says_when_the_builtin_host_is_not_in_use(app, dev_member):
    app.config["PORTAL"] = app.config["PORTAL"].replace({"scm": "none"})
    app.extensions.pop("providers", None)
    secret = token_for(dev_member)
    client = app.test_client()
    resp = client.get("/git/dev/shop-cart.git/info/refs?service=git-upload-pack",
                      headers={"Authorization": _basic(dev_member.username, secret)})
    assert resp.status_code == 404 and b"built-in Git host is not in use" in resp.data


def _basic(username: str, secret: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()
