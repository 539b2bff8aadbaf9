"""Shared by the Nexus tests (test_nexus.py, the contract; test_nexus_faults.py, the fake only): where the
adapter points (the fake Nexus and the testbed's registry behind it, or a real Nexus the environment names),
and real images pushed by Registry v2."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field

import pytest

from integrations import http
from integrations.errors import NotFound
from integrations.nexus import NexusImageRegistry
from integrations.registry_v2 import RegistryV2
from tests import real_servers
from tests.fakes.nexus_server import FakeNexus

OWNER, OTHER = "app-7f3a", "app-9b1c"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ENV = ("PORTAL_TEST_NEXUS_URL", "PORTAL_TEST_NEXUS_USER", "PORTAL_TEST_NEXUS_PASSWORD")


@dataclass
class Target:
    url: str
    user: str
    password: str = field(repr=False)
    docker_url: str
    fake: FakeNexus | None = None

    @classmethod
    def of(cls, fake: FakeNexus) -> "Target":
        """The fake Nexus, signed in as its administrator, as its own Docker endpoint."""
        return cls(fake.url, "admin", "admin123", fake.url, fake=fake)

    @classmethod
    def real(cls) -> "Target | None":
        """The real Nexus named by ENV, its Docker endpoint PORTAL_TEST_NEXUS_DOCKER_URL or the same URL; None
        for the fake (see test_nexus.py)."""
        values = real_servers.configured("Nexus", ENV)
        if values is None:
            return None
        url = values["PORTAL_TEST_NEXUS_URL"]
        return cls(url, values["PORTAL_TEST_NEXUS_USER"], values["PORTAL_TEST_NEXUS_PASSWORD"],
                   os.environ.get("PORTAL_TEST_NEXUS_DOCKER_URL") or url)

    def adapter(self, **overrides) -> NexusImageRegistry:
        options = dict(url=self.url, user=self.user, password=self.password, docker_url=self.docker_url,
                       timeout=10.0, retries=2, verify=True, ca_bundle="")
        return NexusImageRegistry(**{**options, **overrides})


@pytest.fixture
def fake(registry_server):
    """The fake Nexus, its Docker endpoint in front of the testbed's registry (distribution 2.8)."""
    with FakeNexus(registry_url=registry_server.url) as server:
        yield server


@pytest.fixture
def nexus(target):
    """The adapter on each test module's ``target``."""
    adapter = target.adapter()
    yield adapter
    adapter.close()



@functools.cache
def _layer() -> tuple[bytes, str]:
    """One gzipped tar holding a small file, and its diff id (the digest of the tar itself)."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        archive.addfile(info, io.BytesIO(b"hello\n"))
    return gzip.compress(tar.getvalue(), mtime=0), "sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()


def push_image(registry: RegistryV2, name: str, tag: str) -> str:
    """A minimal OCI image (one layer, a config naming the tag) uploaded by the Registry v2 push protocol;
    returns the digest of its manifest."""
    layer, diff_id = _layer()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"tag": tag}},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    descriptors = [_upload(registry, name, data, media) for data, media in (
        (config, "application/vnd.oci.image.config.v1+json"),
        (layer, "application/vnd.oci.image.layer.v1.tar+gzip"))]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": descriptors[0], "layers": [descriptors[1]]}).encode()
    response = registry.request("PUT", f"/v2/{name}/manifests/{tag}", data=manifest,
                                headers={"Content-Type": MANIFEST})
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert response.headers.get("Docker-Content-Digest", digest) == digest
    return digest


def _upload(registry: RegistryV2, name: str, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        registry.request("HEAD", f"/v2/{name}/blobs/{digest}")
    except NotFound:
        started = registry.request("POST", f"/v2/{name}/blobs/uploads/")
        registry.request("PUT", started.headers["Location"], params={"digest": digest}, data=data,
                         headers={"Content-Type": "application/octet-stream"})
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


@pytest.fixture
def pusher():
    """Registry v2 clients of a Docker endpoint, as a given user, to push with."""
    sessions = []

    def _client(url: str, user: str, password: str) -> RegistryV2:
        session = http.session(True, "", 0)
        sessions.append(session)
        return RegistryV2(url, session, "test", (user, password), 10)

    yield _client
    for session in sessions:
        session.close()
