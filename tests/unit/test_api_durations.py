"""Go-style durations of spec.validationInterval."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callstorage.api import parse_duration
from callstorage.api.durations import validate_interval


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0),
    ("0s", 0.0),
    ("30s", 30.0),
    ("1h", 3600.0),
    ("1h30m", 5400.0),
    ("0.5m", 30.0),
    ("1.5h", 5400.0),
    ("1500ms", 1.5),
    ("2m30s", 150.0),
    ("999999h", 999999 * 3600.0),
])
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    "", "1", "3600", "1 h", "1H", "-1h", "+1h", "1d", "1w", "1us", "1ns", "h", ".5h", "1.h",
    "1234567h", "00", "1h ", " 1h", "1h\n",
])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="must be a duration such as 30s"):
        parse_duration(text)


def test_interval_minimum() -> None:
    assert validate_interval("0") == 0
    assert validate_interval("30s") == 30
    with pytest.raises(ValueError, match="at least 30s"):
        validate_interval("29s")
    with pytest.raises(ValueError, match="at least 30s"):
        validate_interval("29999ms")


@given(st.lists(st.tuples(st.integers(0, 999999), st.sampled_from(["ms", "s", "m", "h"])),
                min_size=1, max_size=4))
def test_parts_add_up(parts: list[tuple[int, str]]) -> None:
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    text = "".join(f"{number}{u}" for number, u in parts)
    assert parse_duration(text) == pytest.approx(sum(n * unit[u] for n, u in parts))
