"""Pure: which storage a CallType resolves to, and the status that says so."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

from callstorage.api import RESERVED_STORAGE_NAME
from callstorage.api.conditions import make_condition, set_condition
from callstorage.reconcile.externalstorage import ready_state

SOURCE_CALL_TYPE = "CallType"
SOURCE_PLATFORM = "PlatformDefault"


def storage_target(
    namespace: str, external_storage: str | None, platform_namespace: str, platform_name: str
) -> tuple[tuple[str, str], str]:
    """((namespace, name), source) of the storage a CallType refers to.

    Omitted, or the reserved ``stream-s3``, means the platform storage; any other name is
    an ExternalStorage in the CallType's own namespace (no cross-tenant references).
    """
    if not external_storage or external_storage == RESERVED_STORAGE_NAME:
        return (platform_namespace, platform_name), SOURCE_PLATFORM
    return (namespace, external_storage), SOURCE_CALL_TYPE


def desired_status(
    current: Mapping[str, Any] | None,
    *,
    generation: int,
    target: tuple[str, str],
    source: str,
    storage: Mapping[str, Any] | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """The CallType's status given the storage object it resolves to (None: missing)."""
    status: dict[str, Any] = copy.deepcopy(dict(current or {}))
    conditions = list(status.get("conditions") or [])
    ns, name = target
    where = name if source == SOURCE_CALL_TYPE else f"{ns}/{name} (platform storage)"
    resolved: dict[str, Any] = {"name": name, "namespace": ns, "source": source}
    if storage is None:
        cond = make_condition(
            "Ready", "False", "StorageNotFound",
            f"ExternalStorage {where} does not exist; recordings of this call type have "
            "nowhere to go until it is created", generation, now)
    else:
        spec = storage.get("spec") or {}
        st = storage.get("status") or {}
        resolved.update({
            "storageType": spec.get("storageType"),
            "bucket": spec.get("bucket"),
            "accessMode": spec.get("accessMode", "ReadWrite"),
        })
        if st.get("effectivePrefixes"):
            resolved["effectivePrefixes"] = dict(st["effectivePrefixes"])
        ready, reason, message = ready_state(st)
        terminating = bool((storage.get("metadata") or {}).get("deletionTimestamp"))
        if ready == "True":
            note = " (it is being deleted and waits for its CallTypes)" if terminating else ""
            cond = make_condition("Ready", "True", "StorageReady",
                                  f"ExternalStorage {where} is ready{note}", generation, now)
        else:
            cond = make_condition(
                "Ready", "False", "StorageNotReady",
                f"ExternalStorage {where} is not ready: {reason}: {message}", generation, now)
    status["observedGeneration"] = generation
    status["resolvedStorage"] = {k: v for k, v in resolved.items() if v is not None}
    status["conditions"] = set_condition(conditions, cond)
    return status
