"""Connected mode, part 1, end to end through the portal: the real GitLab, Jenkins and Nexus adapters against
their HTTP fakes (real servers on loopback), images in the testbed's real registry behind the fake Nexus'
Registry v2 front.

An application is provisioned (repositories from the scaffolds, webhook, pipeline job, team Docker
repository and robot); a push webhook starts a Jenkins build whose console the portal follows while it
runs; the image the build pushed is recorded with its registry digest. And each system's refusals end, via
the engine, in a clear step error.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Application, ApplicationResource, Build, BuildState, RunState, StoredSecret
from portal.services.hooks import webhook_secret
from portal.services.secrets import read_secret
from tests.factories import ProjectFactory
from tests.fakes.jenkins_server import FakeJenkins
from tests.fakes.nexus_server import FakeNexus
from tests.provisioning_support import FAST, latest_run




@pytest.fixture
def jenkins():
    with FakeJenkins() as server:
        yield server


@pytest.fixture
def nexus(registry_server):
    with FakeNexus(registry_url=registry_server.url) as server:
        yield server


@pytest.fixture
def app_overrides(gitlab, jenkins, nexus):
    return {
        **FAST, "build_poll_interval": 0.05, "http_timeout": 3.0, "http_retries": 0, "build_on_create": False,
        "scm": "gitlab", "gitlab_url": gitlab.url, "gitlab_token": gitlab.token, "gitlab_parent_group": "portal",
        "ci": "jenkins", "jenkins_url": jenkins.url, "jenkins_user": jenkins.user, "jenkins_token": jenkins.token,
        "registry": "nexus", "nexus_url": nexus.url, "nexus_user": "admin", "nexus_password": "admin123",
        "public_url": "https://portal.example.org",
    }


def create_cart(login, user):
    ProjectFactory(name="shop")
    resp = login(user).post("/t/dev/shop/apps", data={"name": "cart", "template": "python-web"})
    assert resp.status_code == 302
    return db.session.scalar(select(Application).where(Application.name == "cart"))


def resource(app: Application, step: str) -> ApplicationResource:
    return db.session.scalar(select(ApplicationResource).where(
        ApplicationResource.application_id == app.id, ApplicationResource.step == step))


def test_provisioning_creates_everything_in_gitlab_jenkins_and_nexus(app, login, dev_maintainer, gitlab, jenkins,
                                                                      nexus):
    gitlab.add_user(dev_maintainer.username)
    cart = create_cart(login, dev_maintainer)
    run = latest_run(cart.id)
    assert run.state == RunState.SUCCEEDED, [(s.name, s.last_error) for s in run.steps]
    states = {s.name: s.state.value for s in run.steps}
    assert {k: v for k, v in states.items() if v != "skipped"} == {
        "source_repository": "succeeded", "deployment_repository": "succeeded", "source_webhook": "succeeded",
        "ci_job": "succeeded", "image_repository": "succeeded"}
    assert set(states) - {k for k, v in states.items() if v == "succeeded"} == {  # no cluster nor Argo CD here
        "delivery_project", *(f"{step}:{env}" for env in ("dev", "staging", "prod")
                              for step in ("namespace", "delivery_application"))}
    # Two GitLab projects in the team's subgroup, each filled by exactly one commit holding the scaffold.
    source, deploy = resource(cart, "source_repository"), resource(cart, "deployment_repository")
    assert (source.name, deploy.name) == ("portal/dev/shop-cart", "portal/dev/shop-cart-deploy")
    assert len(gitlab.requests_to("POST", r"/repository/commits$")) == 2
    trees = {c["project_id"]: c["tree"] for c in gitlab.commits.values()}
    assert {"Dockerfile", "Jenkinsfile", "portal.yaml", "tests/test_app.py"} <= set(trees[int(source.external_id)])
    assert {"chart/Chart.yaml", "values-dev.yaml", "values-prod.yaml"} <= set(trees[int(deploy.external_id)])
    # The webhook points at the portal with the application's own secret.
    [hook] = [h for h in gitlab.hooks.values() if h["project_id"] == int(source.external_id)]
    assert hook["url"] == "https://portal.example.org/hooks/gitlab" and hook["push_events"]
    assert hook["token"] == webhook_secret(cart.uid)
    # The pipeline job builds from the source repository's clone URL with the commit and tag parameters.
    job = resource(cart, "ci_job")
    config = ET.fromstring(jenkins_config(jenkins, job.external_id))
    assert config.find(".//scm//url").text == source.attributes["http_url"]
    assert config.find(".//scriptPath").text == "Jenkinsfile"
    assert {p.text for p in config.iter("name")} >= {"COMMIT", "IMAGE_TAG"}
    # Nexus: the team's Docker repository, its robot, whose password the portal keeps encrypted.
    assert "docker-dev" in nexus.repositories
    secret = db.session.scalar(select(StoredSecret))
    assert secret.username == "portal-dev-robot"
    assert nexus.password_of("portal-dev-robot") == read_secret(secret.name)
    # The maintainer was made a maintainer of both projects (the member mapping found the account).
    steps = {s.name: s for s in run.steps}
    assert not any("warning" in line for line in steps["source_repository"].log)


def jenkins_config(jenkins: FakeJenkins, path: str) -> str:
    import requests

    url = jenkins.url + "".join(f"/job/{part}" for part in path.split("/")) + "/config.xml"
    resp = requests.get(url, auth=(jenkins.user, jenkins.token), timeout=5)
    resp.raise_for_status()
    return resp.text


def test_a_member_without_a_gitlab_account_is_a_warning_not_a_failure(app, login, dev_maintainer):
    cart = create_cart(login, dev_maintainer)  # no GitLab user of that name
    run = latest_run(cart.id)
    assert run.state == RunState.SUCCEEDED
    step = next(s for s in run.steps if s.name == "source_repository")
    assert any(line.split(" ", 1)[1].startswith("warning:") and dev_maintainer.username in line for line in step.log)


def test_a_push_builds_on_jenkins_and_records_the_image_in_nexus(app, login, dev_maintainer, gitlab, jenkins,
                                                                 image_builder, registry_server):
    cart = create_cart(login, dev_maintainer)
    source = resource(cart, "source_repository")
    job = resource(cart, "ci_job").external_id
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    tag = sha[:8]
    pushed: dict[str, str] = {}

    def executor():
        """Plays Jenkins' executor and the pipeline: start the build, write its console over time, push the
        image to the registry (as kaniko would, into the Nexus team repository's path), finish."""
        deadline = time.monotonic() + 30
        while not jenkins.queue_ids(job) and time.monotonic() < deadline:
            time.sleep(0.02)
        number = jenkins.start_build(jenkins.queue_ids(job)[0])
        for line in ("[Pipeline] stage (Test)\n", "5 passed in 0.12s\n", "[Pipeline] stage (Build and push)\n"):
            jenkins.append_console(job, number, line)
            time.sleep(0.15)
        image = image_builder.push(image_builder.base_image, f"{registry_server.host}/docker-dev/shop-cart:{tag}",
                                   tls_verify=False)
        pushed["digest"] = image.digest
        jenkins.append_console(job, number, f"PORTAL_IMAGE_DIGEST={image.digest}\n")
        jenkins.finish_build(job, number, "SUCCESS")

    thread = threading.Thread(target=executor, daemon=True)
    thread.start()
    event = {"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": sha, "after": sha,
             "user_username": dev_maintainer.username, "project_id": int(source.external_id),
             "commits": [{"id": sha, "message": "Serve the basket", "author": {"name": "Dana"}, "url": ""}]}
    resp = app.test_client().post("/hooks/gitlab", data=json.dumps(event), headers={
        "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": webhook_secret(cart.uid),
        "X-Gitlab-Event-UUID": str(uuid.uuid4()), "Content-Type": "application/json"})
    thread.join(timeout=30)
    assert resp.status_code == 202, resp.text  # jobs run inline here: the build was followed to its end
    db.session.expire_all()
    [build] = db.session.scalars(select(Build)).all()
    assert build.state == BuildState.SUCCEEDED, build.error
    assert build.ci_system == "jenkins" and build.ci_number == 1
    assert build.image_reference == f"{nexus_host(app)}/docker-dev/shop-cart:{tag}"
    assert build.image_digest == pushed["digest"]  # read back through the Registry v2 API
    # The console was read while the build ran (several pieces), and kept whole.
    assert len(build.log_chunks) > 2
    log = "".join(c.text for c in build.log_chunks)
    for expected in ("Started by user", "5 passed", "PORTAL_IMAGE_DIGEST=", "Finished: SUCCESS"):
        assert expected in log
    page = login(dev_maintainer).get("/t/dev/shop/cart").text
    assert "Serve the basket" in page and f"shop-cart:{tag}" in page


def nexus_host(app) -> str:
    from urllib.parse import urlsplit

    return urlsplit(app.config["PORTAL"].nexus_url).netloc


@pytest.mark.parametrize("system, method, path, status, headers, expected", [
    ("gitlab", "POST", r"/api/v4/projects$", 401, {}, "AuthFailed"),
    ("gitlab", "POST", r"/api/v4/projects$", 403, {}, "AuthFailed"),
    ("jenkins", "POST", r"/createItem", 500, {}, "Unavailable"),
    ("nexus", "POST", r"/service/rest/v1/repositories/docker/hosted$", 403, {}, "AuthFailed"),
])
def test_refusals_end_in_a_clear_step_error(app, login, dev_maintainer, gitlab, jenkins, nexus, system, method,
                                            path, status, headers, expected):
    server = {"gitlab": gitlab, "jenkins": jenkins, "nexus": nexus}[system]
    server.fail_next(method, path, status, headers=headers, times=20)
    cart = create_cart(login, dev_maintainer)
    run = latest_run(cart.id)
    assert run.state == RunState.FAILED
    failed = next(s for s in run.steps if s.state.value == "failed")
    assert f"{system}: " in failed.last_error, failed.last_error
    assert str(status) in failed.last_error or expected == "Unavailable"
    # No secret in what the user sees.
    page = login(dev_maintainer).get("/t/dev/shop/cart").text
    for secret in (gitlab.token, jenkins.token, "admin123"):
        assert secret not in page and secret not in failed.last_error


def test_a_rate_limit_is_waited_out_as_gitlab_asks(app, login, dev_maintainer, gitlab):
    gitlab.fail_next("POST", r"/api/v4/projects$", 429, headers={"Retry-After": "1"})
    cart = create_cart(login, dev_maintainer)
    run = latest_run(cart.id)
    assert run.state == RunState.SUCCEEDED
    step = next(s for s in run.steps if s.name == "source_repository")
    assert step.attempts == 2
    assert any("retrying in 1.0 s" in line and "429" in line for line in step.log), step.log
