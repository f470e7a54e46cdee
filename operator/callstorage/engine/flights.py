"""Shared flights: identical validations in flight send one request.

A validation identical to one in flight (same namespace, Secrets at the same versions,
same requests: ``reconcile.externalstorage.shared_check_key``) takes that request's answer
instead of sending its own: a Secret shared by N storages of one bucket is revalidated
with one HeadBucket, not N. Only a request already sent and not yet answered is shared,
never a remembered result; on-demand checks (which upload their own object) never are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class Flights(Generic[T]):
    """The requests in flight, by key, each with the future of its answer (None: the
    flight ended without one; whoever waited sends its own)."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[T | None]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def join(self, key: str) -> T | None:
        """The answer of the flight under ``key``, if one is in flight and gets one."""
        shared = self._flights.get(key)
        return None if shared is None else await asyncio.shield(shared)

    @asynccontextmanager
    async def lead(self, key: str | None) -> AsyncIterator[Callable[[T | None], None]]:
        """Lead the flight under ``key`` (unless another leads it already, or ``key`` is
        None): yields the function that answers it; at exit it ends, answered or not."""
        flight: asyncio.Future[T | None] | None = None
        if key is not None and key not in self._flights:
            flight = asyncio.get_running_loop().create_future()
            self._flights[key] = flight

        def answer(value: T | None) -> None:
            if flight is not None:
                flight.set_result(value)

        try:
            yield answer
        finally:
            if flight is not None and key is not None:
                if not flight.done():
                    flight.set_result(None)  # no answer: whoever waited checks for itself
                if self._flights.get(key) is flight:
                    del self._flights[key]

