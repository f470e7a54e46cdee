"""The fence every write of the operator passes (callstorage.fencing): refused once the
leader's deadline has passed, cut off when it passes mid-flight, and not abandoned when
the caller is cancelled (a hand-over waits for it)."""

from __future__ import annotations

import asyncio
import time

import pytest

from callstorage.fencing import Fence, NotLeader


async def test_refused_before_leading_and_after_the_deadline() -> None:
    fence = Fence.closed()
    calls: list[float] = []

    async def write(left: float) -> str:
        calls.append(left)
        return "written"

    with pytest.raises(NotLeader):
        await fence.write(write)
    fence.extend(time.monotonic() + 0.2)
    assert await fence.write(write) == "written"
    assert 0 < calls[0] <= 0.2  # the write learns how long it may take
    await asyncio.sleep(0.25)
    with pytest.raises(NotLeader):
        await fence.write(write)
    assert len(calls) == 1


async def test_a_write_in_flight_is_cut_off_at_the_deadline() -> None:
    fence = Fence.closed()
    fence.extend(time.monotonic() + 0.3)
    started = time.monotonic()
    with pytest.raises(NotLeader):
        await fence.write(lambda left: asyncio.sleep(10))
    assert time.monotonic() - started < 0.5


async def test_unelected_fence_never_closes_and_keeps_other_timeouts() -> None:
    fence = Fence()

    async def slow(left: float) -> None:
        assert left == float("inf")
        raise TimeoutError  # the write's own timeout: not a lost leadership

    with pytest.raises(TimeoutError):
        await fence.write(slow)


async def test_a_cancelled_callers_write_is_awaited_by_drain() -> None:
    fence = Fence()
    landed: list[str] = []

    async def write(left: float) -> None:
        await asyncio.sleep(0.2)
        landed.append("patch")

    caller = asyncio.create_task(fence.write(write))
    await asyncio.sleep(0.05)
    caller.cancel()  # the worker is stopped mid-write ...
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert landed == []
    fence.close()
    await fence.drain()  # ... and the hand-over waits until the write has ended
    assert landed == ["patch"]
