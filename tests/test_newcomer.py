"""The newcomer's whole path in the embedded mode, in headless Chromium and with the real ``git`` command.

Sign up into the dev team, create a project and a python-web application
through the pages, watch its provisioning succeed and the template's first
commit get built and deployed, make a personal access token, clone the source
repository from the URL the page shows, push a change and follow it: the
build's console (the tests passed, the image pushed), the image on the
application's page, the deployment to dev healthy with its pods ready. Then a
second change, and a rollback to the first change from the history. Everything
is real: the built-in Git host, runner (buildah, the offline base image, pip
from PyPI), registry and deployer (helm, server-side apply) on the testbed's
control plane with KWOK nodes.

Jobs run inline (``rq_async`` off): a request that starts work answers when it
is over, so creating the application answers once its first commit runs in
dev, and a push once its build is pushed and deployed. What is checked is what
the newcomer sees, and the real state behind it: the rows, the registry, the
cluster's Deployment.

It runs on one database backend only (PostgreSQL when configured), to keep the
suite's time down: see ``db_backend`` below.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from kubernetes import client as kube
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from portal.extensions import db
from portal.models import Build, BuildState, Deployment, DeploymentState
from portal.services.clusters import ClusterInput, ensure_cluster_from_command_line
from tests import browser_support
from tests.conftest import BACKENDS
from tests.factories import UserFactory
from tests.browser_support import row_with_link, sign_up, type_name_and_see_it_available

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

GIT = os.environ.get("GIT", "/usr/bin/git")
ENVIRONMENTS = ("dev", "prod")
APP = "cart"
# Provisioning, a build with pip and buildah, a deployment: each runs inside one request here.
SLOW_SECONDS = 600
PAGE_SECONDS = 20

browser = browser_support.browser  # the same headless Chromium, with its console recorded


@pytest.fixture(params=["postgresql" if "postgresql" in BACKENDS else BACKENDS[0]])
def db_backend(request) -> str:
    """One backend for this long path (overrides conftest's, which runs every test on each backend)."""
    return request.param


@pytest.fixture
def runner_root(tmp_path_factory, image_builder) -> Path:
    """The runner's folder, whose image store (``buildah``) is the session's, where the base image is."""
    root = tmp_path_factory.mktemp("runner")
    (root / "buildah").symlink_to(image_builder.workdir, target_is_directory=True)
    return root


@pytest.fixture
def app_overrides(tmp_path_factory, runner_root, registry_server, python_base) -> dict:
    """The embedded mode, as ``python -m testbed.demo`` configures it, on the test session's servers."""
    from testbed import binaries

    return {
        "scm": "builtin", "ci": "builtin", "registry": "plain", "cluster": "kubernetes", "delivery": "builtin",
        "git_root": str(tmp_path_factory.mktemp("git")),
        "runner_root": str(runner_root),
        "runner_registry": registry_server.url,
        "runner_base_image": python_base,
        "deployer_root": str(tmp_path_factory.mktemp("deployer")),
        "deployer_helm": str(binaries.ensure("helm")),
        "environments": ",".join(ENVIRONMENTS),
        "rq_async": False,
        "build_poll_interval": 0.2,
    }


@pytest.fixture
def portal(app, live_server, control_plane) -> str:
    """The portal at its live URL (its public URL, for clone URLs), with the control plane as dev's cluster."""
    app.config["PORTAL"] = app.config["PORTAL"].replace({"public_url": live_server})
    app.extensions.pop("providers", None)  # rebuilt with the public URL
    ensure_cluster_from_command_line(ClusterInput(
        name="dev-local", api_url=control_plane.server, kubeconfig=control_plane.inline_kubeconfig(),
        team_names=["dev"]))
    UserFactory(username="root", is_admin=True)  # the portal is in use: the newcomer is not its first user
    return live_server


@pytest.fixture
def project_name(kube_api):
    """A project name of this test's own (the cluster and registry live for the session); its namespaces go after."""
    name = f"shop-{uuid.uuid4().hex[:5]}"
    yield name
    core = kube.CoreV1Api(kube_api)
    for env in ENVIRONMENTS:
        try:
            core.delete_namespace(f"dev-{name}-{APP}-{env}")
        except kube.ApiException as exc:
            if exc.status != 404:
                raise


def slow(driver) -> WebDriverWait:
    return WebDriverWait(driver, SLOW_SECONDS, poll_frequency=0.5)


def page(driver) -> WebDriverWait:
    return WebDriverWait(driver, PAGE_SECONDS)


def git(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real git, with no user or system configuration and never a prompt."""
    if not os.access(GIT, os.X_OK):
        pytest.fail(f"git is missing at {GIT}: install it with `apt-get install git`, or set GIT to its path.",
                    pytrace=False)
    db.session.commit()  # the live server writes meanwhile: hold no transaction open
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LC_ALL": "C",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
           "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false"}
    done = subprocess.run([GIT, "-c", "user.name=Ada Newcomer", "-c", "user.email=ada@example.com",
                           "-c", "credential.helper=", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=SLOW_SECONDS)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def commit_and_push(work: Path, home: Path, line: str, message: str) -> tuple[str, str]:
    """Append ``line`` to the README, commit, push to main; returns (the commit's SHA, what the push printed)."""
    with (work / "README.md").open("a") as readme:
        readme.write(f"\n{line}\n")
    git("commit", "-q", "-am", message, cwd=work, home=home)
    sha = git("rev-parse", "HEAD", cwd=work, home=home).stdout.strip()
    pushed = git("push", "origin", "main", cwd=work, home=home)
    return sha, pushed.stderr


def rows(model, **where):
    db.session.commit()  # see what the live server committed
    return list(db.session.scalars(select(model).filter_by(**where).order_by(model.number)))


def images_in_cluster(kube_api, namespace: str) -> list[str]:
    deployments = kube.AppsV1Api(kube_api).list_namespaced_deployment(namespace).items
    return [c.image for d in deployments for c in d.spec.template.spec.containers]


def environment_badge(driver, env: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f"#environment-{env} h3 .badge").text


def environment_text(driver, env: str) -> str:
    return driver.find_element(By.ID, f"environment-{env}").text


def test_a_newcomer_goes_from_sign_up_to_a_rolled_back_deployment(portal, app, browser, tmp_path, project_name,
                                                                  registry_server, kube_api):
    driver = browser
    project = project_name
    repository = f"{registry_server.host}/dev/{project}-{APP}"
    namespace = f"dev-{project}-{APP}-dev"
    timings: dict[str, float] = {}
    started = last = time.monotonic()

    def lap(what: str) -> None:
        nonlocal last
        now = time.monotonic()
        timings[what] = now - last
        last = now

    # 1. Sign up into the dev team.
    sign_up(driver, portal, "ada")
    assert driver.find_element(By.CSS_SELECTOR, ".who a").text == "ada"
    lap("sign up")

    # 2. A project, then a python-web application in it. Its provisioning, and the build and deployment of
    # the template's first commit, run inside this request.
    driver.find_element(By.LINK_TEXT, "Projects").click()
    page(driver).until(EC.presence_of_element_located((By.ID, "project-form")))
    type_name_and_see_it_available(driver, project, "project-name-feedback")
    driver.find_element(By.CSS_SELECTOR, "#project-form button[type=submit]").click()
    page(driver).until(EC.visibility_of_element_located(row_with_link("project-rows", project))) \
        .find_element(By.LINK_TEXT, project).click()
    page(driver).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), f"dev / {project}"))
    type_name_and_see_it_available(driver, APP, "app-name-feedback")
    Select(driver.find_element(By.ID, "template")).select_by_visible_text("Python web service")
    driver.find_element(By.CSS_SELECTOR, "#application-form button[type=submit]").click()
    row = slow(driver).until(EC.visibility_of_element_located(row_with_link("app-rows", APP)))
    assert "python-web" in row.text
    lap("project and application (provisioning, first build and deployment)")

    # 3. The application's page: every provisioning step succeeded.
    row.find_element(By.LINK_TEXT, APP).click()
    page(driver).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), f"dev / {project} / {APP}"))
    app_url = driver.current_url
    assert app_url == f"{portal}/t/dev/{project}/{APP}"
    slow(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#provisioning-panel .run-head .badge"),
                                                        "succeeded"))
    steps = driver.find_elements(By.CSS_SELECTOR, "#provisioning-panel tr[id^='step-']")
    assert [s.get_attribute("id") for s in steps] == [
        "step-source_repository", "step-deployment_repository", "step-source_webhook", "step-ci_job",
        "step-image_repository", "step-delivery_project",
        "step-namespace:dev", "step-delivery_application:dev", "step-namespace:prod", "step-delivery_application:prod",
    ]
    assert {s.get_attribute("class") for s in steps} == {"step-succeeded"}, [s.text for s in steps]
    assert not driver.find_elements(By.CSS_SELECTOR, "#provisioning-panel .error")

    # The template's first commit was built and deployed without waiting for a push.
    slow(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#build-1 .badge"), "succeeded"))
    slow(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#environment-dev h3 .badge"), "healthy"))
    (template_build,) = rows(Build)
    template_image = f"{repository}:{template_build.commit_sha[:8]}"
    assert template_build.pushed_by == "portal (first commit)"
    assert template_image in driver.find_element(By.ID, "build-1").text
    assert template_image in environment_text(driver, "dev") and "pods 1/1 ready" in environment_text(driver, "dev")
    assert "nothing deployed" in environment_text(driver, "prod")

    # 4. The clone URL, shown on the application page (and linked from the provisioning panel).
    clone_url = driver.find_element(By.ID, "clone-url").text.removeprefix("git clone ")
    assert clone_url == f"{portal}/git/dev/{project}-{APP}.git"
    assert driver.find_element(By.CSS_SELECTOR, "#step-source_repository a").get_attribute("href") == clone_url
    lap("application page")

    # 5. A personal access token, from the one-time panel of the Account page.
    driver.find_element(By.CSS_SELECTOR, ".who a").click()
    page(driver).until(EC.presence_of_element_located((By.ID, "token-form")))
    assert f"git clone {portal}/git/" in driver.find_element(By.ID, "tokens").text
    driver.find_element(By.CSS_SELECTOR, "#token-form input[name=name]").send_keys("laptop")
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    token = page(driver).until(EC.visibility_of_element_located((By.ID, "new-token-value"))).get_attribute("value")
    assert token.startswith("pat_")
    assert "shown this once" in driver.find_element(By.CSS_SELECTOR, "#tokens .new-token").text

    # 6. The real git: clone with the token, commit, push to main. The push answers once the build is pushed
    # and the deployment healthy (jobs inline).
    home = tmp_path / "home"
    home.mkdir()
    parts = urlsplit(clone_url)
    work = tmp_path / "work"
    git("clone", "-q", urlunsplit(parts._replace(netloc=f"ada:{token}@{parts.netloc}")), str(work), home=home)
    assert git("log", "--format=%H", cwd=work, home=home).stdout.split() == [template_build.commit_sha]
    lap("token and clone")
    first_sha, pushed = commit_and_push(work, home, "A first change by the newcomer.", "Say hello in the README")
    assert f"portal: build #2 of {project}/{APP} queued for {first_sha[:8]}." in pushed, pushed
    first_image = f"{repository}:{first_sha[:8]}"
    lap("first push (build and deployment)")

    # 7. The build: succeeded, its console, its image on the application's page.
    driver.get(app_url)
    build_2 = page(driver).until(EC.visibility_of_element_located((By.ID, "build-2")))
    assert build_2.find_element(By.CSS_SELECTOR, ".badge").text == "succeeded"
    assert first_image in build_2.text and "Say hello in the README" in build_2.text and "pushed by ada" in build_2.text
    build_2.find_element(By.LINK_TEXT, "Build #2").click()
    page(driver).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "build #2"))
    assert driver.find_element(By.CSS_SELECTOR, "h1 .badge").text == "succeeded"
    page(driver).until(EC.text_to_be_present_in_element((By.ID, "console-lines"), "==> Succeeded in"))
    console = "\n".join(line.text.partition(" ")[2]  # each line after its number
                        for line in driver.find_elements(By.CSS_SELECTOR, "#console-lines li"))
    assert f"==> Checkout {first_sha}" in console
    assert re.search(r"^\d+ passed in ", console, re.MULTILINE) and " failed" not in console, console  # pytest's
    assert f"==> Push {first_image}" in console and "PORTAL_IMAGE_DIGEST=sha256:" in console
    assert first_image in driver.find_element(By.CSS_SELECTOR, "dl.facts").text
    first_build = rows(Build)[1]
    assert (first_build.state, first_build.commit_sha, first_build.pushed_by) == \
        (BuildState.SUCCEEDED, first_sha, "ada")
    assert first_build.image_reference == first_image and first_build.image_digest.startswith("sha256:")
    assert f"PORTAL_IMAGE_DIGEST={first_build.image_digest}" in console
    assert first_sha[:8] in registry_server.tags(f"dev/{project}-{APP}")
    first_digest = first_build.image_digest

    # 8. The deployment in dev: healthy, pods ready; the cluster runs the image by its digest.
    driver.get(app_url)
    page(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#environment-dev h3 .badge"), "healthy"))
    dev = environment_text(driver, "dev")
    assert first_image in dev and "Sync Synced" in dev and "health Healthy" in dev and "pods 1/1 ready" in dev, dev
    latest = rows(Deployment)[-1]
    assert (latest.number, latest.environment, latest.kind, latest.state) == \
        (2, "dev", "deploy", DeploymentState.HEALTHY)
    assert latest.pods == "1/1 ready" and latest.image_digest == first_digest
    assert images_in_cluster(kube_api, namespace) == [f"{repository}@{first_digest}"]
    lap("build and deployment seen")

    # 9. A second change deployed, then a rollback to the first change from the history.
    second_sha, pushed = commit_and_push(work, home, "A second change.", "Say more in the README")
    assert f"portal: build #3 of {project}/{APP} queued for {second_sha[:8]}." in pushed, pushed
    second_image = f"{repository}:{second_sha[:8]}"
    lap("second push (build and deployment)")
    driver.get(app_url)
    page(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#build-3 .badge"), "succeeded"))
    assert environment_badge(driver, "dev") == "healthy"
    assert second_image in driver.find_element(By.CSS_SELECTOR, "#environment-dev .deploy-steps").text
    second_digest = rows(Build)[2].image_digest
    assert second_digest != first_digest
    assert images_in_cluster(kube_api, namespace) == [f"{repository}@{second_digest}"]

    driver.find_element(By.CSS_SELECTOR, "#environment-dev details summary").click()
    history = page(driver).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#environment-dev details table")))
    assert [r.get_attribute("id") for r in history.find_elements(By.CSS_SELECTOR, "tbody tr")] == \
        ["deployment-3", "deployment-2", "deployment-1"]
    assert not history.find_elements(By.CSS_SELECTOR, "#deployment-3 button"), "no rollback to what runs"
    assert second_image in history.find_element(By.ID, "deployment-3").text
    assert first_image in history.find_element(By.ID, "deployment-2").text
    history.find_element(By.CSS_SELECTOR, "#deployment-2 button").click()
    alert = page(driver).until(EC.alert_is_present())
    assert alert.text == f"Roll dev back to {first_image}?"
    alert.accept()
    slow(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#environment-dev .deploy-steps"),
                                                        first_image))
    slow(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#environment-dev h3 .badge"), "healthy"))
    dev = environment_text(driver, "dev")
    assert "by ada" in dev and "pods 1/1 ready" in dev, dev
    lap("rollback")

    assert [(d.number, d.environment, d.kind, d.image_tag, d.state, d.requested_by) for d in rows(Deployment)] == [
        (1, "dev", "deploy", template_build.commit_sha[:8], DeploymentState.HEALTHY, "build #1"),
        (2, "dev", "deploy", first_sha[:8], DeploymentState.HEALTHY, "build #2"),
        (3, "dev", "deploy", second_sha[:8], DeploymentState.HEALTHY, "build #3"),
        (4, "dev", "rollback", first_sha[:8], DeploymentState.HEALTHY, "ada"),
    ]
    assert rows(Deployment)[-1].image_digest == first_digest
    assert images_in_cluster(kube_api, namespace) == [f"{repository}@{first_digest}"]

    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], "errors in the browser console:\n" + "\n".join(e["message"] for e in severe)

    timings["whole path"] = time.monotonic() - started
    print("\n".join(f"{seconds:7.1f} s  {what}" for what, seconds in timings.items()))
