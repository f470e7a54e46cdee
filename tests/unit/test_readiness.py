"""The one readiness rule over the shared table of cases (tests/cases/readiness.py)."""

from __future__ import annotations

import pytest

from callstorage.api.readiness import readiness
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
