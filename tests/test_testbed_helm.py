"""helm from the testbed: lint and template a chart, and the API server accepts what it renders."""

from __future__ import annotations

import subprocess

import yaml
from kubernetes import dynamic

from testbed import binaries


def test_helm_lints_and_renders_a_chart_the_api_server_accepts(tmp_path, kube_api, namespace):
    helm = str(binaries.ensure("helm"))
    env = {"HOME": str(tmp_path), "HELM_CACHE_HOME": str(tmp_path / "cache"),
           "HELM_CONFIG_HOME": str(tmp_path / "config"), "HELM_DATA_HOME": str(tmp_path / "data")}
    subprocess.run([helm, "create", "web"], cwd=tmp_path, env=env, check=True, capture_output=True)
    lint = subprocess.run([helm, "lint", "web"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    rendered = subprocess.run([helm, "template", "shop", "web", "--namespace", namespace],
                              cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout
    manifests = [m for m in yaml.safe_load_all(rendered) if m]
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "ServiceAccount"} <= kinds
    dyn = dynamic.DynamicClient(kube_api)
    for manifest in manifests:
        if manifest["kind"] == "Pod":  # helm's test hook
            continue
        resource = dyn.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        accepted = resource.server_side_apply(body=manifest, namespace=namespace, field_manager="portal",
                                              dry_run="All")
        assert accepted.metadata.name == manifest["metadata"]["name"]
    # A dry run writes nothing.
    assert not dyn.resources.get(api_version="apps/v1", kind="Deployment").get(namespace=namespace).items
    # And an invalid manifest is refused by the server's validation with its reason. (A wrongly typed
    # field, replicas: "many", gets a 500 from server-side apply, not a 4xx: the cluster adapter must
    # treat that answer as an invalid request, not as the server being unavailable.)
    bad = next(m for m in manifests if m["kind"] == "Deployment")
    bad["spec"]["template"]["spec"]["containers"][0]["name"] = "Not_Valid"
    try:
        dyn.resources.get(api_version="apps/v1", kind="Deployment").server_side_apply(
            body=bad, namespace=namespace, field_manager="portal", dry_run="All")
    except Exception as exc:  # the client raises its own error type for a 4xx
        assert getattr(exc, "status", None) in (400, 422), exc
    else:
        raise AssertionError("the API server accepted an invalid container name")
