"""Pure: when to validate an ExternalStorage next.

Successes repeat every ``validationInterval`` with a little jitter so objects created
together do not stay in lock-step. Failures back off exponentially with jitter, apart from
the success interval, so a broken storage never hammers its provider (a common complaint
about operators that retry failures at a fixed short period).
"""

from __future__ import annotations

from collections.abc import Callable

from callstorage.api.reasons import Reason
from callstorage.reconcile.externalstorage import PERMANENT_REASONS

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
