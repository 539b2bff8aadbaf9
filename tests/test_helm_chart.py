"""The portal's own Helm chart (helm-chart/), with the testbed's helm and Kubernetes API server.

Linted and rendered for three values files (the defaults, a minimal install, a production-like one); every
rendered object accepted by the real API server (server-side apply, dry run); bad values refused at
install time saying what is wrong; the schema tied to the config module; the RBAC it grants applied for
real and enough for what the portal does in the central cluster, and no more; and the pods' commands, run
here with the environment the chart renders, migrating a real PostgreSQL and serving the probes.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from integrations.argocd import APPLICATION, PROJECT, SECRET
from integrations.cluster import ClusterTarget
from integrations.cluster_objects import POD_METRICS, WATCHED
from integrations.errors import AuthFailed
from jobs import ALL_QUEUES
from portal.config import Settings, env_name
from testbed import binaries
from testbed.process import free_port
from tests import argocd_support
from tests.argocd_support import CLUSTER_TOKEN, DEV, OWNER, app_spec, project_spec
from tests.real_servers import wait_for

argocd_crds, argo_ns, central, connect = (argocd_support.argocd_crds, argocd_support.argo_ns,
                                          argocd_support.central, argocd_support.connect)

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm-chart"
KEY = "0123456789abcdef" * 4
DATABASE = "postgresql+psycopg://portal:pw@postgres.example.test:5432/portal"
REDIS = "redis://redis.example.test:6379/0"
REQUIRED = ["--set", f"secret.PORTAL_SECRET_KEY={KEY},secret.PORTAL_DATABASE_URL={DATABASE},"
                     f"secret.PORTAL_REDIS_URL={REDIS}"]
VALUES = {"defaults": REQUIRED, "minimal": ["-f", "ci/minimal-values.yaml"],
          "production": ["-f", "ci/production-values.yaml"]}
HOOK = {"helm.sh/hook": "pre-install,pre-upgrade"}
TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


class Helm:
    """The testbed's helm in the chart's folder, with a home of its own: ``helm(*args)`` runs it to the end,
    ``helm.start(*args)`` starts it."""

    def __init__(self, home: Path):
        self.path = str(binaries.ensure("helm"))
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.path, *args], cwd=CHART, env=self.env, capture_output=True, text=True,
                              timeout=180)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.path, *args], cwd=CHART, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def helm(tmp_path_factory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def render(helm):
    """``render(*args, namespace=...)``: the objects `helm template` renders, hooks included."""
    def run(*args: str, namespace: str = "portal") -> list[dict]:
        done = helm("template", "portal", ".", "--namespace", namespace, *args)
        assert done.returncode == 0, done.stderr
        return [o for o in yaml.safe_load_all(done.stdout) if o]

    return run


@pytest.fixture
def other_namespace(kube_api):
    """A second fresh namespace (Argo CD's, beside the release's), deleted afterwards."""
    core = client.CoreV1Api(kube_api)
    name = f"argocd-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def named(objects: list[dict], kind: str, suffix: str = "") -> dict:
    """The one object of ``kind`` named for the release "portal", with ``suffix`` (a component's, "-web")."""
    (found,) = [o for o in objects if (o["kind"], o["metadata"]["name"]) == (kind, f"portal-developer-portal{suffix}")]
    return found


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    """The pod spec of every Deployment and Job, by component."""
    return {o["metadata"]["labels"]["app.kubernetes.io/component"]: o["spec"]["template"]["spec"]
            for o in objects if o["kind"] in ("Deployment", "Job")}


def environment(objects: list[dict], pod: dict, secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the pod's container gets from its ConfigMap, its Secret (``secrets`` when the Secret is
    not the chart's) and its own env."""
    container = pod["containers"][0]  # the pod's own; a worker's metrics container gets the same
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"
                             and o["metadata"]["name"] == source["configMapRef"]["name"]]
            env.update(config_map["data"])
        else:
            found = [o for o in objects
                     if o["kind"] == "Secret" and o["metadata"]["name"] == source["secretRef"]["name"]]
            env.update({k: base64.b64decode(v).decode() for k, v in found[0]["data"].items()} if found else secrets)
    return {**env, **{e["name"]: e["value"] for e in container.get("env", [])}}


# --- lint, and what each values file renders -------------------------------------------------------------

@pytest.mark.parametrize("values", VALUES)
def test_the_chart_lints_with_each_values_file(helm, values):
    lint = helm("lint", "--strict", ".", *VALUES[values])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["type"]) == ("v2", "developer-portal", "application")
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"]) and chart["appVersion"]


def test_the_defaults_run_web_workers_the_watcher_and_the_migrations_hardened(render):
    objects = render(*REQUIRED)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted([
        ("ConfigMap", "portal-developer-portal"), ("Secret", "portal-developer-portal"),
        ("ConfigMap", "portal-developer-portal-migrations"), ("Secret", "portal-developer-portal-migrations"),
        ("Job", "portal-developer-portal-migrations"), ("ServiceAccount", "portal-developer-portal"),
        ("Role", "portal-portal-developer-portal"), ("RoleBinding", "portal-portal-developer-portal"),
        ("ClusterRole", "portal-portal-developer-portal-watch-cache"),
        ("ClusterRoleBinding", "portal-portal-developer-portal-watch-cache"),
        ("Service", "portal-developer-portal"), ("PodDisruptionBudget", "portal-developer-portal-web"),
        ("Deployment", "portal-developer-portal-web"), ("Deployment", "portal-developer-portal-worker"),
        ("Deployment", "portal-developer-portal-watcher"),
    ])
    deployments = {o["metadata"]["name"].rsplit("-", 1)[1]: o for o in objects if o["kind"] == "Deployment"}
    pods = pod_specs(objects)
    uid = int(re.search(r"useradd .*--uid (\d+)", (REPO / "Dockerfile").read_text()).group(1))
    for component, pod in pods.items():
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
                                          "seccompProfile": {"type": "RuntimeDefault"}}, component
        for container in pod["containers"]:
            assert container["securityContext"] == {
                "runAsNonRoot": True, "runAsUser": uid, "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}, component
            assert {"cpu", "memory"} <= (container["resources"]["requests"].keys()
                                         & container["resources"]["limits"].keys())
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], component
            assert container["image"] == "developer-portal:0.1.0"
        assert environment(objects, pod)["PORTAL_DATABASE_URL"] == DATABASE

    web, worker, watcher = deployments["web"], deployments["worker"], deployments["watcher"]
    (gunicorn,) = pods["web"]["containers"]
    assert gunicorn["command"][0] == "gunicorn" and gunicorn["command"][-1] == "app:app"
    assert "--bind=0.0.0.0:8000" in gunicorn["command"] and "EXPOSE 8000" in (REPO / "Dockerfile").read_text()
    assert gunicorn["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert gunicorn["livenessProbe"]["httpGet"] == gunicorn["startupProbe"]["httpGet"] == {"path": "/healthz",
                                                                                           "port": "http"}
    assert gunicorn["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert environment(objects, pods["web"])["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
    assert {m["mountPath"] for m in gunicorn["volumeMounts"]} == {"/tmp", "/tmp/prometheus"}
    assert web["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert web["spec"]["replicas"] == 2 and worker["spec"]["replicas"] == 2
    rq, sidecar = pods["worker"]["containers"]
    assert rq["command"] == ["flask", "--app", "app", "worker"] and "ports" not in rq
    assert pods["worker"]["terminationGracePeriodSeconds"] == 120
    # Each work horse's figures are folded into the worker's own files, which the metrics container serves
    # from the pod's shared /tmp.
    assert {e["name"]: e["value"] for e in rq["env"]}["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
    assert {e["name"]: e["value"] for e in sidecar["env"]}["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
    assert sidecar["command"] == ["flask", "--app", "app", "metrics-server", "--port=9100"]
    assert sidecar["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert sidecar["volumeMounts"] == rq["volumeMounts"] and sidecar["securityContext"] == rq["securityContext"]
    assert worker["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    assert watcher["spec"]["replicas"] == 1 and watcher["spec"]["strategy"] == {"type": "Recreate"}
    assert pods["watcher"]["containers"][0]["command"][:4] == ["flask", "--app", "app", "watch-clusters"]
    assert not any("collect-logs" in c for pod in pods.values() for c in pod["containers"][0]["command"])
    # Every pod speaks to the API server as the chart's account, but the migrations, which need none.
    assert {c: p.get("serviceAccountName") for c, p in pods.items()} == {
        "web": "portal-developer-portal", "worker": "portal-developer-portal", "watcher": "portal-developer-portal",
        "migrations": None}
    assert pods["migrations"]["automountServiceAccountToken"] is False
    service = named(objects, "Service")
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]
    pdb = named(objects, "PodDisruptionBudget", "-web")
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["selector"] == web["spec"]["selector"]
    # A changed setting rolls every pod.
    changed = render(*REQUIRED, "--set", "config.PORTAL_PAGE_SIZE=50")
    checksum = lambda objs: {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                             for o in objs if o["kind"] == "Deployment"}
    assert all(checksum(objects)[name] != value for name, value in checksum(changed).items())


def test_the_migrations_run_as_a_hook_reading_copies_of_the_settings_made_before_it(render):
    objects = render(*REQUIRED, "--set", "config.PORTAL_PAGE_SIZE=50")
    hooks = {(o["kind"], o["metadata"]["name"]): o["metadata"].get("annotations", {}) for o in objects
             if HOOK.items() <= o["metadata"].get("annotations", {}).items()}
    name = "portal-developer-portal-migrations"
    assert set(hooks) == {("ConfigMap", name), ("Secret", name), ("Job", name)}
    # On a first install the release's own ConfigMap and Secret do not exist yet: the copies come first.
    assert int(hooks["ConfigMap", name]["helm.sh/hook-weight"]) < int(hooks["Job", name]["helm.sh/hook-weight"])
    assert int(hooks["Secret", name]["helm.sh/hook-weight"]) < int(hooks["Job", name]["helm.sh/hook-weight"])
    assert hooks["Secret", name]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pods = pod_specs(objects)
    assert pods["migrations"]["containers"][0]["command"] == ["flask", "--app", "app", "db", "upgrade"]
    assert pods["migrations"]["restartPolicy"] == "Never"
    assert environment(objects, pods["migrations"]) == {
        k: v for k, v in environment(objects, pods["web"]).items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    assert environment(objects, pods["migrations"])["PORTAL_PAGE_SIZE"] == "50"


def test_the_minimal_values_render_only_what_the_portal_cannot_run_without(render):
    objects = render(*VALUES["minimal"])
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "ConfigMap", "Deployment", "Deployment", "Job",
                                                 "Secret", "Secret", "Service"]
    pods = pod_specs(objects)
    assert set(pods) == {"web", "worker", "migrations"}
    assert pods["web"]["serviceAccountName"] == pods["worker"]["serviceAccountName"] == "default"
    web_pod = named(objects, "Deployment", "-web")["spec"]["template"]
    assert "prometheus.io/scrape" not in web_pod["metadata"]["annotations"]


def test_the_production_values_serve_tls_autoscale_and_read_an_existing_secret(render):
    objects = render(*VALUES["production"])
    kinds: dict[str, list[dict]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], []).append(obj)
    assert "Secret" not in kinds  # the Secret is made outside the chart
    assert sorted(kinds) == sorted(["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                                    "ClusterRoleBinding", "Service", "Deployment", "PodDisruptionBudget",
                                    "HorizontalPodAutoscaler", "Ingress", "ServiceMonitor", "Job"])
    pods = pod_specs(objects)
    for component, pod in pods.items():
        for container in pod["containers"]:
            assert {"secretRef": {"name": "developer-portal-secrets"}} in container["envFrom"], component
            assert {"name": "ca", "mountPath": "/etc/portal/ca", "readOnly": True} in container["volumeMounts"]
            assert container["image"] == ("registry.example.com/platform/developer-portal@sha256:"
                                          "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
        assert pod["imagePullSecrets"] == [{"name": "registry-pull"}]
        assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    (ingress,) = kinds["Ingress"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["portal.example.com"], "secretName": "portal-developer-portal-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "portal.example.com"
    assert rule["http"]["paths"] == [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": "portal-developer-portal", "port": {"name": "http"}}}}]
    assert environment(objects, pods["web"], {})["PORTAL_PUBLIC_URL"] == "https://portal.example.com"
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "portal-developer-portal-web"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    web = named(objects, "Deployment", "-web")
    assert "replicas" not in web["spec"]  # the autoscaler's to set: an upgrade must not reset it
    assert named(objects, "PodDisruptionBudget", "-web")["spec"] == {
        "minAvailable": 2, "selector": web["spec"]["selector"]}
    assert named(objects, "Deployment", "-worker")["spec"]["replicas"] == 6
    assert pods["worker"]["containers"][0]["command"][-3:] == ["provisioning", "builds", "default"]
    (monitor,) = kinds["ServiceMonitor"]
    service_labels = named(objects, "Service")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "developer-portal-secrets",
                                                                           "key": "PORTAL_METRICS_TOKEN"}}


# --- the configuration ---------------------------------------------------------------------------------------

def test_the_settings_the_pods_read_are_the_values_given(render):
    """Through the ConfigMap and the config module's own parsing: types, and numbers YAML reads as floats."""
    objects = render(*VALUES["production"], "--set", "config.PORTAL_JOB_TIMEOUT=3000000")
    values = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())["config"]
    secrets = {"PORTAL_SECRET_KEY": KEY, "PORTAL_DATABASE_URL": DATABASE, "PORTAL_REDIS_URL": REDIS}
    settings = Settings.from_env(environment(objects, pod_specs(objects)["web"], secrets))
    for name, value in {**values, "PORTAL_JOB_TIMEOUT": 3000000, **secrets}.items():
        assert getattr(settings, name.removeprefix("PORTAL_").lower()) == value, name
    assert settings.job_failure_ttl == 1209600 and settings.provisioning_lease == 90.5
    assert settings.http_timeout == 15.0 and settings.session_cookie_secure is True


def test_the_schema_admits_exactly_the_portals_settings_each_of_its_type():
    schema = json.loads((CHART / "values.schema.json").read_text())
    config, secret = schema["properties"]["config"], schema["properties"]["secret"]
    expected_config, expected_secret = {}, set()
    for f in dataclasses.fields(Settings):
        if f.metadata.get("secret"):
            expected_secret.add(env_name(f.name))
        else:
            expected_config[env_name(f.name)] = TYPES[f.type if isinstance(f.type, str) else f.type.__name__]
    got = {name: prop["type"] for name, prop in config["properties"].items()}
    assert got == expected_config, (
        "values.schema.json's config does not match portal/config.py; its properties should be "
        + json.dumps({n: {"type": t} for n, t in expected_config.items()}))
    assert set(secret["properties"]) == expected_secret
    assert config["additionalProperties"] is False and secret["additionalProperties"] is False
    assert all(p["type"] == "string" for p in secret["properties"].values())
    assert schema["properties"]["worker"]["properties"]["queues"]["items"]["enum"] == ALL_QUEUES


BAD_VALUES = [
    (["--set", "web.replicas=two"], "at '/web/replicas': got string, want integer"),
    (["--set", "secret.PORTAL_DATABASE_URL="], "at '/secret/PORTAL_DATABASE_URL': minLength: got 0, want 1"),
    (["--set", "secret.PORTAL_DATABASE_URL=mysql://db/portal"], "'mysql://db/portal' does not match pattern"),
    (["--set", "secret.PORTAL_SECRET_KEY=short"], "at '/secret/PORTAL_SECRET_KEY': minLength: got 5, want 32"),
    (["--set", "replicas=3"], "at '': additional properties 'replicas' not allowed"),
    (["--set", "watcher.replicas=2"], "at '/watcher': additional properties 'replicas' not allowed"),
    (["--set", "config.PORTAL_GITLAB_ULR=https://gitlab.example.com"],
     "at '/config': additional properties 'PORTAL_GITLAB_ULR' not allowed"),
    (["--set", "config.PORTAL_GITLAB_TOKEN=glpat-1"], "at '/config': additional properties 'PORTAL_GITLAB_TOKEN' not"),
    (["--set-string", "config.PORTAL_JOB_TIMEOUT=ten"], "at '/config/PORTAL_JOB_TIMEOUT': got string, want integer"),
    (["--set", "worker.queues={fast}"], "at '/worker/queues/0': value must be one of 'provisioning'"),
    (["--set", "ingress.enabled=true"], "at '/ingress/host': minLength: got 0, want 1"),
    (["--set", "existingSecret=portal-secrets"],
     "secret.PORTAL_DATABASE_URL is set but existingSecret is too: put every secret setting in the Secret "
     "portal-secrets, or unset existingSecret"),
    (["--set", "web.autoscaling.enabled=true,web.autoscaling.minReplicas=4,web.autoscaling.maxReplicas=2"],
     "web.autoscaling.maxReplicas (2) is below web.autoscaling.minReplicas (4)"),
]


@pytest.mark.parametrize("args, said", BAD_VALUES, ids=[said[:40] for _, said in BAD_VALUES])
def test_bad_values_are_refused_saying_what_is_wrong(helm, control_plane, args, said):
    # From the minimal values, so that each case has exactly one thing wrong; rendered, and installed (a
    # server-side dry run) into the testbed.
    install = ["install", "--dry-run=server", "--kubeconfig", str(control_plane.kubeconfig), "--namespace", "default"]
    for command in (["template"], install):
        done = helm(*command, "portal", ".", *VALUES["minimal"], *args)
        assert done.returncode != 0 and said in done.stderr, (command, done.stderr)
        assert "portal-password" not in done.stderr  # no secret quoted back


def test_the_required_settings_are_named_when_missing(helm):
    done = helm("template", "portal", ".")
    assert done.returncode != 0
    assert ("at '/secret': missing properties 'PORTAL_SECRET_KEY', 'PORTAL_DATABASE_URL', 'PORTAL_REDIS_URL'"
            in done.stderr)
    done = helm("template", "portal", ".", "--set", f"secret.PORTAL_SECRET_KEY={KEY},secret.PORTAL_REDIS_URL={REDIS}")
    assert done.returncode != 0 and "at '/secret': missing property 'PORTAL_DATABASE_URL'" in done.stderr
    # An existing Secret holds them: the chart cannot see into it.
    assert helm("template", "portal", ".", "--set", "existingSecret=portal-secrets").returncode == 0


def test_the_readme_documents_every_value():
    readme = (CHART / "README.md").read_text()
    opaque = {"resources", "startupProbe", "livenessProbe", "readinessProbe", "podSecurityContext", "securityContext",
              "behavior"}

    def leaves(values: dict, prefix: str = "") -> list[str]:
        found = []
        for key, value in values.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and key not in opaque:
                found += leaves(value, path + ".")
            else:
                found.append(path)
        return found

    missing = [p for p in leaves(yaml.safe_load((CHART / "values.yaml").read_text())) if f"| `{p}` |" not in readme]
    assert not missing, f"helm-chart/README.md's values table lacks {missing}"


# --- the API server ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", VALUES)
def test_the_api_server_accepts_every_rendered_object(render, values, kube_api, namespace, other_namespace):
    objects = render(*VALUES[values], "--set", f"config.PORTAL_ARGOCD_NAMESPACE={other_namespace}",
                     namespace=namespace)
    dyn = dynamic.DynamicClient(kube_api)
    applied = set()
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            # The Prometheus Operator's CRD is not in the testbed: say so, rather than pass it silently.
            with pytest.raises(ResourceNotFoundError):
                dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            continue
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        answer = resource.server_side_apply(body=obj, namespace=obj["metadata"].get("namespace"),
                                            field_manager="helm", dry_run="All")
        assert answer.metadata.name == obj["metadata"]["name"]
        assert answer.metadata.namespace == (obj["metadata"]["namespace"] if resource.namespaced else None)
        applied.add(obj["kind"])
    assert {"Deployment", "Service", "Job", "ConfigMap"} <= applied
    # A dry run wrote nothing.
    assert not client.AppsV1Api(kube_api).list_namespaced_deployment(namespace).items
    assert not client.RbacAuthorizationV1Api(kube_api).list_namespaced_role(other_namespace).items


def test_helm_installs_and_upgrades_with_the_migrations_first(helm, kube_api, control_plane, namespace,
                                                              other_namespace):
    """For real, into the testbed: the hook's copies of the settings exist before the migrations' pod, the
    release's own objects only after it; the copies are gone once it succeeded; an upgrade migrates again
    with the new settings while the old ones still serve. No kubelet runs the pods here: the test ends the
    migrations' pod as one would, KWOK makes the Deployments' pods ready."""
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    hook = "portal-developer-portal-migrations"
    common = ["--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace, "--wait", "--timeout", "120s",
              *REQUIRED, "--set", f"config.PORTAL_ARGOCD_NAMESPACE={other_namespace}"]

    def run_migrations(command: list[str]) -> dict[str, Any]:
        """Run helm; when the migrations' pod runs, note the ConfigMaps there are, then end it as succeeded."""
        process = helm.start(*command)
        try:
            pod = wait_for(lambda: next((p for p in core.list_namespaced_pod(
                namespace, label_selector="app.kubernetes.io/component=migrations").items
                if p.status.phase == "Running" and p.status.pod_ip), None), timeout=60, what="the migrations' pod")
            seen = {c.metadata.name: c.data or {} for c in core.list_namespaced_config_map(namespace).items}
            deployments = apps.list_namespaced_deployment(namespace).items
            core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
                "phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
                "containerStatuses": [{"name": "migrations", "image": pod.spec.containers[0].image, "imageID": "",
                                       "ready": False, "restartCount": 0, "state": {"terminated": {
                                           "exitCode": 0, "reason": "Completed", "startedAt": pod.status.start_time,
                                           "finishedAt": pod.status.start_time}}}]}})
            _, stderr = process.communicate(timeout=150)
            assert process.returncode == 0, stderr
            return {"configmaps": seen, "deployments": [d.metadata.name for d in deployments]}
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()

    try:
        first = run_migrations(["install", "portal", ".", *common])
        assert first["configmaps"].keys() - {"kube-root-ca.crt"} == {hook}  # the release's own come after
        assert not first["deployments"]
        assert [s.metadata.name for s in core.list_namespaced_secret(namespace).items
                if not s.metadata.name.startswith("sh.helm.release.")] == ["portal-developer-portal"]
        assert not [c for c in core.list_namespaced_config_map(namespace).items if c.metadata.name == hook]
        job = client.BatchV1Api(kube_api).read_namespaced_job(hook, namespace)
        assert job.status.succeeded == 1  # kept, for its log
        web = apps.read_namespaced_deployment("portal-developer-portal-web", namespace)
        assert web.status.ready_replicas == 2
        assert core.read_namespaced_service_account("portal-developer-portal", namespace)

        second = run_migrations(["upgrade", "portal", ".", *common, "--set", "config.PORTAL_PAGE_SIZE=50"])
        assert second["configmaps"][hook]["PORTAL_PAGE_SIZE"] == "50"
        assert "PORTAL_PAGE_SIZE" not in second["configmaps"]["portal-developer-portal"]  # still the old release's
        assert core.read_namespaced_config_map("portal-developer-portal", namespace).data["PORTAL_PAGE_SIZE"] == "50"
    finally:
        helm("uninstall", "portal", "--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace,
             "--wait")
    rbac = client.RbacAuthorizationV1Api(kube_api)
    assert not [r for r in rbac.list_cluster_role().items if r.metadata.name.startswith(f"{namespace}-portal-")]


def test_the_dry_run_is_the_api_servers_own_validation(render, kube_api, namespace):
    """What the schema lets through, the API server still judges: a disruption budget of 150% is refused."""
    objects = render(*VALUES["minimal"], "--set", "web.podDisruptionBudget.enabled=true,"
                     "web.podDisruptionBudget.minAvailable=150%", namespace=namespace)
    (pdb,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    with pytest.raises(ApiException) as info:
        client.PolicyV1Api(kube_api).patch_namespaced_pod_disruption_budget(
            pdb["metadata"]["name"], namespace, pdb, field_manager="helm", dry_run="All",
            _content_type="application/apply-patch+yaml")
    assert info.value.status == 422 and "must not be greater than 100%" in info.value.body


def test_the_rbac_lets_the_portal_do_its_argocd_work_and_watch_clusters_and_no_more(
        render, kube_api, control_plane, namespace, other_namespace, connect, argocd_crds):
    """The chart's ServiceAccount, Roles and bindings applied for real; the portal's Argo CD adapter, as that
    account, does all it does in the central cluster; the account reads every kind the cluster cache watches."""
    release, argocd = other_namespace, namespace  # the fixtures release the Applications left in `namespace`
    objects = render(*REQUIRED, "--set", f"config.PORTAL_ARGOCD_NAMESPACE={argocd}", namespace=release)
    rbac = client.RbacAuthorizationV1Api(kube_api)
    dyn = dynamic.DynamicClient(kube_api)
    wanted = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    cluster_scoped = [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    try:
        for obj in (o for o in objects if o["kind"] in wanted):
            dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]).server_side_apply(
                body=obj, namespace=obj["metadata"].get("namespace"), field_manager="helm")
        account = named(objects, "ServiceAccount")["metadata"]["name"]
        token = client.CoreV1Api(kube_api).create_namespaced_service_account_token(
            account, release, {"spec": {}}).status.token

        def as_portal() -> client.ApiClient:
            cfg = client.Configuration()
            cfg.host, cfg.ssl_ca_cert = control_plane.server, str(control_plane.state / "pki" / "ca.crt")
            cfg.api_key = {"authorization": f"Bearer {token}"}
            return client.ApiClient(cfg)

        delivery = connect(kube_api=as_portal)  # declarative: no Argo CD API URL or token
        delivery.ensure_project(project_spec())
        delivery.register_cluster(ClusterTarget(name="dev-cluster", api_url=DEV, token=CLUSTER_TOKEN, verify=False),
                                  OWNER)
        delivery.ensure_application(app_spec())
        assert delivery.find_application("shop-dev").owner == OWNER and delivery.find_cluster("dev-cluster")
        delivery.sync("shop-dev")
        delivery.refresh("shop-dev")
        delivery.status("shop-dev")
        delivery.delete_application("shop-dev")
        delivery.delete_cluster("dev-cluster")
        delivery.delete_project("dev")
        assert delivery.find_project("dev") is None

        def allowed(verb: str, group: str, resource: str, where: str = "") -> bool:
            review = client.AuthorizationV1Api(as_portal()).create_self_subject_access_review({"spec": {
                "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": where}}})
            return review.status.allowed

        group = lambda api_version: api_version.rpartition("/")[0]
        for kind in (PROJECT, APPLICATION, SECRET):
            assert allowed("patch", group(kind.api_version), kind.plural, argocd), kind
        for watched in WATCHED:
            for verb in ("list", "watch"):
                assert allowed(verb, group(watched.kind.api_version), watched.kind.plural), (verb, watched.key)
        assert allowed("list", group(POD_METRICS.api_version), POD_METRICS.plural)
        # And no more: Argo CD's own credentials are never listed, nothing is written outside Argo CD's objects.
        assert not allowed("list", "", "secrets", argocd)
        assert not allowed("get", "", "secrets", release)
        assert not allowed("create", "apps", "deployments", argocd)
        assert not allowed("delete", "", "pods", release)
        with pytest.raises(AuthFailed):
            connect(kube_api=as_portal, namespace=release).find_project("dev")  # not Argo CD's namespace
    finally:
        for obj in cluster_scoped:
            delete = rbac.delete_cluster_role if obj["kind"] == "ClusterRole" else rbac.delete_cluster_role_binding
            try:
                delete(obj["metadata"]["name"])
            except ApiException as exc:
                if exc.status != 404:
                    raise


# --- the pods' commands ------------------------------------------------------------------------------------------

def test_the_pods_commands_migrate_serve_work_and_stop_on_sigterm(render, postgres_server, redis_server, tmp_path):
    """Each container's command, with exactly the environment the chart gives it (its emptyDirs as folders
    here), against real PostgreSQL and Redis: the migrations, then gunicorn answering the probes and /metrics,
    a worker and the cluster cache watcher; each stops cleanly on SIGTERM."""
    database = postgres_server.create_database("helm_chart_pods")
    objects = render("--set", f"secret.PORTAL_SECRET_KEY={KEY},secret.PORTAL_DATABASE_URL={database},"
                     f"secret.PORTAL_REDIS_URL={redis_server.url},web.gunicorn.workers=2")
    pods = pod_specs(objects)
    port = free_port()

    def start(component: str) -> subprocess.Popen:
        pod = pods[component]
        container = pod["containers"][0]
        folders = {m["mountPath"]: tmp_path / component / m["name"] for m in container["volumeMounts"]}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)

        def here(value: str) -> str:  # a path under a mount, in this test's folder for it
            for mount, folder in sorted(folders.items(), key=lambda item: -len(item[0])):  # the deepest mount
                if value == mount or value.startswith(mount + "/"):
                    return str(folder) + value[len(mount):]
            return value

        env = {k: here(v) for k, v in environment(objects, pod).items()}
        env.update({"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
                    "PYTHONDONTWRITEBYTECODE": "1"})
        # The one change: a free port here rather than the pod's own 8000.
        argv = [a.replace("0.0.0.0:8000", f"127.0.0.1:{port}") for a in container["command"]]
        with open(tmp_path / f"{component}.log", "w") as log:
            return subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stopped(process: subprocess.Popen, timeout: float, component: str) -> None:
        process.wait(timeout=timeout)
        assert process.returncode == 0, (tmp_path / f"{component}.log").read_text()

    stopped(start("migrations"), 120, "migrations")
    processes = [start("web"), start("worker"), start("watcher")]
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{base}/healthz"), timeout=60, what="gunicorn answering /healthz")
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json() == {"database": "ok", "redis": "ok", "migrations": "ok"}
        metrics = requests.get(f"{base}/metrics", timeout=5)
        assert metrics.status_code == 200 and "portal_http_request_duration_seconds" in metrics.text
        # gunicorn's workers keep their figures in the emptyDir the chart mounts for them.
        assert list((tmp_path / "web" / "prometheus").glob("*.db"))
        assert all(p.poll() is None for p in processes), [p.args for p in processes if p.poll() is not None]
        for process, component in zip(processes, ("web", "worker", "watcher")):
            process.send_signal(signal.SIGTERM)
            stopped(process, pods[component]["terminationGracePeriodSeconds"], component)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:  # not listening yet, or a worker still loading the app
        return False
