"""Lease-based leader election: of several replicas, exactly one runs the handlers.

Why a Lease and not kopf's peering: kopf's peering ranks operators by priority and pauses
the lower ones, but replicas of one Deployment share a priority, and peers that tie all
keep running (kopf only warns); it also needs a peering CRD installed cluster-wide. A
``coordination.k8s.io`` Lease is what kube-controller-manager, kube-scheduler and every
controller-runtime operator use: a compare-and-swap on one small object in our namespace,
with RBAC limited to that object.

The algorithm is client-go's: a candidate takes the Lease when nobody holds it or when its
record has not changed for ``lease_duration`` by the candidate's own clock (so clock skew
between nodes does not matter); the leader renews every ``retry_period`` and gives up
(the process exits, the kubelet restarts it) when it could not renew for
``renew_deadline``; a leader that stops cleanly releases the Lease, so the standby takes
over within one ``retry_period`` instead of a whole ``lease_duration``. The leader stops
kopf *before* releasing, so two replicas never handle objects at the same time.

Leading is bounded by the clock, not by the API server's answers (which may never come):
the leader may write until ``renew_deadline`` after the start of its last successful
renewal (``callstorage.fencing``); each renewal attempt, every request in it included, is
cut off at that deadline (its connection closed: no retries behind our back, no thread
left waiting), and when it passes the leader stops at once. ``renew_deadline`` is shorter
than ``lease_duration`` (settings.py refuses otherwise), so the old leader's last write
has landed before a standby may take over. The calls go through the operator's own
asynchronous client (``callstorage.apiserver``), not the ``kubernetes`` package.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from callstorage.api.timestamps import rfc3339_micro
from callstorage.apiserver import ApiError, ApiServer
from callstorage.fencing import Fence

log = logging.getLogger(__name__)
# Longest wait for one answer; an attempt's requests get less when its deadline is nearer.
READ_TIMEOUT: Final = 5.0
# Bound on handing the Lease back at a clean stop (else the standby waits lease_duration).
RELEASE_TIMEOUT: Final = 5.0


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # the Pod that leads owns the Lease, so the garbage collector removes the Lease when
    # the last leader's Pod goes (an uninstall leaves nothing behind)
    owner: dict[str, Any] | None = field(default=None)


def default_identity() -> str:
    """The Pod's name (downward API ``POD_NAME``), else host name and process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def pod_owner() -> dict[str, Any] | None:
    """An ownerReference to our own Pod (downward API ``POD_NAME`` and ``POD_UID``)."""
    name, uid = os.environ.get("POD_NAME"), os.environ.get("POD_UID")
    if not (name and uid):
        return None
    return {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}


def _now() -> str:
    return rfc3339_micro()


class LeaderElector:
    """Acquire, renew and release one Lease; ``fence`` says until when we lead."""

    def __init__(self, api: ApiServer, cfg: LeaseConfig, fence: Fence | None = None) -> None:
        self.cfg = cfg
        self._api = api
        self.fence = fence if fence is not None else Fence.closed()
        self.is_leader = False
        self.last_contact = 0.0  # monotonic time of the last successful read or write
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._path = (f"/apis/coordination.k8s.io/v1/namespaces/{quote(cfg.namespace)}"
                      "/leases")

    # -- one attempt ------------------------------------------------------------------------

    async def _request(self, method: str, deadline: float, name: str = "",
                       body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One call that ends by ``deadline`` (monotonic), its connection closed then."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        path = f"{self._path}/{quote(name)}" if name else self._path
        async with asyncio.timeout(left):
            return await self._api.request(method, path, body=body,
                                           read_timeout=min(READ_TIMEOUT, left))

    async def _read(self, deadline: float) -> dict[str, Any] | None:
        try:
            return await self._request("GET", deadline, self.cfg.name)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def try_acquire_or_renew(self, deadline: float | None = None) -> bool:
        """One compare-and-swap on the Lease, ended by ``deadline`` (default: one renew
        deadline from now); True when we hold it afterwards, and the fence moved on."""
        started = time.monotonic()
        if deadline is None:
            deadline = started + self.cfg.renew_deadline
        held = await self._swap(deadline)
        if held:
            # the Lease changed no earlier than now: a standby waits lease_duration from
            # when it sees that, and we stop writing renew_deadline from now
            self.fence.extend(started + self.cfg.renew_deadline)
        return held

    async def _swap(self, deadline: float) -> bool:
        me, now = self.cfg.identity, _now()
        lease = await self._read(deadline)
        if lease is None:
            return await self._create(deadline, now)
        self.last_contact = time.monotonic()
        spec = lease.setdefault("spec", {})
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observe(record)
        duration = float(spec.get("leaseDurationSeconds") or self.cfg.lease_duration)
        if holder and holder != me and time.monotonic() < self._observed_at + duration:
            return False  # held by another replica that renewed within its duration
        if holder != me:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = now
            if self.cfg.owner:
                lease["metadata"]["ownerReferences"] = [self.cfg.owner]
        spec.update(holderIdentity=me, renewTime=now,
                    leaseDurationSeconds=self._duration_seconds())
        try:  # replace carries resourceVersion: a concurrent change makes it fail (409)
            await self._request("PUT", deadline, self.cfg.name, lease)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        self._observe((me, now, spec["leaseTransitions"]))
        return True

    async def _create(self, deadline: float, now: str) -> bool:
        meta: dict[str, Any] = {"name": self.cfg.name, "namespace": self.cfg.namespace}
        if self.cfg.owner:
            meta["ownerReferences"] = [self.cfg.owner]
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": self.cfg.identity, "acquireTime": now,
                         "renewTime": now, "leaseDurationSeconds": self._duration_seconds(),
                         "leaseTransitions": 0}}
        try:
            await self._request("POST", deadline, body=body)
        except ApiError as exc:
            if exc.status == 409:  # another replica created it first
                return False
            raise
        self._observe((self.cfg.identity, now, 0))
        return True

    def _duration_seconds(self) -> int:
        # whole seconds in the Lease: rounded up, so a standby never waits less than we
        # planned for (our renew deadline is shorter than the unrounded duration)
        return max(1, math.ceil(self.cfg.lease_duration))

    def _observe(self, record: tuple[Any, ...]) -> None:
        self._observed, self._observed_at = record, time.monotonic()
        self.last_contact = self._observed_at

    async def release(self) -> None:
        """Hand the Lease back (empty holder, 1 s duration) if we still hold it. The fence
        is closed first: no write of ours starts after this."""
        self.fence.close()
        deadline = time.monotonic() + RELEASE_TIMEOUT
        lease = await self._read(deadline)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.cfg.identity:
            return
        lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1, renewTime=_now())
        await self._request("PUT", deadline, self.cfg.name, lease)
        log.info("released the leader lease %s/%s", self.cfg.namespace, self.cfg.name)

    # -- loops ----------------------------------------------------------------------------

    async def _attempt(self, deadline: float | None = None) -> bool:
        try:
            return await self.try_acquire_or_renew(deadline)
        except Exception as exc:  # API unreachable, 5xx, timeouts: try again next period
            log.warning("leader lease %s/%s: %s", self.cfg.namespace, self.cfg.name,
                        type(exc).__name__)
            return False

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until we lead (True) or ``stop`` is set (False)."""
        log.info("waiting for the leader lease %s/%s as %s", self.cfg.namespace,
                 self.cfg.name, self.cfg.identity)
        while not stop.is_set():
            if await self._attempt():
                self.is_leader = True
                log.info("became the leader (lease %s/%s)", self.cfg.namespace, self.cfg.name)
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.retry_period)
        return False

    async def hold(self) -> None:
        """Renew every ``retry_period``; return the moment the fence's deadline passes
        without a renewal (a hung attempt is cut off then), or when another replica holds
        the Lease."""
        while True:
            await asyncio.sleep(max(0.0, min(self.cfg.retry_period, self.fence.remaining())))
            if self.fence.remaining() > 0 and await self._attempt(self.fence.until):
                continue
            if self.fence.remaining() <= 0 or (
                    self._observed is not None and self._observed[0] != self.cfg.identity):
                self.fence.close()
                self.is_leader = False
                log.error("lost the leader lease %s/%s", self.cfg.namespace, self.cfg.name)
                return

    def healthy(self) -> bool:
        """Reached the API server recently enough to lead, or to take over."""
        return time.monotonic() - self.last_contact < self.cfg.lease_duration


async def run_elected(elector: LeaderElector,
                      run_leader: Callable[[], Coroutine[Any, Any, None]],
                      stop: asyncio.Event) -> int:
    """Wait for the lease, then ``run_leader()`` until it returns (kopf stops by itself on
    SIGTERM), ``stop`` is set, or the lease is lost (then it is cancelled at once: its
    writes are refused by the fence already). Returns the exit code: 1 after losing the
    lease."""
    if not await elector.acquire(stop):
        return 0
    work = asyncio.create_task(run_leader())
    holding = asyncio.create_task(elector.hold())
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({work, holding, stopping},
                                 return_when=asyncio.FIRST_COMPLETED)
    lost = holding in done
    work.cancel()  # kopf stops its handlers on cancellation too
    await asyncio.gather(work, return_exceptions=True)  # handlers stop before the release
    holding.cancel()
    stopping.cancel()
    elector.fence.close()  # nothing starts writing any more ...
    await elector.fence.drain()  # ... and what was sent has been answered (or cut off)
    if not lost:
        try:
            await elector.release()
        except Exception as exc:  # the standby then waits out lease_duration instead
            log.warning("could not release the leader lease: %s", type(exc).__name__)
    elector.is_leader = False
    return 1 if lost else 0
