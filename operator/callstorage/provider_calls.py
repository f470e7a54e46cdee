"""Provider calls in the worker thread pool: under a total deadline, holding their fair
share until the thread has really ended.

A validation's (or check's) provider calls run in one pool thread inside
``providers.deadline.bounded``: when the deadline passes, the call's connections are shut
down and the thread returns a ``Timeout`` within a moment. The coroutine waiting for it
gives up only ``GRACE`` seconds later, for a thread stuck where no socket can be shut
(an SDK bug); even then the fair-share slot (``fairness``) stays taken until that thread
returns, so a tenant's stuck calls keep counting against its endpoint host's and
namespace's share and cannot take more of the pool than that share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from callstorage.providers import deadline

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds the coroutine waits past the deadline for the thread to return its answer.
GRACE = 5.0


def abandoned_message(seconds: float) -> str:
    """Status text of a call whose thread did not return by its deadline plus GRACE."""
    return (f"no answer from the storage endpoint within the total deadline of "
            f"{seconds:g}s (CALLSTORAGE_PROVIDER_DEADLINE)")


class Slot:
    """A fair-share slot, given back exactly once: when its holder is done with it or,
    if a provider thread bound to it still runs by then, when that thread ends."""

    def __init__(self, give_back: Callable[[], None]) -> None:
        self._give_back = give_back
        self._returned = False
        self._thread: Future[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, thread: Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._thread, self._loop = thread, loop

    def release(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or thread.done():
            self._return()
            return
        thread.add_done_callback(lambda _: _on_loop(loop, self._return))

    def _return(self) -> None:
        if not self._returned:
            self._returned = True
            self._give_back()


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
        loop.call_soon_threadsafe(fn)


async def run(executor: ThreadPoolExecutor, fn: Callable[[], T], seconds: float,
              slot: Slot) -> T | None:
    """``fn()`` in ``executor`` as one provider call with a total deadline of ``seconds``
    from now; None if its thread has not returned GRACE seconds after the deadline
    (``slot`` then goes back only when it does)."""
    expires = time.monotonic() + seconds

    def bounded() -> T:
        with deadline.bounded(expires, seconds):
            return fn()

    loop = asyncio.get_running_loop()
    thread = executor.submit(bounded)
    slot.bind(thread, loop)
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(thread)),
                                      seconds + GRACE)
    except TimeoutError:
        if not thread.cancel():  # cancelled only if it never started; else it runs on
            log.warning("a provider thread is still running %gs past its %gs deadline; "
                        "its fair-share slot stays taken until it returns", GRACE, seconds)
        return None
