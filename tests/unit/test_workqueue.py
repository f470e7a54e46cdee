"""The work queue: dedupe, delays, never two workers on one key."""

from __future__ import annotations

import asyncio

import pytest

from callstorage.workqueue import WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _get_now(q: WorkQueue[str]) -> tuple[str, set[str]] | None:
    try:
        return await asyncio.wait_for(q.get(), 0.05)
    except TimeoutError:
        return None


async def test_add_twice_is_one_item_with_both_reasons() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a", "validate")
    q.add("a", "check")
    assert len(q) == 1
    assert await _get_now(q) == ("a", {"validate", "check"})
    assert await _get_now(q) is None


async def test_delayed_item_waits_and_earlier_add_wins() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock)
    q.add("a", "validate", delay=60)
    assert await _get_now(q) is None
    q.add("a", "secret", delay=0)  # an event now is handled now...
    item = await _get_now(q)
    assert item == ("a", {"secret"})
    q.done("a")
    # ...and does not pull the scheduled run forward: it keeps its own time
    assert q.reasons("a") == {"validate": 1060.0}
    assert await _get_now(q) is None
    q.add("b", "validate", delay=30)
    clock.now += 31
    q.add("c", "x", delay=1000)  # wakes the getter so it re-reads the clock
    assert await _get_now(q) == ("b", {"validate"})


async def test_key_being_processed_is_requeued_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a", "first")
    key, _ = await q.get()
    q.add("a", "second")  # arrives while a worker holds "a"
    assert await _get_now(q) is None  # no second worker gets it
    q.done(key)
    assert await _get_now(q) == ("a", {"second"})


async def test_forget_drops_pending_item() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a", "x")
    q.forget("a")
    assert await _get_now(q) is None
    assert len(q) == 0


async def test_close_ends_waiting_getters() -> None:
    q: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_a_reason_keeps_its_own_due_time_and_the_earlier_of_two() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock)
    q.add("a", "validate", delay=3600)
    q.add("a", "refs")
    assert await _get_now(q) == ("a", {"refs"})
    q.add("a", "refs")  # while processing: recorded, handed out after done
    q.done("a")
    assert await _get_now(q) == ("a", {"refs"})
    q.done("a")
    q.add("a", "validate", delay=5)  # a retry sooner than the periodic run wins
    assert q.due_at("a") == 1005.0
    clock.now += 6
    q.add("z", "wake", delay=1000)
    assert await _get_now(q) == ("a", {"validate"})
    q.done("a")
    assert q.due_at("a") is None


async def test_forgotten_keys_do_not_pile_up_in_the_heap() -> None:
    """Issue 24 item 9: a deleted storage's next validation, an hour away, must not stay
    in the heap for that hour; under churn the heap stays near the live keys."""
    q: WorkQueue[str] = WorkQueue(clock=FakeClock())
    q.add("live", "validate", 3600)
    for i in range(1000):
        q.add(f"k{i}", "validate", 3600)
        q.add(f"k{i}", "refs", 10)  # an earlier due time: a second entry for the key
        q.forget(f"k{i}")
    assert q.entries() <= 2 + 64
    assert q.due_at("live") is not None
