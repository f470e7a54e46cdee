"""Status memory and the one exit point per kind through which status is written.

Every status write of an ExternalStorage goes through ``StatusWriter.write_storage``, and
of a CallType through ``write_call_type``: the write is keyed and guarded by the uid the
round read (``Kube.write_status`` answers ``ObjectGone`` if the name now holds another
object, or none), the answer is remembered as what the operator last wrote (per uid:
``objectstate``) and fed back in as the watch would feed it (``intake``), so the next
round starts from it and the watch's echo of it changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callstorage.api import CALLTYPE_PLURAL, EXTERNALSTORAGE_PLURAL
from callstorage.engine.intake import Intake
from callstorage.inventory import Inventory, ObjectKey
from callstorage.kube import Kube
from callstorage.objectstate import ObjectStates, uid_of
from callstorage.reconcile.plan import meta_of


class StatusWriter:
    """What the operator last wrote, per object (uid), and the writes themselves."""

    def __init__(self, kube: Kube, inv: Inventory, storages: ObjectStates,
                 call_types: ObjectStates, intake: Intake) -> None:
        self.kube, self.inv, self.intake = kube, inv, intake
        self.storages, self.call_types = storages, call_types

    async def write_storage(self, key: ObjectKey, uid: str,
                            desired: Mapping[str, Any]) -> dict[str, Any]:
        """Write a storage's status (to the object ``uid`` only); remember it and feed the
        server's answer in as an event. Returns the answer."""
        updated = await self.kube.write_status(EXTERNALSTORAGE_PLURAL, *key, uid, desired)
        state = self.storages.of(key, uid_of(updated))
        if state is not None:  # None: deleted meanwhile
            state.written = dict(updated.get("status") or {})
        self.intake.on_storage_event("MODIFIED", updated)
        held = self.inv.storages.get(key)
        if state is not None and held is not None and \
                meta_of(held).get("resourceVersion") == meta_of(updated).get("resourceVersion"):
            state.written = held.get("status") or {}  # one copy of it, not two
        return updated

    def storage_unchanged(self, key: ObjectKey, uid: str, actual: Mapping[str, Any]) -> None:
        """A round found the status as it should be: remember it as ours."""
        if (state := self.storages.of(key, uid)) is not None:
            state.written = dict(actual)

    async def write_call_type(self, key: ObjectKey, uid: str,
                              desired: Mapping[str, Any]) -> None:
        """As ``write_storage``, for a CallType."""
        updated = await self.kube.write_status(CALLTYPE_PLURAL, *key, uid, desired)
        if (state := self.call_types.of(key, uid)) is not None:
            state.written = dict(updated.get("status") or {})
        self.intake.on_call_type_event("MODIFIED", updated)

    def call_type_unchanged(self, key: ObjectKey, uid: str,
                            desired: Mapping[str, Any]) -> None:
        """As ``storage_unchanged``, for a CallType."""
        if (state := self.call_types.of(key, uid)) is not None:
            state.written = desired
