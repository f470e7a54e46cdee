"""Rows the Argo CD health checks must also get right, beyond tests/cases/readiness.py.

The health checks (docs/argocd-health) are generated test cases of both tables: the
shared readiness table, where every reader of status meets, and these rows on the order
of the rules that only the health checks make visible. ``callstorage.api.readiness``
must give each row's ``health`` too (tests/unit/test_argocd_health.py checks it), so
there is still one rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cases.readiness import CT, EXS, READY, STALLED, cond, obj


@dataclass(frozen=True)
class HealthCase:
    id: str
    object: dict[str, Any] = field(repr=False)
    health: str


def _without_generations(body: dict[str, Any]) -> dict[str, Any]:
    body["status"].pop("observedGeneration")
    for c in body["status"]["conditions"]:
        c.pop("observedGeneration")
    return body


CASES: list[HealthCase] = [
    # Suspended comes before Stalled: a paused storage is not a failing one
    HealthCase("storage-suspended-and-stalled", obj(EXS, [
        *STALLED, cond("Suspended", "True", "Suspended")], suspend=True), "Suspended"),
    HealthCase("storage-stalled-false", obj(EXS, [*READY, cond("Stalled", "False", "Validated")]),
               "Healthy"),
    HealthCase("storage-status-without-ready", obj(EXS, [
        cond("Reconciling", "True", "Validating")]), "Progressing"),
    # a status without observedGeneration fields (an older operator) is read as current
    HealthCase("storage-without-generations", _without_generations(obj(EXS, READY)),
               "Healthy"),
    HealthCase("calltype-generation-not-observed", obj(CT, [
        cond("Ready", "True", "StorageReady", gen=1)], observed=1), "Progressing"),
    HealthCase("calltype-stalled-and-ready-unknown", obj(CT, [
        cond("Ready", "Unknown", "StorageNotReady"),
        cond("Stalled", "True", "StorageNotFound", "no ExternalStorage ns/gone")]),
        "Degraded"),
]
