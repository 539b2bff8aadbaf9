"""The scaffolds: what the portal commits to a new application's repositories, rendered and exercised.

The source templates' own checks run for real (pytest, the site check, gunicorn and the static
server), and the deployment chart goes through the testbed's helm and a real API server.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import dynamic

import scaffolds
from portal.services.naming import ResourceNames
from portal.services.stacks import STACKS
from scaffolds import ScaffoldContext, available_stacks, render_deployment, render_source, stack_manifest
from testbed import binaries

NAMES = ResourceNames(team="payments", project="shop", application="storefront")
REGISTRY = "registry.example.test:5000"
CTX = ScaffoldContext(team=NAMES.team, project=NAMES.project, application=NAMES.application,
                      registry=REGISTRY, image=NAMES.image_repository,
                      description='Sells "things" <online> & ships them')
IMAGE_REFERENCE = f"{REGISTRY}/payments/shop-storefront"
ENVIRONMENTS = ("dev", "staging", "prod")
PORTAL_LABELS = {"portal.dev/team": "payments", "portal.dev/project": "shop", "portal.dev/application": "storefront"}


def write_tree(files: dict[str, bytes], root: Path) -> Path:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def clean_env() -> dict[str, str]:
    """The environment without this pytest run's settings, so a rendered repository is on its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHON"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def declared_command(stack: str, key: str = "test") -> list[str]:
    """The stack's command from portal.yaml, run with this interpreter."""
    argv = shlex.split(stack_manifest(stack)[key])
    assert argv[0] == "python", argv
    return [sys.executable, *argv[1:]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def wait_for(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {process.stdout.read()}")
        try:
            get(url)
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"nothing answered on {url}")


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


# The catalogue


def test_the_stacks_are_the_folders_the_portal_offers():
    assert available_stacks() == ["python-web", "static-site"]
    assert {s.key for s in STACKS} == set(available_stacks())


def test_an_unknown_stack_is_refused_with_the_known_ones():
    for call in (lambda: render_source("cobol-batch", CTX), lambda: render_deployment(CTX, "cobol-batch"),
                 lambda: stack_manifest("cobol-batch")):
        with pytest.raises(ValueError, match=r"unknown stack 'cobol-batch'.*python-web, static-site"):
            call()
    # The other folders are not stacks.
    for folder in ("common", "deployment"):
        with pytest.raises(ValueError, match="unknown stack"):
            render_source(folder, CTX)


@pytest.mark.parametrize("registry", ["https://registry.example.test", "registry.example.test/team", ""])
def test_the_registry_is_a_host_not_a_url(registry):
    with pytest.raises(ValueError, match="registry"):
        ScaffoldContext(team="a", project="b", application="c", registry=registry, image="a/b-c")


@pytest.mark.parametrize("stack", ["python-web", "static-site"])
def test_each_manifest_declares_how_to_test_and_probe(stack):
    manifest = stack_manifest(stack)
    assert manifest["port"] == 8080
    assert (manifest["health"], manifest["ready"]) == ("/healthz", "/readyz")
    assert manifest["base_image"] == "python:3.12-slim"
    assert manifest["test"].startswith("python ")


# The source repositories


@pytest.mark.parametrize("stack", ["python-web", "static-site"])
def test_a_source_repository_renders_with_the_application_names(stack):
    files = render_source(stack, CTX)
    assert list(files) == sorted(files)
    assert render_source(stack, CTX) == files  # deterministic
    expected = {"Dockerfile", ".dockerignore", ".gitignore", "Jenkinsfile", "README.md", "portal.yaml"}
    assert expected <= set(files)
    for path, content in files.items():
        assert "\\" not in path and not path.startswith("/")
        assert "__pycache__" not in path and not path.endswith((".pyc", ".j2", "~", ".swp"))
        text = content.decode("utf-8")
        for syntax in ("{{", "}}", "{%", "%}", "{#", "#}"):
            assert syntax not in text, f"{path} still holds {syntax!r}"
    assert stack_manifest(stack) == yaml.safe_load(files["portal.yaml"])
    readme = files["README.md"].decode()
    assert readme.startswith("# storefront\n")
    assert IMAGE_REFERENCE in readme and CTX.description in readme


def test_the_python_web_service_knows_its_names():
    app_py = render_source("python-web", CTX)["app.py"].decode()
    assert 'APPLICATION = "storefront"' in app_py and 'TEAM = "payments"' in app_py
    assert r'DESCRIPTION = "Sells \"things\" <online> & ships them"' in app_py
    compile(app_py, "app.py", "exec")


def test_the_static_site_escapes_the_description_in_html():
    index = render_source("static-site", CTX)["public/index.html"].decode()
    assert "<title>storefront</title>" in index
    assert "&lt;online&gt; &amp;" in index and "<online>" not in index


@pytest.mark.parametrize("stack", ["python-web", "static-site"])
def test_the_jenkinsfile_tests_then_builds_and_pushes_with_kaniko(stack):
    manifest = stack_manifest(stack)
    jenkinsfile = render_source(stack, CTX)["Jenkinsfile"].decode()
    assert f"REGISTRY = '{REGISTRY}'" in jenkinsfile
    assert "IMAGE = 'payments/shop-storefront'" in jenkinsfile
    for parameter in ("COMMIT", "IMAGE_TAG"):
        assert f"string(name: '{parameter}'" in jenkinsfile
    stages = re.findall(r"stage\('([^']+)'\)", jenkinsfile)
    assert stages == ["Checkout", "Test", "Build and push"]
    test_stage = jenkinsfile.split("stage('Test')")[1].split("stage('Build and push')")[0]
    assert "container('test')" in test_stage and manifest["test"] in test_stage
    assert (manifest.get("setup") or "") in test_stage
    build = jenkinsfile.split("stage('Build and push')")[1]
    for flag in ('--context="dir://${WORKSPACE}"', '--dockerfile="${WORKSPACE}/Dockerfile"',
                 '--destination="${REGISTRY}/${IMAGE}:${TAG}"', '--digest-file="${WORKSPACE}/image-digest"'):
        assert flag in build
    assert "PORTAL_IMAGE_DIGEST=" in build and "archiveArtifacts artifacts: 'image-digest'" in build

    pod = yaml.safe_load(jenkinsfile.split("yaml '''")[1].split("'''")[0])
    assert pod["metadata"]["labels"] == PORTAL_LABELS
    assert pod["spec"]["automountServiceAccountToken"] is False
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"test", "kaniko"}
    assert containers["test"]["image"] == manifest["base_image"]
    kaniko = containers["kaniko"]
    assert kaniko["image"] == "gcr.io/kaniko-project/executor:debug"
    assert kaniko["command"] == ["/busybox/cat"] and kaniko["tty"] is True
    assert kaniko["volumeMounts"] == [{"name": "registry-push", "mountPath": "/kaniko/.docker", "readOnly": True}]
    (volume,) = pod["spec"]["volumes"]
    assert volume["secret"] == {"secretName": "registry-push",
                                "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}


def test_the_build_step_pushes_the_tag_and_prints_the_digest(tmp_path):
    jenkinsfile = render_source("python-web", CTX)["Jenkinsfile"].decode()
    build = jenkinsfile.split("stage('Build and push')")[1]
    # The escapes Groovy applies to a '''...''' string: only "\\" occurs in ours.
    script = build.split("sh '''")[1].split("'''")[0].replace("\\\\", "\\")
    assert script.startswith("#!/busybox/sh\n")
    executor = tmp_path / "executor"
    executor.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_FILE"\n'  # a stand-in: records, writes a digest
                        'for arg; do case "$arg" in\n'
                        '  --digest-file=*) printf "sha256:%064d" 0 > "${arg#*=}";;\n'
                        'esac; done\n')
    executor.chmod(0o755)
    workspace = tmp_path / "work space"
    workspace.mkdir()
    env = {"PATH": os.environ["PATH"], "WORKSPACE": str(workspace), "REGISTRY": REGISTRY,
           "IMAGE": "payments/shop-storefront", "TAG": "1.2.3", "ARGS_FILE": str(tmp_path / "args")}
    run = subprocess.run(["sh", "-c", script.replace("/kaniko/executor", str(executor))], env=env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "args").read_text().splitlines() == [
        f"--context=dir://{workspace}", f"--dockerfile={workspace}/Dockerfile",
        f"--destination={IMAGE_REFERENCE}:1.2.3", f"--digest-file={workspace}/image-digest"]
    assert run.stdout.splitlines() == [f"PORTAL_IMAGE={IMAGE_REFERENCE}:1.2.3",
                                       "PORTAL_IMAGE_DIGEST=sha256:" + "0" * 64]


def test_the_push_secret_is_the_contexts():
    ctx = ScaffoldContext(team="a", project="b", application="c", registry="r.test", image="a/b-c",
                          push_secret="team-a-push")
    assert "secretName: team-a-push" in render_source("python-web", ctx)["Jenkinsfile"].decode()


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("stack", ["python-web", "static-site"])
def test_the_dockerfile_takes_a_base_image_and_serves_on_8080_as_non_root(stack):
    manifest = stack_manifest(stack)
    instructions = dockerfile_instructions(render_source(stack, CTX)["Dockerfile"].decode())
    assert instructions[0] == ("ARG", f"BASE_IMAGE={manifest['base_image']}")
    froms = [arg for op, arg in instructions if op == "FROM"]
    assert froms and all(f.split()[0] == "${BASE_IMAGE}" for f in froms)
    user = [arg for op, arg in instructions if op == "USER"][-1]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    assert ("EXPOSE", str(manifest["port"])) in instructions
    cmd = yaml.safe_load(instructions[-1][1])  # the exec form is a JSON list
    assert instructions[-1][0] == "CMD" and isinstance(cmd, list)
    assert any(str(manifest["port"]) in part for part in cmd)


# The source templates' own checks, run for real


def test_the_python_web_tests_pass_and_can_fail(tmp_path):
    repo = write_tree(render_source("python-web", CTX), tmp_path / "repo")
    command = [*declared_command("python-web"), "-p", "no:cacheprovider"]
    run = subprocess.run(command, cwd=repo, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"\b5 passed\b", run.stdout), run.stdout
    assert "warning" not in run.stdout.lower()

    app_py = repo / "app.py"
    app_py.write_text(app_py.read_text().replace('jsonify(status="ok")', 'jsonify(status="starting")'))
    broken = subprocess.run(command, cwd=repo, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "1 failed, 4 passed" in broken.stdout


def test_the_python_web_service_answers_under_gunicorn(tmp_path):
    repo = write_tree(render_source("python-web", CTX), tmp_path / "repo")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "app:app"],
                              cwd=repo, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", server)
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, b'{"status":"ok"}\n')
        assert get(f"http://127.0.0.1:{port}/readyz") == (200, b'{"status":"ready"}\n')
        status, body = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b'"application":"storefront"' in body
    finally:
        assert stop(server) == 0


def test_the_static_site_check_passes_and_fails_on_a_missing_asset_or_a_broken_page(tmp_path):
    repo = write_tree(render_source("static-site", CTX), tmp_path / "repo")
    command = declared_command("static-site")
    run = subprocess.run(command, cwd=repo, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr

    (repo / "public/css/site.css").unlink()
    run = subprocess.run(command, cwd=repo, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "index.html: css/site.css does not exist" in run.stderr

    (repo / "public/css/site.css").write_text("body { background: url('../img/missing.png'); }\n")
    (repo / "public/about.html").write_text(
        "<!doctype html><html><body><main><p>About <a href='/index.html#top'>home</a>"
        "<a href='https://example.test/'>elsewhere</a><a href='../../etc/passwd'>out</a></body></html>\n")
    run = subprocess.run(command, cwd=repo, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    problems = set(run.stderr.splitlines()[:-1])
    assert problems == {
        "about.html: line 1: <main> is not closed before </body>",
        "about.html: ../../etc/passwd points outside the site",
        "css/site.css: ../img/missing.png does not exist",
    }, run.stderr


def test_the_static_site_is_served_with_probes_and_no_listings(tmp_path):
    repo = write_tree(render_source("static-site", CTX), tmp_path / "repo")
    port = free_port()
    server = subprocess.Popen([sys.executable, "serve.py", "--bind", "127.0.0.1", "--port", str(port)],
                              cwd=repo, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/healthz", server)
        status, body = get(f"{base}/")
        assert status == 200 and b"<h1>storefront</h1>" in body
        assert get(f"{base}/css/site.css")[0] == 200
        assert get(f"{base}/css/")[0] == 404  # no directory listing
        assert get(f"{base}/nothing-here.html")[0] == 404
        assert get(f"{base}/healthz") == (200, b"ok\n")
        assert get(f"{base}/readyz") == (200, b"ok\n")
        (repo / "public/index.html").unlink()
        assert get(f"{base}/readyz")[0] == 503
        assert get(f"{base}/healthz")[0] == 200
    finally:
        assert stop(server) == 0  # SIGTERM ends it at once, even as PID 1 in a container


# The deployment repository


def test_the_deployment_repository_has_a_chart_and_a_values_file_per_environment():
    files = render_deployment(CTX, "python-web")
    assert list(files) == sorted(files)
    assert {"README.md", "chart/Chart.yaml", "chart/values.yaml", "chart/templates/_helpers.tpl",
            "chart/templates/deployment.yaml", "chart/templates/service.yaml", "chart/templates/ingress.yaml",
            "chart/templates/serviceaccount.yaml", "values-dev.yaml", "values-staging.yaml",
            "values-prod.yaml"} == set(files) - {"chart/.helmignore"}
    chart = yaml.safe_load(files["chart/Chart.yaml"])
    assert chart["name"] == "storefront" and chart["description"] == CTX.description
    defaults = yaml.safe_load(files["chart/values.yaml"])
    assert defaults["portal"] == {"team": "payments", "project": "shop", "application": "storefront",
                                  "environment": ""}
    assert defaults["imagePullSecrets"] == [{"name": "registry-pull"}]
    replicas = []
    for environment in ENVIRONMENTS:
        values = yaml.safe_load(files[f"values-{environment}.yaml"])
        assert values["portal"] == {"environment": environment}
        assert values["image"] == {"repository": IMAGE_REFERENCE, "tag": "latest", "digest": ""}
        assert values["resources"] == {k: scaffolds.SIZES[environment][k] for k in ("requests", "limits")}
        replicas.append(values["replicaCount"])
    assert replicas == [1, 2, 3]
    # Helm's templates are copied untouched; only values and Chart.yaml are rendered.
    source = Path(scaffolds.__file__).parent / "deployment/chart/templates/deployment.yaml"
    assert files["chart/templates/deployment.yaml"] == source.read_bytes()
    assert b"{{ include" in files["chart/templates/deployment.yaml"]
    for path, content in files.items():
        if not path.startswith("chart/templates/"):
            assert b"{{" not in content and b"{%" not in content, path


def test_the_environments_are_the_contexts():
    ctx = ScaffoldContext(team="a", project="b", application="c", registry="r.test", image="a/b-c",
                          environments=("dev", "qa"))
    files = render_deployment(ctx, "static-site")
    assert sorted(p for p in files if p.startswith("values-")) == ["values-dev.yaml", "values-qa.yaml"]
    assert yaml.safe_load(files["values-qa.yaml"])["replicaCount"] == 1  # sized like dev
    assert "values-qa.yaml" in files["README.md"].decode()


@pytest.fixture
def helm(tmp_path):
    path = str(binaries.ensure("helm"))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "HELM_CACHE_HOME": str(tmp_path / "cache"),
           "HELM_CONFIG_HOME": str(tmp_path / "config"), "HELM_DATA_HOME": str(tmp_path / "data")}

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([path, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)

    return run


def rendered_objects(helm, repo: Path, environment: str, namespace: str, *extra: str) -> list[dict]:
    release = NAMES.delivery_application(environment)
    run = helm("template", release, "chart", "-f", f"values-{environment}.yaml", "--namespace", namespace,
               *extra, cwd=repo)
    assert run.returncode == 0, run.stderr
    return [m for m in yaml.safe_load_all(run.stdout) if m]


@pytest.mark.parametrize("stack", ["python-web", "static-site"])
def test_the_chart_lints_renders_and_is_accepted_by_the_api_server(stack, tmp_path, helm, kube_api, namespace):
    manifest = stack_manifest(stack)
    repo = write_tree(render_deployment(CTX, stack), tmp_path / "deploy")
    dyn = dynamic.DynamicClient(kube_api)

    def accepted(objects: list[dict]) -> None:
        for obj in objects:
            resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            answer = resource.server_side_apply(body=obj, namespace=namespace, field_manager="portal",
                                                dry_run="All")
            assert answer.metadata.name == obj["metadata"]["name"] == "storefront"

    for environment in ENVIRONMENTS:
        lint = helm("lint", "--strict", "chart", "-f", f"values-{environment}.yaml", cwd=repo)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout

        objects = rendered_objects(helm, repo, environment, namespace)
        assert sorted(o["kind"] for o in objects) == ["Deployment", "Service", "ServiceAccount"]
        for obj in objects:
            labels = obj["metadata"]["labels"]
            assert {**PORTAL_LABELS, "portal.dev/environment": environment}.items() <= labels.items(), obj
            assert obj["metadata"]["namespace"] == namespace
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        assert deployment["spec"]["replicas"] == scaffolds.SIZES[environment]["replicas"]
        pod = deployment["spec"]["template"]
        assert PORTAL_LABELS.items() <= pod["metadata"]["labels"].items()
        assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-pull"}]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["spec"]["containers"]
        assert container["image"] == f"{IMAGE_REFERENCE}:latest"
        assert container["ports"] == [{"name": "http", "containerPort": manifest["port"], "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": manifest["health"], "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": manifest["ready"], "port": "http"}
        assert container["resources"]["limits"] == scaffolds.SIZES[environment]["limits"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
        assert pod["spec"]["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["spec"]["volumes"][0]
        accepted(objects)

    with_ingress = rendered_objects(helm, repo, "prod", namespace,
                                    "--set", "ingress.enabled=true,ingress.host=storefront.example.test")
    (ingress,) = [o for o in with_ingress if o["kind"] == "Ingress"]
    assert {**PORTAL_LABELS, "portal.dev/environment": "prod"}.items() <= ingress["metadata"]["labels"].items()
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "storefront.example.test"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "storefront", "port": {"name": "http"}}
    accepted(with_ingress)
    # A dry run wrote nothing.
    assert not dyn.resources.get(api_version="apps/v1", kind="Deployment").get(namespace=namespace).items


def test_the_chart_pins_a_digest_and_refuses_what_is_missing(tmp_path, helm):
    repo = write_tree(render_deployment(CTX, "python-web"), tmp_path / "deploy")
    digest = "sha256:" + "ab" * 32
    objects = rendered_objects(helm, repo, "dev", "somewhere", "--set", f"image.tag=1.4.2,image.digest={digest}")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE_REFERENCE}@{digest}"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "1.4.2"

    no_environment = helm("template", "x", "chart", cwd=repo)
    assert no_environment.returncode != 0
    assert "portal.environment is required" in no_environment.stderr
    no_host = helm("template", "x", "chart", "-f", "values-dev.yaml", "--set", "ingress.enabled=true", cwd=repo)
    assert no_host.returncode != 0
    assert "ingress.host is required when ingress.enabled is true" in no_host.stderr
