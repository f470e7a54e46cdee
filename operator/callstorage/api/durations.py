"""Go-style durations as the CRD accepts them (``spec.validationInterval``).

The grammar is the subset of Go's ``time.ParseDuration`` that the CRD's CEL rule admits:
one or more ``<number><unit>`` parts with units ms, s, m, h, or the bare ``0``. At most
six integer digits per part keep every accepted value far below Go's duration limit, so
the CEL ``duration()`` call in the CRD can never overflow.
"""

from __future__ import annotations

import re

DURATION_PATTERN = r"^(0|([0-9]{1,6}([.][0-9]{1,9})?(ms|s|m|h))+)$"
MIN_INTERVAL_SECONDS = 30.0

_DURATION = re.compile(DURATION_PATTERN)
_PART = re.compile(r"([0-9]+(?:[.][0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

FORMAT_MESSAGE = (
    "must be a duration such as 30s, 15m, 1h or 1h30m (units ms, s, m, h), "
    "or 0 to turn periodic validation off"
)
MINIMUM_MESSAGE = "must be at least 30s, or 0 to turn periodic validation off"


def parse_duration(value: str) -> float:
    """Seconds in a duration such as ``1h30m`` or ``0``; ValueError if it is malformed."""
    if not _DURATION.fullmatch(value):
        raise ValueError(FORMAT_MESSAGE)
    if value == "0":
        return 0.0
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(value))


def validate_interval(value: str) -> float:
    """Seconds of a ``validationInterval``: 0 (off) or at least 30s; ValueError otherwise."""
    seconds = parse_duration(value)
    if 0 < seconds < MIN_INTERVAL_SECONDS:
        raise ValueError(MINIMUM_MESSAGE)
    return seconds
