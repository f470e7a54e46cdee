"""What the operator knows between events: objects seen on watches and who refers to whom.

Filled by the kopf event handlers, read by the reconcilers. Only Secrets that some
ExternalStorage refers to are kept (their data is needed to validate); every other Secret
seen on the watch is dropped at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# (namespace, name)
ObjectKey = tuple[str, str]


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
