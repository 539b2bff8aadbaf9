"""An Application's status, sync and refresh, declaratively, against the testbed's real Kubernetes API server
with Argo CD's CRDs installed.

No Argo CD controller runs here: where a test needs a sync state it writes the Application's ``.status`` the
way Argo CD's controller does. ``status`` is not a subresource in Argo CD's CRDs (they declare none), so a plain
patch of the object sets it. Sync and refresh through Argo CD's API are in test_argocd_rest.py.
"""

from __future__ import annotations

import pytest

from integrations.delivery import DeliveryEvent, DeliveryStatus
from integrations.errors import Conflict, NotFound
from tests import argocd_support
from tests.argocd_support import DEV, OWNER, SOURCE, SYNC_OPTIONS, app_spec

# The fixtures shared with the other Argo CD tests: pytest finds them by these names.
argocd_crds, argo_ns, objects = argocd_support.argocd_crds, argocd_support.argo_ns, argocd_support.objects
central, connect, delivery = argocd_support.central, argocd_support.connect, argocd_support.delivery


# A status block as Argo CD's controller writes it after two automated syncs (fields of Argo CD 3.x).
SYNCED = {
    "sync": {"status": "Synced", "revision": "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e",
             "comparedTo": {"source": SOURCE, "destination": {"server": DEV, "namespace": "shop-dev"}}},
    "health": {"status": "Healthy", "lastTransitionTime": "2025-05-02T09:14:31Z"},
    "operationState": {
        "operation": {"initiatedBy": {"automated": True}, "retry": {"limit": 5},
                      "sync": {"revision": "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e", "prune": True,
                               "syncOptions": SYNC_OPTIONS}},
        "phase": "Succeeded", "message": "successfully synced (all tasks run)",
        "startedAt": "2025-05-02T09:14:02Z", "finishedAt": "2025-05-02T09:14:09Z",
        "syncResult": {"revision": "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e", "source": SOURCE,
                       "resources": [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop-dev",
                                      "name": "shop", "status": "Synced", "hookPhase": "Running", "syncPhase": "Sync",
                                      "message": "deployment.apps/shop serverside-applied"}]},
    },
    "reconciledAt": "2025-05-02T09:17:40Z",
    "resources": [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop-dev", "name": "shop",
                   "status": "Synced", "health": {"status": "Healthy"}}],
    "summary": {"images": ["registry.example.com/dev/shop:0f3c2a1", "redis:7.2"]},
    "history": [
        {"id": 0, "revision": "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b", "deployStartedAt": "2025-05-01T16:02:11Z",
         "deployedAt": "2025-05-01T16:02:19Z", "source": SOURCE, "initiatedBy": {"automated": True}},
        {"id": 1, "revision": "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e", "deployStartedAt": "2025-05-02T09:14:02Z",
         "deployedAt": "2025-05-02T09:14:09Z", "source": SOURCE, "initiatedBy": {"automated": True}},
    ],
    "sourceType": "Helm", "controllerNamespace": "argocd",
}


def test_the_status_is_read_as_argocd_wrote_it(delivery, objects):
    delivery.ensure_application(app_spec())
    objects.patch("applications", "shop-dev", {"status": SYNCED})  # as the controller would
    assert delivery.status("shop-dev") == DeliveryStatus(
        sync="Synced", health="Healthy", operation="Succeeded", message="successfully synced (all tasks run)",
        revision="9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e",
        history=[DeliveryEvent(revision="1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b", deployed_at="2025-05-01T16:02:19Z",
                               id=0),
                 DeliveryEvent(revision="9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e", deployed_at="2025-05-02T09:14:09Z",
                               id=1)],
        reconciled_at="2025-05-02T09:17:40Z", operation_started_at="2025-05-02T09:14:02Z",
        operation_finished_at="2025-05-02T09:14:09Z",
        images=("registry.example.com/dev/shop:0f3c2a1", "redis:7.2"))


def test_a_failed_sync_says_why_with_the_health_and_the_conditions(delivery, objects):
    delivery.ensure_application(app_spec())
    objects.patch("applications", "shop-dev", {"status": {
        "sync": {"status": "OutOfSync", "revision": "1a2b3c4"},
        "health": {"status": "Degraded", "message": "Deployment \"shop\" exceeded its progress deadline"},
        "operationState": {"operation": {"sync": {"revision": "1a2b3c4"}}, "phase": "Failed",
                           "message": "one or more objects failed to apply", "startedAt": "2025-05-02T10:00:00Z",
                           "finishedAt": "2025-05-02T10:00:04Z"},
        "conditions": [{"type": "SyncError", "message": "Failed sync attempt to 1a2b3c4: one or more objects failed"},
                       {"type": "RepeatedResourceWarning", "message": "not an error"}],
    }})
    status = delivery.status("shop-dev")
    assert (status.sync, status.health, status.operation, status.history, status.images) == (
        "OutOfSync", "Degraded", "Failed", [], ())
    assert status.message == ("one or more objects failed to apply; Deployment \"shop\" exceeded its progress deadline"
                              "; SyncError: Failed sync attempt to 1a2b3c4: one or more objects failed")


def test_an_application_argocd_has_not_reconciled_yet_is_unknown(delivery):
    delivery.ensure_application(app_spec())
    assert delivery.status("shop-dev") == DeliveryStatus(sync="Unknown", health="Unknown")
    with pytest.raises(NotFound):
        delivery.status("nothing")


def test_a_declarative_refresh_sets_argocds_refresh_annotation(delivery, objects):
    delivery.ensure_application(app_spec())
    delivery.refresh("shop-dev")
    annotations = objects.get("applications", "shop-dev")["metadata"]["annotations"]
    assert annotations == {"portal.dev/owner": OWNER, "argocd.argoproj.io/refresh": "normal"}
    delivery.ensure_application(app_spec())  # re-applying the spec leaves Argo CD's request alone
    assert objects.get("applications", "shop-dev")["metadata"]["annotations"]["argocd.argoproj.io/refresh"] == "normal"
    with pytest.raises(NotFound):
        delivery.refresh("nothing")


def test_a_declarative_sync_sets_the_operation_as_argocds_api_server_does(delivery, objects):
    delivery.ensure_application(app_spec())
    objects.patch("applications", "shop-dev", {"status": SYNCED})
    delivery.sync("shop-dev")
    app = objects.get("applications", "shop-dev")
    assert app["operation"] == {"initiatedBy": {"username": "developer-portal"},
                                "sync": {"revision": "main", "prune": True, "syncOptions": SYNC_OPTIONS}}
    assert "operationState" not in app["status"] and app["status"]["history"] == SYNCED["history"]
    delivery.ensure_application(app_spec())  # the spec's owner does not own the operation
    assert objects.get("applications", "shop-dev")["operation"] == app["operation"]
    # A second sync while the first is pending is refused, as Argo CD refuses it, and changes nothing.
    with pytest.raises(Conflict, match="another operation is already in progress"):
        delivery.sync("shop-dev")
    assert objects.get("applications", "shop-dev")["metadata"]["resourceVersion"] == app["metadata"]["resourceVersion"]
    with pytest.raises(NotFound):
        delivery.sync("nothing")

