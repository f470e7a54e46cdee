"""Fair shares of the validation workers: one slow endpoint or one busy tenant cannot
take them all (head-of-line blocking), and a lone one is not held back either.

The rule, with W = ``CALLSTORAGE_MAX_CONCURRENT_VALIDATIONS``: while its provider calls
run (or while it waits for an identical request in flight), a validation (or on-demand
check) holds one slot of its endpoint host and one of its namespace. Each endpoint host's
share is ``max(1, W // 4)`` and each namespace's ``max(1, W // 2)``. A group under its share
always gets a slot; a group at or over it may borrow more only while fewer than
``W - W // 4`` validations run in all, so the last quarter of the workers is always kept
for groups under their share. A round that finds a group full does not wait inside a
worker: it is parked, and queued again (oldest first) when a slot of that group frees.

So one endpoint that every storage uses (all on AWS S3, say) gets up to 12 of 16 workers,
not 4; 20 storages on a hanging endpoint hold at most those 12 for as long as their
timeouts, and at least 4 serve every other endpoint and tenant at once. A slot is held
until the provider thread has really ended (``provider_calls.Slot``), not just until its
coroutine stops waiting, and each call's total deadline closes its connections
(``providers.deadline``), so these figures hold for threads, not only for coroutines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from typing import Any, Generic, TypeVar

from callstorage.storagetypes import PROVIDERS

K = TypeVar("K", bound=Hashable)
Group = tuple[str, str]  # ("host", "minio.example:9000") or ("namespace", "tenant-a")
HOST, NAMESPACE = "host", "namespace"


def endpoint_host(spec: Mapping[str, Any]) -> str:
    """The host a storage's provider calls go to, read leniently from the raw spec (its
    storage type's descriptor knows the default host)."""
    kind = str(spec.get("storageType") or "")
    provider = PROVIDERS.get(kind)
    block = spec.get(kind)
    if provider is None:
        return kind
    return provider.endpoint_host(block if isinstance(block, Mapping) else {})


def groups_of(namespace: str, spec: Mapping[str, Any]) -> tuple[Group, ...]:
    """The groups whose slots a validation of this storage holds."""
    return ((HOST, endpoint_host(spec)), (NAMESPACE, namespace))


class FairShare(Generic[K]):
    """Slot counts per group, and the keys parked until a slot of their group frees."""

    def __init__(self, workers: int) -> None:
        self.limits = {HOST: max(1, workers // 4), NAMESPACE: max(1, workers // 2)}
        # groups at or over their share may borrow only below this many running in all
        self.borrow_below = workers - workers // 4
        self._running = 0
        self._busy: Counter[Group] = Counter()
        self._parked: dict[Group, dict[K, set[str]]] = {}

    def busy(self, group: Group) -> int:
        return self._busy[group]

    def _full(self, group: Group) -> bool:
        return self._busy[group] >= self.limits[group[0]] and \
            self._running >= self.borrow_below

    def try_acquire(self, groups: tuple[Group, ...]) -> Group | None:
        """Take a slot of every group and return None, or return the first full group
        (taking nothing)."""
        for group in groups:
            if self._full(group):
                return group
        for group in groups:
            self._busy[group] += 1
        self._running += 1
        return None

    def park(self, group: Group, key: K, reasons: set[str]) -> None:
        """Remember ``key`` (with what it was queued for) until ``group`` has a slot."""
        self._parked.setdefault(group, {}).setdefault(key, set()).update(reasons)

    def release(self, groups: tuple[Group, ...]) -> list[tuple[K, set[str], Group]]:
        """Give the slots back; returns the parked keys to queue again."""
        for group in groups:
            self._busy[group] -= 1
            if self._busy[group] <= 0:
                del self._busy[group]
        self._running -= 1
        return self.wake(groups)

    def wake(self, groups: tuple[Group, ...]) -> list[tuple[K, set[str], Group]]:
        """Parked keys to queue again: the oldest one of each group that has a free slot.

        A woken key that ends its round without taking the slot must pass the wake-up on
        (call ``wake`` for its group again), or the keys behind it would wait for good.
        """
        woken: list[tuple[K, set[str], Group]] = []
        for group in groups:
            parked = self._parked.get(group)
            if not parked or self._full(group):
                continue
            key = next(iter(parked))
            woken.append((key, parked.pop(key), group))
            if not parked:
                del self._parked[group]
        return woken

    def forget(self, key: K) -> None:
        """Drop a deleted key from every parking list."""
        for group in list(self._parked):
            self._parked[group].pop(key, None)
            if not self._parked[group]:
                del self._parked[group]

    def parked(self) -> int:
        return sum(len(p) for p in self._parked.values())
