"""What status an ExternalStorage gets from what was observed (no cluster needed)."""

from __future__ import annotations

import datetime as dt

from callstorage.providers.base import Capabilities, Reason
from callstorage.reconcile.externalstorage import (
    CheckOutcome,
    Event,
    Observed,
    Validation,
    desired_status,
    failures_after,
    needs_validation,
    ready_state,
    shared_check_key,
    spec_hash,
    status_patch,
    storage_events,
)
from callstorage.reconcile.schedule import next_delay, startup_delay

T0 = dt.datetime(2026, 11, 22, 10, 0, 0, tzinfo=dt.UTC)
PREFIXES = {"audio": "rec/audio", "video": "rec", "transcript": "rec", "metadata": "rec"}


def observed(**kw: object) -> Observed:
    base: dict[str, object] = {"generation": 1, "now": T0, "effective_prefixes": PREFIXES}
    base.update(kw)
    return Observed(**base)  # type: ignore[arg-type]


def test_success_sets_ready_timestamps_and_capabilities() -> None:
    v = Validation(Reason.VALIDATED, "ok", Capabilities(list=True), "42")
    st = desired_status(None, observed(validation=v))
    assert ready_state(st) == ("True", "Validated", "ok")
    assert st["lastValidatedAt"] == "2026-11-22T10:00:00Z"
    assert st["configuredAt"] == "2026-11-22T10:00:00Z"
    assert st["observedGeneration"] == 1
    assert st["capabilities"] == {"write": False, "read": False, "list": True}
    assert st["observedSecretVersion"] == "42"
    assert st["effectivePrefixes"] == PREFIXES
    assert st["consecutiveFailures"] == 0


def test_failure_keeps_last_validated_at_and_clears_capabilities() -> None:
    ok = desired_status(None, observed(validation=Validation(
        Reason.VALIDATED, "ok", Capabilities(write=True), "1")))
    later = T0 + dt.timedelta(minutes=5)
    bad = desired_status(ok, observed(now=later, consecutive_failures=1, validation=Validation(
        Reason.INVALID_CREDENTIALS, "HeadBucket on b returned 403 SignatureDoesNotMatch",
        secret_version="2")))
    assert ready_state(bad)[:2] == ("False", "InvalidCredentials")
    assert bad["lastValidatedAt"] == ok["lastValidatedAt"]
    assert bad["capabilities"] == {"write": False, "read": False, "list": False}
    assert bad["observedSecretVersion"] == "2"
    ready = next(c for c in bad["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2026-11-22T10:05:00Z"


def test_configured_at_changes_only_with_a_new_generation() -> None:
    v = Validation(Reason.VALIDATED, "ok", Capabilities(), "1")
    first = desired_status(None, observed(validation=v))
    same = desired_status(first, observed(now=T0 + dt.timedelta(hours=1), validation=v))
    assert same["configuredAt"] == first["configuredAt"]
    newer = desired_status(same, observed(generation=2, now=T0 + dt.timedelta(hours=2),
                                          validation=v))
    assert newer["configuredAt"] == "2026-11-22T12:00:00Z"


def test_invalid_spec_drops_prefixes() -> None:
    st = desired_status({"effectivePrefixes": PREFIXES}, observed(
        effective_prefixes=None, validation=Validation(Reason.INVALID_SPEC, "spec.s3: required")))
    assert "effectivePrefixes" not in st
    assert ready_state(st)[:2] == ("False", "InvalidSpec")


def test_no_validation_yet_is_unknown_and_refs_only_round_keeps_ready() -> None:
    st = desired_status(None, observed())
    assert ready_state(st)[0] == "Unknown"
    v = desired_status(None, observed(validation=Validation(Reason.VALIDATED, "ok")))
    refs = desired_status(v, observed(used_by=("allhands",)))
    assert ready_state(refs)[0] == "True"
    assert refs["usedBy"] == ["allhands"]


def test_suspended_and_deletion_blocked_conditions_come_and_go() -> None:
    st = desired_status(None, observed(suspended=True, blocked_deletion_by=("a", "b")))
    types = {c["type"] for c in st["conditions"]}
    assert {"Suspended", "DeletionBlocked"} <= types
    blocked = next(c for c in st["conditions"] if c["type"] == "DeletionBlocked")
    assert "a, b" in blocked["message"]
    cleared = desired_status(st, observed())
    # never validated and no longer suspended: the operator is at work on it
    assert {c["type"] for c in cleared["conditions"]} == {"Ready", "Reconciling"}


def test_check_outcome_recorded() -> None:
    st = desired_status(None, observed(check=CheckOutcome("t1", True, "uploaded", "p/x.md")))
    assert st["lastCheck"]["requestedAt"] == "t1"
    assert st["lastCheck"]["succeeded"] is True
    assert st["lastCheck"]["object"] == "p/x.md"


def test_status_patch_is_none_when_nothing_changed_and_nulls_removed_keys() -> None:
    v = Validation(Reason.VALIDATED, "ok", Capabilities(), "1")
    st = desired_status(None, observed(validation=v, next_validation=T0))
    assert status_patch(st, desired_status(st, observed(next_validation=T0))) is None
    patch = status_patch(st, desired_status(st, observed(suspended=True)))
    assert patch is not None
    assert patch["nextValidationAt"] is None
    assert any(c["type"] == "Suspended" for c in patch["conditions"])


def test_backoff_grows_is_capped_and_jittered() -> None:
    delays = [next_delay(Reason.ACCESS_DENIED, 3600, n, 5, 300, lambda: 1.0)
              for n in range(1, 9)]
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300]
    low = next_delay(Reason.ACCESS_DENIED, 3600, 3, 5, 300, lambda: 0.0)
    assert low == 10  # at least half of the step


def test_success_uses_interval_and_zero_means_off() -> None:
    assert next_delay(Reason.VALIDATED, 3600, 0, 5, 300, lambda: 0.0) == 3600
    assert next_delay(Reason.VALIDATED, 3600, 0, 5, 300, lambda: 1.0) == 3240
    assert next_delay(Reason.VALIDATED, 0, 0, 5, 300, lambda: 0.5) is None
    assert next_delay(Reason.INVALID_SPEC, 3600, 4, 5, 300, lambda: 0.5) is None


def test_restart_waits_for_the_interval_of_ready_objects() -> None:
    now = 10_000.0
    assert startup_delay(now, "True", now - 600, 3600, 5, lambda: 0.0) == 3000
    assert startup_delay(now, "True", now - 7200, 3600, 5, lambda: 0.0) == 0
    assert startup_delay(now, "False", now - 10, 3600, 5, lambda: 1.0) == 5


# --- kstatus conditions and the decisions around them --------------------------------------

def conds(st: dict[str, object]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"])  # type: ignore[index]
            for c in st["conditions"]}  # type: ignore[attr-defined]


def test_a_failure_a_person_must_fix_is_stalled_with_readys_reason() -> None:
    st = desired_status(None, observed(consecutive_failures=1, validation=Validation(
        Reason.ACCESS_DENIED, "no s3:ListBucket")))
    assert conds(st) == {"Ready": ("False", "AccessDenied"), "Stalled": ("True", "AccessDenied")}
    ok = desired_status(st, observed(validation=Validation(Reason.VALIDATED, "ok")))
    assert conds(ok) == {"Ready": ("True", "Validated")}


def test_a_failure_that_may_pass_is_reconciling_not_stalled() -> None:
    st = desired_status(None, observed(consecutive_failures=2, next_validation=T0,
                                       validation=Validation(Reason.TIMEOUT, "slow")))
    assert conds(st) == {"Ready": ("False", "Timeout"), "Reconciling": ("True", "RetryScheduled")}
    dns = desired_status(None, observed(validation=Validation(
        Reason.ENDPOINT_UNREACHABLE, "host name not found", stalled=True)))
    assert conds(dns)["Stalled"] == ("True", "EndpointUnreachable")
    assert "Reconciling" not in conds(dns)


def test_a_new_generation_reads_validating_until_its_result() -> None:
    ok = desired_status(None, observed(validation=Validation(Reason.VALIDATED, "ok"),
                                       spec_hash="h1"))
    changed = desired_status(ok, observed(generation=2, spec_hash="h2"))
    assert conds(changed) == {"Ready": ("Unknown", "Validating"),
                              "Reconciling": ("True", "Validating")}


def test_a_generation_that_validates_the_same_carries_ready_forward() -> None:
    """Defect 3: suspend toggled, or deletion started: same result, current generation."""
    ok = desired_status(None, observed(validation=Validation(Reason.VALIDATED, "ok"),
                                       spec_hash="h1"))
    carried = desired_status(ok, observed(generation=2, spec_hash="h1",
                                          blocked_deletion_by=("ct",)))
    ready = next(c for c in carried["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["observedGeneration"]) == ("True", 2)
    assert ready["lastTransitionTime"] == "2026-11-22T10:00:00Z"


def test_needs_validation() -> None:
    ok = desired_status(None, observed(validation=Validation(Reason.VALIDATED, "ok"),
                                       spec_hash="h1"))
    assert needs_validation(None, 1, "h1", requested=False)  # never validated
    assert not needs_validation(ok, 1, "h1", requested=False)
    assert needs_validation(ok, 1, "h1", requested=True)  # schedule, Secret, retry
    assert not needs_validation(ok, 2, "h1", requested=False)  # only suspend changed
    assert needs_validation(ok, 2, "h2", requested=False)  # the spec changed
    validating = desired_status(ok, observed(generation=2, spec_hash="h2"))
    assert needs_validation(validating, 2, "h2", requested=False)  # interrupted


def test_spec_hash_ignores_only_what_needs_no_validation() -> None:
    spec = {"bucket": "b", "s3": {"region": "r"}}
    assert spec_hash(spec) == spec_hash({**spec, "suspend": True,
                                         "validationInterval": "5m"})
    assert spec_hash(spec) != spec_hash({**spec, "bucket": "c"})


def test_failures_after() -> None:
    assert failures_after(3, None) == 3
    assert failures_after(3, Validation(Reason.VALIDATED, "ok")) == 0
    assert failures_after(3, Validation(Reason.TIMEOUT, "t")) == 4


def test_status_fields_are_bounded() -> None:
    """Defect 7: a remote message and the list of users cannot grow status without end."""
    st = desired_status(None, observed(
        used_by=tuple(f"ct-{i:03d}" for i in range(500)),
        validation=Validation(Reason.SERVICE_ERROR, "x" * 40_000 + "\n<html>"),
        check=CheckOutcome("t", False, "y" * 5000)))
    assert len(st["usedBy"]) == 20
    assert st["usedByCount"] == 500
    for c in st["conditions"]:
        assert len(c["message"]) <= 1024
    assert len(st["lastCheck"]["message"]) <= 1024


def test_events_only_for_results_not_for_validating() -> None:
    new = desired_status(None, observed(spec_hash="h"))
    assert storage_events({}, new, None) == []
    ok = desired_status(new, observed(validation=Validation(Reason.VALIDATED, "fine")))
    # a first success is in status; an Event each would double the writes at scale
    assert storage_events(new, ok, None) == []
    assert storage_events({}, ok, None) == []
    assert storage_events(ok, ok, None) == []
    bad = desired_status(ok, observed(validation=Validation(Reason.ACCESS_DENIED, "no")))
    assert storage_events(ok, bad, CheckOutcome("t", False, "nope")) == [
        Event("Warning", "AccessDenied", "no"), Event("Warning", "CheckFailed", "nope")]
    # a recovery is news: the Warning said something was wrong
    again = desired_status(bad, observed(validation=Validation(Reason.VALIDATED, "fine")))
    assert storage_events(bad, again, None) == [Event("Normal", "Validated", "fine")]


def test_never_reconciling_and_stalled_together() -> None:
    """kstatus takes whichever of the two comes first: the operator never sets both."""
    stalled = desired_status(None, observed(validation=Validation(Reason.ACCESS_DENIED, "no")))
    failing = desired_status(stalled, observed(reconcile_error="ApiException (HTTP 500)"))
    assert conds(failing)["Stalled"] == ("True", "AccessDenied")
    assert "Reconciling" not in conds(failing)


def test_shared_check_key_tells_which_validations_send_the_same_request() -> None:
    base = {"storageType": "s3", "bucket": "b", "accessMode": "ReadWrite", "path": "t1",
            "validationInterval": "1h", "suspend": False,
            "s3": {"region": "us-east-1", "credentialsSecretRef": {"name": "creds"}}}
    key = shared_check_key("ns", base, "7")
    # a ReadWrite HeadBucket never sends the path, prefixes, interval or suspend
    assert key == shared_check_key("ns", {**base, "path": "t2", "prefixes": {"audio": "a"},
                                          "validationInterval": "5m", "suspend": True}, "7")
    # other credentials, another namespace's Secret, another bucket or endpoint: never
    assert key != shared_check_key("ns", base, "8")  # the Secret changed
    assert key != shared_check_key("other", base, "7")
    assert key != shared_check_key("ns", {**base, "bucket": "c"}, "7")
    assert key != shared_check_key("ns", {**base, "s3": {**base["s3"],  # type: ignore[dict-item]
                                                         "endpoint": "https://x"}}, "7")
    assert key != shared_check_key("ns", {**base, "s3": {**base["s3"],  # type: ignore[dict-item]
                                          "credentialsSecretRef": {"name": "other"}}}, "7")
    # WriteOnly probes write under each prefix: the path is part of the request
    wo = {**base, "accessMode": "WriteOnly"}
    assert shared_check_key("ns", wo, "7") != shared_check_key("ns", {**wo, "path": "t2"},
                                                               "7")
    assert shared_check_key("ns", wo, "7") != key
