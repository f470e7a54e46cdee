"""The controller's pure decision steps: what an observed storage asks for
(``reconcile.plan``), when it validates next (``reconcile.schedule``), and what a
provider's answer (or its absence) comes to (``reconcile.outcome``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from callstorage.api import CHECK_ANNOTATION, IN_USE_FINALIZER
from callstorage.api.capabilities import Capabilities
from callstorage.api.reasons import Reason
from callstorage.providers.base import ProviderError
from callstorage.reconcile import outcome, plan, schedule
from callstorage.reconcile.externalstorage import Validation
from callstorage.storagespec import parse_external_storage

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def storage(**meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "st", "namespace": "app", "uid": "u1", "generation": 2,
                         **meta},
            "spec": {"storageType": "s3", "bucket": "bucket-1", "validationInterval": "1h",
                     "s3": {"region": "us-east-1",
                            "credentialsSecretRef": {"name": "creds"}}}}


def ready(status: str = "True", generation: int = 2, **fields: Any) -> dict[str, Any]:
    return {"observedGeneration": generation, "usedBy": [], "usedByCount": 0, **fields,
            "conditions": [{"type": "Ready", "status": status, "reason": "Validated",
                            "message": "ok", "observedGeneration": generation}]}


# --- plan ---------------------------------------------------------------------------------
def test_a_check_is_pending_until_status_answers_that_very_request() -> None:
    obj = storage(annotations={CHECK_ANNOTATION: "t1"})
    assert plan.pending_check(obj) == "t1"
    assert plan.pending_check({**obj, "status": {"lastCheck": {"requestedAt": "t1"}}}) is None
    assert plan.pending_check({**obj, "status": {"lastCheck": {"requestedAt": "t0"}}}) == "t1"
    assert plan.pending_check(storage()) is None


def test_a_check_request_names_one_object_per_object_and_request() -> None:
    first = plan.check_id(storage(), "t1")
    assert first == plan.check_id(storage(), "t1")  # a retry uploads the same object
    assert first != plan.check_id(storage(), "t2")
    assert first != plan.check_id(storage(uid="u2"), "t1")  # a re-created storage


def test_users_are_named_as_status_usedBy_lists_them() -> None:
    users = [("app", "b"), ("other", "x"), ("app", "a")]
    assert plan.used_by_names(("app", "st"), users) == ("a", "b", "other/x")


def test_a_reference_only_round_is_settled_only_by_a_final_answer_for_this_generation() -> None:
    assert plan.settled(ready(), 2, ())
    assert not plan.settled(ready(), 3, ())  # a new generation
    assert not plan.settled(ready("Unknown"), 2, ())  # still validating
    assert not plan.settled(ready(), 2, ("ct",))  # the users changed
    blocked = ready()
    blocked["conditions"].append({"type": "DeletionBlocked", "status": "True"})
    assert not plan.settled(blocked, 2, ())


@pytest.mark.parametrize(("finalizers", "used", "deleting", "wanted"), [
    ([], True, False, [IN_USE_FINALIZER]),
    (["other"], True, False, ["other", IN_USE_FINALIZER]),
    ([], True, True, None),  # never added to an object on its way out
    ([IN_USE_FINALIZER], True, False, None),
    (["other", IN_USE_FINALIZER], False, True, ["other"]),
    ([IN_USE_FINALIZER], False, False, []),
    ([], False, False, None),
])
def test_the_in_use_finalizer_follows_the_users(
        finalizers: list[str], used: bool, deleting: bool, wanted: list[str] | None) -> None:
    meta: dict[str, Any] = {"finalizers": finalizers}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-27T00:00:00Z"
    obj = storage(**meta)
    assert plan.finalizers_wanted(obj, used, deleting) == wanted
    assert plan.finalizer_wrong(obj, used) == (wanted is not None)


def test_only_a_first_validation_of_a_generation_announces_itself() -> None:
    assert plan.announces({}, 2)
    assert plan.announces(ready(generation=1), 2)  # a new generation: Validating first
    assert not plan.announces(ready(), 2)  # a periodic re-check keeps Ready's answer
    assert plan.announces(ready("Unknown"), 2)


def test_call_types_hear_of_what_changes_their_status_only() -> None:
    old = {**storage(resourceVersion="1"), "status": ready()}
    assert plan.concerns_call_types(None, old)
    assert not plan.concerns_call_types(old, {**old, "metadata": {
        **old["metadata"], "resourceVersion": "2"}})
    assert plan.concerns_call_types(old, {**old, "status": ready("False")})
    assert plan.concerns_call_types(old, {**old, "metadata": {
        **old["metadata"], "deletionTimestamp": "2026-11-27T00:00:00Z"}})


# --- schedule -----------------------------------------------------------------------------
def test_after_a_restart_only_what_is_due_is_scheduled() -> None:
    now = NOW.timestamp()
    obj = {**storage(), "status": ready(lastValidatedAt="2026-11-27T11:30:00Z")}
    delay = schedule.after_restart(obj, now, 10.0, lambda: 0.0)
    assert delay == pytest.approx(1800.0)  # the rest of its interval, not now
    suspended = {**obj, "spec": {**obj["spec"], "suspend": True}}
    assert schedule.after_restart(suspended, now, 10.0, lambda: 0.0) is None
    invalid = {**obj, "spec": {"storageType": "nope"}}
    assert schedule.after_restart(invalid, now, 10.0, lambda: 0.0) is None
    failing = {**obj, "status": ready("False")}
    assert schedule.after_restart(failing, now, 10.0, lambda: 1.0) == 10.0


def test_after_a_round_the_next_validation_is_queued_and_announced() -> None:
    spec = parse_external_storage(storage())
    ok = Validation(Reason.VALIDATED, "ok")
    failures, delay, due = schedule.after_validation(spec, ok, 3, {}, 10.0, 300.0,
                                                     lambda: 0.0, NOW)
    assert (failures, delay, due) == (0, 3600.0, NOW + dt.timedelta(hours=1))
    bad = Validation(Reason.TIMEOUT, "slow")
    failures, delay, due = schedule.after_validation(spec, bad, 3, {}, 10.0, 300.0,
                                                     lambda: 0.0, NOW)
    assert failures == 4
    assert delay == 40.0
    assert due == NOW + dt.timedelta(seconds=40)
    permanent = Validation(Reason.INVALID_SPEC, "no")
    assert schedule.after_validation(spec, permanent, 0, {}, 10.0, 300.0, lambda: 0.0,
                                     NOW)[1:] == (None, None)
    # no validation this round: nothing queued, the announced time kept
    status = {"nextValidationAt": "2026-11-27T13:00:00Z"}
    assert schedule.after_validation(spec, None, 2, status, 10.0, 300.0, lambda: 0.0,
                                     NOW) == (2, None, NOW + dt.timedelta(hours=1))


# --- outcome ------------------------------------------------------------------------------
def test_a_refusal_before_the_bucket_answers_both_requests() -> None:
    exc = ProviderError(Reason.SECRET_NOT_FOUND, "Secret app/creds not found")
    validation, check = outcome.not_run(exc, "7", True, "t1")
    assert validation is not None
    assert check is not None
    assert (validation.reason, validation.secret_version) == (Reason.SECRET_NOT_FOUND, "7")
    assert (check.succeeded, check.message) == (False, "Secret app/creds not found")
    assert outcome.not_run(exc, None, False, None) == (None, None)


def test_an_unexpected_error_names_its_type_only() -> None:
    validation, check = outcome.unexpected("RecursionError", "7", True, "t1")
    assert validation is not None
    assert validation.reason is Reason.INTERNAL_ERROR
    assert "RecursionError" in validation.message
    assert check is not None
    assert check.message == validation.message


def test_a_joined_success_speaks_for_this_storages_spec() -> None:
    spec = parse_external_storage(storage())
    caps = Capabilities()
    answer = Validation(Reason.VALIDATED, "someone else's", caps, "9")
    mine = outcome.joined(spec, answer, "7")
    assert mine.ok
    assert mine.secret_version == "7"
    assert mine.message == outcome.success_message(spec, caps)
    failure = Validation(Reason.ACCESS_DENIED, "denied")
    assert outcome.joined(spec, failure, "7") is failure


def test_an_error_is_described_by_type_and_status_never_its_text() -> None:
    class ApiError(Exception):
        status = 500

    assert outcome.describe_error(ApiError("token=s3cr3t")) == "ApiError (HTTP 500)"
    assert outcome.describe_error(ValueError("s3cr3t")) == "ValueError"


def test_the_operators_own_failure_is_said_once_and_never_beside_stalled() -> None:
    conditions = outcome.error_conditions({}, "ValueError", 2, NOW, 2)
    assert conditions is not None
    [reconciling] = conditions
    assert (reconciling["type"], reconciling["reason"]) == ("Reconciling", "ReconcileError")
    assert "attempt 3 at 2026-11-27T12:00:00Z" in reconciling["message"]
    assert outcome.error_conditions({"conditions": conditions}, "ValueError", 2, NOW,
                                    2) is None  # nothing to change
    stalled = {"conditions": [{"type": "Stalled", "status": "True"}]}
    assert outcome.error_conditions(stalled, "ValueError", 2, NOW, 2) is None
