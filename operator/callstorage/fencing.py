"""Leadership as a deadline that every write of the operator checks (a fence).

Of several replicas only the holder of the Lease may write (status, finalizers, Events).
The leader knows it holds the Lease until ``renew_deadline`` after the start of its last
successful renewal: a standby takes over only ``lease_duration`` (longer, settings.py
makes sure) after it saw that renewal, which came after its start. So the Lease is not
checked by asking the API server (the API server may be what hangs), but by the clock:
every write asks the fence first, is refused once the deadline has passed, and is cut
off (its connection closed) when the deadline passes while it is in flight. A renewal
that succeeds moves the deadline on.

On a clean hand-over the fence is closed first (no new write starts), then the writes in
flight are awaited (each bounded by its own timeout and the deadline), then the Lease is
released: nothing the old leader sent lands after the new leader started.

A single replica without leader election has a fence that never closes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class NotLeader(Exception):
    """A write was refused or cut off: this replica no longer holds the leader Lease."""

    def __init__(self) -> None:
        super().__init__("not the leader: the leader Lease was not renewed in time")


class Fence:
    """Until when (``time.monotonic()``) this replica may write as the leader."""

    def __init__(self, until: float = math.inf) -> None:
        self._until = until
        self._writes: set[asyncio.Task[Any]] = set()

    @classmethod
    def closed(cls) -> Fence:
        """A fence for a replica that does not lead yet."""
        return cls(-math.inf)

    @property
    def until(self) -> float:
        return self._until

    def extend(self, until: float) -> None:
        """The Lease was renewed: writes are allowed until ``until`` (never moved back)."""
        self._until = max(self._until, until)

    def close(self) -> None:
        """No write from now on (the Lease is lost, or about to be released)."""
        self._until = -math.inf

    def remaining(self) -> float:
        return self._until - time.monotonic()

    def check(self) -> float:
        """Seconds left to lead; raises ``NotLeader`` when none."""
        left = self.remaining()
        if left <= 0:
            raise NotLeader
        return left

    async def write(self, call: Callable[[float], Awaitable[T]]) -> T:
        """Run ``call(seconds_left)`` as a write of the leader: refused after the
        deadline, cut off at it, and not abandoned half-sent when the caller is
        cancelled (``drain`` waits for it before the Lease is handed over)."""
        left = self.check()
        task: asyncio.Task[T] = asyncio.create_task(self._bounded(call, left))
        self._writes.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    async def _bounded(self, call: Callable[[float], Awaitable[T]], left: float) -> T:
        try:
            async with asyncio.timeout(None if math.isinf(left) else left):
                return await call(left)
        except TimeoutError:
            if self.remaining() <= 0:
                raise NotLeader from None
            raise

    def _finished(self, task: asyncio.Task[T]) -> None:
        self._writes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its caller may have been cancelled meanwhile

    async def drain(self) -> None:
        """Wait for the writes in flight (each ends by its timeout or the deadline)."""
        if self._writes:
            await asyncio.wait(set(self._writes))
