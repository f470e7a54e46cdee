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
from callstorage.api.prefixes import effective_prefixes
from callstorage.inventory import CachedSecret, Inventory, ObjectKey
from callstorage.kube import Kube, decode_secret
from callstorage.providers import build_client, run_check, validate_storage
from callstorage.providers.base import Capabilities, ProviderError, ProviderInputs, Reason
from callstorage.reconcile import calltype as ct_reconcile
from callstorage.reconcile import externalstorage as es_reconcile
from callstorage.reconcile.externalstorage import CheckOutcome, Observed, Validation
from callstorage.reconcile.schedule import next_delay, startup_delay
from callstorage.settings import Settings
from callstorage.workqueue import WorkQueue

log = logging.getLogger(__name__)

VALIDATE, CHECK, REFS = "validate", "check", "refs"
CALL_TYPE_WORKERS = 4


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta: Mapping[str, Any] = obj.get("metadata") or {}
    return meta


def _key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = _meta(obj)
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _rv_newer(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """False when ``new`` is older than what we hold (our own patch result came first)."""
    if old is None:
        return True
    a, b = _meta(old).get("resourceVersion"), _meta(new).get("resourceVersion")
    if isinstance(a, str) and isinstance(b, str) and a.isdigit() and b.isdigit():
        return int(b) >= int(a)
    return True


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
    for block in ("s3", "gcs", "abs"):
        ref = (spec.get(block) or {}).get("credentialsSecretRef") or {}
        if isinstance(ref, dict) and ref.get("name"):
            names.add(str(ref["name"]))
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

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Learn every object and reference first, then start the workers.

        Without the full list of CallTypes, a storage could look unreferenced right
        after a restart and lose its in-use finalizer while being deleted.
        """
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
    def on_storage_event(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        if event_type == "DELETED":
            self.inv.forget_storage(key)
            self.storages.forget(key)
            metrics.forget_storage(*key)
            self._touch_call_types(key)
            return
        old = self.inv.storages.get(key)
        if not _rv_newer(old, obj):
            return
        new = dict(obj)
        self.inv.storages[key] = new
        self.inv.set_secret_refs(key, _secret_refs(new))
        meta, status = _meta(new), new.get("status") or {}
        generation = meta.get("generation")
        if old is None:
            if status.get("observedGeneration") != generation:
                self.storages.add(key, VALIDATE)
            else:
                self.storages.add(key, REFS)
                self._schedule_after_restart(key, new)
        else:
            if _meta(old).get("generation") != generation:
                self.storages.add(key, VALIDATE)
            if bool(_meta(old).get("deletionTimestamp")) != bool(meta.get("deletionTimestamp")):
                self.storages.add(key, REFS)
        if pending_check(new):
            self.storages.add(key, CHECK)
        if old is None or es_reconcile.ready_state(old.get("status")) != \
                es_reconcile.ready_state(status) or old.get("spec") != new.get("spec") or \
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
            self.inv.call_types.pop(key, None)
            self.call_types.forget(key)
            old_target = self.inv.set_call_type_target(key, None)
            if old_target is not None:
                self.storages.add(old_target, REFS)
            return
        old = self.inv.call_types.get(key)
        if not _rv_newer(old, obj):
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
        if not self.inv.secret_is_referenced(key):
            return  # never keep data of Secrets no storage needs
        if event_type == "DELETED":
            self.inv.secrets.pop(key, None)
            changed = True
            rv = ""
        else:
            rv = str(_meta(obj).get("resourceVersion", ""))
            previous = self.inv.secrets.get(key)
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
    async def _storage_worker(self) -> None:
        while True:
            key, reasons = await self.storages.get()
            try:
                await self.reconcile_storage(key, reasons)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one object's failure must not stop the loop
                metrics.record_reconcile_error("ExternalStorage")
                log.error("reconciling ExternalStorage %s/%s failed: %s: %s", *key,
                          type(exc).__name__, exc)
                self.storages.add(key, VALIDATE, self.settings.retry_base * (1 + self.rand()))
            finally:
                self.storages.done(key)
                metrics.set_queue_depth(len(self.storages))

    async def _call_type_worker(self) -> None:
        while True:
            key, _ = await self.call_types.get()
            try:
                await self.reconcile_call_type(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.record_reconcile_error("CallType")
                log.error("reconciling CallType %s/%s failed: %s: %s", *key,
                          type(exc).__name__, exc)
                self.call_types.add(key, "retry", self.settings.retry_base)
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
        validation: Validation | None = None
        check: CheckOutcome | None = None
        wants_validation = VALIDATE in reasons or \
            status.get("observedGeneration") != generation
        invalid: str | None = None
        try:
            spec = parse_external_storage(obj)
        except InvalidSpecError as exc:
            invalid = str(exc)
            # reported once per generation; reference-only rounds keep the status as is
            if wants_validation:
                validation = Validation(Reason.INVALID_SPEC, invalid)

        check_value = pending_check(obj)
        suspended = spec is not None and spec.suspend
        failures = int(status.get("consecutiveFailures") or 0)
        if spec is not None and not deleting and \
                ((wants_validation and not suspended) or check_value):
            validation, check = await self._validate(
                key, spec, wants_validation and not suspended, check_value)
            if validation is not None and spec is not None:
                metrics.set_storage_ready(*key, validation.ok)
        elif invalid is not None and check_value:
            check = CheckOutcome(check_value, False, f"spec is invalid: {invalid}")

        next_at: dt.datetime | None = None
        if validation is not None:
            failures = 0 if validation.ok else failures + 1
            interval = spec.interval_seconds if spec is not None else 0.0
            delay = next_delay(validation.reason, interval, failures,
                               self.settings.retry_base, self.settings.retry_max, self.rand)
            if delay is not None and not deleting:
                self.storages.add(key, VALIDATE, delay)
                next_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        elif status.get("nextValidationAt") and not suspended and not deleting:
            next_at = dt.datetime.fromisoformat(
                str(status["nextValidationAt"]).replace("Z", "+00:00"))

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
        )
        desired = es_reconcile.desired_status(status, observed)
        patch = es_reconcile.status_patch(status, desired)
        if patch is None:
            return
        updated = await self.kube.patch_status(EXTERNALSTORAGE_PLURAL, key[0], key[1], patch)
        if updated is not None:
            self.on_storage_event("MODIFIED", updated)
        await self._post_transition_events(obj, status, desired, check)

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
        cached = self.inv.secrets.get((namespace, name))
        if cached is not None:
            return cached
        secret = await self.kube.read_secret(namespace, name)
        if secret is not None and self.inv.secret_is_referenced((namespace, name)):
            self.inv.secrets[(namespace, name)] = secret
        return secret

    async def _validate(self, key: ObjectKey, spec: ExternalStorageSpec, validate: bool,
                        check_value: str | None) -> tuple[Validation | None,
                                                          CheckOutcome | None]:
        started = time.monotonic()
        try:
            inputs, version = await self._inputs(key[0], spec)
        except ProviderError as exc:
            result = Validation(exc.reason, exc.message) if validate else None
            check = CheckOutcome(check_value, False, exc.message) if check_value else None
            if result is not None:
                metrics.record_validation(spec.storage_type, "failure", str(exc.reason),
                                          time.monotonic() - started)
            return result, check

        settings = self.settings

        def work() -> tuple[Validation | None, CheckOutcome | None]:
            v: Validation | None = None
            c: CheckOutcome | None = None
            try:
                client = build_client(spec, inputs, settings)
            except ProviderError as exc:
                v = Validation(exc.reason, exc.message, secret_version=version) \
                    if validate else None
                c = CheckOutcome(check_value, False, exc.message) if check_value else None
                return v, c
            try:
                if validate:
                    try:
                        caps = validate_storage(client, spec)
                        v = Validation(Reason.VALIDATED, _success_message(spec, caps), caps,
                                       version)
                    except ProviderError as exc:
                        v = Validation(exc.reason, exc.message, secret_version=version)
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

        loop = asyncio.get_running_loop()
        # Provider calls carry their own timeouts; this bound only frees the worker if an
        # SDK ignores them.
        attempts = settings.max_attempts * (len(set(effective_prefixes(spec).values())) + 2)
        hard_limit = (settings.connect_timeout + settings.read_timeout) * attempts + 10
        try:
            validation, check = await asyncio.wait_for(
                loop.run_in_executor(self._providers, work), hard_limit)
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

    async def _post_transition_events(self, obj: Mapping[str, Any],
                                      before: Mapping[str, Any], after: Mapping[str, Any],
                                      check: CheckOutcome | None) -> None:
        old_ready = es_reconcile.ready_state(before)
        new_ready = es_reconcile.ready_state(after)
        if new_ready[:2] != old_ready[:2] and new_ready[0] != "Unknown":
            ok = new_ready[0] == "True"
            await self.kube.post_event(obj, "Normal" if ok else "Warning", new_ready[1],
                                       new_ready[2])
        if check is not None:
            await self.kube.post_event(
                obj, "Normal" if check.succeeded else "Warning",
                "CheckSucceeded" if check.succeeded else "CheckFailed", check.message)
        was_blocked = any(c.get("type") == es_reconcile.DELETION_BLOCKED
                          for c in before.get("conditions") or [])
        blocked = [c for c in after.get("conditions") or []
                   if c.get("type") == es_reconcile.DELETION_BLOCKED]
        if blocked and not was_blocked:
            await self.kube.post_event(obj, "Warning", "DeletionBlocked",
                                       str(blocked[0].get("message", "")))

    async def reconcile_call_type(self, key: ObjectKey) -> None:
        obj = self.inv.call_types.get(key)
        if obj is None:
            return
        target, source = ct_reconcile.storage_target(
            key[0], (obj.get("spec") or {}).get("externalStorage"), *self.platform)
        status = obj.get("status") or {}
        desired = ct_reconcile.desired_status(
            status, generation=int(_meta(obj).get("generation") or 0), target=target,
            source=source, storage=self.inv.storages.get(target), now=dt.datetime.now(dt.UTC))
        patch = es_reconcile.status_patch(status, desired)
        if patch is None:
            return
        updated = await self.kube.patch_status(CALLTYPE_PLURAL, key[0], key[1], patch)
        if updated is not None:
            self.on_call_type_event("MODIFIED", updated)
        before, after = es_reconcile.ready_state(status), es_reconcile.ready_state(desired)
        if before[:2] != after[:2]:
            await self.kube.post_event(obj, "Normal" if after[0] == "True" else "Warning",
                                       after[1], after[2])


def _success_message(spec: ExternalStorageSpec, caps: Capabilities) -> str:
    if spec.access_mode == "WriteOnly":
        prefixes = sorted(set(effective_prefixes(spec).values()))
        shown = ", ".join(f"{p}/" if p else "(bucket root)" for p in prefixes)
        return f"probe writes to {spec.bucket} succeeded under: {shown}"
    return f"bucket {spec.bucket} is reachable with these credentials"
