"""The test bed's kstatus tool reports what kstatus itself computes (testbed.kstatus).

Hand-written objects, one per rule of sigs.k8s.io/cli-utils' status.Compute that our
conditions meet, so a later test can read "kstatus says X" as the library's verdict (what
Flux's `wait: true` and kpt act on), not as a restatement of it. It needs the Go-built
binary, hence integration, like the helm and kubeconform tests.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from testbed import binaries, kstatus

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def storage(*conditions: Obj, generation: int = 1, observed: int | None = 1,
            status: bool = True, **metadata: Any) -> Obj:
    """An ExternalStorage as the API server returns it (generation set on create)."""
    obj: Obj = {
        "apiVersion": "callstorage.io/v1alpha1",
        "kind": "ExternalStorage",
        "metadata": {"name": "s", "namespace": "ns", "generation": generation, **metadata},
        "spec": {"storageType": "s3", "bucket": "b"},
    }
    if status:
        obj["status"] = {"conditions": list(conditions)}
        if observed is not None:
            obj["status"]["observedGeneration"] = observed
    return obj


def cond(type_: str, status: str, reason: str = "Because", message: str = "text") -> Obj:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def one(obj: Obj) -> kstatus.KStatus:
    (result,) = kstatus.compute([obj])
    return result


def test_custom_resource_without_status_is_current() -> None:
    # kstatus's documented fallback: no known condition means Current; this is why a new
    # object must get a status before anything else
    result = one(storage(status=False))
    assert (result.status, result.message) == ("Current", "Resource is current")


def test_custom_resource_with_empty_conditions_is_current() -> None:
    assert one(storage()).status == "Current"


def test_ready_true_is_current() -> None:
    assert one(storage(cond("Ready", "True"))).status == "Current"


def test_ready_false_is_in_progress_not_failed() -> None:
    # a permanent failure reported only as Ready=False makes Flux wait out its timeout
    result = one(storage(cond("Ready", "False", "AccessDenied", "403 from the bucket")))
    assert (result.status, result.message) == ("InProgress", "403 from the bucket")
    assert result.conditions == (kstatus.Condition(
        "Reconciling", "True", "AccessDenied", "403 from the bucket"),)


def test_ready_unknown_is_in_progress() -> None:
    assert one(storage(cond("Ready", "Unknown", "Validating"))).status == "InProgress"


def test_reconciling_true_is_in_progress_even_when_ready() -> None:
    result = one(storage(cond("Ready", "True"),
                         cond("Reconciling", "True", "Retrying", "attempt 2")))
    assert (result.status, result.message) == ("InProgress", "attempt 2")


def test_stalled_true_is_failed_with_its_reason_and_message() -> None:
    result = one(storage(cond("Ready", "False", "AccessDenied", "denied"),
                         cond("Stalled", "True", "AccessDenied", "denied")))
    assert (result.status, result.message) == ("Failed", "denied")
    assert result.conditions == (kstatus.Condition("Stalled", "True", "AccessDenied", "denied"),)


def test_reconciling_and_stalled_false_leave_ready_to_decide() -> None:
    result = one(storage(cond("Reconciling", "False"), cond("Stalled", "False"),
                         cond("Ready", "True")))
    assert result.status == "Current"


@pytest.mark.parametrize(("first", "expected"), [("Reconciling", "InProgress"),
                                                  ("Stalled", "Failed")])
def test_reconciling_and_stalled_both_true_first_listed_wins(first: str, expected: str) -> None:
    # Compute walks the conditions in order and stops at the first of the two that is True;
    # the operator must never set both
    other = "Stalled" if first == "Reconciling" else "Reconciling"
    assert one(storage(cond(first, "True"), cond(other, "True"))).status == expected


def test_unobserved_generation_is_in_progress() -> None:
    result = one(storage(cond("Ready", "True"), generation=3, observed=2))
    assert result.status == "InProgress"
    assert result.conditions[0].reason == "LatestGenerationNotObserved"


def test_unobserved_generation_wins_over_stalled() -> None:
    # Stalled counts only once observedGeneration has caught up with the spec
    result = one(storage(cond("Stalled", "True"), generation=2, observed=1))
    assert result.status == "InProgress"


def test_missing_observed_generation_skips_the_generation_check() -> None:
    assert one(storage(cond("Ready", "True"), generation=5, observed=None)).status == "Current"


def test_deletion_timestamp_is_terminating_whatever_the_conditions() -> None:
    result = one(storage(cond("Stalled", "True"), generation=2, observed=1,
                         deletionTimestamp="2026-01-01T00:00:00Z", finalizers=["x"]))
    assert result.status == "Terminating"


def test_a_batch_keeps_its_order() -> None:
    objs = [storage(cond("Stalled", "True")), storage(status=False),
            storage(cond("Ready", "False")), storage(deletionTimestamp="2026-01-01T00:00:00Z")]
    assert [r.status for r in kstatus.compute(objs)] == [
        "Failed", "Current", "InProgress", "Terminating"]
    assert kstatus.compute([]) == []


def test_the_binary_reads_a_list_object() -> None:
    doc = {"apiVersion": "v1", "kind": "List",
           "items": [storage(cond("Ready", "True")), storage(cond("Stalled", "True"))]}
    out = subprocess.run([str(binaries.find("kstatus"))], input=json.dumps(doc),
                         capture_output=True, text=True, timeout=30, check=True)
    assert [r["status"] for r in json.loads(out.stdout)] == ["Current", "Failed"]


def test_an_object_kstatus_cannot_read_is_a_clear_error() -> None:
    bad = storage()
    bad["metadata"]["generation"] = "one"
    with pytest.raises(RuntimeError, match=r"kstatus failed .*item 0: .*generation"):
        kstatus.compute([bad])
