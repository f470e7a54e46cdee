"""ExternalStorage and CallType objects and the Argo CD health each must get.

The rows are the testdata of docs/argocd-health/resource_customizations (written by
``python hack/argocd_health.py``; a test fails when they drift), run there by lupa and by
Argo CD's own Lua runner. The order of the rules (the same as callstorage's readiness):

1. no status, or ``status.observedGeneration`` or the Ready condition's
   ``observedGeneration`` differs from ``metadata.generation``: Progressing;
2. Suspended=True (ExternalStorage only): Suspended;
3. Stalled=True: Degraded, with the Stalled condition's reason and message;
4. Ready=True: Healthy;
5. otherwise Progressing, with Ready's reason and message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

T0 = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class HealthCase:
    """One object and the health Argo CD must show for it."""

    id: str
    obj: dict[str, Any]
    status: str
    message: str

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])


def cond(kind: str, status: str, reason: str, message: str = "",
         generation: int = 1) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": T0}


def storage(generation: int = 1, conditions: list[dict[str, Any]] | None = None,
            observed: int | None = None, *, suspend: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "ExternalStorage",
        "metadata": {"name": "recordings", "namespace": "app-1", "generation": generation},
        "spec": {"storageType": "s3", "bucket": "recordings", "accessMode": "WriteOnly",
                 "s3": {"region": "eu-west-1", "credentialsSecretRef": {"name": "s3-keys"}}},
    }
    if suspend:
        obj["spec"]["suspend"] = True
    if conditions is not None:
        obj["status"] = {"observedGeneration": generation if observed is None else observed,
                         "conditions": conditions}
    return obj


def call_type(generation: int = 1, conditions: list[dict[str, Any]] | None = None,
              observed: int | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
        "metadata": {"name": "allhands", "namespace": "app-1", "generation": generation},
        "spec": {"externalStorage": "recordings"},
    }
    if conditions is not None:
        obj["status"] = {"observedGeneration": generation if observed is None else observed,
                         "conditions": conditions}
    return obj


VALIDATED = cond("Ready", "True", "Validated", "HeadBucket and probe writes succeeded")
UNREACHABLE = "could not connect to https://s3.eu-west-1.example.test: name does not resolve"

CASES: list[HealthCase] = [
    # --- ExternalStorage
    HealthCase("storage-without-status", storage(), "Progressing",
               "Waiting for the operator to observe generation 1"),
    HealthCase("storage-new-generation", storage(3, [cond("Ready", "True", "Validated",
                                                          generation=2)], observed=2),
               "Progressing", "Waiting for the operator to observe generation 3"),
    HealthCase("storage-ready-condition-of-old-generation",
               storage(3, [cond("Ready", "False", "AccessDenied", "403", generation=2),
                           cond("Stalled", "True", "AccessDenied", "403", generation=2)]),
               "Progressing", "Waiting for the operator to observe generation 3"),
    HealthCase("storage-without-ready-condition", storage(2, []), "Progressing",
               "Waiting for the operator to observe generation 2"),
    HealthCase("storage-validating", storage(1, [
        cond("Ready", "Unknown", "Validating", "validating the bucket"),
        cond("Reconciling", "True", "Validating", "validating the bucket")]),
        "Progressing", "Validating: validating the bucket"),
    HealthCase("storage-ready", storage(2, [cond("Ready", "True", "Validated",
                                                 "HeadBucket succeeded", generation=2)]),
               "Healthy", "Validated: HeadBucket succeeded"),
    HealthCase("storage-retrying-unreachable-endpoint", storage(1, [
        cond("Ready", "False", "EndpointUnreachable", "connection timed out; retrying"),
        cond("Reconciling", "True", "Retrying", "next attempt in 40s")]),
        "Progressing", "EndpointUnreachable: connection timed out; retrying"),
    # the name does not resolve: the operator stops retrying soon and says Stalled
    HealthCase("storage-stalled-endpoint-does-not-resolve", storage(1, [
        cond("Ready", "False", "EndpointUnreachable", UNREACHABLE),
        cond("Stalled", "True", "EndpointUnreachable", UNREACHABLE)]),
        "Degraded", f"EndpointUnreachable: {UNREACHABLE}"),
    HealthCase("storage-stalled-access-denied", storage(1, [
        cond("Ready", "False", "AccessDenied", "HeadBucket: 403 Forbidden"),
        cond("Stalled", "True", "AccessDenied", "HeadBucket: 403 Forbidden"),
        cond("Reconciling", "False", "Stalled", "")]),
        "Degraded", "AccessDenied: HeadBucket: 403 Forbidden"),
    HealthCase("storage-stalled-false-ready", storage(1, [
        VALIDATED, cond("Stalled", "False", "Validated", "")]),
        "Healthy", "Validated: HeadBucket and probe writes succeeded"),
    HealthCase("storage-suspended", storage(1, [
        VALIDATED, cond("Suspended", "True", "Suspended", "validation is paused")],
        suspend=True), "Suspended", "Suspended: validation is paused"),
    HealthCase("storage-suspended-and-stalled", storage(1, [
        cond("Ready", "False", "AccessDenied", "403"),
        cond("Stalled", "True", "AccessDenied", "403"),
        cond("Suspended", "True", "Suspended", "validation is paused")], suspend=True),
        "Suspended", "Suspended: validation is paused"),
    # --- CallType
    HealthCase("calltype-without-status", call_type(), "Progressing",
               "Waiting for the operator to observe generation 1"),
    HealthCase("calltype-new-generation", call_type(2, [cond("Ready", "True", "StorageReady")],
                                                    observed=1),
               "Progressing", "Waiting for the operator to observe generation 2"),
    HealthCase("calltype-ready", call_type(1, [
        cond("Ready", "True", "StorageReady", "app-1/recordings is Ready")]),
        "Healthy", "StorageReady: app-1/recordings is Ready"),
    HealthCase("calltype-storage-not-ready-yet", call_type(1, [
        cond("Ready", "False", "StorageNotReady", "app-1/recordings: Validating"),
        cond("Reconciling", "True", "StorageNotReady", "waiting for app-1/recordings")]),
        "Progressing", "StorageNotReady: app-1/recordings: Validating"),
    # the storage fails for good: the operator marks the call type Stalled as well
    HealthCase("calltype-storage-stalled", call_type(1, [
        cond("Ready", "False", "StorageNotReady", "app-1/recordings: AccessDenied"),
        cond("Stalled", "True", "StorageNotReady", "app-1/recordings: AccessDenied")]),
        "Degraded", "StorageNotReady: app-1/recordings: AccessDenied"),
    HealthCase("calltype-storage-not-found", call_type(1, [
        cond("Ready", "False", "StorageNotFound", "no ExternalStorage app-1/recordings"),
        cond("Stalled", "True", "StorageNotFound", "no ExternalStorage app-1/recordings")]),
        "Degraded", "StorageNotFound: no ExternalStorage app-1/recordings"),
]
