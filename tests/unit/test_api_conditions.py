"""metav1.Condition helpers: shape, timestamps, and when lastTransitionTime moves."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callstorage.api.conditions import (
    get_condition,
    is_true,
    make_condition,
    rfc3339,
    set_condition,
)

T0 = dt.datetime(2025, 3, 1, 12, 0, 0, 987654, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)
T2 = T0 + dt.timedelta(hours=1)
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_make_condition_shape() -> None:
    assert make_condition("Ready", "False", "AccessDenied", "HeadBucket returned 403", 3, T0) \
        == {
            "type": "Ready",
            "status": "False",
            "reason": "AccessDenied",
            "message": "HeadBucket returned 403",
            "observedGeneration": 3,
            "lastTransitionTime": "2025-03-01T12:00:00Z",
        }


def test_make_condition_accepts_bool_status() -> None:
    assert make_condition("Ready", True, "Validated", "", 1, T0)["status"] == "True"
    assert make_condition("Ready", False, "Timeout", "", 1, T0)["status"] == "False"


def test_make_condition_rejects_other_status() -> None:
    with pytest.raises(ValueError, match="True, False or Unknown"):
        make_condition("Ready", "true", "Validated", "", 1, T0)


def test_make_condition_defaults_to_now() -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp = make_condition("Ready", "Unknown", "Progressing", "", None)["lastTransitionTime"]
    assert RFC3339.match(stamp)
    parsed = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert before <= parsed <= dt.datetime.now(dt.UTC)


def test_observed_generation_is_optional() -> None:
    assert "observedGeneration" not in make_condition("Ready", "True", "Validated", "", None, T0)


def test_rfc3339_converts_to_utc() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert rfc3339(dt.datetime(2025, 3, 1, 14, 0, 0, tzinfo=plus_two)) == "2025-03-01T12:00:00Z"
    assert rfc3339(dt.datetime(2025, 3, 1, 12, 0, 0)) == "2025-03-01T12:00:00Z"  # naive = UTC


def test_set_condition_appends_a_new_type() -> None:
    ready = make_condition("Ready", "True", "Validated", "ok", 1, T0)
    assert set_condition(None, ready) == [ready]
    assert set_condition([], ready) == [ready]


def test_same_status_keeps_transition_time_but_updates_the_rest() -> None:
    old = [make_condition("Ready", "False", "Timeout", "slow", 1, T0)]
    new = make_condition("Ready", "False", "AccessDenied", "403", 2, T1)
    [merged] = set_condition(old, new)
    assert merged == {**new, "lastTransitionTime": "2025-03-01T12:00:00Z"}


def test_status_flip_takes_the_new_transition_time() -> None:
    old = [make_condition("Ready", "False", "Timeout", "slow", 1, T0)]
    new = make_condition("Ready", "True", "Validated", "ok", 1, T1)
    assert set_condition(old, new) == [new]


def test_only_the_same_type_is_replaced_and_order_is_kept() -> None:
    suspended = make_condition("Suspended", "True", "Suspended", "", 1, T0)
    ready = make_condition("Ready", "Unknown", "Progressing", "", 1, T0)
    blocked = make_condition("DeletionBlocked", "True", "InUse", "", 1, T0)
    new_ready = make_condition("Ready", "True", "Validated", "ok", 2, T1)
    assert set_condition([suspended, ready, blocked], new_ready) == [
        suspended, new_ready, blocked]


def test_input_is_not_modified() -> None:
    old = [make_condition("Ready", "False", "Timeout", "slow", 1, T0)]
    snapshot = [dict(c) for c in old]
    result = set_condition(old, make_condition("Ready", "False", "Timeout", "again", 2, T1))
    assert old == snapshot
    result[0]["message"] = "changed"
    assert old == snapshot


def test_duplicates_of_a_type_collapse() -> None:
    a = make_condition("Ready", "True", "Validated", "", 1, T0)
    b = make_condition("Ready", "False", "Timeout", "", 1, T0)
    assert len(set_condition([a, b], make_condition("Ready", "True", "Validated", "", 2, T1))) \
        == 1


def test_missing_previous_time_takes_the_new_one() -> None:
    old = [{"type": "Ready", "status": "True", "reason": "Validated", "message": ""}]
    new = make_condition("Ready", "True", "Validated", "", 1, T1)
    assert set_condition(old, new)[0]["lastTransitionTime"] == rfc3339(T1)


def test_get_condition_and_is_true() -> None:
    conditions = [make_condition("Suspended", "False", "Active", "", 1, T0),
                  make_condition("Ready", "True", "Validated", "", 1, T0)]
    ready = get_condition(conditions, "Ready")
    assert ready is not None
    assert ready["reason"] == "Validated"
    assert get_condition(conditions, "Missing") is None
    assert get_condition(None, "Ready") is None
    assert is_true(conditions)
    assert not is_true(conditions, "Suspended")
    assert not is_true(None)


@given(st.lists(st.sampled_from(["True", "False", "Unknown"]), min_size=1, max_size=20))
def test_transition_time_is_the_time_of_the_last_flip(statuses: list[str]) -> None:
    conditions: list[dict[str, Any]] = []
    last_flip = None
    previous = None
    for minute, status in enumerate(statuses):
        now = T0 + dt.timedelta(minutes=minute)
        if status != previous:
            last_flip = now
        previous = status
        conditions = set_condition(
            conditions, make_condition("Ready", status, "R", f"round {minute}", minute, now))
        other = make_condition("Other", "True", "X", "", 0, T2)
        conditions = set_condition(conditions, other)
    assert last_flip is not None
    ready = get_condition(conditions, "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == rfc3339(last_flip)
    assert ready["message"] == f"round {len(statuses) - 1}"
    assert [c["type"] for c in conditions] == ["Ready", "Other"]


def test_messages_are_one_bounded_line() -> None:
    """docs/api.md: one line of at most MAX_MESSAGE characters, whatever comes in."""
    from callstorage.api.conditions import MAX_MESSAGE, bounded

    text = bounded("a\nb\x00c " + "x" * 40_000)
    assert len(text) <= MAX_MESSAGE
    assert text.startswith("a b c ")
    assert text.endswith("[truncated]")
