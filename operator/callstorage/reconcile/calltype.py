"""Pure: which storage a CallType resolves to, the status that says so, and its events.

A CallType is as ready as its storage, read with the one readiness rule
(``callstorage.api.readiness``): Ready=True only while the storage is Ready for its
current generation. It is Stalled when its storage is (or when the storage it names has
not appeared within a short grace period), and Reconciling while it waits.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

from callstorage.api import is_platform_reference
from callstorage.api.conditions import (
    READY,
    RECONCILING,
    STALLED,
    get_condition,
    make_condition,
    set_condition,
)
from callstorage.api.readiness import readiness
from callstorage.api.timestamps import parse_rfc3339
from callstorage.reconcile.externalstorage import Event

SOURCE_CALL_TYPE = "CallType"
SOURCE_PLATFORM = "PlatformDefault"
STORAGE_READY = "StorageReady"
STORAGE_NOT_FOUND = "StorageNotFound"
STORAGE_NOT_READY = "StorageNotReady"
# A CallType applied together with its storage may be seen first: a missing storage is
# only reported as a problem (Stalled, a Warning) once the CallType is this old.
NOT_FOUND_GRACE = dt.timedelta(seconds=10)


def storage_target(
    namespace: str, external_storage: str | None, platform_namespace: str, platform_name: str
) -> tuple[tuple[str, str], str]:
    """((namespace, name), source) of the storage a CallType refers to.

    Omitted, or the reserved ``stream-s3``, means the platform storage; any other name is
    an ExternalStorage in the CallType's own namespace (no cross-tenant references).
    """
    if external_storage is None or is_platform_reference(external_storage):
        return (platform_namespace, platform_name), SOURCE_PLATFORM
    return (namespace, external_storage), SOURCE_CALL_TYPE


def created_at(call_type: Mapping[str, Any]) -> dt.datetime | None:
    """The object's creationTimestamp."""
    value = (call_type.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def desired_status(
    current: Mapping[str, Any] | None,
    *,
    generation: int,
    target: tuple[str, str],
    source: str,
    storage: Mapping[str, Any] | None,
    now: dt.datetime,
    created: dt.datetime | None = None,
) -> dict[str, Any]:
    """The CallType's status given the storage object it resolves to (None: missing)."""
    status: dict[str, Any] = copy.deepcopy(dict(current or {}))
    conditions = list(status.get("conditions") or [])
    ns, name = target
    where = name if source == SOURCE_CALL_TYPE else f"{ns}/{name} (platform storage)"
    resolved: dict[str, Any] = {"name": name, "namespace": ns, "source": source}
    stalled = False
    if storage is None:
        fresh = created is not None and now < created + NOT_FOUND_GRACE
        stalled = not fresh
        cond = make_condition(
            READY, "False", STORAGE_NOT_FOUND,
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
        state = readiness(storage)
        if state.ready:
            note = " (it is being deleted and waits for its CallTypes)" \
                if state.terminating else ""
            cond = make_condition(READY, "True", STORAGE_READY,
                                  f"ExternalStorage {where} is ready{note}", generation, now)
        else:
            stalled = state.stalled
            cond = make_condition(
                READY, "False", STORAGE_NOT_READY,
                f"ExternalStorage {where} is not ready: {state.reason}: {state.message}",
                generation, now)
    conditions = set_condition(conditions, cond)
    conditions = [c for c in conditions if c.get("type") not in (STALLED, RECONCILING)]
    if stalled:
        conditions = set_condition(conditions, make_condition(
            STALLED, "True", cond["reason"], cond["message"], generation, now))
    elif cond["status"] != "True":
        conditions = set_condition(conditions, make_condition(
            RECONCILING, "True", "WaitingForStorage", cond["message"], generation, now))
    status["observedGeneration"] = generation
    status["resolvedStorage"] = {k: v for k, v in resolved.items() if v is not None}
    status["conditions"] = conditions
    return status


def call_type_events(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Event]:
    """Normal when the CallType becomes ready, Warning when it becomes stalled; waiting
    for a storage that is still being validated is not worth a warning."""
    def state(status: Mapping[str, Any]) -> tuple[str, str, bool]:
        ready = get_condition(status.get("conditions"), READY) or {}
        stalled = get_condition(status.get("conditions"), STALLED)
        return (str(ready.get("status", "Unknown")), str(ready.get("reason", "")),
                stalled is not None and stalled.get("status") == "True")

    old, new = state(before), state(after)
    if new == old:
        return []
    message = str((get_condition(after.get("conditions"), READY) or {}).get("message", ""))
    if new[0] == "True":
        return [Event("Normal", new[1], message)]
    if new[2]:
        return [Event("Warning", new[1], message)]
    return []
