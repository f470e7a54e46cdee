"""What the controller remembers about each object between its rounds, per object (uid).

A name outlives its objects: a GitOps tool deletes a storage and creates it again under the
same name, often while a round for the old one is still validating. Whatever the operator
remembers about an object (the status it last wrote, a result it could not write yet, its
failures in a row, how often its status had to be restored) belongs to that one object:
it is found only under the object's uid, never handed to a successor of the same name,
and it is dropped with the object. State is kept only for an object the inventory holds,
so the bookkeeping has at most one entry per live object, whatever the churn.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callstorage.inventory import ObjectKey
from callstorage.reconcile.externalstorage import CheckOutcome, Validation


def uid_of(obj: Mapping[str, Any] | None) -> str:
    """An object's ``metadata.uid`` ("" when unknown)."""
    return str(((obj or {}).get("metadata") or {}).get("uid") or "")


def replaced(held: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    """``obj`` is another object than ``held`` under the same name (deleted, created
    again)."""
    return bool(uid_of(held)) and bool(uid_of(obj)) and uid_of(held) != uid_of(obj)


@dataclass(frozen=True)
class Unwritten:
    """A round's result whose status write failed: written on the retry, not redone."""

    generation: int
    validation: Validation | None
    check: CheckOutcome | None
    failures: int
    next_at: dt.datetime | None


@dataclass
class ObjectState:
    """The controller's memory of one object (see the module docstring)."""

    uid: str
    # The status the operator last wrote (or found equal to what it would write): the
    # base of the next round, so a status overwritten by someone else is put back.
    written: Mapping[str, Any] | None = None
    unwritten: Unwritten | None = None
    errors: int = 0  # the operator's own failures in a row on this object
    restores: int = 0  # status restores in a row, and when the last one was due
    last_restore: float = float("-inf")


def overwritten(state: ObjectState | None, obj: Mapping[str, Any]) -> bool:
    """Someone else wrote the status subresource (a fake Ready, a foreign usedBy): it
    differs from what the operator last wrote. A round puts it back."""
    written = state.written if state is not None else None
    return written is not None and dict(obj.get("status") or {}) != written


class ObjectStates:
    """Per-object state of one kind, for the objects ``held`` (the inventory's map).

    ``get`` answers only for the uid asked; ``of`` creates state only for the object the
    inventory holds under that key now, replacing any predecessor's.
    """

    def __init__(self, held: Mapping[ObjectKey, Mapping[str, Any]]) -> None:
        self._held = held
        self._states: dict[ObjectKey, ObjectState] = {}

    def __len__(self) -> int:
        return len(self._states)

    def get(self, key: ObjectKey, uid: str) -> ObjectState | None:
        state = self._states.get(key)
        return state if state is not None and state.uid == uid else None

    def of(self, key: ObjectKey, uid: str) -> ObjectState | None:
        """The state of the object ``uid``, created if needed; None if the inventory does
        not hold that object (deleted, or replaced by another of the same name)."""
        state = self._states.get(key)
        if state is not None and state.uid == uid:
            return state
        if uid_of(self._held.get(key)) != uid:
            return None
        state = self._states[key] = ObjectState(uid)
        return state

    def forget(self, key: ObjectKey, uid: str | None = None) -> None:
        """Drop the state of the object under ``key`` (only if it is ``uid``, if given)."""
        state = self._states.get(key)
        if state is not None and (uid is None or state.uid == uid):
            del self._states[key]
