"""The controller of one operator process: its parts, wired together, started and stopped.

The watches feed events in (``on_*_event``); everything else is one of the engine's parts,
named after kopf's reactor (``callstorage.engine``):

- ``intake``: events -> inventory -> queues; deletions, and 404s awaiting their DELETED
- ``queueing``: the work queues, fair shares of the provider workers, retry delays
- ``processing``: the storage and CallType rounds the workers run
- ``validating``: a round's provider call, in the thread pool, under a total deadline
- ``flights``: identical validations in flight share one request
- ``status``: what the operator last wrote (per uid), the one exit point of every write
- ``resync``: the LIST that replaces the inventory, and when it is due

Decisions are the pure functions of ``callstorage.reconcile``; Secrets come from
``secretcache``, Events go out through ``eventposting``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from typing import Any

from callstorage.api import CALLTYPE_PLURAL, EXTERNALSTORAGE_PLURAL
from callstorage.engine.intake import Intake
from callstorage.engine.processing import CallTypeRounds, StorageRounds
from callstorage.engine.queueing import Queues
from callstorage.engine.resync import Resync, ResyncSchedule, with_kind
from callstorage.engine.status import StatusWriter
from callstorage.engine.validating import ProviderThreads, Validator
from callstorage.eventposting import EventPoster
from callstorage.inventory import Inventory, ObjectKey
from callstorage.kube import Kube
from callstorage.objectstate import ObjectStates
from callstorage.secretcache import SecretCache
from callstorage.settings import Settings
from callstorage.workqueue import WorkQueue

CALL_TYPE_WORKERS = 4


class Controller:
    """The parts of one operator process, and their lifecycle."""

    def __init__(self, settings: Settings, kube: Kube,
                 rand: Callable[[], float] = random.random) -> None:
        self.settings, self.kube = settings, kube
        self.inv = Inventory()
        self.platform: ObjectKey = (settings.namespace, settings.platform_storage)
        self.queues = Queues(settings, rand)
        self.threads = ProviderThreads(settings.max_concurrent_validations)
        self.secrets = SecretCache(kube, self.inv, settings)
        self.events = EventPoster(kube)  # quiet in namespaces being deleted
        # per object (uid): the status last written, a result not yet written, failures
        # of the operator itself, restores (objectstate.py)
        self.storage_state = ObjectStates(self.inv.storages)
        self.call_type_state = ObjectStates(self.inv.call_types)
        self.resync_schedule = ResyncSchedule(settings.resync_interval)
        self.intake = Intake(self.inv, self.queues, self.storage_state, self.call_type_state,
                             self.resync_schedule, self.secrets, self.threads, self.platform,
                             settings.retry_base, rand)
        self.resyncer = Resync(settings, kube, self.inv, self.intake, self.resync_schedule,
                               self.queues, self.secrets, self.watched_namespaces())
        self.writer = StatusWriter(kube, self.inv, self.storage_state,
                                   self.call_type_state, self.intake)
        self.validator = Validator(settings, self.inv, self.secrets, self.queues,
                                   self.threads)
        self.storage_rounds = StorageRounds(settings, kube, self.inv, self.queues,
                                            self.intake, self.writer, self.validator,
                                            self.events, rand)
        self.call_type_rounds = CallTypeRounds(self.inv, self.queues, self.intake,
                                               self.writer, self.events, self.platform)
        # plural -> resourceVersion of the start-up LIST: the watches resume from it
        self.listed_versions: dict[str, str | None] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- the watches' entry points, and the queues ----------------------------------------
    def on_storage_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        self.intake.on_storage_event(event_type, obj)

    def on_relisted(self, kind: str, namespace: str | None, listed: set[ObjectKey],
                    list_rv: str | None) -> None:
        self.intake.on_relisted(kind, namespace, listed, list_rv)

    def on_call_type_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        self.intake.on_call_type_event(event_type, obj)

    def on_secret_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        self.intake.on_secret_event(event_type, obj)

    @property
    def storages(self) -> WorkQueue[ObjectKey]:
        return self.queues.storages

    @property
    def call_types(self) -> WorkQueue[ObjectKey]:
        return self.queues.call_types

    # --- rounds, and resyncs, run by hand (tests, tools) ----------------------------------
    async def storage_round(self, key: ObjectKey, reasons: set[str]) -> None:
        await self.storage_rounds.storage_round(key, reasons)

    async def reconcile_storage(self, key: ObjectKey, reasons: set[str]) -> None:
        await self.storage_rounds.reconcile_storage(key, reasons)

    async def reconcile_call_type(self, key: ObjectKey) -> None:
        await self.call_type_rounds.reconcile_call_type(key)

    def used_by(self, storage: ObjectKey) -> tuple[str, ...]:
        return self.storage_rounds.used_by(storage)

    async def resync(self) -> None:
        await self.resyncer.run()

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
            self.intake.on_storage_event(None, with_kind(obj, "ExternalStorage"))
        del items
        await self.threads.loaded()  # the listed storages' SDKs, before any worker needs one
        items, self.listed_versions[CALLTYPE_PLURAL] = await self.kube.list_snapshot(
            CALLTYPE_PLURAL, namespaces)
        for obj in items:
            self.intake.on_call_type_event(None, with_kind(obj, "CallType"))
        del items
        n = self.settings.max_concurrent_validations
        self._tasks += [asyncio.create_task(self.storage_rounds.worker(), name=f"storage-{i}")
                        for i in range(n)]
        self._tasks += [asyncio.create_task(self.call_type_rounds.worker(),
                                            name=f"calltype-{i}")
                        for i in range(CALL_TYPE_WORKERS)]
        self.resync_schedule.start()
        self._tasks.append(asyncio.create_task(self.resyncer.loop(), name="resync"))

    async def stop(self) -> None:
        self.queues.close()
        for task in self._tasks:
            task.cancel()
        self.intake.deletions_covered()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.threads.shutdown()

    def bookkeeping(self) -> dict[str, int]:
        """Entries in each map the controller keeps: flat under churn, and back where
        they were once the objects are gone (and their tombstones expired)."""
        return {**self.inv.sizes(), "storage_state": len(self.storage_state),
                "call_type_state": len(self.call_type_state),
                "recent_secrets": len(self.secrets.recent),
                "secret_reads": len(self.secrets.reads),
                "terminating": len(self.events.terminating),
                "flights": len(self.validator.flights),
                "unseen_deletions": len(self.intake.unseen_deletions),
                "woken": len(self.queues.woken), "parked": self.queues.fair.parked(),
                "storage_queue": self.queues.storages.entries(),
                "call_type_queue": self.queues.call_types.entries()}

    def watched_namespaces(self) -> list[str]:
        """Namespaces to watch; empty = cluster-wide. The platform one is always in."""
        ns = list(self.settings.watch_namespaces)
        if ns and self.settings.namespace not in ns:
            ns.append(self.settings.namespace)
        return ns
