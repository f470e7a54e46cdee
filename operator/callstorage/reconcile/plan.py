"""Pure: what an observed ExternalStorage asks of the controller next.

The engine (``callstorage.engine``) reads these answers from the object as the watch or
the inventory holds it, and acts on them: which Secrets it refers to, whether an
on-demand check is pending (and the name of its object), whether the in-use finalizer is
wrong, whether a reference-only round has anything to do, whether the CallTypes that
use it need a round of their own. Nothing here awaits, queues or writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from callstorage.api import CHECK_ANNOTATION, IN_USE_FINALIZER
from callstorage.api.readiness import ready_condition_for
from callstorage.inventory import ObjectKey
from callstorage.reconcile.externalstorage import USED_BY_SAMPLE, ready_state
from callstorage.storagetypes import PROVIDERS


def meta_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """An object's ``metadata`` ({} when absent)."""
    meta: Mapping[str, Any] = (obj or {}).get("metadata") or {}
    return meta


def key_of(obj: Mapping[str, Any]) -> ObjectKey:
    """(namespace, name) of an object."""
    meta = meta_of(obj)
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def pending_check(obj: Mapping[str, Any]) -> str | None:
    """The check-annotation value not yet answered in ``status.lastCheck``, if any."""
    value = (meta_of(obj).get("annotations") or {}).get(CHECK_ANNOTATION)
    if not value:
        return None
    done = ((obj.get("status") or {}).get("lastCheck") or {}).get("requestedAt")
    return None if value == done else str(value)


def check_id(obj: Mapping[str, Any], requested_at: str) -> str:
    """The name of one check request's object: derived from the object (namespace, name,
    uid) and the annotation value, so the request uploads one object even when the
    operator crashes between the upload and the status write and runs it again."""
    meta = meta_of(obj)
    identity = f"{meta.get('namespace')}/{meta.get('name')}/{meta.get('uid')}/{requested_at}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"callstorage-check:{identity}"))


def secret_refs(obj: Mapping[str, Any]) -> set[ObjectKey]:
    """Secrets an object refers to, read leniently (even from a spec that fails to parse)."""
    ns = key_of(obj)[0]
    spec = obj.get("spec") or {}
    names: set[str] = set()
    for storage_type, provider in PROVIDERS.items():
        block = spec.get(storage_type)
        if isinstance(block, Mapping):
            names |= provider.secret_names(block)
    ca = ((spec.get("tls") or {}).get("caSecretRef") or {})
    if isinstance(ca, dict) and ca.get("name"):
        names.add(str(ca["name"]))
    return {(ns, n) for n in names}


def used_by_names(storage: ObjectKey, users: Iterable[ObjectKey]) -> tuple[str, ...]:
    """CallTypes referring to ``storage`` as ``status.usedBy`` names them: names, or
    ns/name when in another namespace (the platform storage's users)."""
    return tuple(sorted(name if ns == storage[0] else f"{ns}/{name}" for ns, name in users))


def settled(status: Mapping[str, Any], generation: int, used_by: tuple[str, ...]) -> bool:
    """The status already answers a reference-only round: a final Ready for this
    generation (not Validating), the users as they are, and no deletion waiting. A full
    round would compute this very status and write nothing."""
    conditions = status.get("conditions") or []
    ready = ready_condition_for(conditions, generation)
    return ready is not None and ready.get("status") in ("True", "False") and \
        status.get("observedGeneration") == generation and \
        status.get("usedBy") == list(used_by[:USED_BY_SAMPLE]) and \
        status.get("usedByCount") == len(used_by) and \
        not any(c.get("type") == "DeletionBlocked" for c in conditions)


def finalizer_wrong(obj: Mapping[str, Any], used: bool) -> bool:
    """The in-use finalizer is missing while a CallType uses the storage (stripped by
    hand: a delete would pass) or present while none does."""
    meta = meta_of(obj)
    has = IN_USE_FINALIZER in (meta.get("finalizers") or [])
    return (used and not has and not meta.get("deletionTimestamp")) or (has and not used)


def finalizers_wanted(obj: Mapping[str, Any], used: bool, deleting: bool) -> \
        list[str] | None:
    """The finalizers the storage should have: the in-use one iff some CallType refers
    to it (never added to an object being deleted); None when they are right."""
    finalizers = list(meta_of(obj).get("finalizers") or [])
    has = IN_USE_FINALIZER in finalizers
    if used and not has and not deleting:
        return [*finalizers, IN_USE_FINALIZER]
    if not used and has:
        return [f for f in finalizers if f != IN_USE_FINALIZER]
    return None


def announces(status: Mapping[str, Any], generation: int) -> bool:
    """Whether a validation round first says Ready=Unknown (Validating): not for a
    periodic or rotation re-check, where Ready keeps its answer for this generation."""
    current = ready_condition_for(status.get("conditions"), generation)
    return current is None or current.get("status") == "Unknown"


def concerns_call_types(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether a storage's change may change the status of the CallTypes using it: its
    readiness, spec, generation, conditions or deletion (or it is new to us)."""
    if old is None:
        return True
    old_status, status = old.get("status") or {}, new.get("status") or {}
    return ready_state(old_status) != ready_state(status) or \
        old.get("spec") != new.get("spec") or \
        meta_of(old).get("generation") != meta_of(new).get("generation") or \
        old_status.get("conditions") != status.get("conditions") or \
        bool(meta_of(old).get("deletionTimestamp")) != bool(meta_of(new).get("deletionTimestamp"))
