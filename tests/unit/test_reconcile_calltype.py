"""Which storage a CallType resolves to, and its Ready condition."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from callstorage.reconcile.calltype import desired_status, storage_target

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
