"""docs/install.md says what the code does: its table of the default endpoint deny list is
the operator's DEFAULT_DENIED_ENDPOINTS, entry for entry, in order."""

from __future__ import annotations

import re
from pathlib import Path

from callstorage.settings import DEFAULT_DENIED_ENDPOINTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "install.md"
BEGIN, END = "<!-- default-deny-list: begin -->", "<!-- default-deny-list: end -->"


def documented_deny_list(text: str) -> list[str]:
    """The first cell of each row of the table between the markers."""
    assert text.count(BEGIN) == 1, f"one {BEGIN} in docs/install.md"
    assert text.count(END) == 1, f"one {END} in docs/install.md"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0]
    return re.findall(r"(?m)^\| `([^`]+)` \|", table)


def test_the_documented_default_deny_list_is_the_codes() -> None:
    assert documented_deny_list(DOC.read_text()) == list(DEFAULT_DENIED_ENDPOINTS)


def test_a_drifted_table_is_caught() -> None:
    """The comparison is not vacuous: an entry missing, added or spelled otherwise fails."""
    text = DOC.read_text()
    assert documented_deny_list(text)  # rows are found at all
    for drifted in (text.replace("| `fd20:ce::254/128` |", "| `fd20:ce::254` |"),
                    re.sub(r"(?m)^\| `metadata\.goog` \|.*\n", "", text),
                    text.replace(END, f"| `10.0.0.0/8` | private |\n{END}")):
        assert documented_deny_list(drifted) != list(DEFAULT_DENIED_ENDPOINTS)
