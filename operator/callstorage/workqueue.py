"""A work queue with delayed adds, in the style of client-go's workqueue.

One queue serves every object of a kind: thousands of storages need one scheduler, not
thousands of kopf timers (one asyncio task each). Guarantees:

- a key is queued at most once, and each of its reasons keeps its own due time: a
  reference change due now never pulls a validation due in an hour forward (adding the
  same reason again keeps the earlier of its two times);
- ``get`` hands out a key with the reasons that are due, and keeps the others pending;
- a key is never processed by two workers at once; adding a key that is being processed
  records the reason, and the key is queued again when the worker calls ``done``;
- delayed adds wait in a heap, so a far-future re-validation costs one heap entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Keys with reasons, each reason with a due time; ``get`` returns the next due key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, K]] = []
        self._queued: dict[K, float] = {}  # key -> due time of its live heap entry
        self._pending: dict[K, dict[str, float]] = {}  # key -> reason -> due time
        self._processing: set[K] = set()
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, key: K, reason: str, delay: float = 0.0) -> None:
        """Queue ``key`` for ``reason`` ``delay`` seconds from now."""
        due = self._clock() + max(delay, 0.0)
        reasons = self._pending.setdefault(key, {})
        if reason not in reasons or due < reasons[reason]:
            reasons[reason] = due
        if key not in self._processing:
            self._push(key, min(reasons.values()))

    def _push(self, key: K, due: float) -> None:
        current = self._queued.get(key)
        if current is not None and current <= due:
            return
        self._queued[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        self._wakeup.set()
        self._compact()

    def _compact(self) -> None:
        """Superseded and forgotten entries stay in the heap until due (a deleted
        storage's next validation, an hour away); once they outnumber the live ones the
        heap is rebuilt, so churn cannot grow it."""
        if len(self._heap) > 2 * len(self._queued) + 64:
            self._heap = [e for e in self._heap if self._queued.get(e[2]) == e[0]]
            heapq.heapify(self._heap)

    def entries(self) -> int:
        """Entries in the heap, live or not (bookkeeping)."""
        return len(self._heap)

    def due_at(self, key: K) -> float | None:
        """When ``key`` is next due (monotonic clock), if anything is pending for it."""
        reasons = self._pending.get(key)
        return min(reasons.values()) if reasons else None

    def reasons(self, key: K) -> dict[str, float]:
        """The pending reasons of ``key`` and when each is due."""
        return dict(self._pending.get(key, {}))

    def forget(self, key: K) -> None:
        """Drop a key (its object is gone); a stale heap entry is skipped later."""
        self._queued.pop(key, None)
        self._pending.pop(key, None)
        self._compact()

    async def get(self) -> tuple[K, set[str]]:
        """Wait for the next due key; the caller must call ``done(key)`` afterwards."""
        while True:
            if self._closed:
                raise asyncio.CancelledError
            now = self._clock()
            while self._heap:
                due, _, key = self._heap[0]
                if self._queued.get(key) != due:  # superseded or forgotten entry
                    heapq.heappop(self._heap)
                    continue
                if due > now:
                    break
                heapq.heappop(self._heap)
                del self._queued[key]
                pending = self._pending.get(key, {})
                ready = {r for r, d in pending.items() if d <= now}
                for r in ready:
                    del pending[r]
                if not pending:
                    self._pending.pop(key, None)
                self._processing.add(key)
                return key, ready
            timeout = self._heap[0][0] - now if self._heap else None
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def done(self, key: K) -> None:
        """Mark ``key`` processed; queue it again for whatever is still pending."""
        self._processing.discard(key)
        due = self.due_at(key)
        if due is not None:
            self._push(key, due)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
