"""The total deadline of provider calls (``callstorage.providers.deadline``) on real
sockets, and the slot a provider thread holds until it ends (``callstorage.provider_calls``).

Each socket here is one end of a local socket pair: the other end is what the endpoint
would see on the wire.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from callstorage import provider_calls
from callstorage.providers import deadline

DEADLINE = 0.5
SLACK = 0.3  # the watchdog wakes at the deadline; a blocked recv returns at once after


def _blocked_recv(sock: socket.socket, seconds: float, outcome: dict[str, object]) -> None:
    """A provider call that tracks ``sock`` and blocks reading it."""
    started = time.monotonic()
    with deadline.bounded(started + seconds, seconds):
        deadline.track(sock)
        try:
            while True:  # what an SDK reading a trickled answer does
                if not sock.recv(1):
                    outcome["eof"] = True
                    break
        except OSError as exc:
            outcome["error"] = exc
        outcome["took"] = time.monotonic() - started
        outcome["passed"] = deadline.passed()


def test_a_blocked_read_ends_at_the_deadline_and_the_peer_sees_the_close() -> None:
    ours, peer = socket.socketpair()
    outcome: dict[str, object] = {}
    thread = threading.Thread(target=_blocked_recv, args=(ours, DEADLINE, outcome))
    thread.start()
    peer.settimeout(DEADLINE + 5)
    peer.sendall(b"x")  # a byte now and then: no read timeout would ever fire
    started = time.monotonic()
    assert peer.recv(1) == b""  # EOF on the wire: the connection was shut down
    assert time.monotonic() - started < DEADLINE + SLACK
    thread.join(DEADLINE + 5)
    assert not thread.is_alive()
    assert DEADLINE <= float(outcome["took"]) < DEADLINE + SLACK  # type: ignore[arg-type]
    assert outcome["passed"] is True
    ours.close()
    peer.close()


def test_past_the_deadline_nothing_opens_retries_or_sleeps() -> None:
    ours, peer = socket.socketpair()
    with deadline.bounded(time.monotonic() + 0.2, 0.2):
        deadline.check()
        started = time.monotonic()
        with pytest.raises(deadline.DeadlineExceeded):
            deadline.sleep(10)  # a retry back-off ends with the deadline
        assert time.monotonic() - started < 0.2 + SLACK
        with pytest.raises(deadline.DeadlineExceeded):
            deadline.check()
        with pytest.raises(deadline.DeadlineExceeded):
            deadline.track(ours)
        assert deadline.cap(30.0) == pytest.approx(0.001)
    ours.close()
    peer.close()


def test_outside_a_call_nothing_is_bounded() -> None:
    ours, peer = socket.socketpair()
    assert deadline.current() is None
    deadline.track(ours)
    deadline.check()
    assert deadline.cap(30.0) == 30.0
    assert not deadline.passed()
    ours.sendall(b"x")
    assert peer.recv(1) == b"x"
    ours.close()
    peer.close()


def test_the_connect_and_lookup_timeouts_are_capped_by_the_time_left() -> None:
    with deadline.bounded(time.monotonic() + 2, 2):
        assert 1.5 < deadline.cap(30.0) <= 2
        assert deadline.cap(1.0) == 1.0
        assert 1.5 < deadline.cap(None) <= 2  # no timeout of its own: the time left


def test_a_kept_alive_socket_belongs_to_the_call_that_last_sent_on_it() -> None:
    """A pooled connection used by call X and then by call Y (two validations sharing one
    client) is not shut down under Y when X's deadline passes."""
    ours, peer = socket.socketpair()
    x_sent, handed_over, x_done = threading.Event(), threading.Event(), threading.Event()

    def call_x() -> None:
        with deadline.bounded(time.monotonic() + DEADLINE, DEADLINE):
            deadline.track(ours)
            x_sent.set()
            handed_over.wait(5)
            time.sleep(DEADLINE + SLACK)  # X passes its deadline (busy elsewhere)
            x_done.set()

    x = threading.Thread(target=call_x)
    x.start()
    assert x_sent.wait(5)
    with deadline.bounded(time.monotonic() + 10, 10):
        deadline.track(ours)  # Y sends on it now
        handed_over.set()
        assert x_done.wait(5)
        ours.sendall(b"still usable")
        peer.settimeout(1)
        assert peer.recv(64) == b"still usable"
    x.join(5)
    ours.close()
    peer.close()


def test_finished_calls_leave_nothing_behind() -> None:
    socks = [socket.socketpair() for _ in range(3)]
    for _ in range(200):
        with deadline.bounded(time.monotonic() + 30, 30):
            for ours, _peer in socks:
                deadline.track(ours)
    assert deadline._WATCHDOG.pending() == 0
    assert not deadline._owners
    for pair in socks:  # our duplicates are closed; the sockets themselves are not
        pair[0].sendall(b"x")
        assert pair[1].recv(1) == b"x"
        pair[0].close()
        pair[1].close()


async def test_a_stuck_thread_keeps_its_slot_until_it_returns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The coroutine gives up at the deadline plus GRACE; the slot (the call's fair
    share) goes back only when the thread really ends."""
    monkeypatch.setattr(provider_calls, "GRACE", 0.1)
    release = threading.Event()
    returned: list[float] = []
    slot = provider_calls.Slot(lambda: returned.append(time.monotonic()))
    with ThreadPoolExecutor(1) as pool:
        answer = await provider_calls.run(pool, lambda: release.wait(10), 0.1, slot)
        assert answer is None  # given up on
        slot.release()
        await asyncio.sleep(0.2)
        assert returned == []  # the thread still runs: the slot is still held
        release.set()
        for _ in range(100):
            if returned:
                break
            await asyncio.sleep(0.02)
        assert len(returned) == 1


async def test_a_call_that_returns_gives_its_slot_back_at_once() -> None:
    returned: list[bool] = []
    slot = provider_calls.Slot(lambda: returned.append(True))
    with ThreadPoolExecutor(1) as pool:
        assert await provider_calls.run(pool, lambda: 42, 5, slot) == 42
    slot.release()
    slot.release()  # once only
    assert returned == [True]
