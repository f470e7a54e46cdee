"""Queueing: the two work queues, the fair shares of the provider workers, and the delays
of retries and status restores.

Like client-go's workqueue, a queue holds each key (namespace, name) once, with the reasons
it was queued for; a key is never handed to two workers at once. Keys are names by design:
whatever object holds the name when its round runs is the one reconciled (the round checks
the uid it read before it writes). So is the fair-share parking: a round whose endpoint
host or namespace already holds its share of the workers parks its key (``Parked``) until
that group has a free slot, and is queued again then.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from callstorage import provider_calls
from callstorage.api.reasons import Reason
from callstorage.fairness import FairShare, Group
from callstorage.inventory import ObjectKey
from callstorage.objectstate import ObjectState
from callstorage.reconcile.schedule import next_delay
from callstorage.settings import Settings
from callstorage.workqueue import WorkQueue

# What a storage round is queued for (its reasons): validate, run an on-demand check,
# look at its references (CallTypes, finalizer, whether a validation is due at all).
VALIDATE, CHECK, REFS = "validate", "check", "refs"
# a referenced Secret was deleted: validate, unless the namespace is being torn down
SECRET_GONE = "secret-gone"  # noqa: S105 - a queue reason, not a credential
# a round that failed after its validation ran: only the status write is retried
WRITE = "write"
# Restores of a key closer together than this count as one fight (someone keeps writing,
# e.g. a second operator during a botched rollout) and back off.
RESTORE_WINDOW = 60.0


class Parked(Exception):
    """A round found its endpoint host or namespace at its share of the workers."""

    def __init__(self, group: Group) -> None:
        super().__init__(f"{group[0]} {group[1]} is at its share of the workers")
        self.group = group


class Queues:
    """The storage and CallType queues, and the fair shares of the storages' provider
    workers (see the module docstring)."""

    def __init__(self, settings: Settings, rand: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.rand = rand
        self.storages: WorkQueue[ObjectKey] = WorkQueue()
        self.call_types: WorkQueue[ObjectKey] = WorkQueue()
        # fair shares of the provider workers per endpoint host and namespace (fairness.py)
        self.fair: FairShare[ObjectKey] = FairShare(settings.max_concurrent_validations)
        self.woken: dict[ObjectKey, Group] = {}  # unparked, not yet holding a slot

    def close(self) -> None:
        self.storages.close()
        self.call_types.close()

    # --- fair shares --------------------------------------------------------------------
    def acquire(self, key: ObjectKey, groups: tuple[Group, ...]) -> provider_calls.Slot:
        """A slot of each of the round's groups, or ``Parked`` (taking none)."""
        full = self.fair.try_acquire(groups)
        if full is not None:
            raise Parked(full)
        self.woken.pop(key, None)
        # given back when the provider thread has ended, not when we stop waiting for it
        return provider_calls.Slot(lambda: self.requeue(self.fair.release(groups)))

    def park(self, group: Group, key: ObjectKey, reasons: set[str]) -> None:
        """Queued again (with ``reasons``) when ``group`` has a free slot."""
        self.fair.park(group, key, reasons)

    def hand_on(self, key: ObjectKey) -> None:
        """A key woken from parking that ended its round without taking the slot passes
        the wake-up on to the next parked key of that group."""
        group = self.woken.pop(key, None)
        if group is not None:
            self.requeue(self.fair.wake((group,)))

    def requeue(self, woken: list[tuple[ObjectKey, set[str], Group]]) -> None:
        for key, reasons, group in woken:
            self.woken[key] = group
            for reason in reasons:
                self.storages.add(key, reason)

    def forget_storage(self, key: ObjectKey) -> None:
        """A deleted storage: out of its queue and every parking list."""
        self.storages.forget(key)
        self.fair.forget(key)
        self.hand_on(key)

    # --- delays -------------------------------------------------------------------------
    def backoff(self, state: ObjectState | None) -> tuple[int, float]:
        """Count one more failure of the operator's own round on the object (if it still
        exists); the delay before the next."""
        n = (state.errors if state is not None else 0) + 1
        if state is not None:
            state.errors = n
        delay = next_delay(Reason.INTERNAL_ERROR, 0.0, n, self.settings.retry_base,
                           self.settings.retry_max, self.rand)
        return n, delay if delay is not None else self.settings.retry_max

    def restore_delay(self, state: ObjectState | None) -> float:
        """The first restore is immediate; an object whose status keeps being overwritten
        (a second writer fighting ours) is restored with exponential backoff, never in a
        loop."""
        if state is None:
            return 0.0
        now = time.monotonic()
        count = state.restores + 1 if now - state.last_restore < RESTORE_WINDOW else 1
        delay = 0.0
        if count > 1:
            delay = next_delay(Reason.INTERNAL_ERROR, 0.0, count - 1, self.settings.retry_base,
                               self.settings.retry_max, self.rand) or 0.0
        state.restores, state.last_restore = count, now + delay
        return delay
