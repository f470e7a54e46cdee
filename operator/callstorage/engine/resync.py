"""Resync: a LIST of both kinds replacing the inventory (client-go's Replace), and when.

A watch that relists (after 410 Gone, or a reconnect) replays the live objects only:
whatever was deleted in the gap is found by our own LIST, which also emits the deletions
for what vanished. A resync runs every ``resync_interval``, soon after a relist is seen,
and when a write's 404 is not followed by its DELETED event (``intake``); never more often
than RESYNC_MIN_GAP apart, and backing off while the API server fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from callstorage.api import CALLTYPE_PLURAL, EXTERNALSTORAGE_PLURAL
from callstorage.engine.queueing import VALIDATE, Queues
from callstorage.inventory import Inventory, vanished
from callstorage.kube import Kube
from callstorage.reconcile.outcome import describe_error
from callstorage.reconcile.plan import key_of, meta_of
from callstorage.secretcache import SecretCache
from callstorage.settings import Settings

log = logging.getLogger(__name__)

# After a 404 a resync follows this soon, and never more often than
# RESYNC_MIN_GAP apart (a storm of 404s makes one LIST per kind, not one each).
RESYNC_SETTLE = 1.0
RESYNC_MIN_GAP = 5.0


def with_kind(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Items of a LIST carry no kind; events posted on them need it."""
    from callstorage.api import GROUP, VERSION

    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, **obj}


def _number(rv: str | None) -> int | None:
    """A resourceVersion as a number (etcd revisions are), None if not one."""
    return int(rv) if isinstance(rv, str) and rv.isdigit() else None


class ResyncSchedule:
    """When the next resync is due: the interval, and requests (a 404 whose DELETED event
    never came). A relist needs none: it corrects its own kind and namespace
    (``Intake.on_relisted``)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.started_at: float | None = None
        self.due_at = float("inf")
        self.last = float("-inf")
        self.failures = 0
        self.wake = asyncio.Event()

    def start(self) -> None:
        """Our own start-up LIST is done: the interval runs from now."""
        self.started_at = time.monotonic()
        self.due_at = self.started_at + self.interval

    def request(self, delay: float = RESYNC_SETTLE) -> None:
        """Resync ``delay`` seconds from now (or as soon as the minimum gap allows)."""
        at = max(time.monotonic() + delay, self.last + RESYNC_MIN_GAP)
        if at < self.due_at:
            self.due_at = at
            self.wake.set()

    async def until_due(self) -> None:
        """Return when a resync is due, having scheduled the one after it."""
        while (wait := self.due_at - time.monotonic()) > 0:
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)
        self.last = time.monotonic()
        self.due_at = self.last + self.interval

    def failed(self, exc: Exception) -> None:
        """The API may be down: try again, backing off."""
        self.failures += 1
        retry = min(self.interval, RESYNC_MIN_GAP * 2 ** min(self.failures, 10))
        log.warning("resync failed (%s); next attempt in %.0fs", describe_error(exc), retry)
        self.due_at = min(self.due_at, time.monotonic() + retry)


class Feeds(Protocol):
    """Where a resync's findings enter: as the watches' events would (``intake``)."""

    def on_storage_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None: ...

    def on_call_type_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None: ...

    def on_secret_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None: ...

    def deletions_covered(self) -> None: ...


class Resync:
    """The resync itself (see the module docstring)."""

    def __init__(self, settings: Settings, kube: Kube, inv: Inventory, feeds: Feeds,
                 schedule: ResyncSchedule, queues: Queues, secrets: SecretCache,
                 namespaces: list[str]) -> None:
        self.settings, self.kube, self.inv = settings, kube, inv
        self.feeds, self.schedule, self.queues, self.secrets = feeds, schedule, queues, secrets
        self.namespaces = namespaces
        self.count = 0

    async def loop(self) -> None:
        while True:
            await self.schedule.until_due()
            try:
                await self.run()
                self.schedule.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.schedule.failed(exc)

    async def run(self) -> None:
        """LIST ExternalStorages and CallTypes and make the inventory match: newer objects
        go through the normal event path, vanished ones are forgotten exactly as a DELETED
        event would forget them; then the referenced Secrets (``_secrets``)."""
        self.count += 1
        self.feeds.deletions_covered()
        # a relist may have hidden a deletion of a Secret no storage referred to yet
        self.secrets.recent.clear()
        for plural, kind in ((EXTERNALSTORAGE_PLURAL, "ExternalStorage"),
                             (CALLTYPE_PLURAL, "CallType")):
            items, list_rv = await self.kube.list_snapshot(plural, self.namespaces)
            storages = plural == EXTERNALSTORAGE_PLURAL
            feed = self.feeds.on_storage_event if storages else self.feeds.on_call_type_event
            held = self.inv.storages if storages else self.inv.call_types
            for obj in items:
                feed("MODIFIED", with_kind(obj, kind))
            for key in vanished(held, (key_of(o) for o in items), list_rv):
                log.info("%s %s/%s vanished while the watch was not looking; forgetting it",
                         kind, *key)
                last = held[key]
                feed("DELETED", {**last, "metadata": {**meta_of(last),
                                                      "resourceVersion": list_rv}})
        await self._secrets()

    async def _secrets(self) -> None:
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
                        self.feeds.on_secret_event("DELETED", {"metadata": {
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
                            self.queues.storages.add(storage, VALIDATE)
