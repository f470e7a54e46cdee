"""``metav1.Condition``-shaped status conditions, as kstatus, Argo CD and Flux read them.

Conditions are plain dicts because they go straight into a status patch. The one rule
that matters: ``lastTransitionTime`` changes only when ``status`` does, so "Ready since"
stays meaningful across the many reconciles that repeat the same result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from callstorage.api.timestamps import rfc3339

READY = "Ready"
RECONCILING = "Reconciling"  # kstatus: the controller is still working on this generation
STALLED = "Stalled"  # kstatus: it cannot make progress until a person acts
SUSPENDED = "Suspended"
DELETION_BLOCKED = "DeletionBlocked"
# Every message we publish is capped: a remote error can be arbitrarily long, and a status
# patch over the CRD's limits would be refused whole (keeping a stale Ready).
MAX_MESSAGE = 1024
ConditionStatus = Literal["True", "False", "Unknown"]
_STATUSES = ("True", "False", "Unknown")


def bounded(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line, without control characters, at most ``limit`` characters."""
    text = "".join(ch if ch.isprintable() else " " for ch in message)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 14].rstrip() + " [truncated]"
    return text


def make_condition(
    type_: str,
    status: str | bool,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A condition stamped with ``now``; ``status`` may be a bool or True/False/Unknown."""
    if isinstance(status, bool):
        status = "True" if status else "False"
    if status not in _STATUSES:
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": bounded(message),
        "lastTransitionTime": rfc3339(now),
    }
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    return condition


def set_condition(
    existing: Iterable[Mapping[str, Any]] | None, new: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``existing`` with the condition of ``new``'s type replaced (or appended).

    The previous ``lastTransitionTime`` is kept unless ``status`` changed. Other types
    keep their place and content; the input is not modified.
    """
    result: list[dict[str, Any]] = []
    replaced = False
    for condition in existing or ():
        if condition.get("type") != new["type"]:
            result.append(dict(condition))
            continue
        if replaced:  # a duplicate of the type: drop it, the list is a map keyed by type
            continue
        merged = dict(new)
        previous = condition.get("lastTransitionTime")
        if condition.get("status") == new["status"] and previous:
            merged["lastTransitionTime"] = previous
        result.append(merged)
        replaced = True
    if not replaced:
        result.append(dict(new))
    return result


def get_condition(
    conditions: Iterable[Mapping[str, Any]] | None, type_: str
) -> dict[str, Any] | None:
    """The condition of ``type_``, or None."""
    for condition in conditions or ():
        if condition.get("type") == type_:
            return dict(condition)
    return None


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str = READY) -> bool:
    """Whether the condition of ``type_`` exists with status True."""
    condition = get_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"
