"""The provider call of a storage round: Secrets in, a validation and/or an on-demand
check out, run in the provider thread pool under a total deadline.

One validation holds a fair share slot of its endpoint host and namespace (``queueing``)
from before it reads nothing more from the cluster until its thread has really ended
(``provider_calls``); waiting for an identical request in flight (``flights``) holds one
too, as it holds a worker. Every way the attempt can end is an outcome the status can
say (``reconcile.outcome``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from callstorage import metrics, provider_calls
from callstorage.api.reasons import Reason
from callstorage.engine.flights import Flights
from callstorage.engine.queueing import Queues
from callstorage.fairness import groups_of
from callstorage.inventory import Inventory, ObjectKey
from callstorage.providers import build_client, load_client_modules, run_check, validate_storage
from callstorage.providers.base import ProviderError, ProviderInputs
from callstorage.reconcile import externalstorage as es_reconcile
from callstorage.reconcile import outcome
from callstorage.reconcile.externalstorage import Validation
from callstorage.reconcile.outcome import Outcome
from callstorage.reconcile.plan import check_id
from callstorage.secretcache import SecretCache
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec
from callstorage.storagetypes import PROVIDERS

log = logging.getLogger(__name__)


class ProviderThreads:
    """The thread pool provider calls run in, and the SDKs loaded into it: one import per
    storage type, on its first sight."""

    def __init__(self, workers: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provider")
        self.sdk_types: set[str] = set()  # loaded, or loading
        self.sdk_loads: list[Future[None]] = []

    def preload(self, storage_type: object) -> None:
        """Start loading ``storage_type``'s SDK (once; unknown types are ignored)."""
        if isinstance(storage_type, str) and storage_type not in self.sdk_types and \
                storage_type in PROVIDERS:
            self.sdk_types.add(storage_type)
            self.sdk_loads.append(self.pool.submit(load_client_modules, [storage_type]))

    async def loaded(self) -> None:
        """Wait for the SDKs whose loading has started."""
        if self.sdk_loads:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in self.sdk_loads))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def call_provider(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings,
                  version: str | None, validate: bool, check_value: str | None,
                  request_id: str | None) -> Outcome:
    """In a provider thread: build the client, validate and/or run the check, close it."""
    try:
        client = build_client(spec, inputs, settings)
    except ProviderError as exc:
        return outcome.not_run(exc, version, validate, check_value)
    v: Validation | None = None
    c: es_reconcile.CheckOutcome | None = None
    try:
        if validate:
            try:
                v = outcome.validated(spec, validate_storage(client, spec), version)
            except ProviderError as exc:
                v = outcome.failed(exc, version)
        if check_value:
            try:
                obj_key = run_check(client, spec, settings.check_object_prefix, request_id)
                c = outcome.uploaded(check_value, client.object_url(obj_key))
            except ProviderError as exc:
                c = es_reconcile.CheckOutcome(check_value, False, exc.message)
    finally:
        client.close()
    return v, c


class Validator:
    """Runs a storage round's provider call (see the module docstring)."""

    def __init__(self, settings: Settings, inv: Inventory, secrets: SecretCache,
                 queues: Queues, threads: ProviderThreads) -> None:
        self.settings, self.inv, self.secrets = settings, inv, secrets
        self.queues, self.threads = queues, threads
        self.flights: Flights[Validation] = Flights()

    async def validate(self, key: ObjectKey, spec: ExternalStorageSpec, validate: bool,
                       check_value: str | None) -> Outcome:
        """Validate the storage (``validate``) and/or run its on-demand check."""
        started = time.monotonic()
        try:
            inputs, version = await self.secrets.inputs(key[0], spec)
        except ProviderError as exc:
            result = outcome.not_run(exc, None, validate, check_value)
            if result[0] is not None:
                metrics.record_validation(spec.storage_type, "failure", str(exc.reason),
                                          time.monotonic() - started)
            return result
        held = self.inv.storages.get(key) or {}
        request_id = check_id(held, check_value) if check_value else None
        settings = self.settings

        def guarded() -> Outcome:
            try:
                return call_provider(spec, inputs, settings, version, validate, check_value,
                                     request_id)
            except Exception as exc:
                log.warning("validating ExternalStorage %s/%s raised %s", *key,
                            type(exc).__name__)
                return outcome.unexpected(type(exc).__name__, version, validate, check_value)

        share_key = es_reconcile.shared_check_key(key[0], spec.to_dict(), version) \
            if validate and not check_value else None
        slot = self.queues.acquire(key, groups_of(key[0], held.get("spec") or {}))
        try:
            if share_key is not None and \
                    (answer := await self.flights.join(share_key)) is not None:
                return self._joined(key, spec, answer, version, started), None
            async with self.flights.lead(share_key) as answer_flight:
                validation, check = await self._run(key, spec, guarded, version, validate,
                                                    check_value, started, slot)
                answer_flight(validation)
                return validation, check
        finally:
            slot.release()

    def _joined(self, key: ObjectKey, spec: ExternalStorageSpec, answer: Validation,
                version: str | None, started: float) -> Validation:
        """This storage's validation from the answer to an identical request in flight."""
        validation = outcome.joined(spec, answer, version)
        metrics.record_validation(spec.storage_type,
                                  "success" if validation.ok else "failure",
                                  str(validation.reason), time.monotonic() - started)
        metrics.SHARED_CHECKS.labels(storage_type=spec.storage_type).inc()
        log.info("validated ExternalStorage %s/%s: %s (answered by an identical check in "
                 "flight)", *key, validation.reason)
        return validation

    async def _run(self, key: ObjectKey, spec: ExternalStorageSpec,
                   guarded: Callable[[], Outcome], version: str | None,
                   validate: bool, check_value: str | None, started: float,
                   slot: provider_calls.Slot) -> Outcome:
        # a total deadline that closes the call's connections (provider_calls.py)
        seconds = self.settings.provider_deadline
        answer = await provider_calls.run(self.threads.pool, guarded, seconds, slot)
        if answer is not None:
            validation, check = answer
        else:
            validation, check = outcome.unanswered(
                Reason.TIMEOUT, provider_calls.abandoned_message(seconds), version,
                validate, check_value)
        if validation is not None:
            metrics.record_validation(
                spec.storage_type, "success" if validation.ok else "failure",
                str(validation.reason), time.monotonic() - started)
            log.info("validated ExternalStorage %s/%s: %s", *key, validation.reason)
        return validation, check
