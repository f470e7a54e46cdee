"""The one answer to "is this object Ready?", for ExternalStorages and CallTypes alike.

Every reader uses ``readiness``: the CallType reconciler, ``resolve``, the client and CLI,
the test bed and the benchmarks. The Argo CD health scripts (docs/argocd-health) follow
the same rules and are tested against the same table of cases (tests/cases/readiness.py).

The rules are kstatus's: a status or condition written for an older generation says
nothing about the current spec; ``Stalled=True`` means a person must act;
``Reconciling=True`` means the operator is still working on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from callstorage.api.conditions import READY, RECONCILING, STALLED, SUSPENDED, get_condition

Health = Literal["Healthy", "Progressing", "Degraded", "Suspended"]
PENDING = "Pending"


@dataclass(frozen=True)
class Readiness:
    """What an object's status says about its current generation.

    ``ready``: Ready=True for the current generation (the only value a caller should
    write recordings on). ``status``/``reason``/``message`` are those of the Ready
    condition, or Unknown/Pending when it is absent or describes an older generation.
    """

    ready: bool
    status: str
    reason: str
    message: str
    stalled: bool = False
    reconciling: bool = False
    suspended: bool = False
    terminating: bool = False

    @property
    def health(self) -> Health:
        """Argo CD's words for it (the Lua health checks give the same answer)."""
        if self.reason == PENDING:
            return "Progressing"
        if self.suspended:
            return "Suspended"
        if self.stalled:
            return "Degraded"
        if self.ready:
            return "Healthy"
        return "Progressing"


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def readiness(obj: Mapping[str, Any]) -> Readiness:
    """Readiness of a callstorage object (ExternalStorage or CallType) as returned by the
    API server."""
    meta: Mapping[str, Any] = obj.get("metadata") or {}
    status: Mapping[str, Any] = obj.get("status") or {}
    conditions = status.get("conditions") or []
    terminating = bool(meta.get("deletionTimestamp"))
    generation = _int(meta.get("generation"))
    ready = get_condition(conditions, READY)
    if ready is None:
        return Readiness(False, "Unknown", PENDING,
                         "not validated yet; is the callstorage operator running?",
                         reconciling=True, terminating=terminating)
    observed = _int(status.get("observedGeneration"))
    condition_generation = _int(ready.get("observedGeneration"))
    for seen in (observed, condition_generation):
        if generation is not None and seen is not None and seen != generation:
            return Readiness(False, "Unknown", PENDING,
                             f"generation {generation} not observed yet (last: {seen})",
                             reconciling=True, terminating=terminating)

    def true(type_: str) -> bool:
        c = get_condition(conditions, type_)
        return c is not None and c.get("status") == "True"

    value = str(ready.get("status") or "Unknown")
    return Readiness(
        ready=value == "True",
        status=value,
        reason=str(ready.get("reason") or ""),
        message=str(ready.get("message") or ""),
        stalled=true(STALLED),
        reconciling=true(RECONCILING),
        suspended=true(SUSPENDED),
        terminating=terminating,
    )


def ready_condition_for(conditions: Iterable[Mapping[str, Any]] | None,
                        generation: int) -> dict[str, Any] | None:
    """The Ready condition when it was written for ``generation`` (its
    ``observedGeneration`` is that generation), else None: the operator's own question
    before it keeps, re-stamps or recomputes a result. ``readiness`` answers a reader, who
    also sees a status without ``observedGeneration`` (one the operator did not write)."""
    ready = get_condition(conditions, READY)
    return ready if ready is not None and ready.get("observedGeneration") == generation \
        else None


def is_ready(obj: Mapping[str, Any] | None) -> bool:
    """Ready=True for the current generation."""
    return obj is not None and readiness(obj).ready
