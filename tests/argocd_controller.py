"""A stand-in for Argo CD's application controller, for tests against real API servers.

No Argo CD runs in the testbed: only its CRDs are installed. So that a deploy can be followed to running
pods, this plays the controller's part the way Argo CD does it, with real pieces: it reads each
Application in the central cluster, fetches the deployment repository at the head of its target revision
(from the GitLab fake), renders the chart with the testbed's real helm and that Application's value files,
applies the result with server-side apply to the destination cluster, reaching it with the credentials of
the Argo CD cluster Secret the portal wrote, then writes ``.status`` (sync, health, operation state,
history, images) as Argo CD does (status is not a subresource in Argo CD's CRDs). On deletion it removes
the resources finalizer. It does not prune, retry or diff like Argo CD.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

import yaml
from kubernetes import client

from integrations.cluster import ClusterTarget
from integrations.kubernetes import KubernetesConnector
from testbed import binaries

GROUP, VERSION = "argoproj.io", "v1alpha1"
FINALIZER = "resources-finalizer.argocd.argoproj.io"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ArgoCDStandIn:
    def __init__(self, central: client.ApiClient, namespace: str, gitlab, interval: float = 0.3):
        self.custom = client.CustomObjectsApi(central)
        self.core = client.CoreV1Api(central)
        self.namespace, self.gitlab, self.interval = namespace, gitlab, interval
        self.connector = KubernetesConnector(timeout=10)
        self.synced: list[tuple[str, str]] = []  # (application, revision), in order
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ArgoCDStandIn":
        self._thread = threading.Thread(target=self._loop, daemon=True, name="argocd-stand-in")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.connector.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reconcile()
            except Exception as exc:  # noqa: BLE001 - recorded for the test to show, the loop goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def reconcile(self) -> None:
        apps = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "applications")["items"]
        for app in apps:
            if app["metadata"].get("deletionTimestamp"):
                self._delete(app)
            else:
                self._sync(app)

    # --- the controller's part --------------------------------------------------------------------

    def _sync(self, app: dict) -> None:
        spec = app["spec"]
        source, destination = spec["source"], spec["destination"]
        revision, files = self._checkout(source["repoURL"], source.get("targetRevision") or "HEAD")
        status = app.get("status") or {}
        if (status.get("sync") or {}).get("revision") == revision and (status.get("health") or {}).get(
                "status") == "Healthy":
            return
        manifests = self._render(files, source, app["metadata"]["name"], destination["namespace"])
        cluster = self._cluster(destination["server"])
        cluster.apply(destination["namespace"], manifests)
        workloads = cluster.list_workloads(destination["namespace"])
        healthy = all(w.ready >= w.desired for w in workloads)
        images = sorted({i for w in workloads for i in w.details.get("images", [])})
        history = list(status.get("history") or [])
        if not history or history[-1]["revision"] != revision:
            history.append({"id": len(history), "revision": revision, "deployedAt": _now(),
                            "source": source})
            self.synced.append((app["metadata"]["name"], revision))
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "applications",
                                                   app["metadata"]["name"], {"status": {
            "sync": {"status": "Synced", "revision": revision},
            "health": {"status": "Healthy" if healthy else "Progressing"},
            "operationState": {"phase": "Succeeded", "message": "successfully synced (all tasks run)",
                               "startedAt": _now(), "finishedAt": _now(),
                               "operation": {"sync": {"revision": revision}}},
            "reconciledAt": _now(), "history": history, "summary": {"images": images},
        }})

    def _delete(self, app: dict) -> None:
        # Argo CD deletes the application's resources, then its finalizer. Here the resources go with their
        # namespace, which the portal's delete run removes next; only the finalizer is the controller's.
        if FINALIZER in (app["metadata"].get("finalizers") or []):
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "applications",
                                                       app["metadata"]["name"], {"metadata": {"finalizers": []}})

    # --- its inputs -------------------------------------------------------------------------------

    def _checkout(self, repo_url: str, revision: str) -> tuple[str, dict[str, bytes]]:
        """The head commit of the branch and its files, from the GitLab fake's repository of that clone URL."""
        for project in self.gitlab.projects.values():
            if self.gitlab._project_json(project)["http_url_to_repo"] == repo_url:
                branch = project["default_branch"] if revision == "HEAD" else revision
                sha = project["branches"][branch]
                return sha, dict(self.gitlab.commits[sha]["tree"])
        raise LookupError(f"no repository {repo_url} in the GitLab fake")

    def _render(self, files: dict[str, bytes], source: dict, release: str, namespace: str) -> list[dict]:
        with tempfile.TemporaryDirectory(prefix="argocd-") as tmp:
            root = Path(tmp)
            for path, content in files.items():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_bytes(content if isinstance(content, bytes) else content.encode())
            chart = root / source["path"]
            values = [str((chart / v).resolve()) for v in (source.get("helm") or {}).get("valueFiles", [])]
            argv = [str(binaries.ensure("helm")), "template", release, str(chart), "--namespace", namespace]
            for v in values:
                argv += ["-f", v]
            env = {"HOME": tmp, "HELM_CACHE_HOME": f"{tmp}/.cache", "HELM_CONFIG_HOME": f"{tmp}/.config",
                   "HELM_DATA_HOME": f"{tmp}/.data"}
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
            if done.returncode:
                raise RuntimeError(f"helm template failed: {done.stderr}")
        return [m for m in yaml.safe_load_all(done.stdout) if m]

    def _cluster(self, server: str):
        """The destination, reached with the credentials of the portal's Argo CD cluster Secret for it."""
        secrets = self.core.list_namespaced_secret(
            self.namespace, label_selector="argocd.argoproj.io/secret-type=cluster").items
        for secret in secrets:
            data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
            if data.get("server") != server:
                continue
            config = json.loads(data["config"])
            tls = config.get("tlsClientConfig") or {}
            ca = base64.b64decode(tls["caData"]).decode() if tls.get("caData") else ""
            if config.get("bearerToken"):
                target = ClusterTarget(name=data["name"], api_url=server, ca_pem=ca, token=config["bearerToken"])
            else:
                kubeconfig = {
                    "apiVersion": "v1", "kind": "Config", "current-context": "c",
                    "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority-data":
                                                           tls.get("caData", "")}}],
                    "users": [{"name": "u", "user": {"client-certificate-data": tls.get("certData", ""),
                                                     "client-key-data": tls.get("keyData", "")}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
                target = ClusterTarget(name=data["name"], api_url=server, kubeconfig=yaml.safe_dump(kubeconfig))
            return self.connector.connect(target)
        raise LookupError(f"no Argo CD cluster Secret for {server}")
