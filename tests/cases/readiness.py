"""One table of object states and what every reader must make of them.

Each case is an ExternalStorage or CallType as the API server returns it, with:
- ``ready``/``reason``: ``callstorage.api.readiness`` (the operator, client, CLI, bench and
  test bed all use it);
- ``health``: Argo CD's status, from the Lua health checks and from ``Readiness.health``;
- ``kstatus``: what kstatus (sigs.k8s.io/cli-utils, the library Flux uses) computes.

The unit tests check the Python rule, the integration tests run the real kstatus binary
over the same objects, and the Argo CD tests run the Lua scripts over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

T = "2026-11-27T10:00:00Z"


def cond(type_: str, status: str, reason: str, message: str = "", gen: int = 2
         ) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message or reason,
            "observedGeneration": gen, "lastTransitionTime": T}


def obj(kind: str, conditions: list[dict[str, Any]] | None, generation: int = 2,
        observed: int | None = 2, deleting: bool = False, suspend: bool = False
        ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "x", "namespace": "ns", "generation": generation,
                            "resourceVersion": "7", "uid": "u-1",
                            "creationTimestamp": "2026-11-27T09:00:00Z"}
    if deleting:
        meta["deletionTimestamp"] = T
        meta["finalizers"] = ["callstorage.io/in-use-protection"]
    body: dict[str, Any] = {"apiVersion": "callstorage.io/v1alpha1", "kind": kind,
                            "metadata": meta, "spec": {}}
    if kind == "ExternalStorage":
        body["spec"] = {"storageType": "s3", "bucket": "b", "suspend": suspend,
                        "s3": {"region": "us-east-1"}}
    if conditions is not None:
        status: dict[str, Any] = {"conditions": conditions}
        if observed is not None:
            status["observedGeneration"] = observed
        body["status"] = status
    return body


@dataclass(frozen=True)
class Case:
    id: str
    object: dict[str, Any] = field(repr=False)
    ready: bool
    reason: str
    health: str
    kstatus: str


EXS, CT = "ExternalStorage", "CallType"
VALIDATING = [cond("Ready", "Unknown", "Validating"), cond("Reconciling", "True", "Validating")]
READY = [cond("Ready", "True", "Validated")]
RETRYING = [cond("Ready", "False", "EndpointUnreachable"),
            cond("Reconciling", "True", "RetryScheduled")]
STALLED = [cond("Ready", "False", "AccessDenied"), cond("Stalled", "True", "AccessDenied")]

CASES: list[Case] = [
    # kstatus reads an object without status as Current: the operator writes Ready=Unknown
    # before any network call to keep that window short (its own rule says Pending).
    Case("storage-new-no-status", obj(EXS, None), False, "Pending", "Progressing", "Current"),
    Case("storage-validating", obj(EXS, VALIDATING), False, "Validating", "Progressing",
         "InProgress"),
    Case("storage-ready", obj(EXS, READY), True, "Validated", "Healthy", "Current"),
    Case("storage-retrying", obj(EXS, RETRYING), False, "EndpointUnreachable", "Progressing",
         "InProgress"),
    Case("storage-stalled", obj(EXS, STALLED), False, "AccessDenied", "Degraded", "Failed"),
    Case("storage-name-not-resolving", obj(EXS, [
        cond("Ready", "False", "EndpointUnreachable"),
        cond("Stalled", "True", "EndpointUnreachable")]),
        False, "EndpointUnreachable", "Degraded", "Failed"),
    Case("storage-invalid-spec", obj(EXS, [cond("Ready", "False", "InvalidSpec"),
                                           cond("Stalled", "True", "InvalidSpec")]),
         False, "InvalidSpec", "Degraded", "Failed"),
    Case("storage-suspended-after-success", obj(EXS, [
        *READY, cond("Suspended", "True", "Suspended")], suspend=True),
        True, "Validated", "Suspended", "Current"),
    Case("storage-suspended-never-validated", obj(EXS, [
        cond("Ready", "Unknown", "Suspended"), cond("Suspended", "True", "Suspended")],
        suspend=True), False, "Suspended", "Suspended", "InProgress"),
    Case("storage-terminating-in-use", obj(EXS, [
        *READY, cond("DeletionBlocked", "True", "InUse")], deleting=True),
        True, "Validated", "Healthy", "Terminating"),
    Case("storage-generation-not-observed", obj(EXS, [cond("Ready", "True", "Validated", gen=1)],
                                                observed=1),
         False, "Pending", "Progressing", "InProgress"),
    # the defect this table exists for: status moved on, the Ready condition did not
    Case("storage-condition-of-older-generation", obj(EXS, [
        cond("Ready", "True", "Validated", gen=1)], observed=2),
        False, "Pending", "Progressing", "Current"),
    Case("storage-reconcile-error", obj(EXS, [
        *READY, cond("Reconciling", "True", "ReconcileError")]),
        True, "Validated", "Healthy", "InProgress"),
    Case("calltype-waiting", obj(CT, [
        cond("Ready", "False", "StorageNotReady"),
        cond("Reconciling", "True", "WaitingForStorage")]),
        False, "StorageNotReady", "Progressing", "InProgress"),
    Case("calltype-ready", obj(CT, [cond("Ready", "True", "StorageReady")]),
         True, "StorageReady", "Healthy", "Current"),
    Case("calltype-storage-stalled", obj(CT, [
        cond("Ready", "False", "StorageNotReady"), cond("Stalled", "True", "StorageNotReady")]),
        False, "StorageNotReady", "Degraded", "Failed"),
    Case("calltype-storage-not-found", obj(CT, [
        cond("Ready", "False", "StorageNotFound"), cond("Stalled", "True", "StorageNotFound")]),
        False, "StorageNotFound", "Degraded", "Failed"),
    Case("calltype-new-no-status", obj(CT, None), False, "Pending", "Progressing", "Current"),
]
