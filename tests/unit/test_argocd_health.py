"""The Argo CD health checks in docs/argocd-health/, run by a real Lua 5.1 interpreter.

Argo CD runs these scripts with gopher-lua, a Lua 5.1 implementation: ``lupa.lua51`` is
the closest match (all numbers are doubles, like JSON numbers in Argo CD).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

lua51 = pytest.importorskip("lupa.lua51")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "argocd-health"
SCRIPTS = {
    "ExternalStorage": DOCS / "externalstorage.lua",
    "CallType": DOCS / "calltype.lua",
}
# docs/api.md: every reason an ExternalStorage's Ready=False may carry
PERMANENT_STORAGE_REASONS = [
    "InvalidSpec", "SecretNotFound", "SecretKeyMissing", "AmbientCredentialsDisabled",
    "InvalidCredentials", "AccessDenied", "BucketNotFound", "EndpointNotAllowed",
]
TRANSIENT_STORAGE_REASONS = ["EndpointUnreachable", "Timeout"]


def health(script: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run ``script`` the way Argo CD does: ``obj`` global, the chunk returns ``hs``."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=False)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


def run(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    return health(SCRIPTS[kind].read_text(), obj)


def storage(generation: int = 2, *, status: dict[str, Any] | None = None,
            suspend: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "callstorage.io/v1alpha1",
        "kind": "ExternalStorage",
        "metadata": {"name": "my-s3", "namespace": "app-1", "generation": generation},
        "spec": {"storageType": "s3", "bucket": "b", "s3": {"region": "us-east-1"}},
    }
    if suspend:
        obj["spec"]["suspend"] = True
    if status is not None:
        obj["status"] = status
    return obj


def ready(state: str, reason: str, generation: int = 2, message: str = "") -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "conditions": [
            {"type": "Ready", "status": state, "reason": reason, "message": message,
             "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ],
    }


def call_type(generation: int = 1, *, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "callstorage.io/v1alpha1",
        "kind": "CallType",
        "metadata": {"name": "allhands", "namespace": "app-1", "generation": generation},
        "spec": {"externalStorage": "my-s3"},
    }
    if status is not None:
        obj["status"] = status
    return obj


# --- ExternalStorage ------------------------------------------------------------------

def test_storage_ready_for_current_generation_is_healthy() -> None:
    hs = run("ExternalStorage", storage(status=ready("True", "Validated", message="ok")))
    assert hs == {"status": "Healthy", "message": "Validated: ok"}


@pytest.mark.parametrize("reason", PERMANENT_STORAGE_REASONS)
def test_storage_not_ready_for_a_reason_to_fix_is_degraded(reason: str) -> None:
    hs = run("ExternalStorage", storage(status=ready("False", reason, message="HeadBucket 403")))
    assert hs == {"status": "Degraded", "message": f"{reason}: HeadBucket 403"}


@pytest.mark.parametrize("reason", TRANSIENT_STORAGE_REASONS)
def test_storage_not_ready_for_a_retried_reason_is_progressing(reason: str) -> None:
    hs = run("ExternalStorage", storage(status=ready("False", reason)))
    assert hs == {"status": "Progressing", "message": reason}


def test_storage_ready_unknown_is_progressing() -> None:
    assert run("ExternalStorage", storage(status=ready("Unknown", "Validating")))["status"] \
        == "Progressing"


def test_storage_without_status_is_progressing() -> None:
    hs = run("ExternalStorage", storage())
    assert hs["status"] == "Progressing"
    assert "Waiting for the operator" in hs["message"]


def test_storage_with_newer_generation_is_progressing_even_if_ready() -> None:
    # the user changed the spec; Ready=True describes the old one
    hs = run("ExternalStorage", storage(generation=3, status=ready("True", "Validated")))
    assert hs == {"status": "Progressing",
                  "message": "Waiting for the operator to validate generation 3"}


def test_storage_with_stale_condition_is_progressing() -> None:
    status = ready("False", "AccessDenied", generation=3)
    status["conditions"][0]["observedGeneration"] = 2
    assert run("ExternalStorage", storage(generation=3, status=status))["status"] \
        == "Progressing"


def test_storage_without_ready_condition_is_progressing() -> None:
    status = {"observedGeneration": 2, "conditions": [
        {"type": "Other", "status": "True", "reason": "X", "message": "",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    assert run("ExternalStorage", storage(status=status))["status"] == "Progressing"
    assert run("ExternalStorage", storage(status={"observedGeneration": 2}))["status"] \
        == "Progressing"


def test_suspended_storage_is_suspended_whatever_its_condition() -> None:
    for status in (None, ready("False", "AccessDenied"), ready("True", "Validated")):
        hs = run("ExternalStorage", storage(status=status, suspend=True))
        assert hs["status"] == "Suspended"


def test_storage_being_deleted_is_progressing() -> None:
    obj = storage(status=ready("True", "Validated"))
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    obj["metadata"]["finalizers"] = ["callstorage.io/in-use-protection"]
    hs = run("ExternalStorage", obj)
    assert hs["status"] == "Progressing"
    assert "CallType" in hs["message"]


# --- CallType -------------------------------------------------------------------------

def test_call_type_ready_is_healthy() -> None:
    hs = run("CallType", call_type(status=ready("True", "StorageReady", generation=1)))
    assert hs["status"] == "Healthy"


def test_call_type_with_missing_storage_is_degraded() -> None:
    hs = run("CallType", call_type(status=ready(
        "False", "StorageNotFound", generation=1, message="no ExternalStorage my-s3")))
    assert hs == {"status": "Degraded", "message": "StorageNotFound: no ExternalStorage my-s3"}


def test_call_type_waiting_for_its_storage_is_progressing() -> None:
    hs = run("CallType", call_type(status=ready("False", "StorageNotReady", generation=1)))
    assert hs["status"] == "Progressing"


def test_call_type_without_status_or_with_newer_generation_is_progressing() -> None:
    assert run("CallType", call_type())["status"] == "Progressing"
    hs = run("CallType", call_type(generation=2, status=ready("True", "StorageReady", 1)))
    assert hs == {"status": "Progressing",
                  "message": "Waiting for the operator to resolve generation 2"}


# --- shipping -------------------------------------------------------------------------

def test_argocd_cm_snippet_embeds_the_scripts_verbatim() -> None:
    cm = yaml.safe_load((DOCS / "argocd-cm.yaml").read_text())
    assert cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == "argocd-cm"
    for kind, path in SCRIPTS.items():
        key = f"resource.customizations.health.callstorage.io_{kind}"
        assert cm["data"][key] == path.read_text(), f"{key} differs from {path.name}"

