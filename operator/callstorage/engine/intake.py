"""Intake: events from the watches (and from resyncs, and our own writes' answers) into
the inventory, and the rounds they call for into the queues.

An event is accepted only if it is newer than what the inventory holds (and not older
than the object's deletion: ``Inventory.versions``). A new name, a new generation, a
deletion starting, a status someone else overwrote, a pending check: each queues a round
of the storage for a reason (``queueing``); a storage's change queues the CallTypes that
use it; a referenced Secret's change queues the storages that read it. Deletions forget
everything kept about the object; a 404 on write forgets it too, and waits GONE_GRACE for
the DELETED event that should confirm it before asking for a resync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from callstorage import metrics
from callstorage.api import EXTERNALSTORAGE_PLURAL
from callstorage.engine.queueing import CHECK, REFS, SECRET_GONE, VALIDATE, Queues
from callstorage.engine.resync import ResyncSchedule
from callstorage.engine.validating import ProviderThreads
from callstorage.inventory import Inventory, ObjectKey, compact, vanished
from callstorage.kube import ObjectGone, decode_secret
from callstorage.objectstate import ObjectStates, overwritten, replaced, uid_of
from callstorage.reconcile import calltype as ct_reconcile
from callstorage.reconcile.plan import (
    concerns_call_types,
    finalizer_wrong,
    key_of,
    meta_of,
    pending_check,
    secret_refs,
)
from callstorage.reconcile.schedule import after_restart
from callstorage.secretcache import SECRET, SecretCache

log = logging.getLogger(__name__)

STORAGE, CALL_TYPE = "storage", "calltype"  # kinds, for tombstones (and SECRET)
# A write answering 404 for an object whose deletion we had not seen: usually its DELETED
# event is on its way (deleted after our last event, before our write). Only if it has not
# come this soon may the watch have lost it, and others with it: then a resync.
GONE_GRACE = 10.0


class Intake:
    """The controller's observation side (see the module docstring)."""

    def __init__(self, inv: Inventory, queues: Queues, storage_state: ObjectStates,
                 call_type_state: ObjectStates, schedule: ResyncSchedule,
                 secrets: SecretCache, threads: ProviderThreads, platform: ObjectKey,
                 retry_base: float, rand: Callable[[], float]) -> None:
        self.inv, self.queues, self.schedule = inv, queues, schedule
        self.storage_state, self.call_type_state = storage_state, call_type_state
        self.secrets, self.threads, self.platform = secrets, threads, platform
        self.retry_base, self.rand = retry_base, rand
        # 404s on write whose DELETED event has not come yet: the resync due if it never does.
        # Per name on purpose: any DELETED or ADDED under the name tells the watch saw it.
        self.unseen_deletions: dict[tuple[str, ObjectKey], asyncio.TimerHandle] = {}

    def _accept(self, kind: str, key: ObjectKey, held: Mapping[str, Any] | None,
                obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` is newer than what we hold (and not older than its deletion)."""
        rv = meta_of(obj).get("resourceVersion")
        held_rv = meta_of(held).get("resourceVersion") if held is not None else None
        return not self.inv.versions.is_stale(kind, key, rv, held_rv)

    # --- ExternalStorages ---------------------------------------------------------------
    def on_storage_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        key = key_of(obj)
        if self.unseen_deletions and event_type in ("DELETED", "ADDED"):
            self._deletion_seen(STORAGE, key)  # ADDED: re-created, after its deletion
        old = self.inv.storages.get(key)
        rv = meta_of(obj).get("resourceVersion")
        if event_type == "DELETED":
            self._storage_deleted(key, rv, forget=old is None or not replaced(old, obj))
            return
        if old is not None and rv and meta_of(old).get("resourceVersion") == rv:
            return  # this very version again (the watch echoing our own write, a relist)
        if not self._accept(STORAGE, key, old, obj):
            return
        if old is not None and replaced(old, obj):
            # deleted and created again unseen (a relist shows only the new one)
            self.inv.versions.bury_before(STORAGE, key, rv)
            self._storage_deleted(key, None)
            old = None
        new = compact(obj)
        self.inv.storages[key] = new
        self.inv.set_secret_refs(key, secret_refs(new))
        self.threads.preload((new.get("spec") or {}).get("storageType"))
        self._queue_storage(key, old, new)
        if concerns_call_types(old, new):
            self._touch_call_types(key)

    def _queue_storage(self, key: ObjectKey, old: Mapping[str, Any] | None,
                       new: dict[str, Any]) -> None:
        """The rounds a storage's new version calls for."""
        meta, status = meta_of(new), new.get("status") or {}
        generation = meta.get("generation")
        storages = self.queues.storages
        if old is None:
            storages.add(key, REFS)  # the round decides whether to validate
            if status.get("observedGeneration") == generation:
                self._schedule_after_restart(key, new)
        else:
            if meta_of(old).get("generation") != generation:
                storages.add(key, REFS)  # the round decides whether to validate
            if bool(meta_of(old).get("deletionTimestamp")) != bool(meta.get("deletionTimestamp")):
                storages.add(key, REFS)
            if (old.get("spec") or {}).get("suspend") and \
                    not (new.get("spec") or {}).get("suspend"):
                # resumed: the schedule paused with it starts again where it stood
                self._schedule_after_restart(key, new)
            state = self.storage_state.get(key, uid_of(new))
            if overwritten(state, new):
                storages.add(key, REFS, self.queues.restore_delay(state))
            else:
                if state is not None and state.written is not None:
                    state.written = status  # equal: hold the watch's copy, not a second one
                if finalizer_wrong(new, bool(self.inv.call_types_using(key))):
                    storages.add(key, REFS)
        if pending_check(new):
            storages.add(key, CHECK)

    def _storage_deleted(self, key: ObjectKey, rv: str | None, forget: bool = True) -> None:
        """A storage was deleted at ``rv``: forget it and everything kept about it (unless
        ``forget`` is False: the deletion of an object whose successor we hold already)."""
        self.inv.versions.bury(STORAGE, key, rv)
        if not forget:
            return
        self.inv.forget_storage(key)
        self.storage_state.forget(key)
        self.queues.forget_storage(key)
        metrics.forget_storage(*key)
        self._touch_call_types(key)

    def _schedule_after_restart(self, key: ObjectKey, obj: Mapping[str, Any]) -> None:
        delay = after_restart(obj, time.time(), self.retry_base, self.rand)
        if delay is not None:
            self.queues.storages.add(key, VALIDATE, delay)

    def _touch_call_types(self, storage: ObjectKey) -> None:
        for ct in self.inv.call_types_using(storage):
            self.queues.call_types.add(ct, "storage-changed")

    # --- CallTypes ----------------------------------------------------------------------
    def on_call_type_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        key = key_of(obj)
        if self.unseen_deletions and event_type in ("DELETED", "ADDED"):
            self._deletion_seen(CALL_TYPE, key)
        old = self.inv.call_types.get(key)
        rv = meta_of(obj).get("resourceVersion")
        if event_type == "DELETED":
            self._call_type_deleted(key, rv, forget=old is None or not replaced(old, obj))
            return
        if not self._accept(CALL_TYPE, key, old, obj):
            return
        if old is not None and replaced(old, obj):
            self.inv.versions.bury_before(CALL_TYPE, key, rv)
            self._call_type_deleted(key, None)
            old = None
        new = compact(obj)
        self.inv.call_types[key] = new
        target, _ = ct_reconcile.storage_target(
            key[0], (new.get("spec") or {}).get("externalStorage"), *self.platform)
        previous = self.inv.set_call_type_target(key, target)
        if previous != target:
            self.queues.storages.add(target, REFS)
            if previous is not None:
                self.queues.storages.add(previous, REFS)
        state = self.call_type_state.get(key, uid_of(new))
        if old is None or (new.get("status") or {}).get("observedGeneration") != \
                meta_of(new).get("generation"):
            self.queues.call_types.add(key, "reconcile")
        elif overwritten(state, new):
            self.queues.call_types.add(key, "restore", self.queues.restore_delay(state))

    def _call_type_deleted(self, key: ObjectKey, rv: str | None, forget: bool = True) -> None:
        """As ``_storage_deleted``, for a CallType."""
        self.inv.versions.bury(CALL_TYPE, key, rv)
        if not forget:
            return
        self.inv.call_types.pop(key, None)
        self.call_type_state.forget(key)
        self.queues.call_types.forget(key)
        old_target = self.inv.set_call_type_target(key, None)
        if old_target is not None:
            self.queues.storages.add(old_target, REFS)

    # --- Secrets ------------------------------------------------------------------------
    def on_secret_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        key = key_of(obj)
        rv = str(meta_of(obj).get("resourceVersion", ""))
        if event_type == "DELETED" and self.secrets.may_come_back(key):
            # no tombstone for each of the cluster's other Secrets
            self.inv.versions.bury(SECRET, key, rv)
        if not self.inv.secret_is_referenced(key):
            self.secrets.remember_recent(key, None if event_type == "DELETED" else obj)
            return  # no storage needs it (yet): at most a short-lived small copy
        previous = self.inv.secrets.get(key)
        if event_type == "DELETED":
            self.inv.secrets.pop(key, None)
            changed = True
        else:
            held = previous.resource_version if previous is not None else None
            if self.inv.versions.is_stale(SECRET, key, rv, held):
                return
            self.inv.secrets[key] = decode_secret(rv, obj.get("data"))
            changed = previous is None or previous.resource_version != rv
        if not changed:
            return
        for storage in self.inv.storages_using_secret(key):
            body = self.inv.storages.get(storage) or {}
            seen = str((body.get("status") or {}).get("observedSecretVersion") or "")
            if event_type == "DELETED":
                self.queues.storages.add(storage, SECRET_GONE)
            elif rv not in seen.split(","):
                self.queues.storages.add(storage, VALIDATE)

    # --- deletions seen by a write (404) ------------------------------------------------
    # --- relists ------------------------------------------------------------------------
    def on_relisted(self, kind: str, namespace: str | None, listed: set[ObjectKey],
                    list_rv: str | None) -> None:
        """A watch LISTed its kind in ``namespace`` (None: all) at ``list_rv`` (first, or
        after 410 Gone) and replayed ``listed``: what we hold there that the list lacks
        was deleted meanwhile; forgotten as a DELETED event would forget it. No resync:
        callstorage.watching.Watch._list says why."""
        if kind == SECRET:  # the cached ones and the recent copies of unreferenced ones
            held: Mapping[ObjectKey, Mapping[str, Any]] = {
                k: {"metadata": {"resourceVersion": s.resource_version}} for k, s in
                [*self.secrets.recent.items(), *self.inv.secrets.items()] if s is not None}
        else:
            held = self.inv.storages if kind == STORAGE else self.inv.call_types
        feed = {STORAGE: self.on_storage_event, CALL_TYPE: self.on_call_type_event,
                SECRET: self.on_secret_event}[kind]
        for key in vanished({k: v for k, v in held.items() if namespace in (None, k[0])},
                            listed, list_rv):
            log.info("%s %s/%s vanished while the watch was not looking; forgetting it",
                     kind, *key)
            last = held[key]
            feed("DELETED", {**last, "metadata": {**meta_of(last), "namespace": key[0],
                                                  "name": key[1], "resourceVersion": list_rv}})

    def forget_gone(self, exc: ObjectGone) -> None:
        """A write answered 404: the object is gone; forget it as a DELETED event would.
        A deletion we already knew of (its DELETED event came first, or it was being
        deleted: the last finalizer went and the write raced the removal) hid nothing.
        Otherwise its DELETED event should follow on the watch within GONE_GRACE; if it
        does not, whatever hid this deletion may have hidden others: resync."""
        key = (exc.namespace, exc.name)
        storage = exc.plural == EXTERNALSTORAGE_PLURAL
        held = (self.inv.storages if storage else self.inv.call_types).get(key)
        if held is not None and exc.uid and uid_of(held) != exc.uid:
            held = None  # the name is another object's now: ours was forgotten already
        known = held is None or bool(meta_of(held).get("deletionTimestamp"))
        if held is not None:
            if storage:
                self.on_storage_event("DELETED", held)
            else:
                self.on_call_type_event("DELETED", held)
        if known:
            log.debug("%s %s/%s is gone (404 on write), as its deletion said", exc.plural,
                      *key)
            return
        log.debug("%s %s/%s is gone (404 on write); forgotten, its deletion awaited on the "
                  "watch", exc.plural, *key)
        kind = STORAGE if storage else CALL_TYPE
        self._deletion_seen(kind, key)
        self.unseen_deletions[(kind, key)] = asyncio.get_running_loop().call_later(
            GONE_GRACE, self._deletion_unseen, kind, key, exc.plural)

    def _deletion_seen(self, kind: str, key: ObjectKey) -> None:
        timer = self.unseen_deletions.pop((kind, key), None)
        if timer is not None:
            timer.cancel()

    def _deletion_unseen(self, kind: str, key: ObjectKey, plural: str) -> None:
        del self.unseen_deletions[(kind, key)]
        log.info("%s %s/%s was gone (404 on write) and the watch has not said so in %.0fs; "
                 "resync requested", plural, *key, GONE_GRACE)
        self.schedule.request()

    def deletions_covered(self) -> None:
        """A resync (or the end) covers every deletion still awaited."""
        for timer in self.unseen_deletions.values():
            timer.cancel()
        self.unseen_deletions.clear()
