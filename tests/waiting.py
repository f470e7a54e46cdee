"""Waiting on a condition in async tests: poll it, fail with a clear message at a deadline
(never a bare sleep-and-hope)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(predicate: Callable[[], object], within: float = 20.0,
                what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {within}s"
        await asyncio.sleep(0.02)
