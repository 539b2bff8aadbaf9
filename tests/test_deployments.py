"""Deploys, rollbacks and promotions as commits to the deployment repository, with the fakes of the outside
systems (the end-to-end run against real API servers is in test_delivery.py)."""

from __future__ import annotations


import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from portal.errors import ValidationFailed
from portal.extensions import db
from portal.models import Application, ApplicationResource, Build, BuildState, Deployment, DeploymentState
from portal.services.deployments import set_image
from tests.factories import ProjectFactory
from tests.fakes.providers import FakeDelivery, FakeSourceControl
from tests.provisioning_support import FAKE_PROVIDERS, FAST, push_to_default_branch
from tests.support import HTMX

VALUES = """# cart in dev. After each build the portal commits the new image tag here.
portal:
  environment: "dev"

image:
  repository: "registry.fake.invalid/dev/shop-cart"
  tag: latest   # until the first build
  digest: ""

replicaCount: 1
"""


def test_set_image_changes_only_the_image_lines_and_keeps_comments():
    updated = set_image(VALUES, "registry.fake.invalid/dev/shop-cart", "3b5e1c9f", "sha256:" + "a" * 64)
    before, after = VALUES.splitlines(), updated.splitlines()
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    assert changed == [('  tag: latest   # until the first build', '  tag: "3b5e1c9f"'),
                       ('  digest: ""', f'  digest: "sha256:{"a" * 64}"')]
    assert after[0].startswith("# cart in dev")
    assert yaml.safe_load(updated)["replicaCount"] == 1


def test_set_image_adds_missing_keys_and_refuses_a_file_without_an_image_block():
    updated = set_image("image:\n  repository: old\nreplicaCount: 2\n", "new/repo", "v1", "")
    assert yaml.safe_load(updated) == {"image": {"repository": "new/repo", "tag": "v1", "digest": ""}, "replicaCount": 2}
    with pytest.raises(ValidationFailed, match="no top-level image: block"):
        set_image("replicaCount: 1\n", "r", "t", "")


@given(tag=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40))
def test_set_image_round_trips_any_printable_tag(tag):
    assert yaml.safe_load(set_image(VALUES, "r/x", tag, ""))["image"]["tag"] == tag


# --- the flow, with the fakes -------------------------------------------------------------------------

@pytest.fixture
def app_overrides():
    return {**FAKE_PROVIDERS, **FAST, "build_poll_interval": 0.01, "deploy_timeout": 5}


@pytest.fixture
def cart(login, dev_maintainer, world):
    ProjectFactory(name="shop")
    login(dev_maintainer).post("/t/dev/shop/apps", data={"name": "cart", "template": "python-web"})
    return db.session.scalar(select(Application).where(Application.name == "cart"))


def push(app, cart: Application, sha: str) -> Build:
    return push_to_default_branch(app, cart, sha)


def values(world, cart: Application, environment: str) -> dict:
    scm = FakeSourceControl(world)
    deploy = ApplicationResource.of(cart.id, "deployment_repository")
    return yaml.safe_load(scm.read_file(deploy.external_id, "main", f"values-{environment}.yaml"))


def deploy_history(world, cart: Application) -> list:
    scm = FakeSourceControl(world)
    deploy = ApplicationResource.of(cart.id, "deployment_repository")
    return scm.history(deploy.external_id, "main")


def deployments() -> list[Deployment]:
    db.session.expire_all()
    return list(db.session.scalars(select(Deployment).order_by(Deployment.number)))


def test_a_build_deploys_to_the_first_environment_by_one_commit(app, cart, world, login, dev_member):
    build = push(app, cart, "1" * 40)
    assert build.state == BuildState.SUCCEEDED
    [d] = deployments()
    assert (d.environment, d.kind, d.image_tag, d.source_commit) == ("dev", "deploy", "11111111", "1" * 40)
    assert d.state == DeploymentState.HEALTHY and d.synced_at and d.healthy_at  # the fake deployer auto-syncs
    commits = deploy_history(world, cart)
    assert len(commits) == 2 and commits[-1].sha == d.deploy_commit  # the scaffold's, then exactly one more
    assert commits[-1].message.startswith("Deploy cart dev to registry.fake.invalid/dev/shop-cart:11111111")
    assert values(world, cart, "dev")["image"]["tag"] == "11111111"
    assert values(world, cart, "prod")["image"]["tag"] == "latest"  # untouched
    page = login(dev_member).get("/t/dev/shop/cart").text
    assert "shop-cart:11111111" in page and "Synced" in page and "Healthy" in page


def test_rollback_and_promotion_are_commits_and_promotion_needs_a_maintainer(app, cart, world, login, dev_member,
                                                                              dev_maintainer):
    push(app, cart, "1" * 40)
    push(app, cart, "2" * 40)
    first, second = deployments()
    member, maintainer = login(dev_member), login(dev_maintainer)
    assert first.state == DeploymentState.SUPERSEDED or first.state == DeploymentState.HEALTHY
    # Anyone of the team rolls back: a new commit with the earlier image.
    resp = member.post(f"/t/dev/shop/cart/deployments/{first.number}/rollback", headers=HTMX)
    assert resp.status_code == 200
    third = deployments()[-1]
    assert (third.kind, third.environment, third.image_tag) == ("rollback", "dev", "11111111")
    assert values(world, cart, "dev")["image"]["tag"] == "11111111"
    assert deploy_history(world, cart)[-1].message.startswith("Roll back cart dev to ")
    # Rolling back to what runs already is refused, and changes nothing.
    assert member.post(f"/t/dev/shop/cart/deployments/{first.number}/rollback", headers=HTMX).status_code == 409
    # Promotion: maintainers only.
    assert member.post("/t/dev/shop/cart/environments/dev/promote", headers=HTMX).status_code == 403
    resp = maintainer.post("/t/dev/shop/cart/environments/dev/promote", headers=HTMX)
    assert resp.status_code == 200, resp.text
    promoted = deployments()[-1]
    assert (promoted.kind, promoted.environment, promoted.image_tag) == ("promote", "prod", "11111111")
    assert values(world, cart, "prod")["image"]["tag"] == "11111111"
    assert maintainer.post("/t/dev/shop/cart/environments/prod/promote", headers=HTMX).status_code == 422
    assert len(deploy_history(world, cart)) == 1 + 4  # scaffold + deploy, deploy, rollback, promote


def test_a_sync_the_deployer_reports_failed_is_shown_with_its_message(app, cart, world, monkeypatch):
    # Play Argo CD: whatever is committed, its sync fails.
    delivery = FakeDelivery(world)
    original = FakeDelivery.status

    def failing(self, name):
        status = original(self, name)
        return type(status)(sync="OutOfSync", health="Missing", operation="Failed",
                            message="one or more objects failed to apply: quota exceeded", revision=status.revision)

    monkeypatch.setattr(FakeDelivery, "status", failing)
    push(app, cart, "3" * 40)
    [d] = deployments()
    assert d.state == DeploymentState.FAILED and "quota exceeded" in d.message
    assert delivery.find_application("dev-shop-cart-dev") is not None  # auto-sync stays on: nothing was disabled


def test_a_deployment_the_deployer_never_reaches_times_out(app, cart, world):
    FakeDelivery(world).play("dev-shop-cart-dev", revision="0" * 40)  # stuck on an old commit
    push(app, cart, "4" * 40)
    [d] = deployments()
    assert d.state == DeploymentState.TIMED_OUT and "Not healthy within 5 s" in d.message


def test_a_new_application_builds_and_deploys_its_first_commit_without_a_push(app, login, dev_maintainer, world):
    app.config["PORTAL"] = app.config["PORTAL"].replace({"build_on_create": True})
    ProjectFactory(name="shop")
    login(dev_maintainer).post("/t/dev/shop/apps", data={"name": "cart", "template": "python-web"})
    cart = db.session.scalar(select(Application).where(Application.name == "cart"))
    db.session.expire_all()
    [build] = db.session.scalars(select(Build)).all()
    scm = FakeSourceControl(world)
    source = ApplicationResource.of(cart.id, "source_repository")
    first = scm.history(source.external_id, "main")[0]
    assert (build.commit_sha, build.pushed_by) == (first.sha, "portal (first commit)")
    assert build.commit_message.startswith("Start cart from the python-web template")
    assert build.state == BuildState.SUCCEEDED
    [d] = deployments()
    assert (d.environment, d.image_tag, d.state) == ("dev", first.sha[:8], DeploymentState.HEALTHY)


@pytest.mark.parametrize("result", ["failed", "aborted"])
def test_a_build_that_fails_deploys_nothing(app, cart, world, result):
    from integrations.ci import BuildState as CIState
    from tests.fakes.providers import FakeCIServer

    FakeCIServer(world).finish_builds_as("dev/shop-cart", CIState(result))
    build = push(app, cart, "5" * 40)
    assert build.state.value == result
    assert deployments() == []
    assert values(world, cart, "dev")["image"]["tag"] == "latest"
    assert len(deploy_history(world, cart)) == 1  # the scaffold's commit only


def test_set_image_refuses_a_block_it_cannot_change_safely():
    with pytest.raises(ValidationFailed, match="no top-level image: block"):
        set_image("image: {repository: old, tag: v0}\n", "new/repo", "v1", "")
    # A second image: key wins when YAML is read: changing the first would change nothing that counts.
    with pytest.raises(ValidationFailed, match="nothing was committed"):
        set_image("image:\n  repository: old\nimage:\n  tag: v0\n", "new/repo", "v1", "")
