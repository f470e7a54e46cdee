"""Pure: a provider's answer (or its absence) as a round's outcome.

A round asks for a validation, an on-demand check, or both. Whatever happens on the way
(a Secret missing, a client that cannot be built, an SDK raising something unexpected, a
thread abandoned past its deadline, an identical request answering for this one) ends
in a ``Validation`` for the one asked and a ``CheckOutcome`` for the other: the status
always says what the attempt came to. Also the words for the operator's own failures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

from callstorage.api.capabilities import Capabilities
from callstorage.api.conditions import RECONCILING, STALLED, make_condition, set_condition
from callstorage.api.prefixes import effective_prefixes
from callstorage.api.reasons import Reason
from callstorage.api.timestamps import rfc3339
from callstorage.reconcile.externalstorage import CheckOutcome, Validation
from callstorage.storagespec import ExternalStorageSpec

Outcome = tuple[Validation | None, CheckOutcome | None]


class Refusal(Protocol):
    """What a provider's error says (``providers.base.ProviderError``, read here without
    importing the providers)."""

    @property
    def reason(self) -> Reason: ...

    @property
    def message(self) -> str: ...

    @property
    def stalled(self) -> bool | None: ...

    @property
    def retry(self) -> bool | None: ...


def success_message(spec: ExternalStorageSpec, caps: Capabilities) -> str:
    """Ready=True's message: what the validation proved."""
    if spec.access_mode == "WriteOnly":
        prefixes = sorted(set(effective_prefixes(spec).values()))
        shown = ", ".join(f"{p}/" if p else "(bucket root)" for p in prefixes)
        return f"probe writes to {spec.bucket} succeeded under: {shown}"
    return f"bucket {spec.bucket} is reachable with these credentials"


def validated(spec: ExternalStorageSpec, caps: Capabilities, version: str | None) -> \
        Validation:
    """A validation that passed, with what it proved."""
    return Validation(Reason.VALIDATED, success_message(spec, caps), caps, version)


def failed(exc: Refusal, version: str | None = None) -> Validation:
    """A validation the provider (or the Secrets before it) answered with ``exc``."""
    return Validation(exc.reason, exc.message, secret_version=version, stalled=exc.stalled,
                      retry=exc.retry)


def uploaded(check_value: str, url: str) -> CheckOutcome:
    """An on-demand check that uploaded its object to ``url``."""
    return CheckOutcome(check_value, True, f"uploaded {url}", url)


def not_run(exc: Refusal, version: str | None, validate: bool,
            check_value: str | None) -> Outcome:
    """Neither request got as far as the bucket: both say why."""
    return (failed(exc, version) if validate else None,
            CheckOutcome(check_value, False, exc.message) if check_value else None)


def unanswered(reason: Reason, message: str, version: str | None, validate: bool,
               check_value: str | None) -> Outcome:
    """The attempt ended without a provider's answer (``reason``: an unexpected error of
    the operator's, or a thread abandoned past its deadline)."""
    return (Validation(reason, message, secret_version=version) if validate else None,
            CheckOutcome(check_value, False, message) if check_value else None)


def unexpected(error_type: str, version: str | None, validate: bool,
               check_value: str | None) -> Outcome:
    """Whatever escaped a provider (a RecursionError from a pathological Secret, an SDK
    bug) still ends in a status that says the attempt failed."""
    message = (f"validation failed unexpectedly ({error_type}); the operator retries with "
               "backoff, and its log has details")
    return unanswered(Reason.INTERNAL_ERROR, message, version, validate, check_value)


def joined(spec: ExternalStorageSpec, answer: Validation, version: str | None) -> Validation:
    """This storage's validation from the answer to an identical request in flight: a
    success says what it proved for this storage's spec."""
    if answer.ok and answer.capabilities is not None:
        return validated(spec, answer.capabilities, version)
    return answer


def describe_error(exc: BaseException) -> str:
    """An exception for a log line or status: its type and, for API errors, the HTTP
    status; never its text, which may quote a request body."""
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if isinstance(status, int) else "")


def error_conditions(status: Mapping[str, Any], error: str, attempts: int,
                     retry_at: dt.datetime, generation: int) -> list[dict[str, Any]] | None:
    """The conditions that say the operator itself fails on the object (Reconciling=True,
    ReconcileError, when it tries again); None when the status says enough already: a
    Stalled object needs a person, never both (kstatus), or nothing would change."""
    if any(c.get("type") == STALLED and c.get("status") == "True"
           for c in status.get("conditions") or []):
        return None
    condition = make_condition(
        RECONCILING, "True", "ReconcileError",
        f"the operator failed to reconcile this object ({error}); attempt "
        f"{attempts + 1} at {rfc3339(retry_at)}", generation)
    conditions = set_condition(status.get("conditions"), condition)
    return None if conditions == status.get("conditions") else conditions
