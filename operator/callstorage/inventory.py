"""What the operator knows between events: objects seen on watches and who refers to whom.

Filled by the kopf event handlers, read by the reconcilers. Only Secrets that some
ExternalStorage refers to are kept (their data is needed to validate); every other Secret
seen on the watch is dropped at once.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

# (namespace, name)
ObjectKey = tuple[str, str]
# How long a deletion is remembered, so that an older copy of the object (a GET or a
# patch answer that was in flight) cannot bring it back.
TOMBSTONE_SECONDS = 600.0
# At most this many deletions are remembered, so memory stays bounded under any churn;
# past that the oldest go first (a risk only for an answer in flight across that many).
TOMBSTONES_MAX = 20_000
# Strings up to this long are interned in held objects (names, reasons, timestamps).
INTERN_MAX = 64


def compact(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an object to hold for long: without ``metadata.managedFields`` (field
    ownership, which the operator never reads), and with keys and short strings interned:
    thousands of held objects repeat them, and a decoded watch event holds its own copy of
    each. About a third of the memory of the decoded object."""
    meta = obj.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    result: dict[str, Any] = _compact(obj)
    return result


def _compact(value: Any) -> Any:
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _compact(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    if isinstance(value, str) and len(value) <= INTERN_MAX:
        return sys.intern(value)
    return value


def resource_version(obj: Mapping[str, Any] | None) -> int | None:
    """An object's resourceVersion as a number (etcd's revisions are), None if not one."""
    rv = ((obj or {}).get("metadata") or {}).get("resourceVersion")
    return int(rv) if isinstance(rv, str) and rv.isdigit() else None


def _number(rv: str | None) -> int | None:
    return int(rv) if isinstance(rv, str) and rv.isdigit() else None


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """A map whose entries live ``ttl`` seconds and of which at most ``limit`` are kept
    (the oldest go first): bookkeeping that must stay bounded whatever the churn.

    Every entry lives equally long, so insertion order is expiry order: expired entries
    are dropped from the front on each write, at no cost to reads.
    """

    def __init__(self, ttl: float, limit: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.limit = ttl, limit
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def set(self, key: K, value: V) -> None:
        entries = self._entries
        entries.pop(key, None)
        now = self._clock()
        while entries and (len(entries) >= self.limit or next(iter(entries.values()))[0] <= now):
            entries.popitem(last=False)
        entries[key] = (now + self.ttl, value)

    def clear(self) -> None:
        self._entries.clear()

    def items(self) -> list[tuple[K, V]]:
        """The entries still alive, oldest first."""
        now = self._clock()
        return [(key, value) for key, (until, value) in self._entries.items() if until > now]


class Versions:
    """Per key: the newest resourceVersion seen, including deletions (tombstones).

    Watch events, point reads and patch answers arrive by different paths; whichever is
    older than what we already hold is stale and must not replace it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tombstones: Expiring[tuple[str, ObjectKey], int] = Expiring(
            TOMBSTONE_SECONDS, TOMBSTONES_MAX, clock)

    def __len__(self) -> int:
        return len(self._tombstones)

    def is_stale(self, kind: str, key: ObjectKey, rv: str | None, held: str | None) -> bool:
        """Whether a copy at ``rv`` is older than the held copy or a recorded deletion."""
        new = _number(rv)
        if new is None:
            return False
        old = _number(held)
        if old is not None and new < old:
            return True
        tomb = self._tombstones.get((kind, key))
        return tomb is not None and new <= tomb

    def bury_before(self, kind: str, key: ObjectKey, rv: str | None) -> None:
        """Remember that the object held under ``key`` was deleted before ``rv``, its
        successor's version (seen instead of the deletion): any copy of it is older."""
        number = _number(rv)
        if number is not None:
            self.bury(kind, key, str(number - 1))

    def bury(self, kind: str, key: ObjectKey, rv: str | None) -> None:
        """Remember that ``key`` was deleted at ``rv`` (for TOMBSTONE_SECONDS)."""
        number = _number(rv)
        if number is not None and number > (self._tombstones.get((kind, key)) or -1):
            self._tombstones.set((kind, key), number)


@dataclass
class CachedSecret:
    """A referenced Secret: its version and decoded data (never logged)."""

    resource_version: str
    data: Mapping[str, bytes]

    def __repr__(self) -> str:
        return f"CachedSecret(rv={self.resource_version}, keys={sorted(self.data)})"


@dataclass
class Inventory:
    storages: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    call_types: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    # storage -> Secrets it references; Secret -> storages referencing it
    _secrets_of: dict[ObjectKey, frozenset[ObjectKey]] = field(default_factory=dict)
    _storages_of_secret: dict[ObjectKey, set[ObjectKey]] = field(
        default_factory=lambda: defaultdict(set))
    # call type -> the storage it resolves to; storage -> call types resolving to it
    _target_of: dict[ObjectKey, ObjectKey] = field(default_factory=dict)
    _call_types_of: dict[ObjectKey, set[ObjectKey]] = field(
        default_factory=lambda: defaultdict(set))
    secrets: dict[ObjectKey, CachedSecret | None] = field(default_factory=dict)
    versions: Versions = field(default_factory=Versions)

    # --- storages and the Secrets they reference -------------------------------------
    def set_secret_refs(self, storage: ObjectKey, secrets: Iterable[ObjectKey]) -> None:
        new = frozenset(secrets)
        old = self._secrets_of.get(storage, frozenset())
        for s in old - new:
            self._storages_of_secret[s].discard(storage)
            if not self._storages_of_secret[s]:
                del self._storages_of_secret[s]
                self.secrets.pop(s, None)
        for s in new - old:
            self._storages_of_secret[s].add(storage)
        if new:
            self._secrets_of[storage] = new
        else:
            self._secrets_of.pop(storage, None)

    def storages_using_secret(self, secret: ObjectKey) -> set[ObjectKey]:
        return set(self._storages_of_secret.get(secret, ()))

    def secret_is_referenced(self, secret: ObjectKey) -> bool:
        return secret in self._storages_of_secret

    def referenced_secrets(self) -> list[ObjectKey]:
        return sorted(self._storages_of_secret)

    def forget_storage(self, storage: ObjectKey) -> None:
        self.storages.pop(storage, None)
        self.set_secret_refs(storage, ())

    # --- call types and the storage each resolves to ------------------------------------
    def set_call_type_target(self, call_type: ObjectKey, target: ObjectKey | None) -> \
            ObjectKey | None:
        """Record what ``call_type`` refers to; returns the previous target."""
        old = self._target_of.pop(call_type, None)
        if old is not None:
            self._call_types_of[old].discard(call_type)
            if not self._call_types_of[old]:
                del self._call_types_of[old]
        if target is not None:
            self._target_of[call_type] = target
            self._call_types_of[target].add(call_type)
        return old

    def call_types_using(self, storage: ObjectKey) -> set[ObjectKey]:
        return set(self._call_types_of.get(storage, ()))

    def target_of(self, call_type: ObjectKey) -> ObjectKey | None:
        return self._target_of.get(call_type)

    def sizes(self) -> dict[str, int]:
        """Entries per map: bookkeeping that must stay flat under churn."""
        return {"storages": len(self.storages), "call_types": len(self.call_types),
                "secrets": len(self.secrets), "tombstones": len(self.versions),
                "references": len(self._secrets_of) + len(self._storages_of_secret) +
                len(self._target_of) + len(self._call_types_of)}


def vanished(held: Mapping[ObjectKey, Mapping[str, Any]], listed: Iterable[ObjectKey],
             list_version: str | None) -> list[ObjectKey]:
    """Keys held but absent from a LIST taken at ``list_version``: deleted meanwhile.

    A held copy newer than the list (a watch event that overtook the LIST) is kept: the
    list could not have contained it. Without a list version every absent key goes.
    """
    present = set(listed)
    limit = _number(list_version)
    gone = []
    for key, obj in held.items():
        if key in present:
            continue
        rv = resource_version(obj)
        if limit is not None and rv is not None and rv > limit:
            continue
        gone.append(key)
    return sorted(gone)
