"""A rate-limited work queue with delayed adds, in the style of client-go's workqueue.

One queue serves every object of a kind: thousands of storages need one scheduler, not
thousands of kopf timers (one asyncio task each). Guarantees:

- a key is queued at most once (adding it again merges the reasons and keeps the earlier
  due time);
- a key is never processed by two workers at once; adding a key that is being processed
  marks it dirty, and it is queued again when the worker calls ``done``;
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
    """Keys with a due time and a set of reasons; ``get`` returns the next due key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._reasons: dict[K, set[str]] = {}
        self._processing: set[K] = set()
        self._dirty: dict[K, float] = {}  # re-added while processing -> due time
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._due) + len(self._dirty)

    def add(self, key: K, reason: str, delay: float = 0.0) -> None:
        """Queue ``key`` ``delay`` seconds from now (earlier wins if already queued)."""
        due = self._clock() + max(delay, 0.0)
        self._reasons.setdefault(key, set()).add(reason)
        if key in self._processing:
            self._dirty[key] = min(due, self._dirty.get(key, due))
            return
        self._push(key, due)

    def _push(self, key: K, due: float) -> None:
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        self._wakeup.set()

    def due_at(self, key: K) -> float | None:
        """When ``key`` is next due (monotonic clock), if queued."""
        return self._due.get(key, self._dirty.get(key))

    def forget(self, key: K) -> None:
        """Drop a key (its object is gone); a stale heap entry is skipped later."""
        self._due.pop(key, None)
        self._dirty.pop(key, None)
        self._reasons.pop(key, None)

    async def get(self) -> tuple[K, set[str]]:
        """Wait for the next due key; the caller must call ``done(key)`` afterwards."""
        while True:
            if self._closed:
                raise asyncio.CancelledError
            now = self._clock()
            while self._heap:
                due, _, key = self._heap[0]
                if self._due.get(key) != due:  # superseded or forgotten entry
                    heapq.heappop(self._heap)
                    continue
                if due > now:
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                self._processing.add(key)
                return key, self._reasons.pop(key, set())
            timeout = self._heap[0][0] - now if self._heap else None
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def done(self, key: K) -> None:
        """Mark ``key`` processed; queue it again if it was added meanwhile."""
        self._processing.discard(key)
        due = self._dirty.pop(key, None)
        if due is not None:
            self._push(key, due)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
