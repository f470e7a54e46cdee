"""Processing: the rounds the workers run, one key at a time per queue.

A storage round gathers its inputs (the object as the inventory holds it, what the operator
last wrote, the CallTypes that use it), keeps the in-use finalizer right, asks the pure
``reconcile`` functions what to do, runs the provider call if one is due
(``validating``), and writes the status that follows through the one exit point
(``status``). A CallType round resolves its storage and writes its status the same way.
A round's failure is counted, said in status, and retried with backoff; it never stops
its worker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from callstorage import metrics
from callstorage.api import InvalidSpecError
from callstorage.api.prefixes import effective_prefixes
from callstorage.engine.intake import Intake
from callstorage.engine.queueing import CHECK, REFS, SECRET_GONE, VALIDATE, WRITE, Parked, Queues
from callstorage.engine.status import StatusWriter
from callstorage.engine.validating import Validator
from callstorage.eventposting import EventPoster
from callstorage.fencing import NotLeader
from callstorage.inventory import Inventory, ObjectKey
from callstorage.kube import Kube, ObjectGone
from callstorage.objectstate import ObjectState, Unwritten, uid_of
from callstorage.reconcile import calltype as ct_reconcile
from callstorage.reconcile import externalstorage as es_reconcile
from callstorage.reconcile import outcome
from callstorage.reconcile.externalstorage import CheckOutcome, Observed, Validation
from callstorage.reconcile.outcome import describe_error
from callstorage.reconcile.plan import (
    announces,
    finalizers_wanted,
    meta_of,
    pending_check,
    settled,
    used_by_names,
)
from callstorage.reconcile.schedule import after_validation
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec, parse_external_storage

log = logging.getLogger(__name__)

# what a storage round's outcome step hands on to its status: the validation and check
# (None: not run), the failures in a row, when the next validation is due
_Result = tuple[Validation | None, CheckOutcome | None, int, dt.datetime | None]


@dataclass
class _Round:
    """One storage round's inputs. ``status`` (the base of the desired status) and
    ``actual`` (what the object has) move on when the round announces its validation."""

    key: ObjectKey
    uid: str
    state: ObjectState | None
    obj: Mapping[str, Any]  # with the base status
    status: Mapping[str, Any]
    actual: Mapping[str, Any]
    generation: int
    deleting: bool
    used_by: tuple[str, ...]
    spec: ExternalStorageSpec | None = None
    invalid: str | None = None
    spec_hash: str = ""

    @property
    def suspended(self) -> bool:
        return self.spec is not None and self.spec.suspend


class StorageRounds:
    """The ExternalStorage workers and their rounds (see the module docstring)."""

    def __init__(self, settings: Settings, kube: Kube, inv: Inventory, queues: Queues,
                 intake: Intake, writer: StatusWriter, validator: Validator,
                 events: EventPoster, rand: Callable[[], float]) -> None:
        self.settings, self.kube, self.inv, self.queues = settings, kube, inv, queues
        self.intake, self.writer, self.validator = intake, writer, validator
        self.events, self.rand = events, rand

    async def worker(self) -> None:
        while True:
            key, reasons = await self.queues.storages.get()
            try:
                await self.storage_round(key, reasons)
            finally:
                self.queues.storages.done(key)
                metrics.set_queue_depth(len(self.queues.storages))

    async def storage_round(self, key: ObjectKey, reasons: set[str]) -> None:
        """One reconcile of one storage; a failure is counted, reported and retried with
        backoff, never allowed to stop the worker."""
        uid = uid_of(self.inv.storages.get(key))
        try:
            await self.reconcile_storage(key, reasons)
            if (state := self.writer.storages.get(key, uid)) is not None:
                state.errors = 0
        except (asyncio.CancelledError, NotLeader):  # NotLeader: the worker stops too
            raise
        except ObjectGone as exc:  # never retried: there is nothing left to write to
            self.intake.forget_gone(exc)
        except Parked as exc:  # queued again when its group has a free slot
            self.queues.park(exc.group, key, reasons)
        except Exception as exc:  # one object's failure must not stop the loop
            metrics.record_reconcile_error("ExternalStorage")
            state = self.writer.storages.of(key, uid)
            n, delay = self.queues.backoff(state)
            log.error("reconciling ExternalStorage %s/%s failed (%d in a row; retry in "
                      "%.0fs): %s", *key, n, delay, describe_error(exc))
            # Retry what was asked; a round whose validation already ran retries only its
            # status write (see ``Unwritten``).
            retry = {WRITE} if state is not None and state.unwritten is not None \
                else (reasons - {CHECK}) or {REFS}
            for reason in retry:
                self.queues.storages.add(key, reason, delay)
            await self._expose_error(key, uid, exc, n, delay)
        finally:
            self.queues.hand_on(key)

    async def _expose_error(self, key: ObjectKey, uid: str, exc: BaseException, n: int,
                            delay: float) -> None:
        """Best effort: say in status that the operator itself is failing on this object."""
        obj = self.inv.storages.get(key)
        if obj is None or uid_of(obj) != uid or isinstance(exc, ObjectGone):
            return
        status = obj.get("status") or {}
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        conditions = outcome.error_conditions(status, describe_error(exc), n, when,
                                              int(meta_of(obj).get("generation") or 0))
        if conditions is None:
            return
        try:
            await self.writer.write_storage(key, uid, {**status, "conditions": conditions})
        except Exception as patch_exc:  # the API itself may be what fails
            log.debug("could not report the failure in status: %s", describe_error(patch_exc))

    def used_by(self, storage: ObjectKey) -> tuple[str, ...]:
        """CallTypes referring to ``storage``: names, or ns/name when in another namespace."""
        return used_by_names(storage, self.inv.call_types_using(storage))

    async def reconcile_storage(self, key: ObjectKey, reasons: set[str]) -> None:
        obj = self.inv.storages.get(key)
        if obj is None:
            return
        uid = uid_of(obj)  # the round is for this object; its result for no other
        state = self.writer.storages.get(key, uid)
        # Computed from what the operator itself last wrote (restoring a status someone
        # else overwrote); the write is compared with what the object has now.
        actual: Mapping[str, Any] = obj.get("status") or {}
        status: Mapping[str, Any] = actual if state is None or state.written is None \
            else state.written
        obj = {**obj, "status": status}
        meta = meta_of(obj)
        rnd = _Round(key, uid, state, obj, status, actual, int(meta.get("generation") or 0),
                     bool(meta.get("deletionTimestamp")), self.used_by(key))
        if not await self._sync_finalizer(rnd):
            return  # the finalizer was removed from a deleted object: it is gone now
        if reasons == {REFS} and status == actual and not rnd.deleting and \
                (state is None or state.unwritten is None) and not pending_check(obj) and \
                settled(status, rnd.generation, rnd.used_by):
            return  # e.g. every storage after a restart: nothing to validate or write
        try:
            rnd.spec = parse_external_storage(obj)
        except InvalidSpecError as exc:
            rnd.invalid = str(exc)
        rnd.spec_hash = es_reconcile.spec_hash(obj.get("spec"))
        result = await self._outcome(rnd, reasons)
        if result is not None:
            await self._finish(rnd, *result)

    async def _sync_finalizer(self, rnd: _Round) -> bool:
        """Keep the in-use finalizer iff some CallType refers to the storage.

        Returns False when the object is about to disappear (nothing more to do).
        """
        wanted = finalizers_wanted(rnd.obj, bool(rnd.used_by), rnd.deleting)
        if wanted is None:
            return True
        rv = str(meta_of(rnd.obj).get("resourceVersion", ""))
        if not await self.kube.set_finalizers(*rnd.key, wanted, rv):
            self.queues.storages.add(rnd.key, REFS, 1.0)  # lost a race: retry on fresh state
        elif rnd.deleting:
            return False
        return True

    async def _outcome(self, rnd: _Round, reasons: set[str]) -> _Result | None:
        """The round's validation and check: a result not written yet, one without the
        provider, or the provider's; None when the result no longer applies."""
        key, state, status = rnd.key, rnd.state, rnd.status
        requested = VALIDATE in reasons
        if SECRET_GONE in reasons and not requested:
            # A namespace being deleted takes its Secrets before (or after) its storages:
            # validating those would only report SecretNotFound on the way out.
            requested = not rnd.deleting and not await self.events.namespace_terminating(key[0])
        wants_validation = es_reconcile.needs_validation(
            status, rnd.generation, rnd.spec_hash, requested)
        check_value = pending_check(rnd.obj)
        log.debug("ExternalStorage %s/%s: round for %s; validate: %s", *key,
                  ",".join(sorted(reasons)), wants_validation)
        failures = int(status.get("consecutiveFailures") or 0)
        unwritten = state.unwritten if state is not None else None
        if unwritten is not None and unwritten.generation == rnd.generation and \
                VALIDATE not in reasons:
            # The last round validated but could not write: write that, don't redo it.
            return unwritten.validation, unwritten.check, unwritten.failures, unwritten.next_at
        if state is not None:
            state.unwritten = None
        validation, check = es_reconcile.offline_outcome(rnd.invalid, rnd.suspended,
                                                         wants_validation, check_value)
        if rnd.spec is not None and not rnd.suspended and (wants_validation or check_value):
            if wants_validation:
                rnd.status, rnd.actual = await self._announce_validation(rnd, failures)
            validation, check = await self.validator.validate(key, rnd.spec, wants_validation,
                                                              check_value)
            if not self._result_applies(key, rnd.uid, rnd.spec_hash):
                return None
            if validation is not None:
                metrics.set_storage_ready(*key, validation.ok)
        failures, delay, next_at = after_validation(
            rnd.spec, validation, failures, rnd.status, self.settings.retry_base,
            self.settings.retry_max, self.rand, dt.datetime.now(dt.UTC))
        if delay is not None:
            self.queues.storages.add(key, VALIDATE, delay)
        if (validation is not None or check is not None) and \
                (state := self.writer.storages.of(key, rnd.uid)) is not None:
            state.unwritten = Unwritten(rnd.generation, validation, check, failures, next_at)
        return validation, check, failures, next_at

    async def _finish(self, rnd: _Round, validation: Validation | None,
                      check: CheckOutcome | None, failures: int,
                      next_at: dt.datetime | None) -> None:
        """The status that follows from the round, written if it differs; its events."""
        observed = Observed(
            generation=rnd.generation,
            now=dt.datetime.now(dt.UTC),
            effective_prefixes=effective_prefixes(rnd.spec) if rnd.spec is not None else None,
            suspended=rnd.suspended,
            validation=validation,
            check=check,
            used_by=rnd.used_by,
            blocked_deletion_by=rnd.used_by if rnd.deleting else (),
            next_validation=next_at,
            consecutive_failures=failures,
            spec_hash=rnd.spec_hash,
        )
        desired = es_reconcile.desired_status(rnd.status, observed)
        if desired != rnd.actual:
            await self.writer.write_storage(rnd.key, rnd.uid, desired)
        else:
            self.writer.storage_unchanged(rnd.key, rnd.uid, rnd.actual)  # equal to desired
        if (state := self.writer.storages.get(rnd.key, rnd.uid)) is not None:
            state.unwritten = None
        await self.events.post(rnd.obj, es_reconcile.storage_events(rnd.status, desired, check))

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
            self.queues.storages.add(key, REFS)
        return False

    async def _announce_validation(self, rnd: _Round, failures: int) -> \
            tuple[Mapping[str, Any], Mapping[str, Any]]:
        """Before the first network call for a generation: Ready=Unknown (Validating) and
        Reconciling=True, so nobody mistakes the old result for the new spec's.

        Returns the (base, actual) statuses for the rest of the round.
        """
        status: Mapping[str, Any] = rnd.obj.get("status") or {}
        if not announces(status, rnd.generation) or rnd.spec is None:
            return status, rnd.actual  # a periodic or rotation re-check keeps its answer
        observed = Observed(
            generation=rnd.generation, now=dt.datetime.now(dt.UTC),
            effective_prefixes=effective_prefixes(rnd.spec), used_by=rnd.used_by,
            blocked_deletion_by=rnd.used_by if rnd.deleting else (),
            consecutive_failures=failures, spec_hash=None)
        desired = es_reconcile.desired_status(status, observed)
        if desired == rnd.actual:
            return desired, rnd.actual
        updated = await self.writer.write_storage(rnd.key, rnd.uid, desired)
        state = self.writer.storages.get(rnd.key, rnd.uid)
        written = state.written if state is not None and state.written is not None \
            else dict(updated.get("status") or {})
        return written, written


class CallTypeRounds:
    """The CallType workers and their rounds."""

    def __init__(self, inv: Inventory, queues: Queues, intake: Intake, writer: StatusWriter,
                 events: EventPoster, platform: ObjectKey) -> None:
        self.inv, self.queues, self.intake, self.writer = inv, queues, intake, writer
        self.events, self.platform = events, platform

    async def worker(self) -> None:
        while True:
            key, _ = await self.queues.call_types.get()
            uid = uid_of(self.inv.call_types.get(key))
            try:
                await self.reconcile_call_type(key)
                if (state := self.writer.call_types.get(key, uid)) is not None:
                    state.errors = 0
            except (asyncio.CancelledError, NotLeader):
                raise
            except ObjectGone as exc:
                self.intake.forget_gone(exc)
            except Exception as exc:
                metrics.record_reconcile_error("CallType")
                n, delay = self.queues.backoff(self.writer.call_types.of(key, uid))
                log.error("reconciling CallType %s/%s failed (%d in a row; retry in %.0fs): "
                          "%s", *key, n, delay, describe_error(exc))
                self.queues.call_types.add(key, "retry", delay)
            finally:
                self.queues.call_types.done(key)

    async def reconcile_call_type(self, key: ObjectKey) -> None:
        obj = self.inv.call_types.get(key)
        if obj is None:
            return
        target, source = ct_reconcile.storage_target(
            key[0], (obj.get("spec") or {}).get("externalStorage"), *self.platform)
        uid = uid_of(obj)
        state = self.writer.call_types.of(key, uid)
        actual: Mapping[str, Any] = obj.get("status") or {}
        status = actual if state is None or state.written is None else state.written
        now = dt.datetime.now(dt.UTC)
        storage = self.inv.storages.get(target)
        created = ct_reconcile.created_at(obj)
        desired = ct_reconcile.desired_status(
            status, generation=int(meta_of(obj).get("generation") or 0), target=target,
            source=source, storage=storage, now=now, created=created)
        if storage is None and created is not None:
            grace_left = (created + ct_reconcile.NOT_FOUND_GRACE - now).total_seconds()
            if grace_left > 0:  # look again when a missing storage starts to matter
                self.queues.call_types.add(key, "grace", grace_left + 0.1)
        if desired == actual:
            self.writer.call_type_unchanged(key, uid, desired)
            return
        await self.writer.write_call_type(key, uid, desired)
        await self.events.post(obj, ct_reconcile.call_type_events(status, desired))
