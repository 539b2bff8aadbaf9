"""A real Kubernetes control plane on this machine: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and KWOK managing fake nodes, so that Deployments get Running, Ready pods with no kubelet;
and metrics-server behind the API server's aggregation layer, so that ``metrics.k8s.io`` answers with
the usage KWOK reports for those nodes and pods (see kwok/metrics.yaml).

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
KWOK_CONFIG = Path(__file__).resolve().parent / "kwok"
STAGES = KWOK_CONFIG / "stages.yaml"
METRICS = KWOK_CONFIG / "metrics.yaml"
NODE_ANNOTATION = "kwok.x-k8s.io/node"
# Where metrics-server scrapes a node: KWOK's port, the path the node names, as kwokctl sets it up.
METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
# metrics-server's shortest resolution: it scrapes every node this often, so a new pod has metrics
# after two scrapes, 10 to 20 s.
METRIC_RESOLUTION = "10s"
# Realistic capacity for the fake nodes: 8 cores, 32 GiB, 110 pods each.
NODE_CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}


@dataclass
class Cluster:
    name: str
    state: Path
    nodes: int = 3
    api_port: int = 0
    metrics: bool = True  # serve metrics.k8s.io through metrics-server
    node_pods: int = 110  # pods each fake node takes (a benchmark's 20,000 pods want more than a kubelet's 110)
    # Requests per second the controller manager and the scheduler may send (client-go's default is 5-50: a
    # benchmark creating thousands of pods wants more). KWOK's own client has no rate limit.
    api_qps: int = 50
    etcd_url: str = ""
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
        # The aggregation layer: the API server proxies to an extension API server (metrics-server) as
        # front-proxy-client, naming the user in headers the extension trusts by this CA.
        front_proxy = CertificateAuthority.create(pki, "front-proxy-ca", file="front-proxy-ca")
        proxy_client = front_proxy.issue(pki, "front-proxy-client", "front-proxy-client")
        sa = service_account_keys(pki)
        _write_kubeconfig(self.kubeconfig, self.name, self.server, ca.path, admin.cert, admin.key)

        etcd_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
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
            # ConfigMaps are watched from etcd itself, not the watch cache, so that compacting etcd makes a real
            # "410 Gone" for a watch from an old resourceVersion (what the cluster cache's tests need).
            "--watch-cache-sizes", "configmaps#0",
            # Logs and exec go to a node's kubelet (KWOK, on loopback) by its address, not its name.
            "--kubelet-preferred-address-types", "InternalIP",
            "--requestheader-client-ca-file", str(front_proxy.path),
            "--requestheader-allowed-names", "front-proxy-client",
            "--requestheader-username-headers", "X-Remote-User", "--requestheader-group-headers", "X-Remote-Group",
            "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
            "--proxy-client-cert-file", str(proxy_client.cert), "--proxy-client-key-file", str(proxy_client.key),
            # No --enable-aggregator-routing: it picks an endpoint of the Service, and an ExternalName Service
            # (how metrics-server on loopback is reached, see _start_metrics_server) has none.
        ], lambda: self._ready("/readyz"), timeout)
        # Started now, its health waited on last: it starts while the other pieces do.
        metrics_server = self._start_metrics_server(ca, timeout) if self.metrics else None

        kube = [f"--kubeconfig={self.kubeconfig}"]
        self._run("kube-controller-manager", [
            str(binaries.ensure("kube-controller-manager")), *kube,
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            f"--service-account-private-key-file={sa.key}", f"--root-ca-file={ca.path}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            "--use-service-account-credentials=false", "--controllers=*,-nodeipam,-nodelifecycle",  # KWOK keeps the fake nodes alive
            f"--kube-api-qps={self.api_qps}", f"--kube-api-burst={2 * self.api_qps}",
        ], lambda: self._default_service_account(), timeout)
        self._run("kube-scheduler", [
            str(binaries.ensure("kube-scheduler")), *kube,
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            f"--kube-api-qps={self.api_qps}", f"--kube-api-burst={2 * self.api_qps}",
        ], lambda: True, timeout)
        # KWOK also plays each node's kubelet server (resource metrics, logs) on one port of its own, which the
        # nodes give as their address and kubelet port; TLS with a certificate of the cluster's CA.
        kwok_port = free_port()
        kwok_tls = ca.issue(pki, "kwok", "kwok", server=True, hosts=("127.0.0.1", "localhost"))
        self._run("kwok", [
            str(binaries.ensure("kwok")), *kube,
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.0/16", "--node-ip=127.0.0.1", f"--node-port={kwok_port}",
            f"--server-address=127.0.0.1:{kwok_port}",
            f"--tls-cert-file={kwok_tls.cert}", f"--tls-private-key-file={kwok_tls.key}",
            f"--config={STAGES}", *([f"--config={METRICS}"] if self.metrics else []),
            f"--config={self._pod_logs_config()}",
        ], lambda: self._answers(f"https://127.0.0.1:{kwok_port}/healthz"), timeout)
        self._add_nodes()
        self._wait(lambda: self._ready_nodes() >= self.nodes, timeout, "KWOK nodes Ready")
        if metrics_server:
            self._wait(lambda: self._serving_metrics(metrics_server), timeout, "metrics.k8s.io served")
        (self.state / "cluster.json").write_text(json.dumps(self.describe()))
        return self

    @property
    def pod_logs(self) -> tuple[Path, Path]:
        """The files every pod's containers log (current, previous), in the container runtime's format
        (``<RFC 3339 time> stdout|stderr F <line>``); KWOK serves them as ``kubectl logs`` does, and follows
        the current one."""
        folder = self.state / "pod-logs"
        return folder / "current.log", folder / "previous.log"

    def _pod_logs_config(self) -> Path:
        current, previous = self.pod_logs
        current.parent.mkdir(parents=True, exist_ok=True)
        current.touch()
        previous.touch()
        config = self.state / "kwok-logs.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs", "metadata": {"name": "testbed-logs"},
            "spec": {"selector": {}, "logs": [{"logsFile": str(current), "previousLogsFile": str(previous),
                                               "follow": True}]}}))
        return config

    def describe(self) -> dict:
        return {"name": self.name, "server": self.server, "kubeconfig": str(self.kubeconfig),
                "pids": {p.name: p.proc.pid for p in self.processes if p.proc}}

    def prometheus(self, server: str = "") -> str:
        """The Prometheus metrics of the API server, or of ``server`` (another of the cluster's servers, such as
        metrics-server: https://127.0.0.1:<port>), read as the admin."""
        with urllib.request.urlopen(urllib.request.Request((server or self.server) + "/metrics"),
                                    context=self._ssl(), timeout=10) as resp:
            return resp.read().decode()

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        shutil.rmtree(self.state, ignore_errors=True)

    # --- internals --------------------------------------------------------------------------------

    def _start_metrics_server(self, ca: CertificateAuthority, timeout: float) -> ServerProcess:
        """metrics-server, started but not waited on, registered as the API server's metrics.k8s.io."""
        pki, port = self.state / "pki", free_port()
        # The aggregator checks the name <service>.<namespace>.svc against this CA (the APIService's caBundle).
        serving = ca.issue(pki, "metrics-server", "metrics-server", server=True,
                           hosts=("metrics-server.kube-system.svc", "localhost", "127.0.0.1"))
        server = self._run("metrics-server", [
            str(binaries.ensure("metrics-server")), f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            # Each node's InternalIP (127.0.0.1) and kubelet port lead to KWOK, whose certificate is the CA's.
            "--kubelet-preferred-address-types=InternalIP", "--kubelet-use-node-status-port",
            f"--kubelet-certificate-authority={ca.path}", f"--metric-resolution={METRIC_RESOLUTION}",
            "--kubelet-request-timeout=5s",  # must be shorter than the resolution
        ], lambda: True, timeout)
        # Loopback may not be an endpoint, but the aggregator resolves an ExternalName Service to
        # https://<externalName>:<the APIService's port> (ResolveCluster in k8s.io/apiserver/pkg/util/proxy).
        labels = {"k8s-app": "metrics-server"}
        self._request("POST", "/api/v1/namespaces/kube-system/services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "metrics-server", "namespace": "kube-system", "labels": labels},
            "spec": {"type": "ExternalName", "externalName": "localhost"},
        })
        self._request("POST", "/apis/apiregistration.k8s.io/v1/apiservices", {
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io", "labels": labels},
            "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                     "versionPriority": 100, "caBundle": base64.b64encode(ca.path.read_bytes()).decode(),
                     "service": {"namespace": "kube-system", "name": "metrics-server", "port": port}},
        })
        return server

    def _run(self, name: str, argv: list[str], healthy, timeout: float) -> ServerProcess:
        proc = ServerProcess(name=name, argv=argv, workdir=self.state, healthy=healthy)
        self.processes.append(proc)
        return proc.start(timeout=timeout)

    def _serving_metrics(self, metrics_server: ServerProcess) -> bool:
        if metrics_server.proc.poll() is not None:
            raise RuntimeError(f"metrics-server exited with {metrics_server.proc.returncode}; see "
                               f"{self.state}/metrics-server.log:\n{metrics_server.log_tail()}")
        return self._ready("/apis/metrics.k8s.io/v1beta1/nodes")

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
        return self._answers(self.server + path)

    def _answers(self, url: str) -> bool:
        """Whether ``url`` answers 200 to the admin, its certificate checked against the cluster's CA."""
        try:
            with urllib.request.urlopen(urllib.request.Request(url), context=self._ssl(), timeout=2) as resp:
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
        capacity = {**NODE_CAPACITY, "pods": str(self.node_pods)}
        for i in range(self.nodes):
            self._request("POST", "/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": f"{self.name}-node-{i}",
                             "annotations": {NODE_ANNOTATION: "fake", METRICS_PATH_ANNOTATION:
                                             f"/metrics/nodes/{self.name}-node-{i}/metrics/resource"},
                             "labels": {"type": "kwok", "kubernetes.io/hostname": f"{self.name}-node-{i}",
                                        "node-role.kubernetes.io/agent": ""}},
                "spec": {},
                "status": {"allocatable": capacity, "capacity": capacity,
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
