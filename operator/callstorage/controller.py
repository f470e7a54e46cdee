"""The reconcile loops: one work queue per kind, a bounded pool of workers each.

kopf handlers only feed events in (``on_*_event``); workers gather inputs, call the pure
``reconcile`` functions, run provider calls in a thread pool, and write status when it
changed. One slow or dead endpoint occupies one worker for at most the provider deadline
(``provider_calls``); the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from callstorage import metrics, provider_calls
from callstorage.api import (
    CALLTYPE_PLURAL,
    CHECK_ANNOTATION,
    EXTERNALSTORAGE_PLURAL,
    IN_USE_FINALIZER,
    InvalidSpecError,
)
from callstorage.api.capabilities import Capabilities
from callstorage.api.conditions import RECONCILING, STALLED, make_condition, set_condition
from callstorage.api.prefixes import effective_prefixes
from callstorage.api.readiness import ready_condition_for
from callstorage.api.reasons import Reason
from callstorage.api.timestamps import parse_rfc3339, rfc3339
from callstorage.eventposting import EventPoster
from callstorage.fairness import FairShare, Group, groups_of
from callstorage.fencing import NotLeader
from callstorage.inventory import (
    Inventory,
    ObjectKey,
    compact,
    vanished,
)
from callstorage.kube import Kube, ObjectGone, decode_secret
from callstorage.objectstate import (
    ObjectState,
    ObjectStates,
    Unwritten,
    overwritten,
    replaced,
    uid_of,
)
from callstorage.providers import (
    build_client,
    load_client_modules,
    run_check,
    validate_storage,
)
from callstorage.providers.base import ProviderError
from callstorage.reconcile import calltype as ct_reconcile
from callstorage.reconcile import externalstorage as es_reconcile
from callstorage.reconcile.externalstorage import CheckOutcome, Observed, Validation
from callstorage.reconcile.schedule import next_delay, startup_delay
from callstorage.secretcache import SECRET, SecretCache
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec, parse_external_storage
from callstorage.storagetypes import PROVIDERS
from callstorage.workqueue import WorkQueue

log = logging.getLogger(__name__)

VALIDATE, CHECK, REFS = "validate", "check", "refs"
# a referenced Secret was deleted: validate, unless the namespace is being torn down
SECRET_GONE = "secret-gone"  # noqa: S105 - a queue reason, not a credential
# Restores of a key closer together than this count as one fight (someone keeps writing,
# e.g. a second operator during a botched rollout) and back off.
RESTORE_WINDOW = 60.0
# a round that failed after its validation ran: only the status write is retried
WRITE = "write"
STORAGE, CALL_TYPE = "storage", "calltype"  # kinds, for tombstones (and SECRET)
CALL_TYPE_WORKERS = 4
# The watch replays a LIST as events of type None, as one burst. A listing event is a
# relist (after 410 Gone) when it comes more than LISTING_GAP seconds after the previous
# listing event of its kind, our own start-up LIST counting as the first: an API server
# restart right after ours must not pass for the first listing, and a first listing whose
# replay outlasts any fixed grace (10,000 objects) must not pass for a relist per event.
LISTING_GAP = 2.0
# After a relist or a 404 a resync follows this soon, and never more often than
# RESYNC_MIN_GAP apart (a storm of 404s makes one LIST per kind, not one each).
RESYNC_SETTLE = 1.0
RESYNC_MIN_GAP = 5.0
# A write answering 404 for an object whose deletion we had not seen: usually its DELETED
# event is on its way (deleted after our last event, before our write). Only if it has not
# come this soon may the watch have lost it, and others with it: then a resync.
GONE_GRACE = 10.0


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta: Mapping[str, Any] = obj.get("metadata") or {}
    return meta


def _key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = _meta(obj)
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _number(rv: str | None) -> int | None:
    """A resourceVersion as a number (etcd revisions are), None if not one."""
    return int(rv) if isinstance(rv, str) and rv.isdigit() else None


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value).timestamp()
    except ValueError:
        return None


def pending_check(obj: Mapping[str, Any]) -> str | None:
    """The check-annotation value not yet answered in ``status.lastCheck``, if any."""
    value = (_meta(obj).get("annotations") or {}).get(CHECK_ANNOTATION)
    if not value:
        return None
    done = ((obj.get("status") or {}).get("lastCheck") or {}).get("requestedAt")
    return None if value == done else str(value)


def check_id(obj: Mapping[str, Any], requested_at: str) -> str:
    """The name of one check request's object: derived from the object (namespace, name,
    uid) and the annotation value, so the request uploads one object even when the
    operator crashes between the upload and the status write and runs it again."""
    meta = _meta(obj)
    identity = f"{meta.get('namespace')}/{meta.get('name')}/{meta.get('uid')}/{requested_at}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"callstorage-check:{identity}"))


def _secret_refs(obj: Mapping[str, Any]) -> set[ObjectKey]:
    """Secrets an object refers to, read leniently (even from a spec that fails to parse)."""
    ns = _key(obj)[0]
    spec = obj.get("spec") or {}
    names: set[str] = set()
    for storage_type, provider in PROVIDERS.items():
        block = spec.get(storage_type)
        if isinstance(block, Mapping):
            names |= provider.secret_names(block)
    ca = ((spec.get("tls") or {}).get("caSecretRef") or {})
    if isinstance(ca, dict) and ca.get("name"):
        names.add(str(ca["name"]))
    return {(ns, n) for n in names}


class _Parked(Exception):
    """A round found its endpoint host or namespace at its share of the workers."""

    def __init__(self, group: Group) -> None:
        super().__init__(f"{group[0]} {group[1]} is at its share of the workers")
        self.group = group


def _held(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The copy the inventory keeps (``inventory.compact``)."""
    return compact(obj)


def _with_kind(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Items of a LIST carry no kind; events posted on them need it."""
    from callstorage.api import GROUP, VERSION

    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, **obj}


class Controller:
    """State and loops of one operator process."""

    def __init__(self, settings: Settings, kube: Kube,
                 rand: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.kube = kube
        self.rand = rand
        self.inv = Inventory()
        self.storages: WorkQueue[ObjectKey] = WorkQueue()
        self.call_types: WorkQueue[ObjectKey] = WorkQueue()
        self._providers = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_validations, thread_name_prefix="provider")
        self._tasks: list[asyncio.Task[None]] = []
        self.platform: ObjectKey = (settings.namespace, settings.platform_storage)
        # per object (uid): the status last written, a result not yet written, failures
        # of the operator itself, restores (objectstate.py)
        self._storage_state = ObjectStates(self.inv.storages)
        self._call_type_state = ObjectStates(self.inv.call_types)
        # resync: a LIST of both kinds replacing the inventory (client-go's Replace)
        self._started_at: float | None = None
        self._resync_at = float("inf")
        self._last_resync = float("-inf")
        self._resync_failures = 0
        self._resync_wake = asyncio.Event()
        # 404s on write whose DELETED event has not come yet: the resync due if it never does
        self._unseen_deletions: dict[tuple[str, ObjectKey], asyncio.TimerHandle] = {}
        self._listing_events: dict[str, float] = {}  # kind -> its last listing event
        self.resyncs = 0
        # fair shares of the provider workers per endpoint host and namespace (fairness.py)
        self._fair: FairShare[ObjectKey] = FairShare(settings.max_concurrent_validations)
        self._woken: dict[ObjectKey, Group] = {}  # unparked, not yet holding a slot
        self.events = EventPoster(kube)  # quiet in namespaces being deleted
        # storage types whose SDK is loaded (or loading): one import each, on first sight
        self._sdk_types: set[str] = set()
        self._sdk_loads: list[Future[None]] = []
        # plural -> resourceVersion of the start-up LIST: the watches resume from it
        self.listed_versions: dict[str, str | None] = {}
        # shared_check_key -> the answer of that validation request, while in flight
        self._flights: dict[str, asyncio.Future[Validation | None]] = {}
        self.secrets = SecretCache(kube, self.inv, settings)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Learn every object and reference first, then start the workers.

        Without the full list of CallTypes, a storage could look unreferenced right
        after a restart and lose its in-use finalizer while being deleted.
        """
        namespaces = self.watched_namespaces()
        items, self.listed_versions[EXTERNALSTORAGE_PLURAL] = await self.kube.list_snapshot(
            EXTERNALSTORAGE_PLURAL, namespaces)
        for obj in items:
            self.on_storage_event(None, _with_kind(obj, "ExternalStorage"))
        del items
        if self._sdk_loads:  # the SDKs of the listed storages, before any worker needs one
            await asyncio.gather(*(asyncio.wrap_future(f) for f in self._sdk_loads))
        items, self.listed_versions[CALLTYPE_PLURAL] = await self.kube.list_snapshot(
            CALLTYPE_PLURAL, namespaces)
        for obj in items:
            self.on_call_type_event(None, _with_kind(obj, "CallType"))
        del items
        n = self.settings.max_concurrent_validations
        self._tasks += [asyncio.create_task(self._storage_worker(), name=f"storage-{i}")
                        for i in range(n)]
        self._tasks += [asyncio.create_task(self._call_type_worker(), name=f"calltype-{i}")
                        for i in range(CALL_TYPE_WORKERS)]
        self._started_at = time.monotonic()
        # our own LIST counts as the first listing: kopf's, just after, continues it, and
        # a relist is measured from it even if kopf's first listing reached us late or not
        self._listing_events.update({STORAGE: self._started_at, CALL_TYPE: self._started_at})
        self._resync_at = self._started_at + self.settings.resync_interval
        self._tasks.append(asyncio.create_task(self._resync_loop(), name="resync"))

    async def stop(self) -> None:
        self.storages.close()
        self.call_types.close()
        for task in self._tasks:
            task.cancel()
        self._deletions_covered()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._providers.shutdown(wait=False, cancel_futures=True)

    def bookkeeping(self) -> dict[str, int]:
        """Entries in each map the controller keeps: flat under churn, and back where
        they were once the objects are gone (and their tombstones expired)."""
        return {**self.inv.sizes(), "storage_state": len(self._storage_state),
                "call_type_state": len(self._call_type_state),
                "recent_secrets": len(self.secrets.recent),
                "secret_reads": len(self.secrets.reads),
                "terminating": len(self.events.terminating), "flights": len(self._flights),
                "unseen_deletions": len(self._unseen_deletions), "woken": len(self._woken),
                "parked": self._fair.parked(), "storage_queue": self.storages.entries(),
                "call_type_queue": self.call_types.entries()}

    def watched_namespaces(self) -> list[str]:
        """Namespaces to watch; empty = cluster-wide. The platform one is always in."""
        ns = list(self.settings.watch_namespaces)
        if ns and self.settings.namespace not in ns:
            ns.append(self.settings.namespace)
        return ns

    # --- resync -------------------------------------------------------------------------
    def request_resync(self, delay: float = RESYNC_SETTLE) -> None:
        """Resync ``delay`` seconds from now (or as soon as the minimum gap allows)."""
        at = max(time.monotonic() + delay, self._last_resync + RESYNC_MIN_GAP)
        if at < self._resync_at:
            self._resync_at = at
            self._resync_wake.set()

    def _listing_seen(self, kind: str) -> None:
        """kopf relisted (after 410 Gone or a reconnect): it replays live objects only, so
        deletions in the gap are found by our own LIST."""
        if self._started_at is None:
            return  # our own start-up LIST
        now = time.monotonic()
        previous = self._listing_events.get(kind, self._started_at)
        self._listing_events[kind] = now
        if now - previous > LISTING_GAP:  # the first event of a burst: once per relist
            log.debug("%s relisted: resync requested", kind)
            self.request_resync()

    async def _resync_loop(self) -> None:
        while True:
            wait = self._resync_at - time.monotonic()
            if wait > 0:
                self._resync_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._resync_wake.wait(), wait)
                continue
            self._last_resync = time.monotonic()
            self._resync_at = self._last_resync + self.settings.resync_interval
            try:
                await self.resync()
                self._resync_failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API may be down: try again, backing off
                self._resync_failures += 1
                retry = min(self.settings.resync_interval,
                            RESYNC_MIN_GAP * 2 ** min(self._resync_failures, 10))
                log.warning("resync failed (%s); next attempt in %.0fs", _describe(exc), retry)
                self._resync_at = min(self._resync_at, time.monotonic() + retry)

    async def resync(self) -> None:
        """LIST ExternalStorages and CallTypes and make the inventory match: newer objects
        go through the normal event path, vanished ones are forgotten exactly as a DELETED
        event would forget them; then the referenced Secrets (``_resync_secrets``)."""
        namespaces = self.watched_namespaces()
        self.resyncs += 1
        self._deletions_covered()
        # a relist may have hidden a deletion of a Secret no storage referred to yet
        self.secrets.recent.clear()
        for plural, kind in ((EXTERNALSTORAGE_PLURAL, "ExternalStorage"),
                             (CALLTYPE_PLURAL, "CallType")):
            items, list_rv = await self.kube.list_snapshot(plural, namespaces)
            storages = plural == EXTERNALSTORAGE_PLURAL
            feed = self.on_storage_event if storages else self.on_call_type_event
            held = self.inv.storages if storages else self.inv.call_types
            for obj in items:
                feed("MODIFIED", _with_kind(obj, kind))
            for key in vanished(held, (_key(o) for o in items), list_rv):
                log.info("%s %s/%s vanished while the watch was not looking; forgetting it",
                         kind, *key)
                last = held[key]
                feed("DELETED", {**last, "metadata": {**_meta(last),
                                                      "resourceVersion": list_rv}})
        await self._resync_secrets()

    async def _resync_secrets(self) -> None:
        """The watch may have missed a referenced Secret's deletion or change too (a relist
        replays live objects only): one metadata-only LIST per namespace that holds
        referenced Secrets (each storage's own namespace). A cached Secret absent from the
        list is deleted as a DELETED event would delete it; one listed newer than the cache
        is dropped from it, and its storages validate (reading it afresh)."""
        by_namespace: dict[str, list[str]] = {}
        for ns, name in self.inv.referenced_secrets():
            by_namespace.setdefault(ns, []).append(name)
        for ns, names in sorted(by_namespace.items()):
            versions, list_rv = await self.kube.list_secret_versions(
                ns, self.settings.secret_label_selector)
            limit = _number(list_rv)
            for name in names:
                key = (ns, name)
                cached = self.inv.secrets.get(key)
                if cached is None:
                    continue  # never read, or its deletion was seen: nothing to correct
                held = _number(cached.resource_version)
                listed = versions.get(name)
                if listed is None:
                    if limit is None or held is None or held <= limit:
                        log.info("Secret %s/%s vanished while the watch was not looking",
                                 *key)
                        self.on_secret_event("DELETED", {"metadata": {
                            "name": name, "namespace": ns, "resourceVersion": list_rv}})
                    continue
                now = _number(listed)
                if now is not None and held is not None and now > held:
                    log.info("Secret %s/%s changed while the watch was not looking", *key)
                    self.inv.secrets.pop(key, None)
                    for storage in self.inv.storages_using_secret(key):
                        body = self.inv.storages.get(storage) or {}
                        seen = str((body.get("status") or {}).get("observedSecretVersion")
                                   or "")
                        if listed not in seen.split(","):
                            self.storages.add(storage, VALIDATE)

    def _forget_gone(self, exc: ObjectGone) -> None:
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
        known = held is None or bool(_meta(held).get("deletionTimestamp"))
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
        self._unseen_deletions[(kind, key)] = asyncio.get_running_loop().call_later(
            GONE_GRACE, self._deletion_unseen, kind, key, exc.plural)

    def _deletion_seen(self, kind: str, key: ObjectKey) -> None:
        timer = self._unseen_deletions.pop((kind, key), None)
        if timer is not None:
            timer.cancel()

    def _deletion_unseen(self, kind: str, key: ObjectKey, plural: str) -> None:
        del self._unseen_deletions[(kind, key)]
        log.info("%s %s/%s was gone (404 on write) and the watch has not said so in %.0fs; "
                 "resync requested", plural, *key, GONE_GRACE)
        self.request_resync()

    def _deletions_covered(self) -> None:
        """A resync (or the end) covers every deletion still awaited."""
        for timer in self._unseen_deletions.values():
            timer.cancel()
        self._unseen_deletions.clear()

    # --- events -------------------------------------------------------------------------
    def _accept(self, kind: str, key: ObjectKey, held: Mapping[str, Any] | None,
                obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` is newer than what we hold (and not older than its deletion)."""
        rv = _meta(obj).get("resourceVersion")
        held_rv = _meta(held).get("resourceVersion") if held is not None else None
        return not self.inv.versions.is_stale(kind, key, rv, held_rv)

    def on_storage_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        if event_type is None:
            self._listing_seen(STORAGE)
        elif self._unseen_deletions and event_type in ("DELETED", "ADDED"):
            self._deletion_seen(STORAGE, key)  # ADDED: re-created, after its deletion
        old = self.inv.storages.get(key)
        rv = _meta(obj).get("resourceVersion")
        if event_type == "DELETED":
            self._storage_deleted(key, rv, forget=old is None or not replaced(old, obj))
            return
        if old is not None and rv and _meta(old).get("resourceVersion") == rv:
            return  # this very version again (the watch echoing our own write, a relist)
        if not self._accept(STORAGE, key, old, obj):
            return
        if old is not None and replaced(old, obj):
            # deleted and created again unseen (a relist shows only the new one)
            self.inv.versions.bury_before(STORAGE, key, rv)
            self._storage_deleted(key, None)
            old = None
        new = _held(obj)
        self.inv.storages[key] = new
        self.inv.set_secret_refs(key, _secret_refs(new))
        storage_type = (new.get("spec") or {}).get("storageType")
        if storage_type not in self._sdk_types and storage_type in PROVIDERS:
            self._sdk_types.add(storage_type)
            self._sdk_loads.append(self._providers.submit(load_client_modules, [storage_type]))
        meta, status = _meta(new), new.get("status") or {}
        generation = meta.get("generation")
        if old is None:
            self.storages.add(key, REFS)  # the round decides whether to validate
            if status.get("observedGeneration") == generation:
                self._schedule_after_restart(key, new)
        else:
            if _meta(old).get("generation") != generation:
                self.storages.add(key, REFS)  # the round decides whether to validate
            if bool(_meta(old).get("deletionTimestamp")) != bool(meta.get("deletionTimestamp")):
                self.storages.add(key, REFS)
            if (old.get("spec") or {}).get("suspend") and \
                    not (new.get("spec") or {}).get("suspend"):
                # resumed: the schedule paused with it starts again where it stood
                self._schedule_after_restart(key, new)
        if old is not None:
            state = self._storage_state.get(key, uid_of(new))
            if overwritten(state, new):
                self.storages.add(key, REFS, self._restore_delay(state))
            else:
                if state is not None and state.written is not None:
                    state.written = status  # equal: hold the watch's copy, not a second one
                if self._finalizer_wrong(key, new):
                    self.storages.add(key, REFS)
        if pending_check(new):
            self.storages.add(key, CHECK)
        if old is None or es_reconcile.ready_state(old.get("status")) != \
                es_reconcile.ready_state(status) or old.get("spec") != new.get("spec") or \
                _meta(old).get("generation") != generation or \
                (old.get("status") or {}).get("conditions") != status.get("conditions") or \
                bool(_meta(old).get("deletionTimestamp")) != bool(meta.get("deletionTimestamp")):
            self._touch_call_types(key)

    def _storage_deleted(self, key: ObjectKey, rv: str | None, forget: bool = True) -> None:
        """A storage was deleted at ``rv``: forget it and everything kept about it (unless
        ``forget`` is False: the deletion of an object whose successor we hold already)."""
        self.inv.versions.bury(STORAGE, key, rv)
        if not forget:
            return
        self.inv.forget_storage(key)
        self.storages.forget(key)
        self._storage_state.forget(key)
        self._fair.forget(key)
        self._hand_on(key)
        metrics.forget_storage(*key)
        self._touch_call_types(key)

    def _schedule_after_restart(self, key: ObjectKey, obj: Mapping[str, Any]) -> None:
        try:
            spec = parse_external_storage(obj)
        except InvalidSpecError:
            return
        if spec.suspend:
            return
        status = obj.get("status") or {}
        ready, reason, _ = es_reconcile.ready_state(status)
        if reason == Reason.INVALID_SPEC:
            return
        if ready == "True" and spec.interval_seconds <= 0:
            return
        delay = startup_delay(time.time(), ready, _parse_time(status.get("lastValidatedAt")),
                              spec.interval_seconds, self.settings.retry_base, self.rand)
        self.storages.add(key, VALIDATE, delay)

    def on_call_type_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        if event_type is None:
            self._listing_seen(CALL_TYPE)
        elif self._unseen_deletions and event_type in ("DELETED", "ADDED"):
            self._deletion_seen(CALL_TYPE, key)
        old = self.inv.call_types.get(key)
        rv = _meta(obj).get("resourceVersion")
        if event_type == "DELETED":
            self._call_type_deleted(key, rv, forget=old is None or not replaced(old, obj))
            return
        if not self._accept(CALL_TYPE, key, old, obj):
            return
        if old is not None and replaced(old, obj):
            self.inv.versions.bury_before(CALL_TYPE, key, rv)
            self._call_type_deleted(key, None)
            old = None
        new = _held(obj)
        self.inv.call_types[key] = new
        target, _ = ct_reconcile.storage_target(
            key[0], (new.get("spec") or {}).get("externalStorage"), *self.platform)
        previous = self.inv.set_call_type_target(key, target)
        if previous != target:
            self.storages.add(target, REFS)
            if previous is not None:
                self.storages.add(previous, REFS)
        state = self._call_type_state.get(key, uid_of(new))
        if old is None or (new.get("status") or {}).get("observedGeneration") != \
                _meta(new).get("generation"):
            self.call_types.add(key, "reconcile")
        elif overwritten(state, new):
            self.call_types.add(key, "restore", self._restore_delay(state))

    def _call_type_deleted(self, key: ObjectKey, rv: str | None, forget: bool = True) -> None:
        """As ``_storage_deleted``, for a CallType."""
        self.inv.versions.bury(CALL_TYPE, key, rv)
        if not forget:
            return
        self.inv.call_types.pop(key, None)
        self._call_type_state.forget(key)
        self.call_types.forget(key)
        old_target = self.inv.set_call_type_target(key, None)
        if old_target is not None:
            self.storages.add(old_target, REFS)

    def on_secret_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        if event_type is None:
            self._listing_seen(SECRET)
        rv = str(_meta(obj).get("resourceVersion", ""))
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
                self.storages.add(storage, SECRET_GONE)
            elif rv not in seen.split(","):
                self.storages.add(storage, VALIDATE)

    def _touch_call_types(self, storage: ObjectKey) -> None:
        for ct in self.inv.call_types_using(storage):
            self.call_types.add(ct, "storage-changed")

    # --- workers ------------------------------------------------------------------------
    def _backoff(self, state: ObjectState | None) -> tuple[int, float]:
        """Count one more failure of the operator's own round on the object (if it still
        exists); the delay before the next."""
        n = (state.errors if state is not None else 0) + 1
        if state is not None:
            state.errors = n
        delay = next_delay(Reason.INTERNAL_ERROR, 0.0, n, self.settings.retry_base,
                           self.settings.retry_max, self.rand)
        return n, delay if delay is not None else self.settings.retry_max

    async def _storage_worker(self) -> None:
        while True:
            key, reasons = await self.storages.get()
            try:
                await self.storage_round(key, reasons)
            finally:
                self.storages.done(key)
                metrics.set_queue_depth(len(self.storages))

    async def storage_round(self, key: ObjectKey, reasons: set[str]) -> None:
        """One reconcile of one storage; a failure is counted, reported and retried with
        backoff, never allowed to stop the worker."""
        uid = uid_of(self.inv.storages.get(key))
        try:
            await self.reconcile_storage(key, reasons)
            if (state := self._storage_state.get(key, uid)) is not None:
                state.errors = 0
        except (asyncio.CancelledError, NotLeader):  # NotLeader: the worker stops too
            raise
        except ObjectGone as exc:  # never retried: there is nothing left to write to
            self._forget_gone(exc)
        except _Parked as exc:  # queued again when its group has a free slot
            self._fair.park(exc.group, key, reasons)
        except Exception as exc:  # one object's failure must not stop the loop
            metrics.record_reconcile_error("ExternalStorage")
            state = self._storage_state.of(key, uid)
            n, delay = self._backoff(state)
            log.error("reconciling ExternalStorage %s/%s failed (%d in a row; retry in "
                      "%.0fs): %s", *key, n, delay, _describe(exc))
            # Retry what was asked; a round whose validation already ran retries only its
            # status write (see ``Unwritten``).
            retry = {WRITE} if state is not None and state.unwritten is not None \
                else (reasons - {CHECK}) or {REFS}
            for reason in retry:
                self.storages.add(key, reason, delay)
            await self._expose_error(key, uid, exc, n, delay)
        finally:
            self._hand_on(key)

    def _hand_on(self, key: ObjectKey) -> None:
        """A key woken from parking that ended its round without taking the slot passes
        the wake-up on to the next parked key of that group."""
        group = self._woken.pop(key, None)
        if group is not None:
            self._requeue(self._fair.wake((group,)))

    def _requeue(self, woken: list[tuple[ObjectKey, set[str], Group]]) -> None:
        for key, reasons, group in woken:
            self._woken[key] = group
            for reason in reasons:
                self.storages.add(key, reason)

    async def _expose_error(self, key: ObjectKey, uid: str, exc: BaseException, n: int,
                            delay: float) -> None:
        """Best effort: say in status that the operator itself is failing on this object."""
        obj = self.inv.storages.get(key)
        if obj is None or uid_of(obj) != uid:
            return
        status = obj.get("status") or {}
        if isinstance(exc, ObjectGone):
            return
        if any(c.get("type") == STALLED and c.get("status") == "True"
               for c in status.get("conditions") or []):
            return  # Stalled already says a person must act; never both (kstatus)
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        condition = make_condition(
            RECONCILING, "True", "ReconcileError",
            f"the operator failed to reconcile this object ({_describe(exc)}); attempt "
            f"{n + 1} at {rfc3339(when)}",
            int(_meta(obj).get("generation") or 0))
        conditions = set_condition(status.get("conditions"), condition)
        if conditions == status.get("conditions"):
            return
        try:
            updated = await self.kube.write_status(EXTERNALSTORAGE_PLURAL, *key, uid,
                                                   {**status, "conditions": conditions})
            self._wrote_storage(key, updated)
        except Exception as patch_exc:  # the API itself may be what fails
            log.debug("could not report the failure in status: %s", _describe(patch_exc))

    async def _call_type_worker(self) -> None:
        while True:
            key, _ = await self.call_types.get()
            uid = uid_of(self.inv.call_types.get(key))
            try:
                await self.reconcile_call_type(key)
                if (state := self._call_type_state.get(key, uid)) is not None:
                    state.errors = 0
            except (asyncio.CancelledError, NotLeader):
                raise
            except ObjectGone as exc:
                self._forget_gone(exc)
            except Exception as exc:
                metrics.record_reconcile_error("CallType")
                n, delay = self._backoff(self._call_type_state.of(key, uid))
                log.error("reconciling CallType %s/%s failed (%d in a row; retry in %.0fs): "
                          "%s", *key, n, delay, _describe(exc))
                self.call_types.add(key, "retry", delay)
            finally:
                self.call_types.done(key)

    def used_by(self, storage: ObjectKey) -> tuple[str, ...]:
        """CallTypes referring to ``storage``: names, or ns/name when in another namespace."""
        return tuple(sorted(
            name if ns == storage[0] else f"{ns}/{name}"
            for ns, name in self.inv.call_types_using(storage)))

    def _wrote_storage(self, key: ObjectKey, updated: Mapping[str, Any]) -> None:
        """Record the server's answer to our status write, then feed it in as an event."""
        state = self._storage_state.of(key, uid_of(updated))
        if state is not None:  # None: deleted meanwhile
            state.written = dict(updated.get("status") or {})
        self.on_storage_event("MODIFIED", updated)
        held = self.inv.storages.get(key)
        if state is not None and held is not None and \
                _meta(held).get("resourceVersion") == _meta(updated).get("resourceVersion"):
            state.written = held.get("status") or {}  # one copy of it, not two

    def _restore_delay(self, state: ObjectState | None) -> float:
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

    def _finalizer_wrong(self, key: ObjectKey, obj: Mapping[str, Any]) -> bool:
        """The in-use finalizer is missing while a CallType uses the storage (stripped by
        hand: a delete would pass) or present while none does."""
        meta = _meta(obj)
        has = IN_USE_FINALIZER in (meta.get("finalizers") or [])
        used = bool(self.inv.call_types_using(key))
        return (used and not has and not meta.get("deletionTimestamp")) or (has and not used)

    async def reconcile_storage(self, key: ObjectKey, reasons: set[str]) -> None:
        obj = self.inv.storages.get(key)
        if obj is None:
            return
        uid = uid_of(obj)  # the round is for this object; its result for no other
        state = self._storage_state.get(key, uid)
        # Computed from what the operator itself last wrote (restoring a status someone
        # else overwrote); the write is compared with what the object has now.
        actual: Mapping[str, Any] = obj.get("status") or {}
        status: Mapping[str, Any] = actual if state is None or state.written is None \
            else state.written
        obj = {**obj, "status": status}
        meta = _meta(obj)
        generation = int(meta.get("generation") or 0)
        deleting = bool(meta.get("deletionTimestamp"))
        used_by = self.used_by(key)

        if not await self._sync_finalizer(key, obj, used_by, deleting):
            return  # the finalizer was removed from a deleted object: it is gone now
        if reasons == {REFS} and status == actual and not deleting and \
                (state is None or state.unwritten is None) and not pending_check(obj) and \
                _settled(status, generation, used_by):
            return  # e.g. every storage after a restart: nothing to validate or write

        spec: ExternalStorageSpec | None = None
        invalid: str | None = None
        try:
            spec = parse_external_storage(obj)
        except InvalidSpecError as exc:
            invalid = str(exc)
        suspended = spec is not None and spec.suspend
        current_hash = es_reconcile.spec_hash(obj.get("spec"))
        requested = VALIDATE in reasons
        if SECRET_GONE in reasons and not requested:
            # A namespace being deleted takes its Secrets before (or after) its storages:
            # validating those would only report SecretNotFound on the way out.
            requested = not deleting and not await self.events.namespace_terminating(key[0])
        wants_validation = es_reconcile.needs_validation(
            status, generation, current_hash, requested)
        check_value = pending_check(obj)
        log.debug("ExternalStorage %s/%s: round for %s; validate: %s", *key,
                  ",".join(sorted(reasons)), wants_validation)
        failures = int(status.get("consecutiveFailures") or 0)

        unwritten = state.unwritten if state is not None else None
        if unwritten is not None and unwritten.generation == generation and \
                VALIDATE not in reasons:
            # The last round validated but could not write: write that, don't redo it.
            validation, check = unwritten.validation, unwritten.check
            failures, next_at = unwritten.failures, unwritten.next_at
        else:
            if state is not None:
                state.unwritten = None
            validation, check = es_reconcile.offline_outcome(invalid, suspended, wants_validation,
                                                 check_value)
            if spec is not None and not suspended and (wants_validation or check_value):
                if wants_validation:
                    status, actual = await self._announce_validation(
                        key, uid, obj, actual, spec, used_by, failures)
                validation, check = await self._validate(key, spec, wants_validation,
                                                         check_value)
                if not self._result_applies(key, uid, current_hash):
                    return
                if validation is not None:
                    metrics.set_storage_ready(*key, validation.ok)
            failures, next_at = self._schedule_next(key, spec, validation, failures, status)
            if (validation is not None or check is not None) and \
                    (state := self._storage_state.of(key, uid)) is not None:
                state.unwritten = Unwritten(generation, validation, check, failures, next_at)

        observed = Observed(
            generation=generation,
            now=dt.datetime.now(dt.UTC),
            effective_prefixes=effective_prefixes(spec) if spec is not None else None,
            suspended=suspended,
            validation=validation,
            check=check,
            used_by=used_by,
            blocked_deletion_by=used_by if deleting else (),
            next_validation=next_at,
            consecutive_failures=failures,
            spec_hash=current_hash,
        )
        desired = es_reconcile.desired_status(status, observed)
        if desired != actual:
            updated = await self.kube.write_status(EXTERNALSTORAGE_PLURAL, *key, uid, desired)
            self._wrote_storage(key, updated)
        elif (state := self._storage_state.of(key, uid)) is not None:
            state.written = dict(actual)  # equal to desired
        if (state := self._storage_state.get(key, uid)) is not None:
            state.unwritten = None
        await self.events.post(obj, es_reconcile.storage_events(status, desired, check))

    def _result_applies(self, key: ObjectKey, uid: str, spec_hash: str) -> bool:
        """Whether a validation's result may be written: the object it was computed for is
        still there (its uid), with the spec it was computed from. A storage deleted and
        created again under its name while the round ran, or whose spec changed, is never
        given the old round's answer: it is dropped, and the object gets a round of its
        own."""
        held = self.inv.storages.get(key)
        if held is not None and uid_of(held) == uid and \
                es_reconcile.spec_hash(held.get("spec")) == spec_hash:
            return True
        what = "deleted" if held is None else "replaced" if uid_of(held) != uid else "changed"
        log.info("ExternalStorage %s/%s was %s while it was validated; that result is "
                 "dropped", *key, what)
        if held is not None:
            self.storages.add(key, REFS)
        return False

    def _schedule_next(self, key: ObjectKey, spec: ExternalStorageSpec | None,
                       validation: Validation | None, failures: int,
                       status: Mapping[str, Any]) -> tuple[int, dt.datetime | None]:
        """After a validation, queue the next one (its interval, or a retry); the
        failures in a row and when the next validation is due."""
        if validation is None:
            due = status.get("nextValidationAt")
            keep = due and not (spec is not None and spec.suspend)
            return failures, _parse_datetime(due) if keep else None
        failures = es_reconcile.failures_after(failures, validation)
        interval = spec.interval_seconds if spec is not None else 0.0
        delay = next_delay(validation.reason, interval, failures, self.settings.retry_base,
                           self.settings.retry_max, self.rand, validation.retried)
        if delay is None:
            return failures, None
        self.storages.add(key, VALIDATE, delay)
        return failures, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)

    async def _announce_validation(self, key: ObjectKey, uid: str, obj: Mapping[str, Any],
                                   actual: Mapping[str, Any], spec: ExternalStorageSpec,
                                   used_by: tuple[str, ...], failures: int) -> \
            tuple[Mapping[str, Any], Mapping[str, Any]]:
        """Before the first network call for a generation: Ready=Unknown (Validating) and
        Reconciling=True, so nobody mistakes the old result for the new spec's.

        Returns the (base, actual) statuses for the rest of the round.
        """
        status: Mapping[str, Any] = obj.get("status") or {}
        generation = int(_meta(obj).get("generation") or 0)
        current = ready_condition_for(status.get("conditions"), generation)
        if current is not None and current.get("status") != "Unknown":
            return status, actual  # a periodic or rotation re-check: Ready keeps its answer
        observed = Observed(
            generation=generation, now=dt.datetime.now(dt.UTC),
            effective_prefixes=effective_prefixes(spec), used_by=used_by,
            blocked_deletion_by=used_by if _meta(obj).get("deletionTimestamp") else (),
            consecutive_failures=failures, spec_hash=None)
        desired = es_reconcile.desired_status(status, observed)
        if desired == actual:
            return desired, actual
        updated = await self.kube.write_status(EXTERNALSTORAGE_PLURAL, *key, uid, desired)
        self._wrote_storage(key, updated)
        state = self._storage_state.get(key, uid)
        written = state.written if state is not None and state.written is not None \
            else dict(updated.get("status") or {})
        return written, written

    async def _sync_finalizer(self, key: ObjectKey, obj: Mapping[str, Any],
                              used_by: tuple[str, ...], deleting: bool) -> bool:
        """Keep the in-use finalizer iff some CallType refers to the storage.

        Returns False when the object is about to disappear (nothing more to do).
        """
        meta = _meta(obj)
        finalizers = list(meta.get("finalizers") or [])
        has = IN_USE_FINALIZER in finalizers
        rv = str(meta.get("resourceVersion", ""))
        if used_by and not has and not deleting:
            if not await self.kube.set_finalizers(*key, [*finalizers, IN_USE_FINALIZER], rv):
                self.storages.add(key, REFS, 1.0)  # lost a race: retry on fresh state
        elif not used_by and has:
            done = await self.kube.set_finalizers(
                *key, [f for f in finalizers if f != IN_USE_FINALIZER], rv)
            if not done:
                self.storages.add(key, REFS, 1.0)
            elif deleting:
                return False
        return True

    async def _validate(self, key: ObjectKey, spec: ExternalStorageSpec, validate: bool,
                        check_value: str | None) -> tuple[Validation | None,
                                                          CheckOutcome | None]:
        started = time.monotonic()
        try:
            inputs, version = await self.secrets.inputs(key[0], spec)
        except ProviderError as exc:
            result = Validation(exc.reason, exc.message, stalled=exc.stalled,
                                retry=exc.retry) \
                if validate else None
            check = CheckOutcome(check_value, False, exc.message) if check_value else None
            if result is not None:
                metrics.record_validation(spec.storage_type, "failure", str(exc.reason),
                                          time.monotonic() - started)
            return result, check

        settings = self.settings
        request_id = check_id(self.inv.storages.get(key) or {}, check_value) \
            if check_value else None

        def failed(exc: ProviderError) -> Validation:
            return Validation(exc.reason, exc.message, secret_version=version,
                              stalled=exc.stalled, retry=exc.retry)

        def work() -> tuple[Validation | None, CheckOutcome | None]:
            v: Validation | None = None
            c: CheckOutcome | None = None
            try:
                client = build_client(spec, inputs, settings)
            except ProviderError as exc:
                v = failed(exc) if validate else None
                c = CheckOutcome(check_value, False, exc.message) if check_value else None
                return v, c
            try:
                if validate:
                    try:
                        caps = validate_storage(client, spec)
                        v = Validation(Reason.VALIDATED, _success_message(spec, caps), caps,
                                       version)
                    except ProviderError as exc:
                        v = failed(exc)
                if check_value:
                    try:
                        obj_key = run_check(client, spec, settings.check_object_prefix,
                                            request_id)
                        c = CheckOutcome(check_value, True,
                                         f"uploaded {client.object_url(obj_key)}",
                                         client.object_url(obj_key))
                    except ProviderError as exc:
                        c = CheckOutcome(check_value, False, exc.message)
            finally:
                client.close()
            return v, c

        def guarded() -> tuple[Validation | None, CheckOutcome | None]:
            # Whatever escapes a provider (a RecursionError from a pathological Secret, an
            # SDK bug) must still end in a status that says the attempt failed.
            try:
                return work()
            except Exception as exc:
                log.warning("validating ExternalStorage %s/%s raised %s", *key,
                            type(exc).__name__)
                msg = (f"validation failed unexpectedly ({type(exc).__name__}); the operator "
                       "retries with backoff, and its log has details")
                return (Validation(Reason.INTERNAL_ERROR, msg, secret_version=version)
                        if validate else None,
                        CheckOutcome(check_value, False, msg) if check_value else None)

        # A validation identical to one in flight (same namespace, Secrets at the same
        # versions, same requests: reconcile.externalstorage.shared_check_key) takes that
        # request's answer instead of sending its own: a Secret shared by N storages of one
        # bucket is revalidated with one HeadBucket, not N. Only a request already sent
        # and not yet answered is shared, never a remembered result; on-demand checks
        # (which upload their own object) are never shared.
        # Waiting for it holds a worker, so it takes a fair-share slot like a request.
        share_key = es_reconcile.shared_check_key(key[0], spec.to_dict(), version) \
            if validate and not check_value else None
        groups = groups_of(key[0], (self.inv.storages.get(key) or {}).get("spec") or {})
        full = self._fair.try_acquire(groups)
        if full is not None:
            raise _Parked(full)
        self._woken.pop(key, None)
        # given back when the provider thread has ended, not when we stop waiting for it
        slot = provider_calls.Slot(lambda: self._requeue(self._fair.release(groups)))
        flight = None
        try:
            if share_key is not None and (shared := self._flights.get(share_key)) is not None:
                answer = await asyncio.shield(shared)
                if answer is not None:
                    return self._joined(key, spec, answer, version, started), None
            if share_key is not None and share_key not in self._flights:
                flight = asyncio.get_running_loop().create_future()
                self._flights[share_key] = flight
            validation, check = await self._run_provider(key, spec, guarded, version,
                                                         validate, check_value, started, slot)
            if flight is not None:
                flight.set_result(validation)
            return validation, check
        finally:
            if flight is not None:
                if not flight.done():
                    flight.set_result(None)  # no answer: whoever waited checks for itself
                if self._flights.get(share_key or "") is flight:
                    del self._flights[share_key or ""]
            slot.release()

    def _joined(self, key: ObjectKey, spec: ExternalStorageSpec, answer: Validation,
                version: str | None, started: float) -> Validation:
        """This storage's validation from the answer to an identical request in flight."""
        validation = answer
        if answer.ok and answer.capabilities is not None:
            validation = Validation(Reason.VALIDATED,
                                    _success_message(spec, answer.capabilities),
                                    answer.capabilities, version)
        metrics.record_validation(spec.storage_type,
                                  "success" if validation.ok else "failure",
                                  str(validation.reason), time.monotonic() - started)
        metrics.SHARED_CHECKS.labels(storage_type=spec.storage_type).inc()
        log.info("validated ExternalStorage %s/%s: %s (answered by an identical check in "
                 "flight)", *key, validation.reason)
        return validation

    async def _run_provider(
            self, key: ObjectKey, spec: ExternalStorageSpec,
            guarded: Callable[[], tuple[Validation | None, CheckOutcome | None]],
            version: str | None, validate: bool, check_value: str | None, started: float,
            slot: provider_calls.Slot) -> tuple[Validation | None, CheckOutcome | None]:
        # a total deadline that closes the call's connections (provider_calls.py)
        seconds = self.settings.provider_deadline
        answer = await provider_calls.run(self._providers, guarded, seconds, slot)
        if answer is not None:
            validation, check = answer
        else:
            msg = provider_calls.abandoned_message(seconds)
            validation = Validation(Reason.TIMEOUT, msg, secret_version=version) \
                if validate else None
            check = CheckOutcome(check_value, False, msg) if check_value else None
        if validation is not None:
            metrics.record_validation(
                spec.storage_type, "success" if validation.ok else "failure",
                str(validation.reason), time.monotonic() - started)
            log.info("validated ExternalStorage %s/%s: %s", *key, validation.reason)
        return validation, check

    async def reconcile_call_type(self, key: ObjectKey) -> None:
        obj = self.inv.call_types.get(key)
        if obj is None:
            return
        target, source = ct_reconcile.storage_target(
            key[0], (obj.get("spec") or {}).get("externalStorage"), *self.platform)
        uid = uid_of(obj)
        state = self._call_type_state.of(key, uid)
        actual: Mapping[str, Any] = obj.get("status") or {}
        status = actual if state is None or state.written is None else state.written
        now = dt.datetime.now(dt.UTC)
        storage = self.inv.storages.get(target)
        created = ct_reconcile.created_at(obj)
        desired = ct_reconcile.desired_status(
            status, generation=int(_meta(obj).get("generation") or 0), target=target,
            source=source, storage=storage, now=now, created=created)
        if storage is None and created is not None:
            grace_left = (created + ct_reconcile.NOT_FOUND_GRACE - now).total_seconds()
            if grace_left > 0:  # look again when a missing storage starts to matter
                self.call_types.add(key, "grace", grace_left + 0.1)
        if desired == actual:
            if state is not None:
                state.written = desired
            return
        updated = await self.kube.write_status(CALLTYPE_PLURAL, *key, uid, desired)
        if (state := self._call_type_state.of(key, uid)) is not None:
            state.written = dict(updated.get("status") or {})
        self.on_call_type_event("MODIFIED", updated)
        await self.events.post(obj, ct_reconcile.call_type_events(status, desired))


def _describe(exc: BaseException) -> str:
    """An exception for a log line or status: its type and, for API errors, the HTTP
    status; never its text, which may quote a request body."""
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if isinstance(status, int) else "")


def _settled(status: Mapping[str, Any], generation: int, used_by: tuple[str, ...]) -> bool:
    """The status already answers a reference-only round: a final Ready for this
    generation (not Validating), the users as they are, and no deletion waiting. A full
    round would compute this very status and write nothing."""
    conditions = status.get("conditions") or []
    ready = ready_condition_for(conditions, generation)
    return ready is not None and ready.get("status") in ("True", "False") and \
        status.get("observedGeneration") == generation and \
        status.get("usedBy") == list(used_by[:es_reconcile.USED_BY_SAMPLE]) and \
        status.get("usedByCount") == len(used_by) and \
        not any(c.get("type") == "DeletionBlocked" for c in conditions)


def _parse_datetime(value: object) -> dt.datetime | None:
    stamp = _parse_time(value)
    return dt.datetime.fromtimestamp(stamp, dt.UTC) if stamp is not None else None


def _success_message(spec: ExternalStorageSpec, caps: Capabilities) -> str:
    if spec.access_mode == "WriteOnly":
        prefixes = sorted(set(effective_prefixes(spec).values()))
        shown = ", ".join(f"{p}/" if p else "(bucket root)" for p in prefixes)
        return f"probe writes to {spec.bucket} succeeded under: {shown}"
    return f"bucket {spec.bucket} is reachable with these credentials"
