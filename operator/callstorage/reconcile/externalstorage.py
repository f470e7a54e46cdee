"""Pure: from what was observed about an ExternalStorage to the status it should have, and
the controller's decisions around it (validate or not, count failures, events to post).

Nothing here talks to Kubernetes or a bucket; the controller gathers the inputs, calls
these functions and applies what they return.

Conditions follow kstatus: ``Ready`` says whether recordings can be written with the
current spec; ``Reconciling=True`` while the operator still works on the current
generation (validation pending, or retrying a failure that may pass by itself);
``Stalled=True`` (same reason and message as Ready) when only a person can fix it.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callstorage.api.capabilities import Capabilities
from callstorage.api.conditions import (
    DELETION_BLOCKED,
    READY,
    RECONCILING,
    STALLED,
    SUSPENDED,
    bounded,
    get_condition,
    make_condition,
    set_condition,
)
from callstorage.api.readiness import ready_condition_for
from callstorage.api.reasons import Reason, is_retried, is_stalled
from callstorage.api.timestamps import rfc3339

__all__ = ["DELETION_BLOCKED", "READY", "RECONCILING", "STALLED", "SUSPENDED"]

# Reasons a retry cannot fix: only a new spec generation can.
PERMANENT_REASONS = frozenset(r for r in Reason if not is_retried(r))
# usedBy lists at most this many names; usedByCount has the total.
USED_BY_SAMPLE = 20
# Spec fields whose change needs no new validation: they change when or whether the
# operator validates, not what.
_NOT_VALIDATED_FIELDS = ("suspend", "validationInterval")


def spec_hash(spec: Mapping[str, Any] | None) -> str:
    """Fingerprint of what a validation depends on; equal hashes mean a validation of one
    spec holds for the other (only suspend or validationInterval differ)."""
    relevant = {k: v for k, v in (spec or {}).items() if k not in _NOT_VALIDATED_FIELDS}
    text = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Spec fields a ReadWrite validation (one HeadBucket or its provider's equivalent) never
# sends: two storages differing only in them get the same answer from the same request.
# A WriteOnly validation writes under each prefix, so there they count.
_NOT_SENT_READ_WRITE = ("path", "prefixes")


def shared_check_key(namespace: str, spec: Mapping[str, Any],
                     secret_versions: str | None) -> str:
    """Equal keys: the two validations would send the same requests with the same
    credentials (the same Secrets at the same resourceVersions, in the same namespace),
    so one request in flight may answer both (the controller's shared checks)."""
    skip: tuple[str, ...] = _NOT_VALIDATED_FIELDS
    if spec.get("accessMode", "ReadWrite") != "WriteOnly":
        skip += _NOT_SENT_READ_WRITE
    relevant = {k: v for k, v in spec.items() if k not in skip}
    return json.dumps([namespace, secret_versions, relevant], sort_keys=True,
                      separators=(",", ":"))


@dataclass(frozen=True)
class Validation:
    """The outcome of one validation round."""

    reason: Reason
    message: str
    capabilities: Capabilities | None = None
    secret_version: str | None = None
    stalled: bool | None = None  # None: the reason's policy decides
    retry: bool | None = None  # None: the reason's policy decides

    @property
    def ok(self) -> bool:
        return self.reason is Reason.VALIDATED

    @property
    def retried(self) -> bool:
        """Whether the operator retries this failure on its own (else: only a new
        generation or a changed Secret validates again)."""
        return is_retried(self.reason) if self.retry is None else self.retry

    @property
    def needs_person(self) -> bool:
        if self.ok:
            return False
        return is_stalled(self.reason) if self.stalled is None else self.stalled


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
    spec_hash: str | None = None  # of this generation's spec (see ``spec_hash``)
    reconcile_error: str | None = None  # a failure of the operator itself, being retried


def _restamp(conditions: list[dict[str, Any]], generation: int) -> list[dict[str, Any]]:
    """Ready and Stalled carried to a new generation whose spec validates the same."""
    out = []
    for c in conditions:
        if c.get("type") in (READY, STALLED):
            c = {**c, "observedGeneration": generation}
        out.append(c)
    return out


def desired_status(current: Mapping[str, Any] | None, obs: Observed) -> dict[str, Any]:
    """The full status the object should have after this round."""
    status: dict[str, Any] = copy.deepcopy(dict(current or {}))
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    now = rfc3339(obs.now)
    gen = obs.generation
    new_generation = status.get("observedGeneration") != gen
    status["observedGeneration"] = gen

    if obs.effective_prefixes is not None:
        status["effectivePrefixes"] = dict(obs.effective_prefixes)
        if new_generation or "configuredAt" not in status:
            status["configuredAt"] = now
    else:
        status.pop("effectivePrefixes", None)

    if obs.validation is not None:
        conditions = _validated(status, conditions, obs.validation, obs)
    elif ready_condition_for(conditions, gen) is None:
        conditions = _not_validated(status, conditions, obs)
    conditions = _reconciling(conditions, obs)
    conditions = _suspended(conditions, obs)
    conditions = _deletion_blocked(conditions, obs)

    if obs.next_validation is not None and not obs.suspended:
        status["nextValidationAt"] = rfc3339(obs.next_validation)
    else:
        status.pop("nextValidationAt", None)
    if obs.check is not None:
        status["lastCheck"] = _last_check(obs.check, now)
    status["usedBy"] = list(obs.used_by[:USED_BY_SAMPLE])
    status["usedByCount"] = len(obs.used_by)
    status["conditions"] = conditions
    return status


def _validated(status: dict[str, Any], conditions: list[dict[str, Any]], v: Validation,
               obs: Observed) -> list[dict[str, Any]]:
    """Ready (and Stalled) from this round's validation; what it proved, into ``status``."""
    gen = obs.generation
    conditions = set_condition(conditions, make_condition(
        READY, "True" if v.ok else "False", str(v.reason), v.message, gen, obs.now))
    if v.needs_person:
        conditions = set_condition(conditions, make_condition(
            STALLED, "True", str(v.reason), v.message, gen, obs.now))
    else:
        conditions = [c for c in conditions if c.get("type") != STALLED]
    if v.ok:
        status["lastValidatedAt"] = rfc3339(obs.now)
        status["capabilities"] = (v.capabilities or Capabilities()).as_status()
    else:
        # What was proven before may not hold any more.
        status["capabilities"] = Capabilities().as_status()
    if v.secret_version is not None:
        status["observedSecretVersion"] = v.secret_version
    else:
        status.pop("observedSecretVersion", None)
    status["consecutiveFailures"] = obs.consecutive_failures
    if obs.spec_hash is not None:
        status["validatedSpecHash"] = obs.spec_hash
    return conditions


def _not_validated(status: Mapping[str, Any], conditions: list[dict[str, Any]],
                   obs: Observed) -> list[dict[str, Any]]:
    """Ready for a generation this round did not validate: the last result carried over
    when the spec validates the same, else Unknown (suspended, or validating)."""
    gen = obs.generation
    ready = get_condition(conditions, READY)
    if ready is not None and ready.get("status") != "Unknown" and \
            obs.spec_hash is not None and status.get("validatedSpecHash") == obs.spec_hash:
        # Only suspend, validationInterval or deletion changed: the last result holds.
        return _restamp(conditions, gen)
    if obs.suspended:
        conditions = set_condition(conditions, make_condition(
            READY, "Unknown", str(Reason.SUSPENDED),
            "validation is paused (spec.suspend) and this generation of the spec has "
            "not been validated", gen, obs.now))
    else:
        conditions = set_condition(conditions, make_condition(
            READY, "Unknown", str(Reason.VALIDATING),
            f"validating generation {gen} against the bucket", gen, obs.now))
    return [c for c in conditions if c.get("type") != STALLED]


def _suspended(conditions: list[dict[str, Any]], obs: Observed) -> list[dict[str, Any]]:
    if not obs.suspended:
        return [c for c in conditions if c.get("type") != SUSPENDED]
    return set_condition(conditions, make_condition(
        SUSPENDED, "True", "Suspended",
        "spec.suspend is true: periodic validation and on-demand checks are paused; "
        "Ready shows the last result", obs.generation, obs.now))


def _deletion_blocked(conditions: list[dict[str, Any]], obs: Observed) -> \
        list[dict[str, Any]]:
    if not obs.blocked_deletion_by:
        return [c for c in conditions if c.get("type") != DELETION_BLOCKED]
    names = ", ".join(obs.blocked_deletion_by[:USED_BY_SAMPLE])
    more = len(obs.blocked_deletion_by) - USED_BY_SAMPLE
    if more > 0:
        names += f" and {more} more"
    return set_condition(conditions, make_condition(
        DELETION_BLOCKED, "True", "InUse",
        f"deletion waits until no CallType refers to this storage; in use by: {names}",
        obs.generation, obs.now))


def _last_check(check: CheckOutcome, now: str) -> dict[str, Any]:
    last: dict[str, Any] = {
        "requestedAt": check.requested_at,
        "completedAt": now,
        "succeeded": check.succeeded,
        "message": bounded(check.message),
    }
    if check.object:
        last["object"] = check.object
    return last


def _reconciling(conditions: list[dict[str, Any]], obs: Observed) -> list[dict[str, Any]]:
    """Reconciling=True while the current generation has no final answer yet."""
    without = [c for c in conditions if c.get("type") != RECONCILING]
    ready = get_condition(conditions, READY) or {}
    stalled = get_condition(conditions, STALLED)
    reason = message = None
    # Never Reconciling and Stalled together: kstatus would take whichever comes first.
    if stalled is not None and stalled.get("status") == "True":
        return without
    if obs.reconcile_error is not None:
        reason, message = "ReconcileError", obs.reconcile_error
    elif obs.suspended:
        return without
    elif ready.get("status") == "Unknown":
        reason, message = str(Reason.VALIDATING), str(ready.get("message") or "validating")
    elif ready.get("status") == "False":
        when = f" at {rfc3339(obs.next_validation)}" if obs.next_validation else ""
        reason = "RetryScheduled"
        message = (f"{ready.get('reason')}: may pass by itself; attempt "
                   f"{obs.consecutive_failures + 1} is due{when}")
    if reason is None or message is None:
        return without
    return set_condition(conditions, make_condition(
        RECONCILING, "True", reason, message, obs.generation, obs.now))


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
    """(status, reason, message) of the Ready condition, or Unknown when absent.

    This reads one status map; whether that answers for the object's current generation
    is ``callstorage.api.readiness``'s question.
    """
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == READY:
            return str(c.get("status", "Unknown")), str(c.get("reason", "")), \
                str(c.get("message", ""))
    return "Unknown", "Pending", "not validated yet"


# --- decisions ----------------------------------------------------------------------------


def needs_validation(status: Mapping[str, Any] | None, generation: int,
                     current_spec_hash: str | None, requested: bool) -> bool:
    """Validate this round? Yes when asked (schedule, Secret change, retry) or when the
    status has no result for this generation that still holds."""
    if requested:
        return True
    status = status or {}
    conditions = list(status.get("conditions") or [])
    current = ready_condition_for(conditions, generation)
    if current is not None:
        return current.get("status") == "Unknown"  # e.g. interrupted while validating
    ready = get_condition(conditions, READY)
    carried = ready is not None and ready.get("status") != "Unknown" and \
        current_spec_hash is not None and status.get("validatedSpecHash") == current_spec_hash
    return not carried


def offline_outcome(invalid: str | None, suspended: bool, wants_validation: bool,
                    check_value: str | None) -> tuple[Validation | None, CheckOutcome | None]:
    """The outcome of a round that calls no provider: an invalid spec (reported once per
    generation; reference-only rounds keep the status) or a suspended storage."""
    if invalid is not None:
        return (Validation(Reason.INVALID_SPEC, invalid) if wants_validation else None,
                CheckOutcome(check_value, False, f"not run: the spec is invalid: {invalid}")
                if check_value else None)
    if suspended and check_value:
        return None, CheckOutcome(check_value, False,
                                  "not run: the storage is suspended (spec.suspend)")
    return None, None


def failures_after(previous: int, validation: Validation | None) -> int:
    """``consecutiveFailures`` after a round."""
    if validation is None:
        return previous
    return 0 if validation.ok else previous + 1


@dataclass(frozen=True)
class Event:
    """A core/v1 Event to post on the object."""

    type: str  # Normal | Warning
    reason: str
    message: str


def storage_events(before: Mapping[str, Any], after: Mapping[str, Any],
                   check: CheckOutcome | None) -> list[Event]:
    """Events for what a person should hear about: Ready turning False (a Warning per new
    reason), a recovery from False to True, check results, and a deletion that starts
    waiting. A first success (or a spec change that validates) gets no Event: status says
    it, and at thousands of storages one Event each would double the API writes."""
    events: list[Event] = []
    old, new = ready_state(before), ready_state(after)
    if new[:2] != old[:2]:
        if new[0] == "False":
            events.append(Event("Warning", new[1], new[2]))
        elif new[0] == "True" and old[0] == "False":
            events.append(Event("Normal", new[1], new[2]))
    if check is not None:
        events.append(Event("Normal" if check.succeeded else "Warning",
                            "CheckSucceeded" if check.succeeded else "CheckFailed",
                            check.message))
    was_blocked = get_condition(before.get("conditions"), DELETION_BLOCKED) is not None
    blocked = get_condition(after.get("conditions"), DELETION_BLOCKED)
    if blocked is not None and not was_blocked:
        events.append(Event("Warning", "DeletionBlocked", str(blocked.get("message", ""))))
    return events
