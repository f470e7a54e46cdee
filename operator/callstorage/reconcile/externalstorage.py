"""Pure: from what was observed about an ExternalStorage to the status it should have.

Nothing here talks to Kubernetes or a bucket; the controller gathers the inputs, calls
``desired_status`` and writes ``status_patch`` only when it is not None.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callstorage.api.conditions import make_condition, set_condition
from callstorage.providers.base import Capabilities, Reason

READY = "Ready"
SUSPENDED = "Suspended"
DELETION_BLOCKED = "DeletionBlocked"

# Reasons a retry cannot fix: only a new spec generation can.
PERMANENT_REASONS = frozenset({Reason.INVALID_SPEC})


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Validation:
    """The outcome of one validation round."""

    reason: Reason
    message: str
    capabilities: Capabilities | None = None
    secret_version: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is Reason.VALIDATED


@dataclass(frozen=True)
class CheckOutcome:
    """The outcome of one on-demand check (annotation ``callstorage.io/check-requested-at``)."""

    requested_at: str
    succeeded: bool
    message: str
    object: str | None = None


@dataclass(frozen=True)
class Observed:
    """Everything the status is computed from."""

    generation: int
    now: dt.datetime
    effective_prefixes: Mapping[str, str] | None  # None: the spec is invalid
    suspended: bool = False
    validation: Validation | None = None  # None: no validation ran this round
    check: CheckOutcome | None = None
    used_by: tuple[str, ...] = ()
    blocked_deletion_by: tuple[str, ...] = ()  # non-empty: deleting, but still in use
    next_validation: dt.datetime | None = None
    consecutive_failures: int = 0


def desired_status(current: Mapping[str, Any] | None, obs: Observed) -> dict[str, Any]:
    """The full status the object should have after this round."""
    status: dict[str, Any] = copy.deepcopy(dict(current or {}))
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    now = rfc3339(obs.now)
    new_generation = status.get("observedGeneration") != obs.generation
    status["observedGeneration"] = obs.generation

    if obs.effective_prefixes is not None:
        status["effectivePrefixes"] = dict(obs.effective_prefixes)
        if new_generation or "configuredAt" not in status:
            status["configuredAt"] = now
    else:
        status.pop("effectivePrefixes", None)

    v = obs.validation
    if v is not None:
        conditions = set_condition(conditions, make_condition(
            READY, "True" if v.ok else "False", str(v.reason), v.message, obs.generation,
            obs.now))
        if v.ok:
            status["lastValidatedAt"] = now
            status["capabilities"] = (v.capabilities or Capabilities()).as_status()
        else:
            # What was proven before may not hold any more.
            status["capabilities"] = Capabilities().as_status()
        if v.secret_version is not None:
            status["observedSecretVersion"] = v.secret_version
        else:
            status.pop("observedSecretVersion", None)
        status["consecutiveFailures"] = obs.consecutive_failures
    elif not any(c.get("type") == READY for c in conditions):
        conditions = set_condition(conditions, make_condition(
            READY, "Unknown", "Progressing", "validation has not run yet", obs.generation,
            obs.now))

    if obs.suspended:
        conditions = set_condition(conditions, make_condition(
            SUSPENDED, "True", "Suspended",
            "spec.suspend is true: validation is paused; Ready shows the last result",
            obs.generation, obs.now))
    else:
        conditions = [c for c in conditions if c.get("type") != SUSPENDED]

    if obs.blocked_deletion_by:
        names = ", ".join(obs.blocked_deletion_by)
        conditions = set_condition(conditions, make_condition(
            DELETION_BLOCKED, "True", "InUse",
            f"deletion waits until no CallType refers to this storage; in use by: {names}",
            obs.generation, obs.now))
    else:
        conditions = [c for c in conditions if c.get("type") != DELETION_BLOCKED]

    if obs.next_validation is not None and not obs.suspended:
        status["nextValidationAt"] = rfc3339(obs.next_validation)
    else:
        status.pop("nextValidationAt", None)

    if obs.check is not None:
        check: dict[str, Any] = {
            "requestedAt": obs.check.requested_at,
            "completedAt": now,
            "succeeded": obs.check.succeeded,
            "message": obs.check.message,
        }
        if obs.check.object:
            check["object"] = obs.check.object
        status["lastCheck"] = check

    status["usedBy"] = list(obs.used_by)
    status["conditions"] = conditions
    return status


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> \
        dict[str, Any] | None:
    """A JSON merge patch turning ``current`` into ``desired``; None when equal.

    Top-level keys only: a merge patch replaces lists whole, and nested maps we own
    entirely, so sending the whole value of each changed key is both simple and exact.
    """
    current = current or {}
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if current.get(key) != value:
            patch[key] = value
    for key in current:
        if key not in desired:
            patch[key] = None
    return patch or None


def ready_state(status: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """(status, reason, message) of the Ready condition, or Unknown when absent."""
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == READY:
            return str(c.get("status", "Unknown")), str(c.get("reason", "")), \
                str(c.get("message", ""))
    return "Unknown", "Progressing", "not validated yet"
