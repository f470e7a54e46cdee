"""RFC 3339 timestamps as Kubernetes writes them: the one place they are formatted and read.

``metav1.Time`` (conditions, status times, Events) has seconds precision;
``metav1.MicroTime`` (a Lease's renew time) and the check annotation's unique token carry
microseconds. Both are UTC with a ``Z``.
"""

from __future__ import annotations

import datetime as dt


def _utc(moment: dt.datetime | None) -> dt.datetime:
    moment = moment or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:  # a naive datetime is taken to be UTC already
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def rfc3339(moment: dt.datetime | None = None) -> str:
    """``moment`` (default: now) with seconds precision: ``2024-05-01T12:00:00Z``."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(moment: dt.datetime | None = None) -> str:
    """``moment`` (default: now) with microseconds: ``2024-05-01T12:00:00.000001Z``."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(value: str) -> dt.datetime:
    """An RFC 3339 timestamp (``Z`` or an offset; any precision) as an aware datetime;
    ValueError when it is not one."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
