"""Total deadlines of provider calls: when one passes, the call's connections are shut down.

SDK timeouts bound one socket operation, not a call: a read timeout restarts with every
``recv``, so an endpoint that sends one byte every half second (or stalls a TLS handshake
the same way) holds a call, and the worker thread running it, for ever. A timeout around
the thread (``asyncio.wait_for``) frees the waiting coroutine, not the thread. So every
provider call (client build, token request, HeadBucket or probe writes, the on-demand
check upload) runs inside ``bounded(expires)``, and:

- Every connection the call opens or sends a request on is *tracked*: all three SDKs open
  their sockets through the connect-time guard (``guard._open``: urllib3 under botocore,
  requests under google-auth/google-cloud-storage and azure-core), and send every request,
  on a new or a kept-alive connection, through the guarded connection's ``request``;
  both call ``track``. The call is found through a context variable set around it in the
  calling thread, so connections made outside a call (the media path, the CLI) are not
  affected, and two threads never see each other's deadline.
- One watchdog thread wakes at the earliest deadline and shuts down (``SHUT_RDWR``) every
  socket its call still owns: a thread blocked in ``recv`` or in a TLS handshake gets
  EOF at once, and the peer sees the connection close. The watchdog shuts down and closes
  a *duplicate* descriptor the call took when it tracked the socket, never the SDK's own:
  closing a descriptor another thread is using lets the kernel hand its number to an
  unrelated file while that thread still uses the number. (A duplicate also survives
  ``ssl.wrap_socket``, which detaches the plain socket object it wraps before the
  handshake, and shutting it down acts on the one underlying socket.)
- A socket belongs to the call that last sent on it (ownership is keyed by the socket's
  inode, the same for every descriptor of it): a kept-alive connection handed to another
  validation sharing the client is not shut down under it by the first call's deadline.
- Once the deadline has passed, opening a connection, sending a request and the SDKs'
  retry back-offs raise ``DeadlineExceeded`` at once. It is deliberately not an OSError:
  urllib3, requests, botocore and azure-core take OSErrors for network failures and retry
  them; an exception they do not know passes through all of them (each closing its
  connection on the way out). So the thread is free within a moment of the deadline.

Per-socket timeouts recomputed from the remaining time were not enough on their own:
urllib3 sets a request's read timeout itself after sending it, and any timeout bounds only
one ``recv``. Name lookup and connect are also capped by the remaining time (they happen
before there is a socket to shut down).
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


#: What sets a validation's deadline (the default ``setting`` of ``bounded``).
PROVIDER_SETTING = "CALLSTORAGE_PROVIDER_DEADLINE"


class DeadlineExceeded(Exception):
    """The provider call's total deadline has passed (not an OSError: see the module)."""

    def __init__(self, seconds: float, setting: str = PROVIDER_SETTING) -> None:
        super().__init__(f"not done within its total deadline ({seconds:g}s)")
        self.seconds = seconds
        self.detail = timeout_detail(seconds, setting)


def timeout_detail(seconds: float, setting: str = PROVIDER_SETTING) -> str:
    """How a call past its deadline reads in status and errors (the one wording);
    ``setting`` names what set the deadline."""
    return (f"not done within the total deadline of {seconds:g}s "
            f"({setting}); its connections were closed")


class Call:
    """One provider call's deadline and the sockets it owns (by inode, each with a
    duplicate descriptor of ours)."""

    def __init__(self, expires: float, seconds: float, setting: str = PROVIDER_SETTING
                 ) -> None:
        self.expires = expires
        self.seconds = seconds
        self.setting = setting
        self.expired = False  # the watchdog has shut its sockets down
        self.finished = False
        self._lock = threading.Lock()
        self._sockets: dict[int, socket.socket] = {}
        self._registered: set[int] = set()  # inodes entered in _owners (under its lock)

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.expires

    def remaining(self) -> float:
        return max(0.0, self.expires - time.monotonic())

    def detail(self) -> str:
        return timeout_detail(self.seconds, self.setting)

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(self.seconds, self.setting)

    def _own(self, inode: int, fd: int) -> bool:
        """Take a duplicate of ``fd``; False if the call is over (then nothing is kept)."""
        with self._lock:
            if self.expired or self.finished:
                return False
            if inode not in self._sockets:
                self._sockets[inode] = socket.socket(fileno=os.dup(fd))
            return True

    def _drop(self, inode: int) -> None:
        with self._lock:
            dup = self._sockets.pop(inode, None)
        if dup is not None:
            dup.close()

    def _shut(self) -> int:
        """Shut down and close every socket owned (watchdog); how many there were."""
        with self._lock:
            self.expired = True
            owned, self._sockets = list(self._sockets.values()), {}
        for dup in owned:
            with contextlib.suppress(OSError):  # already closed by the peer
                dup.shutdown(socket.SHUT_RDWR)
            dup.close()
        return len(owned)

    def _end(self) -> None:
        with self._lock:
            self.finished = True
            owned, self._sockets = list(self._sockets.values()), {}
        for dup in owned:
            dup.close()


_current: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "callstorage_provider_call", default=None)
_owners_lock = threading.Lock()
_owners: dict[int, Call] = {}  # socket inode -> the call that last sent on it


def current() -> Call | None:
    """The provider call running in this thread, if any."""
    return _current.get()


def passed() -> bool:
    """This thread's provider call has passed its deadline (False outside a call)."""
    call = _current.get()
    return call is not None and call.passed()


def check() -> None:
    """Raise DeadlineExceeded if this thread's provider call has passed its deadline."""
    call = _current.get()
    if call is not None and call.passed():
        raise call.exceeded()


def cap(timeout: Any) -> Any:
    """``timeout`` (seconds, None or an SDK's "default" sentinel) bounded by the time
    left in this thread's provider call."""
    call = _current.get()
    if call is None:
        return timeout
    left = max(call.remaining(), 0.001)
    return min(timeout, left) if isinstance(timeout, int | float) else left


def sleep(seconds: float) -> None:
    """An SDK's retry back-off: no longer than the time left, and none once it is gone."""
    check()
    call = _current.get()
    time.sleep(min(seconds, call.remaining()) if call is not None else seconds)
    check()


def track(sock: socket.socket) -> None:
    """Make ``sock`` owned by this thread's provider call (no-op outside one): shut down
    if the deadline passes while the call runs. Raises DeadlineExceeded if it has."""
    call = _current.get()
    if call is None:
        return
    check()
    fd = sock.fileno()
    if fd < 0:
        return
    inode = os.fstat(fd).st_ino
    if not call._own(inode, fd):
        raise call.exceeded()
    with _owners_lock:
        previous = _owners.get(inode)
        _owners[inode] = call
        call._registered.add(inode)
    if previous is not None and previous is not call:
        previous._drop(inode)  # a kept-alive connection now used by this call


@contextlib.contextmanager
def bounded(expires: float, seconds: float, setting: str = PROVIDER_SETTING
            ) -> Iterator[Call]:
    """Run the body as a provider call ending at ``expires`` (``time.monotonic()``);
    ``seconds`` is the deadline as configured and ``setting`` what configures it, for
    messages."""
    call = Call(expires, seconds, setting)
    token = _current.set(call)
    _WATCHDOG.add(call)
    try:
        yield call
    finally:
        _current.reset(token)
        _WATCHDOG.done(call)
        call._end()
        with _owners_lock:
            for inode in call._registered:
                if _owners.get(inode) is call:
                    del _owners[inode]


class _Watchdog:
    """One thread for every deadline: sleeps until the earliest one, then shuts that
    call's sockets down. Calls that end first are dropped lazily (and compacted)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Call]] = []
        self._seq = itertools.count()
        self._live = 0
        self._thread: threading.Thread | None = None

    def add(self, call: Call) -> None:
        with self._cond:
            heapq.heappush(self._heap, (call.expires, next(self._seq), call))
            self._live += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="provider-deadlines")
                self._thread.start()
            self._cond.notify()

    def done(self, call: Call) -> None:
        with self._cond:
            self._live -= 1
            if len(self._heap) > 64 and len(self._heap) > 2 * self._live:
                self._heap = [e for e in self._heap if not e[2].finished and e[2] is not call]
                heapq.heapify(self._heap)

    def pending(self) -> int:
        """Calls whose deadline is still watched (tests)."""
        with self._cond:
            return sum(not e[2].finished for e in self._heap)

    def _next(self) -> Call:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._heap)[2]
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            call = self._next()
            shut = call._shut()
            log.debug("a provider call passed its %gs deadline: %d connection(s) shut down",
                      call.seconds, shut)


_WATCHDOG = _Watchdog()
