"""docs/api.md is the contract: its reason table matches the code's reasons and their
policy, and nothing cites a contract file that is not in the repository."""

from __future__ import annotations

import re
import subprocess

from callstorage.api.reasons import POLICY, Reason
from paths import ROOT

DOC = ROOT / "docs" / "api.md"


def _reason_rows() -> dict[str, list[str]]:
    text = DOC.read_text()
    section = text.split("### Reasons", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        match = re.match(r"^\| `(\w+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_every_reason_has_a_row_in_the_reason_table() -> None:
    rows = _reason_rows()
    assert sorted(rows) == sorted(r.value for r in Reason)
    for reason, cells in rows.items():
        assert all(cells), f"{reason}: empty cell"


def test_the_table_says_what_the_policy_does() -> None:
    for reason, cells in _reason_rows().items():
        policy = POLICY[Reason(reason)]
        _ready, stalled, retried = cells[:3]
        assert stalled == ("yes" if policy.stalled else "no"), reason
        assert retried == ("yes" if policy.retry else "no"), reason


def test_the_contract_cited_is_the_one_in_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    citing = [path for path in tracked
              if path.endswith((".py", ".yaml", ".md", ".lua"))
              and re.search(r"(?<![\w/])API\.md", (ROOT / path).read_text(errors="replace"))]
    assert citing == []
