"""What the operator's log says about states that heal themselves."""

from __future__ import annotations

import logging

from callstorage.runner import DemoteKopfRetries


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_kopfs_retried_watch_requests_are_warnings_and_its_escalations_stay_errors() -> None:
    """An API server restart made kopf log every retried watch request at ERROR (12 lines
    for a 5 s outage in the fault suite)."""
    demote = DemoteKopfRetries()
    retry = _record("kopf._cogs.clients.watching", logging.ERROR,
                    "Request attempt #2/6 failed; will retry: GET https://api/x -> Err()")
    assert demote.filter(retry)
    assert (retry.levelno, retry.levelname) == (logging.WARNING, "WARNING")
    final = _record("kopf._cogs.clients.watching", logging.ERROR,
                    "Request attempt #6/6 failed; escalating: GET https://api/x -> Err()")
    assert demote.filter(final)
    assert final.levelno == logging.ERROR
    ours = _record("callstorage.controller", logging.ERROR, "x failed; will retry")
    assert demote.filter(ours)
    assert ours.levelno == logging.ERROR
