"""Which storage a CallType resolves to, and its Ready condition."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from callstorage.reconcile.calltype import (
    NOT_FOUND_GRACE,
    call_type_events,
    desired_status,
    storage_target,
)
from callstorage.reconcile.externalstorage import Event

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


@pytest.mark.parametrize(("ref", "expected"), [
    (None, (("callstorage-system", "platform-default"), "PlatformDefault")),
    ("", (("callstorage-system", "platform-default"), "PlatformDefault")),
    ("stream-s3", (("callstorage-system", "platform-default"), "PlatformDefault")),
    ("my-s3", (("app-1", "my-s3"), "CallType")),
])
def test_storage_target(ref: str | None, expected: object) -> None:
    assert storage_target("app-1", ref, "callstorage-system", "platform-default") == expected


def storage(ready: str, reason: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "my-s3", "namespace": "app-1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"storageType": "s3", "bucket": "b", "accessMode": "WriteOnly"},
        "status": {"effectivePrefixes": {"audio": "a"}, "conditions": [
            {"type": "Ready", "status": ready, "reason": reason, "message": "m"}]},
    }


def ready_of(st: dict[str, Any]) -> tuple[str, str]:
    c = next(c for c in st["conditions"] if c["type"] == "Ready")
    return c["status"], c["reason"]


def test_missing_storage_is_not_found() -> None:
    st = desired_status(None, generation=1, target=("app-1", "x"), source="CallType",
                        storage=None, now=NOW)
    assert ready_of(st) == ("False", "StorageNotFound")
    assert st["resolvedStorage"] == {"name": "x", "namespace": "app-1", "source": "CallType"}


def test_ready_storage_resolves_with_details() -> None:
    st = desired_status(None, generation=3, target=("app-1", "my-s3"), source="CallType",
                        storage=storage("True", "Validated"), now=NOW)
    assert ready_of(st) == ("True", "StorageReady")
    assert st["resolvedStorage"]["bucket"] == "b"
    assert st["resolvedStorage"]["accessMode"] == "WriteOnly"
    assert st["resolvedStorage"]["effectivePrefixes"] == {"audio": "a"}
    assert st["observedGeneration"] == 3


def test_not_ready_storage_explains_why() -> None:
    st = desired_status(None, generation=1, target=("app-1", "my-s3"), source="CallType",
                        storage=storage("False", "AccessDenied"), now=NOW)
    assert ready_of(st) == ("False", "StorageNotReady")
    msg = next(c for c in st["conditions"] if c["type"] == "Ready")["message"]
    assert "AccessDenied" in msg


def test_terminating_storage_still_resolves_to_itself() -> None:
    st = desired_status(None, generation=1, target=("app-1", "my-s3"), source="CallType",
                        storage=storage("True", "Validated", deleting=True), now=NOW)
    assert st["resolvedStorage"]["name"] == "my-s3"
    assert ready_of(st) == ("True", "StorageReady")


def test_stalled_storage_makes_the_call_type_stalled_and_waiting_is_reconciling() -> None:
    stalled = storage("False", "AccessDenied")
    stalled["status"]["conditions"].append(
        {"type": "Stalled", "status": "True", "reason": "AccessDenied", "message": "m"})
    st = desired_status(None, generation=1, target=("app-1", "my-s3"), source="CallType",
                        storage=stalled, now=NOW)
    types = {c["type"]: c["status"] for c in st["conditions"]}
    assert types == {"Ready": "False", "Stalled": "True"}
    waiting = desired_status(None, generation=1, target=("app-1", "my-s3"),
                             source="CallType", storage=storage("Unknown", "Validating"),
                             now=NOW)
    assert {c["type"] for c in waiting["conditions"]} == {"Ready", "Reconciling"}


def test_a_missing_storage_is_stalled_only_after_the_grace_period() -> None:
    fresh = desired_status(None, generation=1, target=("app-1", "x"), source="CallType",
                           storage=None, now=NOW, created=NOW)
    assert {c["type"] for c in fresh["conditions"]} == {"Ready", "Reconciling"}
    late = desired_status(fresh, generation=1, target=("app-1", "x"), source="CallType",
                          storage=None, now=NOW + NOT_FOUND_GRACE, created=NOW)
    assert {c["type"] for c in late["conditions"]} == {"Ready", "Stalled"}
    assert call_type_events(fresh, late) == [Event("Warning", "StorageNotFound",
                                                   late["conditions"][0]["message"])]


def test_waiting_is_not_a_warning() -> None:
    """Defect 9: a CallType created with its storage waits quietly, then turns ready."""
    waiting = desired_status(None, generation=1, target=("app-1", "my-s3"),
                             source="CallType", storage=storage("Unknown", "Validating"),
                             now=NOW)
    assert call_type_events({}, waiting) == []
    ready = desired_status(waiting, generation=1, target=("app-1", "my-s3"),
                           source="CallType", storage=storage("True", "Validated"), now=NOW)
    assert [e.type for e in call_type_events(waiting, ready)] == ["Normal"]


def test_a_storage_ready_only_for_an_older_generation_is_not_ready() -> None:
    """Defect 3: the CallType uses the same readiness rule as everyone else."""
    old = storage("True", "Validated")
    old["metadata"]["generation"] = 2
    old["status"]["observedGeneration"] = 2
    old["status"]["conditions"][0]["observedGeneration"] = 1
    st = desired_status(None, generation=1, target=("app-1", "my-s3"), source="CallType",
                        storage=old, now=NOW)
    assert ready_of(st) == ("False", "StorageNotReady")
