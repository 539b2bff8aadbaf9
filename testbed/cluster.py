"""A real Kubernetes control plane on this machine: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and KWOK managing fake nodes, so that Deployments get Running, Ready pods with no kubelet.

Every process runs from the cluster's own state folder and waits on a real
health check. The admin kubeconfig is written to ``<state>/kubeconfig``.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed import binaries
from testbed.pki import CertificateAuthority, service_account_keys
from testbed.process import ServerProcess, free_port

SERVICE_RANGE = "10.96.0.0/16"
STAGES = Path(__file__).resolve().parent / "kwok" / "stages.yaml"
NODE_ANNOTATION = "kwok.x-k8s.io/node"
# Realistic capacity for the fake nodes: 8 cores, 32 GiB, 110 pods each.
NODE_CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}


@dataclass
class Cluster:
    name: str
    state: Path
    nodes: int = 3
    api_port: int = 0
    processes: list[ServerProcess] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def inline_kubeconfig(self) -> str:
        """The admin kubeconfig with its CA, certificate and key embedded (``*-data``), as one text: what an
        admin pastes into the portal's cluster registry, and what Argo CD can use from a cluster Secret."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        for holder, key in ((cluster, "certificate-authority"), (user, "client-certificate"), (user, "client-key")):
            holder[f"{key}-data"] = base64.b64encode(Path(holder.pop(key)).read_bytes()).decode()
        return yaml.safe_dump(config)

    def start(self, timeout: float = 120.0) -> "Cluster":
        """A fresh cluster (what a folder held from an earlier run is discarded); if any piece fails to come up,
        the pieces already started are stopped before the error is raised."""
        shutil.rmtree(self.state, ignore_errors=True)
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> "Cluster":
        self.state.mkdir(parents=True, exist_ok=True)
        pki = self.state / "pki"
        ca = CertificateAuthority.create(pki)
        self.api_port = self.api_port or free_port()
        serving = ca.issue(pki, "apiserver", "kube-apiserver", server=True,
                           hosts=("127.0.0.1", "localhost", "10.96.0.1", "kubernetes", "kubernetes.default",
                                  "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"))
        admin = ca.issue(pki, "admin", "testbed-admin", org="system:masters")
        sa = service_account_keys(pki)
        _write_kubeconfig(self.kubeconfig, self.name, self.server, ca.path, admin.cert, admin.key)

        etcd_port, peer_port = free_port(), free_port()
        self._run("etcd", [
            str(binaries.ensure("etcd")), "--name", self.name, "--data-dir", str(self.state / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"{self.name}=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--quota-backend-bytes", str(2 * 1024 ** 3),
        ], lambda: _get(f"http://127.0.0.1:{etcd_port}/health").get("health") == "true", timeout)

        self._run("kube-apiserver", [
            str(binaries.ensure("kube-apiserver")),
            "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(self.api_port),
            "--tls-cert-file", str(serving.cert), "--tls-private-key-file", str(serving.key),
            "--client-ca-file", str(ca.path),
            "--service-account-key-file", str(sa.cert), "--service-account-signing-key-file", str(sa.key),
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-cluster-ip-range", SERVICE_RANGE,
            "--authorization-mode", "RBAC", "--allow-privileged=true",
            "--endpoint-reconciler-type", "none",  # as envtest: loopback may not be an endpoint
            # No node lifecycle controller runs to lift the not-ready taint; KWOK nodes are ready from the start.
            "--disable-admission-plugins", "TaintNodesByCondition",
        ], lambda: self._ready("/readyz"), timeout)

        kube = [f"--kubeconfig={self.kubeconfig}"]
        self._run("kube-controller-manager", [
            str(binaries.ensure("kube-controller-manager")), *kube,
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            f"--service-account-private-key-file={sa.key}", f"--root-ca-file={ca.path}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            "--use-service-account-credentials=false", "--controllers=*,-nodeipam,-nodelifecycle",  # KWOK keeps the fake nodes alive
        ], lambda: self._default_service_account(), timeout)
        self._run("kube-scheduler", [
            str(binaries.ensure("kube-scheduler")), *kube,
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
        ], lambda: True, timeout)
        self._run("kwok", [
            str(binaries.ensure("kwok")), *kube,
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.0/16", "--node-ip=10.0.0.1", f"--config={STAGES}",
        ], lambda: True, timeout)
        self._add_nodes()
        self._wait(lambda: self._ready_nodes() >= self.nodes, timeout, "KWOK nodes Ready")
        (self.state / "cluster.json").write_text(json.dumps(self.describe()))
        return self

    def describe(self) -> dict:
        return {"name": self.name, "server": self.server, "kubeconfig": str(self.kubeconfig),
                "pids": {p.name: p.proc.pid for p in self.processes if p.proc}}

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        shutil.rmtree(self.state, ignore_errors=True)

    # --- internals --------------------------------------------------------------------------------

    def _run(self, name: str, argv: list[str], healthy, timeout: float) -> None:
        proc = ServerProcess(name=name, argv=argv, workdir=self.state, healthy=healthy)
        self.processes.append(proc)
        proc.start(timeout=timeout)

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.state / "pki" / "ca.crt"))
        ctx.load_cert_chain(str(self.state / "pki" / "admin.crt"), str(self.state / "pki" / "admin.key"))
        return ctx

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self._ssl(), timeout=5) as resp:
            return json.loads(resp.read() or b"{}")

    def _ready(self, path: str) -> bool:
        try:
            req = urllib.request.Request(self.server + path)
            with urllib.request.urlopen(req, context=self._ssl(), timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _default_service_account(self) -> bool:
        try:
            self._request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return True
        except OSError:
            return False

    def _add_nodes(self) -> None:
        for i in range(self.nodes):
            self._request("POST", "/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": f"{self.name}-node-{i}", "annotations": {NODE_ANNOTATION: "fake"},
                             "labels": {"type": "kwok", "kubernetes.io/hostname": f"{self.name}-node-{i}",
                                        "node-role.kubernetes.io/agent": ""}},
                "spec": {},
                "status": {"allocatable": NODE_CAPACITY, "capacity": NODE_CAPACITY,
                           "nodeInfo": {"kubeletVersion": "fake", "operatingSystem": "linux",
                                        "architecture": "amd64"}},
            })

    def _ready_nodes(self) -> int:
        try:
            nodes = self._request("GET", "/api/v1/nodes")["items"]
        except OSError:
            return 0
        return sum(any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
                   for n in nodes)

    def _wait(self, check, timeout: float, what: str) -> None:
        deadline, delay = time.monotonic() + timeout, 0.05
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        raise RuntimeError(f"{self.name}: {what} not reached in {timeout:.0f} s")


def _get(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return {}


def _write_kubeconfig(path: Path, name: str, server: str, ca: Path, cert: Path, key: Path) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": f"{name}-admin", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
