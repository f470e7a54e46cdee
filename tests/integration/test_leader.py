"""Leader election on a real API server: one holder, hand-over on release, take-over only
after the lease expired, and never two leaders running at once. And against a listener
that never answers: a renewal is cut off at the renew deadline, its connection closed."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from callstorage.apiserver import ApiServer, _from_kubeconfig
from callstorage.fencing import Fence, NotLeader
from callstorage.kopfloader import kopf
from callstorage.leader import LeaderElector, LeaseConfig, run_elected
from testbed.controlplane import ControlPlane

FAST = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.2}


@pytest.fixture
async def api(control_plane: ControlPlane) -> Any:
    server = ApiServer(loader=lambda: _from_kubeconfig([control_plane.kubeconfig], False))
    yield server
    await server.close()


def elector(api: ApiServer, namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(api, LeaseConfig("op", namespace, identity, **FAST))


def lease(api: Any, namespace: str) -> Any:
    return client.CoordinationV1Api(api).read_namespaced_lease("op", namespace).spec


async def test_one_holder_release_hands_over_expiry_takes_over(
        api: ApiServer, kube_api: Any, namespace: str) -> None:
    a, b = elector(api, namespace, "a"), elector(api, namespace, "b")
    assert await a.try_acquire_or_renew()
    assert a.fence.remaining() > FAST["renew_deadline"] - 1  # a may write ...
    assert not await b.try_acquire_or_renew()
    with pytest.raises(NotLeader):
        b.fence.check()  # ... b may not
    assert await a.try_acquire_or_renew()  # renewing
    assert lease(kube_api, namespace).holder_identity == "a"
    await a.release()
    with pytest.raises(NotLeader):
        a.fence.check()  # released: a writes nothing any more
    assert await b.try_acquire_or_renew()  # released: no need to wait out the duration
    # b goes silent (crashed): a may take over only after a lease duration by its clock
    assert not await a.try_acquire_or_renew()
    started = time.monotonic()
    while not await a.try_acquire_or_renew():
        assert time.monotonic() - started < 10
        await asyncio.sleep(0.1)
    assert time.monotonic() - started >= FAST["lease_duration"] - 0.5
    spec = lease(kube_api, namespace)
    assert spec.holder_identity == "a"
    assert spec.lease_transitions == 2


async def test_two_replicas_never_lead_at_once(api: ApiServer, namespace: str) -> None:
    active: list[str] = []
    overlaps: list[list[str]] = []
    periods: dict[str, tuple[float, float]] = {}

    def replica(identity: str) -> tuple[asyncio.Event, Any]:
        stop = asyncio.Event()

        async def lead() -> None:
            active.append(identity)
            if len(active) > 1:
                overlaps.append(list(active))
            started = time.monotonic()
            try:
                await asyncio.Event().wait()  # until cancelled, like kopf.operator
            finally:
                await asyncio.sleep(0.3)  # handlers finishing their work
                active.remove(identity)
                periods[identity] = (started, time.monotonic())

        return stop, asyncio.create_task(
            run_elected(elector(api, namespace, identity), lead, stop))

    stop_a, task_a = replica("a")
    await asyncio.sleep(1)
    stop_b, task_b = replica("b")
    await asyncio.sleep(1)
    assert active == ["a"]
    stop_a.set()  # a is shut down: it stops leading, then hands the Lease over
    assert await asyncio.wait_for(task_a, 10) == 0
    started = time.monotonic()
    while active != ["b"]:
        assert time.monotonic() - started < 3 * FAST["retry_period"] + 2
        await asyncio.sleep(0.05)
    stop_b.set()
    assert await asyncio.wait_for(task_b, 10) == 0
    assert not overlaps
    assert periods["a"][1] <= periods["b"][0]


class Silent:
    """A listener on 127.0.0.1 that accepts and never answers (a hung API server); it
    records when each connection was closed by the client."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[float] = []
        self.closed: list[float] = []
        self.any_closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(time.monotonic())
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                pass  # the request is read and never answered
        self.closed.append(time.monotonic())
        self.any_closed.set()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.sock.close()


async def test_a_hung_renewal_ends_at_the_renew_deadline(silent: Silent) -> None:
    """The leader's API server stops answering: the renewal in flight is cut off (its
    connection closed) and the leader stops when the renew deadline passes, not when
    some read timeout or retry would end the call."""
    api = ApiServer(loader=lambda: kopf.ConnectionInfo(
        server=f"http://127.0.0.1:{silent.port}", token="t"))
    fence = Fence()
    fence.close()
    fence.extend(time.monotonic() + 1.5)  # as if renewed just now, renew deadline 1.5 s
    leader = LeaderElector(api, LeaseConfig("op", "ns", "a", lease_duration=3.0,
                                            renew_deadline=1.5, retry_period=0.2), fence)
    leader.is_leader = True
    try:
        started = time.monotonic()
        await asyncio.wait_for(leader.hold(), 10)
        stopped = time.monotonic()
    finally:
        await api.close()
    assert 1.4 < stopped - started < 1.9, stopped - started
    assert not leader.is_leader
    with pytest.raises(NotLeader):
        fence.check()
    # one attempt (no retry behind our back), whose connection is closed at the deadline
    assert len(silent.accepted) == 1, silent.accepted
    assert await asyncio.to_thread(silent.any_closed.wait, 2)
    assert silent.closed[0] - started < 1.9, (silent.closed, started)
