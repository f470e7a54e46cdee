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

The Kubernetes client blocks, so every call runs in a thread, with a request timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)
REQUEST_TIMEOUT = (3.0, 5.0)


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
    owner: dict[str, Any] | None = None


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
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquire, renew and release one Lease."""

    def __init__(self, api: client.ApiClient, cfg: LeaseConfig) -> None:
        self.cfg = cfg
        self._coord = client.CoordinationV1Api(api)
        self.is_leader = False
        self.last_contact = 0.0  # monotonic time of the last successful read or write
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    # -- one attempt (blocking; runs in a thread) ---------------------------------------

    def _read(self) -> dict[str, Any] | None:
        try:
            resp = self._coord.read_namespaced_lease(
                self.cfg.name, self.cfg.namespace, _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        lease: dict[str, Any] = json.loads(resp.data)
        return lease

    def try_acquire_or_renew(self) -> bool:
        """One compare-and-swap on the Lease; True when we hold it afterwards."""
        me, now = self.cfg.identity, _now()
        lease = self._read()
        if lease is None:
            meta: dict[str, Any] = {"name": self.cfg.name, "namespace": self.cfg.namespace}
            if self.cfg.owner:
                meta["ownerReferences"] = [self.cfg.owner]
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": meta,
                    "spec": {"holderIdentity": me, "acquireTime": now, "renewTime": now,
                             "leaseDurationSeconds": int(self.cfg.lease_duration),
                             "leaseTransitions": 0}}
            try:
                self._coord.create_namespaced_lease(self.cfg.namespace, body,
                                                    _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status == 409:  # another replica created it first
                    return False
                raise
            self._observe((me, now, 0))
            return True
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
                    leaseDurationSeconds=int(self.cfg.lease_duration))
        try:  # replace carries resourceVersion: a concurrent change makes it fail (409)
            self._coord.replace_namespaced_lease(self.cfg.name, self.cfg.namespace, lease,
                                                 _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._observe((me, now, spec["leaseTransitions"]))
        return True

    def _observe(self, record: tuple[Any, ...]) -> None:
        self._observed, self._observed_at = record, time.monotonic()
        self.last_contact = self._observed_at

    def release(self) -> None:
        """Hand the Lease back (empty holder, 1 s duration) if we still hold it."""
        lease = self._read()
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.cfg.identity:
            return
        lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1, renewTime=_now())
        self._coord.replace_namespaced_lease(self.cfg.name, self.cfg.namespace, lease,
                                             _request_timeout=REQUEST_TIMEOUT)
        log.info("released the leader lease %s/%s", self.cfg.namespace, self.cfg.name)

    # -- loops ----------------------------------------------------------------------------

    async def _attempt(self) -> bool:
        try:
            return await asyncio.to_thread(self.try_acquire_or_renew)
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
        """Renew every ``retry_period``; return when the lease could not be renewed for
        ``renew_deadline`` (or another replica took it)."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.cfg.retry_period)
            if await self._attempt():
                renewed = time.monotonic()
            elif time.monotonic() - renewed > self.cfg.renew_deadline or (
                    self._observed is not None and self._observed[0] != self.cfg.identity):
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
    SIGTERM), ``stop`` is set, or the lease is lost (then it is cancelled). Returns the
    exit code: 1 after losing the lease."""
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
    if not lost:
        try:
            await asyncio.to_thread(elector.release)
        except Exception as exc:  # the standby then waits out lease_duration instead
            log.warning("could not release the leader lease: %s", type(exc).__name__)
    elector.is_leader = False
    return 1 if lost else 0
