"""Pure: when to validate an ExternalStorage next.

Successes repeat every ``validationInterval`` with a little jitter so objects created
together do not stay in lock-step. Failures back off exponentially with jitter, apart from
the success interval, so a broken storage never hammers its provider (a common complaint
about operators that retry failures at a fixed short period).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from callstorage.api import InvalidSpecError
from callstorage.api.reasons import Reason
from callstorage.api.timestamps import parse_rfc3339
from callstorage.reconcile.externalstorage import (
    PERMANENT_REASONS,
    Validation,
    failures_after,
    ready_state,
)
from callstorage.storagespec import ExternalStorageSpec, parse_external_storage

SUCCESS_JITTER = 0.1  # next success run lands in [0.9, 1.0] x interval


def next_delay(
    reason: Reason,
    interval: float,
    consecutive_failures: int,
    retry_base: float,
    retry_max: float,
    rand: Callable[[], float],
    retried: bool | None = None,
) -> float | None:
    """Seconds until the next validation, or None for "only when something changes".
    ``retried``: whether this failure is retried (None: as its reason's policy says)."""
    if reason is Reason.VALIDATED:
        if interval <= 0:
            return None
        return interval * (1.0 - SUCCESS_JITTER * rand())
    if (reason in PERMANENT_REASONS) if retried is None else not retried:
        return None
    exponent = max(consecutive_failures - 1, 0)
    ceiling = min(retry_max, retry_base * (2.0 ** min(exponent, 30)))
    # "equal jitter": at least half the backoff, so retries never collapse to zero
    return ceiling * (0.5 + 0.5 * rand())


def startup_delay(
    now: float,
    ready: str,
    last_validated: float | None,
    interval: float,
    retry_base: float,
    rand: Callable[[], float],
) -> float:
    """Delay for an object found already reconciled when the operator starts.

    A restart must not re-validate every storage at once: a Ready one waits until its
    interval is due; a failing one retries soon, spread over the first backoff step.
    """
    if ready == "True" and last_validated is not None and interval > 0:
        return max(0.0, last_validated + interval - now) + interval * SUCCESS_JITTER * rand()
    return retry_base * rand()


def parse_time(value: object) -> float | None:
    """An RFC 3339 time of a status field as a POSIX timestamp (None if not one)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value).timestamp()
    except ValueError:
        return None


def after_restart(obj: Mapping[str, Any], now: float, retry_base: float,
                  rand: Callable[[], float]) -> float | None:
    """When to validate a storage found already reconciled (at start-up, or resumed from
    ``spec.suspend``): None when nothing is due (an invalid or suspended spec, a Ready
    one that is never re-validated)."""
    try:
        spec = parse_external_storage(obj)
    except InvalidSpecError:
        return None
    if spec.suspend:
        return None
    status = obj.get("status") or {}
    ready, reason, _ = ready_state(status)
    if reason == Reason.INVALID_SPEC:
        return None
    if ready == "True" and spec.interval_seconds <= 0:
        return None
    return startup_delay(now, ready, parse_time(status.get("lastValidatedAt")),
                         spec.interval_seconds, retry_base, rand)


def after_validation(spec: ExternalStorageSpec | None, validation: Validation | None,
                     failures: int, status: Mapping[str, Any], retry_base: float,
                     retry_max: float, rand: Callable[[], float], now: dt.datetime) -> \
        tuple[int, float | None, dt.datetime | None]:
    """After a round: the failures in a row, the delay of the next validation to queue
    (None: none to queue), and when it is due as ``status.nextValidationAt`` says.

    A round that did not validate queues nothing and keeps the time already announced
    (unless the storage is suspended)."""
    if validation is None:
        due = status.get("nextValidationAt")
        keep = due and not (spec is not None and spec.suspend)
        stamp = parse_time(due) if keep else None
        return failures, None, dt.datetime.fromtimestamp(stamp, dt.UTC) \
            if stamp is not None else None
    failures = failures_after(failures, validation)
    interval = spec.interval_seconds if spec is not None else 0.0
    delay = next_delay(validation.reason, interval, failures, retry_base, retry_max, rand,
                       validation.retried)
    if delay is None:
        return failures, None, None
    return failures, delay, now + dt.timedelta(seconds=delay)
