"""A plain Registry v2 server as the image registry: ownership recorded beside it, tags and digests through
the Registry v2 API, an image deleted by its manifests. Against the real registry (the CNCF distribution
server), with images built and pushed by buildah."""

from __future__ import annotations

import inspect
import urllib.error
import uuid
from types import SimpleNamespace

import pytest

from integrations.errors import Conflict, InvalidRequest, NotFound
from integrations.registry import ImageRegistry, RegistryCredentials, RobotAccount
from integrations.registry_plain import PlainRegistry

OWNER = "app-7f3a"


@pytest.fixture
def registry(tmp_path, registry_server) -> PlainRegistry:
    plain = PlainRegistry(registry_server.url, tmp_path / "state", timeout=10, retries=0, verify=True, ca_bundle="")
    yield plain
    plain.close()


@pytest.fixture
def push(tmp_path, image_builder, registry_server):
    """Build a one-file image on the busybox base and push it as ``repository:tag`` and each of ``also``;
    returns the digest."""

    def _push(repository: str, tag: str, content: str = "v1", also: tuple[str, ...] = ()) -> str:
        context = tmp_path / f"image-{uuid.uuid4().hex[:6]}"
        context.mkdir()
        (context / "version.txt").write_text(content)
        (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY version.txt /version.txt\n")
        local = f"localhost/{repository}:{tag}"
        image_builder.build(context, local, build_args={"BASE_IMAGE": image_builder.base_image})
        digests = {image_builder.push(local, f"{registry_server.host}/{repository}:{t}", tls_verify=False).digest
                   for t in (tag, *also)}
        assert len(digests) == 1
        return digests.pop()

    return _push


def unique(name: str) -> str:
    return f"dev/{name}-{uuid.uuid4().hex[:6]}"  # the registry lives for the whole session


def test_the_registry_implements_the_contract_with_the_same_signatures(registry):
    assert isinstance(registry, ImageRegistry)
    assert registry.system == "registry"
    methods = [n for n, v in vars(ImageRegistry).items() if callable(v) and not n.startswith("_")]
    assert methods
    for name in methods:
        ours = inspect.signature(getattr(PlainRegistry, name))
        assert str(ours) == str(inspect.signature(getattr(ImageRegistry, name))), name


def test_the_registry_is_built_from_the_portal_settings(tmp_path):
    settings = SimpleNamespace(runner_registry="http://127.0.0.1:5001/", runner_root=str(tmp_path), http_timeout=5.0,
                               http_retries=1, tls_verify=True, ca_bundle="")
    registry = PlainRegistry.from_settings(settings)
    assert (registry.url, registry.host, registry.state_dir) == ("http://127.0.0.1:5001", "127.0.0.1:5001",
                                                                 tmp_path / "registry")
    with pytest.raises(ValueError, match="scheme"):
        PlainRegistry.from_settings(SimpleNamespace(**{**vars(settings), "runner_registry": "127.0.0.1:5001"}))


def test_repositories_are_recorded_with_their_owner_and_named_on_the_server(registry, registry_server, tmp_path):
    name = unique("shop-cart")
    assert registry.find_repository(name) is None
    created = registry.create_repository(name, OWNER)
    assert (created.system, created.kind, created.external_id, created.owner) == ("registry", "image_repository",
                                                                                   name, OWNER)
    assert registry.find_repository(name) == created
    assert registry.create_repository(name, OWNER) == created  # the owner's own: adopted
    with pytest.raises(Conflict):
        registry.create_repository(name, "app-other")
    # Recorded on disk, not in the process: a new adapter (another worker) sees the same owner.
    again = PlainRegistry(registry_server.url, tmp_path / "state", timeout=10, retries=0, verify=True, ca_bundle="")
    assert again.find_repository(name).owner == OWNER
    again.close()

    assert registry.list_tags(name) == []  # recorded, nothing pushed yet
    assert registry.image_name(name) == f"{registry_server.host}/{name}"
    assert registry.credentials("dev") == RegistryCredentials(server=registry_server.host, username="", secret_ref="")
    assert registry.ensure_robot("dev", OWNER) == RobotAccount(server=registry_server.host, username="", password="")
    with pytest.raises(NotFound):
        registry.list_tags(unique("never"))
    for bad in ("Dev/Shop", "dev/../etc", "dev//x", ""):
        with pytest.raises(InvalidRequest):
            registry.find_repository(bad)


def test_tags_come_with_their_digests_and_delete_removes_the_manifests(registry, registry_server, push):
    name = unique("shop-api")
    registry.create_repository(name, OWNER)
    first = push(name, "1.0", "one")
    second = push(name, "2.0", "two", also=("latest",))  # one manifest under two tags

    tags = registry.list_tags(name)
    assert [(t.repository, t.tag, t.digest) for t in tags] == [(name, "1.0", first), (name, "2.0", second),
                                                               (name, "latest", second)]
    assert registry_server.manifest_digest(name, "1.0") == first

    registry.delete_repository(name)
    assert registry_server.tags(name) == []
    with pytest.raises(urllib.error.HTTPError) as gone:
        registry_server.manifest_digest(name, "2.0")
    gone.value.close()  # its answer holds the connection
    assert gone.value.code == 404
    assert registry.find_repository(name) is None
    with pytest.raises(NotFound):
        registry.delete_repository(name)
    with pytest.raises(NotFound):
        registry.list_tags(name)


def test_images_pushed_without_a_record_are_nobodys_and_not_adopted(registry, push):
    name = unique("stray")
    digest = push(name, "1")
    found = registry.find_repository(name)
    assert found is not None and found.owner is None
    assert [(t.tag, t.digest) for t in registry.list_tags(name)] == [("1", digest)]
    with pytest.raises(Conflict):
        registry.create_repository(name, OWNER)
    with pytest.raises(NotFound):  # not the portal's to delete
        registry.delete_repository(name)
