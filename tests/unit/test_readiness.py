"""The one readiness rule over the shared table of cases (tests/cases/readiness.py)."""

from __future__ import annotations

import pytest

from callstorage.api.readiness import readiness, ready_condition_for
from cases.readiness import CASES, Case


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_readiness_follows_the_table(case: Case) -> None:
    state = readiness(case.object)
    assert (state.ready, state.reason, state.health) == (case.ready, case.reason, case.health)


def test_stale_generation_never_reads_ready() -> None:
    """Whatever a condition says, a status written for an older generation is not Ready."""
    for case in CASES:
        meta = case.object["metadata"]
        bumped = {**case.object, "metadata": {**meta, "generation": meta["generation"] + 1}}
        if case.object.get("status"):
            assert not readiness(bumped).ready, case.id


def test_the_operator_keeps_a_ready_condition_only_for_its_own_generation() -> None:
    """``ready_condition_for``: the operator's question before it keeps or re-stamps a
    result (a condition without observedGeneration was not written for this spec)."""
    ready = {"type": "Ready", "status": "True", "observedGeneration": 3}
    others = [{"type": "Stalled", "status": "False", "observedGeneration": 3}]
    assert ready_condition_for([*others, ready], 3) == ready
    assert ready_condition_for([*others, ready], 4) is None
    assert ready_condition_for([{"type": "Ready", "status": "True"}], 3) is None
    assert ready_condition_for(others, 3) is None
    assert ready_condition_for(None, 3) is None
