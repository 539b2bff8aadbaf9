"""The portal's image, built for real from the repository's Dockerfile with buildah on the testbed's offline Python
base (no Docker engine, no Docker Hub), then run: its Python imports and creates the app, the one image serves
gunicorn, runs the migrations and an RQ worker by command, as user 10001, with no build tools or wheels left.

About 45 s a build on two cores: pip downloads the wheels each time where the network's proxy sends no caching
headers (pip's cache mount keeps only the wheels it built from sdists); the base image is made once per machine.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from testbed.portal_image import PROJECT_ROOT, build, image_size, inspect, revision
from testbed.process import free_port

# A cold machine also makes the base image first (debootstrap).
pytestmark = pytest.mark.timeout(900)

TAG = "localhost/portal/portal:test"
# The dependencies are most of it (the Kubernetes client alone is 128 MB with its bytecode); a C compiler in the
# final stage (build-essential is some 200 MB) would take it over.
MAX_SIZE = 550e6
BUILD_TOOLS = ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as", "x86_64-linux-gnu-gcc-12")


@pytest.fixture(scope="module")
def portal_image(image_builder, python_base) -> dict:
    """The image built once for this module; buildah's description of it."""
    started = time.monotonic()
    lines: list[str] = []
    build(image_builder, TAG, base=python_base, log=lines.append)
    description = inspect(image_builder, TAG)
    print(f"{TAG}: built in {time.monotonic() - started:.0f} s, {image_size(description) / 1e6:.0f} MB uncompressed")
    description["build_log"] = lines
    return description


@pytest.fixture
def rootfs(image_builder, portal_image):
    """The image's files, seen from outside (as root, whatever the image's user may read)."""
    buildah = [image_builder.buildah, *image_builder._storage]
    container = _check_output([*buildah, "from", TAG]).strip()
    try:
        yield Path(_check_output([*buildah, "mount", container]).strip())
    finally:
        _check_output([*buildah, "umount", container])
        _check_output([*buildah, "rm", container])


def test_the_image_is_labelled_small_and_serves_gunicorn_on_8000_as_user_10001_by_default(portal_image):
    config = portal_image["OCIv1"]["config"]
    assert config["User"] == "10001:10001"  # numeric, for Kubernetes' runAsNonRoot
    assert config["WorkingDir"] == "/app"
    assert config["Cmd"][0] == "gunicorn" and config["Cmd"][-1] == "app:app"
    assert "Entrypoint" not in config  # so that `IMAGE flask --app app worker` runs just that
    assert list(config["ExposedPorts"]) == ["8000/tcp"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["GUNICORN_BIND"] == "0.0.0.0:8000"
    assert "PROMETHEUS_MULTIPROC_DIR" not in env  # for the web server alone, through GUNICORN_PROMETHEUS_DIR
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "portal"
    assert labels["org.opencontainers.image.version"] == "test"
    assert labels["org.opencontainers.image.revision"] == revision() != "unknown"

    size = image_size(portal_image)
    assert size < MAX_SIZE, f"the image is {size / 1e6:.0f} MB, over {MAX_SIZE / 1e6:.0f} MB"
    # The build stage's wheels came from PyPI, none was compiled in the final stage.
    log = "\n".join(portal_image["build_log"])
    assert "Saved /wheels/flask-3.1.3-py3-none-any.whl" in log
    assert "Building wheel" not in log.split("[2/2] STEP 1/")[1]


def test_the_final_stage_has_no_build_tools_no_wheels_no_pip_cache_and_only_the_application(rootfs):
    bins = [rootfs / d for d in ("usr/bin", "usr/local/bin", "bin", "usr/sbin")]
    assert [f"{d}/{tool}" for d in bins for tool in BUILD_TOOLS if (d / tool).exists()] == []
    assert not (rootfs / "usr/include/python3.11/Python.h").exists()
    assert not (rootfs / "wheels").exists() and not (rootfs / "src").exists()
    assert not (rootfs / "root/.cache/pip").exists()
    # The only wheels are the interpreter's own, that the venv module installs into new environments.
    wheels = [p.relative_to(rootfs).as_posix() for p in rootfs.rglob("*.whl")
              if not (p.is_relative_to(rootfs / "proc") or p.is_relative_to(rootfs / "sys"))]
    assert all(w.startswith("usr/share/python-wheels/") or "/ensurepip/_bundled/" in w for w in wheels), wheels

    app = rootfs / "app"
    # What .dockerignore lets in: no tests, testbed, .venv, .git, instance files or caches of the checkout's.
    assert sorted(p.name for p in app.iterdir()) == [
        "__pycache__", "app.py", "gunicorn.conf.py", "instance", "integrations", "jobs", "migrations", "portal", "requirements.txt",
        "scaffolds"]
    assert list((app / "instance").iterdir()) == []
    assert (app / "portal" / "__pycache__" / "__init__.cpython-311.pyc").exists()  # compiled at build time
    assert (app / "scaffolds" / "python-web" / "Dockerfile").exists()  # the templates the portal renders
    # The code belongs to root; the user writes only to its own folders (emptyDirs in Kubernetes).
    owners = {p: (p.stat().st_uid, p.stat().st_gid, oct(p.stat().st_mode & 0o777))
              for p in (app / "portal", app / "portal" / "__init__.py", app / "instance", rootfs / "tmp/prometheus")}
    assert list(owners.values()) == [(0, 0, "0o755"), (0, 0, "0o644"), (10001, 10001, "0o700"),
                                     (10001, 10001, "0o700")], owners


def test_one_image_imports_the_app_runs_the_migrations_a_worker_and_the_web_server_by_command(
        image_builder, portal_image, redis_server):
    port = free_port()
    # The image's own command, as `docker run IMAGE` would start it.
    web = shlex.join(portal_image["OCIv1"]["config"]["Cmd"])
    # A Redis database of its own, so that the burst worker meets no other test's jobs.
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/9"
    settings = {"PORTAL_DATABASE_URL": "sqlite:////tmp/portal.sqlite3", "PORTAL_REDIS_URL": redis_url,
                "PORTAL_SECRET_KEY": "image-test", "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2"}
    script = f"""
export {' '.join(f'{k}={shlex.quote(v)}' for k, v in settings.items())}
echo '=== python'
python - <<'EOF'
import json, os, shutil, sys
import app
from portal import create_app
created = create_app({{"database_url": "sqlite:////tmp/created.sqlite3"}})
print(json.dumps({{"uid": os.getuid(), "gid": os.getgid(), "python": list(sys.version_info[:2]),
                  "app": app.app.import_name, "blueprints": sorted(created.blueprints),
                  "database": created.config["SQLALCHEMY_DATABASE_URI"],
                  "tools": [t for t in {list(BUILD_TOOLS)!r} if shutil.which(t)],
                  "pip_wheels": os.path.exists("/wheels")}}))
EOF
echo '=== help'
flask --app app --help
echo '=== migrations'
flask --app app db upgrade 2>&1 && flask --app app db current 2>/dev/null
echo '=== worker'
flask --app app worker --burst 2>&1; echo "worker exited $?"
echo '=== web'
{web} > /tmp/gunicorn.log 2>&1 &
pid=$!
python - <<'EOF'
import json, os, time, urllib.request, urllib.error
base = "http://" + os.environ["GUNICORN_BIND"]
deadline = time.monotonic() + 60
while True:
    try:
        urllib.request.urlopen(base + "/healthz", timeout=2)
        break
    except OSError:
        assert time.monotonic() < deadline, open("/tmp/gunicorn.log").read()
        time.sleep(0.3)
def get(path):
    try:
        with urllib.request.urlopen(base + path, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
answers = {{path: get(path) for path in ("/healthz", "/readyz", "/login", "/static/htmx.min.js")}}
metrics = get("/metrics")[1]
print(json.dumps({{"status": {{p: a[0] for p, a in answers.items()}}, "readyz": answers["/readyz"][1],
                  "figures": sorted(os.listdir("/tmp/prometheus")),
                  "healthz_counted": 'endpoint="ops.healthz"' in metrics}}))
EOF
kill -TERM $pid
wait $pid; echo "gunicorn exited $?"
cat /tmp/gunicorn.log
"""
    result = image_builder.run(TAG, ["sh", "-c", script], timeout=300)
    out = result.stdout
    report = f"{out}\n--- stderr:\n{result.stderr}"
    assert result.returncode == 0, report
    sections = dict(part.split("\n", 1) for part in out.split("=== ")[1:])
    assert list(sections) == ["python", "help", "migrations", "worker", "web"], report

    facts = _first_line_json(sections["python"], report)
    assert facts["uid"] == 10001 and facts["gid"] == 10001
    assert facts["python"] == [3, 11] and facts["app"] == "portal"
    assert {"auth", "projects", "ops"} <= set(facts["blueprints"]), facts
    assert facts["database"] == "sqlite:////tmp/created.sqlite3"
    assert facts["tools"] == [] and facts["pip_wheels"] is False

    commands = sections["help"].split("Commands:")[1].split()
    assert "worker" in commands and "db" in commands, sections["help"]

    migrations = sections["migrations"]
    head = max(p.name.split("_")[0] for p in (PROJECT_ROOT / "migrations" / "versions").glob("0*.py"))
    assert f"{head} (head)" in migrations, migrations

    assert sections["worker"].rstrip().endswith("worker exited 0"), sections["worker"]

    web_out = sections["web"]
    served = _first_line_json(web_out, report)
    assert served["status"] == {"/healthz": 200, "/readyz": 200, "/login": 200,
                                "/static/htmx.min.js": 200}, served
    assert served["healthz_counted"], served
    # The workers keep their figures in the image's folder (GUNICORN_PROMETHEUS_DIR), for /metrics to add up.
    assert any(name.startswith("histogram_") for name in served["figures"]), served
    assert "gunicorn exited 0" in web_out, web_out  # SIGTERM: a graceful stop
    assert "Booting worker" in web_out and "Shutting down: Master" in web_out, web_out


def _first_line_json(text: str, report: str):
    try:
        return json.loads(text.split("\n", 1)[0])
    except ValueError:
        pytest.fail(f"a script in the container printed no JSON where expected:\n{report}")


def _check_output(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr}"
    return done.stdout

