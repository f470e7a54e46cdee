"""Leader election on a real API server: one holder, hand-over on release, take-over only
after the lease expired, and never two leaders running at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubernetes import client

from callstorage.leader import LeaderElector, LeaseConfig, run_elected

FAST = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.2}


def elector(api: Any, namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(api, LeaseConfig("op", namespace, identity, **FAST))


def lease(api: Any, namespace: str) -> Any:
    return client.CoordinationV1Api(api).read_namespaced_lease("op", namespace).spec


def test_one_holder_release_hands_over_expiry_takes_over(kube_api: Any,
                                                          namespace: str) -> None:
    a, b = elector(kube_api, namespace, "a"), elector(kube_api, namespace, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.try_acquire_or_renew()  # renewing
    assert lease(kube_api, namespace).holder_identity == "a"
    a.release()
    assert b.try_acquire_or_renew()  # released: no need to wait out the duration
    # b goes silent (crashed): a may take over only after a lease duration by its clock
    assert not a.try_acquire_or_renew()
    started = time.monotonic()
    while not a.try_acquire_or_renew():
        assert time.monotonic() - started < 10
        time.sleep(0.1)
    assert time.monotonic() - started >= FAST["lease_duration"] - 0.5
    spec = lease(kube_api, namespace)
    assert spec.holder_identity == "a"
    assert spec.lease_transitions == 2


async def test_two_replicas_never_lead_at_once(kube_api: Any, namespace: str) -> None:
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
            run_elected(elector(kube_api, namespace, identity), lead, stop))

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
