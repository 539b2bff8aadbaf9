"""An OCI registry (Debian's docker-registry, the CNCF distribution server) on loopback."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed.process import ServerProcess, find_binary, free_port

HOW_REGISTRY = "Install it with `make setup-test` (or `apt-get install docker-registry`), or set REGISTRY_SERVER."


@dataclass
class RegistryServer:
    process: ServerProcess
    port: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @classmethod
    def start(cls, workdir: Path, port: int | None = None) -> "RegistryServer":
        binary = find_binary("docker-registry", "REGISTRY_SERVER", ["/usr/bin"], HOW_REGISTRY)
        port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "registry.yml"
        config.write_text(yaml.safe_dump({
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}"},
        }))
        proc = ServerProcess(name="registry", argv=[binary, "serve", str(config)], workdir=workdir,
                             healthy=lambda: _v2_ok(port))
        return cls(proc.start(), port)

    def tags(self, repository: str) -> list[str]:
        with urllib.request.urlopen(f"{self.url}/v2/{repository}/tags/list", timeout=5) as resp:
            return json.loads(resp.read()).get("tags") or []

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest the registry gives the manifest of ``repository:tag`` (Docker-Content-Digest)."""
        request = urllib.request.Request(f"{self.url}/v2/{repository}/manifests/{tag}", method="HEAD", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
                      "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.headers["Docker-Content-Digest"]

    def stop(self) -> None:
        self.process.stop()


def _v2_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False
