"""The reconcile loops: one work queue per kind, a bounded pool of workers each.

kopf handlers only feed events in (``on_*_event``); workers gather inputs, call the pure
``reconcile`` functions, run provider calls in a thread pool, and write status when it
changed. One slow or dead endpoint occupies one worker for at most its timeouts; the
others go on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from callstorage import metrics
from callstorage.api import (
    CALLTYPE_PLURAL,
    CHECK_ANNOTATION,
    EXTERNALSTORAGE_PLURAL,
    IN_USE_FINALIZER,
    ExternalStorageSpec,
    InvalidSpecError,
    parse_external_storage,
)
from callstorage.api.capabilities import Capabilities
from callstorage.api.conditions import RECONCILING, make_condition, set_condition
from callstorage.api.prefixes import effective_prefixes
from callstorage.api.reasons import Reason
from callstorage.inventory import CachedSecret, Inventory, ObjectKey
from callstorage.kube import Kube, decode_secret
from callstorage.providers import (
    build_client,
    load_client_modules,
    run_check,
    validate_storage,
)
from callstorage.providers.base import ProviderError, ProviderInputs
from callstorage.reconcile import calltype as ct_reconcile
from callstorage.reconcile import externalstorage as es_reconcile
from callstorage.reconcile.externalstorage import CheckOutcome, Event, Observed, Validation
from callstorage.reconcile.schedule import next_delay, startup_delay
from callstorage.settings import Settings
from callstorage.storagetypes import PROVIDERS
from callstorage.workqueue import WorkQueue

log = logging.getLogger(__name__)

VALIDATE, CHECK, REFS = "validate", "check", "refs"
# a round that failed after its validation ran: only the status write is retried
WRITE = "write"
SECRET, STORAGE, CALL_TYPE = "secret", "storage", "calltype"  # kinds, for tombstones
CALL_TYPE_WORKERS = 4


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta: Mapping[str, Any] = obj.get("metadata") or {}
    return meta


def _key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = _meta(obj)
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def credentials_secret(spec: ExternalStorageSpec) -> str | None:
    """Name of the credentials Secret the spec refers to (None: ambient credentials)."""
    ref = spec.credentials_secret_ref
    return ref.name if ref is not None else None


def pending_check(obj: Mapping[str, Any]) -> str | None:
    """The check-annotation value not yet answered in ``status.lastCheck``, if any."""
    value = (_meta(obj).get("annotations") or {}).get(CHECK_ANNOTATION)
    if not value:
        return None
    done = ((obj.get("status") or {}).get("lastCheck") or {}).get("requestedAt")
    return None if value == done else str(value)


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
        # failures of the operator itself (not of a storage), per key: drive the backoff
        self._errors: dict[tuple[str, ObjectKey], int] = {}
        # a validation whose status write failed: written on the retry, not redone
        self._unwritten: dict[ObjectKey, tuple[int, Validation | None, CheckOutcome | None,
                                               int, dt.datetime | None]] = {}

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Learn every object and reference first, then start the workers.

        Without the full list of CallTypes, a storage could look unreferenced right
        after a restart and lose its in-use finalizer while being deleted.
        """
        await asyncio.get_running_loop().run_in_executor(self._providers, load_client_modules)
        namespaces = self.watched_namespaces()
        for obj in await self.kube.list_objects(EXTERNALSTORAGE_PLURAL, namespaces):
            self.on_storage_event(None, _with_kind(obj, "ExternalStorage"))
        for obj in await self.kube.list_objects(CALLTYPE_PLURAL, namespaces):
            self.on_call_type_event(None, _with_kind(obj, "CallType"))
        n = self.settings.max_concurrent_validations
        self._tasks += [asyncio.create_task(self._storage_worker(), name=f"storage-{i}")
                        for i in range(n)]
        self._tasks += [asyncio.create_task(self._call_type_worker(), name=f"calltype-{i}")
                        for i in range(CALL_TYPE_WORKERS)]

    async def stop(self) -> None:
        self.storages.close()
        self.call_types.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._providers.shutdown(wait=False, cancel_futures=True)

    def watched_namespaces(self) -> list[str]:
        """Namespaces to watch; empty = cluster-wide. The platform one is always in."""
        ns = list(self.settings.watch_namespaces)
        if ns and self.settings.namespace not in ns:
            ns.append(self.settings.namespace)
        return ns

    # --- events -------------------------------------------------------------------------
    def _accept(self, kind: str, key: ObjectKey, held: Mapping[str, Any] | None,
                obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` is newer than what we hold (and not older than its deletion)."""
        rv = _meta(obj).get("resourceVersion")
        held_rv = _meta(held).get("resourceVersion") if held is not None else None
        return not self.inv.versions.is_stale(kind, key, rv, held_rv)

    def on_storage_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        if event_type == "DELETED":
            self.inv.versions.bury(STORAGE, key, _meta(obj).get("resourceVersion"))
            self.inv.forget_storage(key)
            self.storages.forget(key)
            self._unwritten.pop(key, None)
            self._errors.pop((STORAGE, key), None)
            metrics.forget_storage(*key)
            self._touch_call_types(key)
            return
        old = self.inv.storages.get(key)
        if not self._accept(STORAGE, key, old, obj):
            return
        new = dict(obj)
        self.inv.storages[key] = new
        self.inv.set_secret_refs(key, _secret_refs(new))
        meta, status = _meta(new), new.get("status") or {}
        generation = meta.get("generation")
        if old is None:
            if status.get("observedGeneration") != generation:
                self.storages.add(key, REFS)  # the round decides whether to validate
            else:
                self.storages.add(key, REFS)
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
        if pending_check(new):
            self.storages.add(key, CHECK)
        if old is None or es_reconcile.ready_state(old.get("status")) != \
                es_reconcile.ready_state(status) or old.get("spec") != new.get("spec") or \
                _meta(old).get("generation") != generation or \
                (old.get("status") or {}).get("conditions") != status.get("conditions") or \
                bool(_meta(old).get("deletionTimestamp")) != bool(meta.get("deletionTimestamp")):
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
        if event_type == "DELETED":
            self.inv.versions.bury(CALL_TYPE, key, _meta(obj).get("resourceVersion"))
            self.inv.call_types.pop(key, None)
            self.call_types.forget(key)
            self._errors.pop((CALL_TYPE, key), None)
            old_target = self.inv.set_call_type_target(key, None)
            if old_target is not None:
                self.storages.add(old_target, REFS)
            return
        old = self.inv.call_types.get(key)
        if not self._accept(CALL_TYPE, key, old, obj):
            return
        new = dict(obj)
        self.inv.call_types[key] = new
        target, _ = ct_reconcile.storage_target(
            key[0], (new.get("spec") or {}).get("externalStorage"), *self.platform)
        previous = self.inv.set_call_type_target(key, target)
        if previous != target:
            self.storages.add(target, REFS)
            if previous is not None:
                self.storages.add(previous, REFS)
        status = new.get("status") or {}
        if old is None or status.get("observedGeneration") != _meta(new).get("generation"):
            self.call_types.add(key, "reconcile")

    def on_secret_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        rv = str(_meta(obj).get("resourceVersion", ""))
        if event_type == "DELETED":
            self.inv.versions.bury(SECRET, key, rv)
        if not self.inv.secret_is_referenced(key):
            return  # never keep data of Secrets no storage needs
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
            if event_type == "DELETED" or rv not in seen.split(","):
                self.storages.add(storage, VALIDATE)

    def _touch_call_types(self, storage: ObjectKey) -> None:
        for ct in self.inv.call_types_using(storage):
            self.call_types.add(ct, "storage-changed")

    # --- workers ------------------------------------------------------------------------
    def _backoff(self, kind: str, key: ObjectKey) -> tuple[int, float]:
        """Count one more failure of the operator's own round; the delay before the next."""
        n = self._errors.get((kind, key), 0) + 1
        self._errors[(kind, key)] = n
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
        try:
            await self.reconcile_storage(key, reasons)
            self._errors.pop((STORAGE, key), None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one object's failure must not stop the loop
            metrics.record_reconcile_error("ExternalStorage")
            n, delay = self._backoff(STORAGE, key)
            log.error("reconciling ExternalStorage %s/%s failed (%d in a row; retry in "
                      "%.0fs): %s", *key, n, delay, _describe(exc))
            # Retry what was asked; a round whose validation already ran retries only its
            # status write (see ``_unwritten``).
            retry = {WRITE} if key in self._unwritten else (reasons - {CHECK}) or {REFS}
            for reason in retry:
                self.storages.add(key, reason, delay)
            await self._expose_error(key, exc, n, delay)

    async def _expose_error(self, key: ObjectKey, exc: BaseException, n: int,
                            delay: float) -> None:
        """Best effort: say in status that the operator itself is failing on this object."""
        obj = self.inv.storages.get(key)
        if obj is None:
            return
        status = obj.get("status") or {}
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        condition = make_condition(
            RECONCILING, "True", "ReconcileError",
            f"the operator failed to reconcile this object ({_describe(exc)}); attempt "
            f"{n + 1} at {es_reconcile.rfc3339(when)}",
            int(_meta(obj).get("generation") or 0))
        conditions = set_condition(status.get("conditions"), condition)
        if conditions == status.get("conditions"):
            return
        try:
            await self.kube.patch_status(EXTERNALSTORAGE_PLURAL, key[0], key[1],
                                         {"conditions": conditions})
        except Exception as patch_exc:  # the API itself may be what fails
            log.debug("could not report the failure in status: %s", _describe(patch_exc))

    async def _call_type_worker(self) -> None:
        while True:
            key, _ = await self.call_types.get()
            try:
                await self.reconcile_call_type(key)
                self._errors.pop((CALL_TYPE, key), None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.record_reconcile_error("CallType")
                n, delay = self._backoff(CALL_TYPE, key)
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

    async def reconcile_storage(self, key: ObjectKey, reasons: set[str]) -> None:
        obj = self.inv.storages.get(key)
        if obj is None:
            return
        meta, status = _meta(obj), obj.get("status") or {}
        generation = int(meta.get("generation") or 0)
        deleting = bool(meta.get("deletionTimestamp"))
        used_by = self.used_by(key)

        if not await self._sync_finalizer(key, obj, used_by, deleting):
            return  # the finalizer was removed from a deleted object: it is gone now

        spec: ExternalStorageSpec | None = None
        invalid: str | None = None
        try:
            spec = parse_external_storage(obj)
        except InvalidSpecError as exc:
            invalid = str(exc)
        suspended = spec is not None and spec.suspend
        current_hash = es_reconcile.spec_hash(obj.get("spec"))
        wants_validation = es_reconcile.needs_validation(
            status, generation, current_hash, VALIDATE in reasons)
        check_value = pending_check(obj)
        log.debug("ExternalStorage %s/%s: round for %s; validate: %s", *key,
                  ",".join(sorted(reasons)), wants_validation)
        failures = int(status.get("consecutiveFailures") or 0)
        validation: Validation | None = None
        check: CheckOutcome | None = None
        next_at: dt.datetime | None = None

        unwritten = self._unwritten.get(key)
        if unwritten is not None and unwritten[0] == generation and VALIDATE not in reasons:
            # The last round validated but could not write: write that, don't redo it.
            _, validation, check, failures, next_at = unwritten
        else:
            self._unwritten.pop(key, None)
            if invalid is not None:
                # reported once per generation; reference-only rounds keep the status
                if wants_validation:
                    validation = Validation(Reason.INVALID_SPEC, invalid)
                if check_value:
                    check = CheckOutcome(check_value, False, f"not run: the spec is invalid: "
                                                             f"{invalid}")
            elif spec is not None and suspended:
                if check_value:
                    check = CheckOutcome(check_value, False,
                                         "not run: the storage is suspended (spec.suspend)")
            elif spec is not None and (wants_validation or check_value):
                if wants_validation:
                    status = await self._announce_validation(key, obj, spec, used_by, failures)
                validation, check = await self._validate(key, spec, wants_validation,
                                                         check_value)
                if validation is not None:
                    metrics.set_storage_ready(*key, validation.ok)

            if validation is not None:
                failures = es_reconcile.failures_after(failures, validation)
                interval = spec.interval_seconds if spec is not None else 0.0
                delay = next_delay(validation.reason, interval, failures,
                                   self.settings.retry_base, self.settings.retry_max,
                                   self.rand)
                if delay is not None:
                    self.storages.add(key, VALIDATE, delay)
                    next_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
            elif status.get("nextValidationAt") and not suspended:
                next_at = _parse_datetime(status["nextValidationAt"])
            if validation is not None or check is not None:
                self._unwritten[key] = (generation, validation, check, failures, next_at)

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
        patch = es_reconcile.status_patch(status, desired)
        if patch is not None:
            updated = await self.kube.patch_status(EXTERNALSTORAGE_PLURAL, key[0], key[1],
                                                   patch)
            if updated is not None:
                self.on_storage_event("MODIFIED", updated)
        self._unwritten.pop(key, None)
        await self._post(obj, es_reconcile.storage_events(status, desired, check))

    async def _announce_validation(self, key: ObjectKey, obj: Mapping[str, Any],
                                   spec: ExternalStorageSpec, used_by: tuple[str, ...],
                                   failures: int) -> Mapping[str, Any]:
        """Before the first network call for a generation: Ready=Unknown (Validating) and
        Reconciling=True, so nobody mistakes the old result for the new spec's."""
        status: Mapping[str, Any] = obj.get("status") or {}
        generation = int(_meta(obj).get("generation") or 0)
        if es_reconcile.ready_state(status)[0] != "Unknown" and any(
                c.get("type") == "Ready" and c.get("observedGeneration") == generation
                for c in status.get("conditions") or []):
            return status  # a periodic or rotation re-check: Ready keeps its answer
        observed = Observed(
            generation=generation, now=dt.datetime.now(dt.UTC),
            effective_prefixes=effective_prefixes(spec), used_by=used_by,
            blocked_deletion_by=used_by if _meta(obj).get("deletionTimestamp") else (),
            consecutive_failures=failures, spec_hash=None)
        desired = es_reconcile.desired_status(status, observed)
        patch = es_reconcile.status_patch(status, desired)
        if patch is None:
            return status
        updated = await self.kube.patch_status(EXTERNALSTORAGE_PLURAL, key[0], key[1], patch)
        if updated is not None:
            self.on_storage_event("MODIFIED", updated)
            return updated.get("status") or desired
        return desired

    async def _post(self, obj: Mapping[str, Any], events: list[Event]) -> None:
        for event in events:
            await self.kube.post_event(obj, event.type, event.reason, event.message)

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

    async def _inputs(self, namespace: str, spec: ExternalStorageSpec) -> \
            tuple[ProviderInputs, str | None]:
        """Read the referenced Secrets (own namespace only) into provider inputs."""
        versions: list[str] = []
        secret_data: Mapping[str, bytes] | None = None
        name = credentials_secret(spec)
        if name is not None:
            secret = await self._secret(namespace, name)
            if secret is None:
                raise ProviderError(Reason.SECRET_NOT_FOUND,
                                    f"Secret {namespace}/{name} (spec.{spec.storage_type}."
                                    "credentialsSecretRef) not found")
            secret_data = secret.data
            versions.append(secret.resource_version)
        ca_bundle: bytes | None = None
        if spec.tls is not None and spec.tls.ca_secret_ref is not None:
            ref = spec.tls.ca_secret_ref
            ca_secret = await self._secret(namespace, ref.name)
            if ca_secret is None:
                raise ProviderError(Reason.SECRET_NOT_FOUND,
                                    f"Secret {namespace}/{ref.name} (spec.tls.caSecretRef) "
                                    "not found")
            if not ca_secret.data.get(ref.key):
                raise ProviderError(Reason.SECRET_KEY_MISSING,
                                    f"Secret {namespace}/{ref.name} has no key {ref.key!r} "
                                    "(spec.tls.caSecretRef.key)")
            ca_bundle = ca_secret.data[ref.key]
            versions.append(ca_secret.resource_version)
        return ProviderInputs(secret=secret_data, ca_bundle=ca_bundle), \
            ",".join(versions) or None

    async def _secret(self, namespace: str, name: str) -> CachedSecret | None:
        """A referenced Secret: from the watch's cache, else one GET.

        The watch may deliver a newer version (or the deletion) while the GET is in
        flight; the GET's answer then loses, whatever order the two arrive in.
        """
        key = (namespace, name)
        cached = self.inv.secrets.get(key)
        if cached is not None:
            return cached
        secret = await self.kube.read_secret(namespace, name)
        newest = self.inv.secrets.get(key)
        if secret is None:
            return newest
        held = newest.resource_version if newest is not None else None
        if self.inv.versions.is_stale(SECRET, key, secret.resource_version, held):
            return newest
        if self.inv.secret_is_referenced(key):
            self.inv.secrets[key] = secret
        return secret

    async def _validate(self, key: ObjectKey, spec: ExternalStorageSpec, validate: bool,
                        check_value: str | None) -> tuple[Validation | None,
                                                          CheckOutcome | None]:
        started = time.monotonic()
        try:
            inputs, version = await self._inputs(key[0], spec)
        except ProviderError as exc:
            result = Validation(exc.reason, exc.message, stalled=exc.stalled) \
                if validate else None
            check = CheckOutcome(check_value, False, exc.message) if check_value else None
            if result is not None:
                metrics.record_validation(spec.storage_type, "failure", str(exc.reason),
                                          time.monotonic() - started)
            return result, check

        settings = self.settings

        def failed(exc: ProviderError) -> Validation:
            return Validation(exc.reason, exc.message, secret_version=version,
                              stalled=exc.stalled)

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
                        obj_key = run_check(client, spec, settings.check_object_prefix)
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

        loop = asyncio.get_running_loop()
        # Provider calls carry their own timeouts; this bound only frees the worker if an
        # SDK ignores them.
        attempts = settings.max_attempts * (len(set(effective_prefixes(spec).values())) + 2)
        hard_limit = (settings.connect_timeout + settings.read_timeout) * attempts + 10
        try:
            validation, check = await asyncio.wait_for(
                loop.run_in_executor(self._providers, guarded), hard_limit)
        except TimeoutError:
            msg = f"no answer from the storage endpoint within {hard_limit:.0f}s"
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
        status = obj.get("status") or {}
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
        patch = es_reconcile.status_patch(status, desired)
        if patch is None:
            return
        updated = await self.kube.patch_status(CALLTYPE_PLURAL, key[0], key[1], patch)
        if updated is not None:
            self.on_call_type_event("MODIFIED", updated)
        await self._post(obj, ct_reconcile.call_type_events(status, desired))


def _describe(exc: BaseException) -> str:
    """An exception for a log line or status: its type and, for API errors, the HTTP
    status; never its text, which may quote a request body."""
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if isinstance(status, int) else "")


def _parse_datetime(value: object) -> dt.datetime | None:
    stamp = _parse_time(value)
    return dt.datetime.fromtimestamp(stamp, dt.UTC) if stamp is not None else None


def _success_message(spec: ExternalStorageSpec, caps: Capabilities) -> str:
    if spec.access_mode == "WriteOnly":
        prefixes = sorted(set(effective_prefixes(spec).values()))
        shown = ", ".join(f"{p}/" if p else "(bucket root)" for p in prefixes)
        return f"probe writes to {spec.bucket} succeeded under: {shown}"
    return f"bucket {spec.bucket} is reachable with these credentials"
