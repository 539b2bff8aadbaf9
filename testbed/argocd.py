"""Argo CD's own CRDs (Application, AppProject) in a real API server, so that the portal's Argo CD objects are
checked against Argo CD's schema. No Argo CD runs: nothing reconciles the objects.

The CRDs are Argo CD's, unchanged, in ../shared/testdata/argocd (its README says which version). They are
applied server-side: the Application CRD is too large for a client-side last-applied annotation.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client, watch

CRDS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "argocd"
FILES = ("application-crd.yaml", "appproject-crd.yaml")
FIELD_MANAGER = "portal-testbed"


def install_argocd_crds(api_client: client.ApiClient, timeout: int = 30) -> list[str]:
    """Apply Argo CD's CRDs and wait until the API server serves them (Established); their names.

    Applying them again changes nothing. TimeoutError when one is not Established within ``timeout`` seconds.
    """
    ext = client.ApiextensionsV1Api(api_client)
    names = []
    for file in FILES:
        body = yaml.safe_load((CRDS / file).read_text())
        names.append(body["metadata"]["name"])
        ext.patch_custom_resource_definition(names[-1], body, field_manager=FIELD_MANAGER, force=True,
                                             _content_type="application/apply-patch+yaml")
    for name in names:
        _wait_established(ext, name, timeout)
    return names


def _wait_established(ext: client.ApiextensionsV1Api, name: str, timeout: int) -> None:
    # A watch starts with the CRD as it is now, then each change, until the server ends it after ``timeout``.
    stream = watch.Watch()
    for event in stream.stream(ext.list_custom_resource_definition, field_selector=f"metadata.name={name}",
                               timeout_seconds=timeout):
        conditions = event["object"].status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            stream.stop()
            return
    raise TimeoutError(f"CRD {name} not Established within {timeout} s")
