"""Storage providers: build a client for a spec, validate it, run the on-demand check.

One SDK client module per provider (``s3``, ``gcs``, ``azure``), each parsing its own
Secret keys and mapping its SDK's errors onto ``Reason``. Which module serves which
``spec.storageType`` is the storage type's descriptor's to say
(``callstorage.storagetypes``); a module is imported when its first client is built, so
no process loads an SDK it does not use. Everything here is synchronous and every network
call has a timeout: the operator runs these functions in worker threads.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import uuid
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from callstorage.api.prefixes import effective_prefixes, normalize_prefix, probe_key
from callstorage.providers import deadline
from callstorage.providers.base import (
    Capabilities,
    MediaClient,
    ProviderError,
    ProviderInputs,
    Reason,
    StorageClient,
)
from callstorage.providers.binding import check_destinations
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec
from callstorage.storagetypes import PROVIDERS

__all__ = [
    "BUILDERS",
    "MEDIA_BUILDERS",
    "Builder",
    "build_client",
    "build_media_client",
    "load_client_modules",
    "probe_key",
    "run_check",
    "validate_storage",
    "within_deadline",
]

Builder = Callable[[ExternalStorageSpec, ProviderInputs, Settings], StorageClient]



def _client_module(storage_type: str) -> Any:
    """The storage type's client module, imported on first use: each SDK costs tens of MB
    of memory, and a process that writes media to one provider (see bench/media.py)
    should pay for that one."""
    return importlib.import_module(PROVIDERS[storage_type].client_module)


def _builder(storage_type: str) -> Builder:
    def build(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings
              ) -> StorageClient:
        client: StorageClient = _client_module(storage_type).build(spec, inputs, settings)
        return client
    build.__name__ = f"build_{storage_type}"
    return build


#: storageType -> the function building its client (from the descriptor's client module)
BUILDERS: dict[str, Builder] = {t: _builder(t) for t in PROVIDERS}

MediaBuilder = Callable[[ExternalStorageSpec, ProviderInputs, Settings, int], MediaClient]


def _media_builder(storage_type: str) -> MediaBuilder:
    def build(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings,
              connections: int) -> MediaClient:
        module = _client_module(storage_type)
        client: MediaClient
        if hasattr(module, "build_media"):
            client = module.build_media(spec, inputs, settings, connections)
        else:
            client = module.build(spec, inputs, settings)
        return client
    build.__name__ = f"build_media_{storage_type}"
    return build


#: The same builders (Secret parsing, endpoint policy, CA, timeouts) for the media path.
MEDIA_BUILDERS: dict[str, MediaBuilder] = {t: _media_builder(t) for t in PROVIDERS}


def load_client_modules(storage_types: Iterable[str] | None = None) -> None:
    """Import these storage types' client modules (and so their SDKs; default: all) now,
    so that the first validation of a type does not pay for its imports inside its time
    limit. The operator loads a type when it first sees a storage of it: an install with
    only S3 never holds the GCS and Azure SDKs (~12 MB)."""
    for storage_type in PROVIDERS if storage_types is None else storage_types:
        if storage_type in PROVIDERS:
            _client_module(storage_type)

P = ParamSpec("P")
R = TypeVar("R")


def _within_deadline(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` as ``within_deadline`` has it run (validation's provider calls)."""
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return within_deadline(lambda: fn(*args, **kwargs))
    return run


def within_deadline(fn: Callable[[], R]) -> R:
    """``fn()``, where a failure once this thread's provider call has passed its total
    deadline (``providers.deadline``) reads ``Timeout``, whatever an SDK made of the
    connections shut under it (``transport.classify`` words most of them so already,
    naming the operation; this is the guarantee). So does a success once its connections
    were shut: an answer cut short by the shutdown can pass for a whole one (an HTTP/1.1
    answer without a length ends at EOF: a trickled header then reads as a complete 200)."""
    try:
        result = fn()
    except Exception as exc:
        if isinstance(exc, ProviderError) and exc.reason is Reason.TIMEOUT:
            raise
        call = deadline.current()
        if isinstance(exc, deadline.DeadlineExceeded):
            detail = exc.detail
        elif call is not None and call.passed():
            detail = call.detail()
        else:
            raise
        raise ProviderError(Reason.TIMEOUT, detail) from None
    call = deadline.current()
    if call is not None and call.expired:
        raise ProviderError(Reason.TIMEOUT, call.detail())
    return result


PROBE_BODY = b"callstorage write probe: proves these credentials can write here\n"


@_within_deadline
def build_client(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings
                 ) -> StorageClient:
    """A client for the spec's bucket with the Secret's credentials; raises ProviderError
    (SecretKeyMissing, EndpointNotBound, EndpointNotAllowed, ...) before any connection to
    the storage."""
    builder = BUILDERS.get(spec.storage_type)
    if builder is None:
        raise ProviderError(Reason.INVALID_SPEC, f"unknown storageType {spec.storage_type!r}")
    _check_inputs(spec, inputs, settings)
    return builder(spec, inputs, settings)


def build_media_client(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings,
                       connections: int = 8) -> MediaClient:
    """A client for uploads and read URLs, built exactly as for validation (same Secret
    keys, endpoint checks and timeouts); ``connections`` bounds parallel requests."""
    builder = MEDIA_BUILDERS.get(spec.storage_type)
    if builder is None:
        raise ProviderError(Reason.INVALID_SPEC, f"unknown storageType {spec.storage_type!r}")
    _check_inputs(spec, inputs, settings)
    return builder(spec, inputs, settings, connections)


def _check_inputs(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings
                  ) -> None:
    """What every provider's inputs must pass before a client is built: credentials go
    only where their Secret says, and a CA bundle fits the installation's cap (each
    distinct bundle in use is a file in the operator's temp space)."""
    check_destinations(spec, inputs, settings)
    size, cap = len(inputs.ca_bundle or b""), settings.max_ca_bundle_bytes
    if size > cap:
        raise ProviderError(Reason.CA_BUNDLE_TOO_LARGE, (
            f"spec.tls.caSecretRef: the CA bundle is {size} bytes, more than this "
            f"installation accepts ({cap} bytes, CALLSTORAGE_MAX_CA_BUNDLE_BYTES); keep only "
            "the CA certificates the endpoint needs (public roots are trusted anyway)"))


def _prefixes(spec: ExternalStorageSpec) -> list[str]:
    try:
        return sorted(set(effective_prefixes(spec).values()))
    except ValueError as exc:
        raise ProviderError(Reason.INVALID_SPEC, f"invalid prefix: {exc}") from None


@_within_deadline
def validate_storage(client: StorageClient, spec: ExternalStorageSpec) -> Capabilities:
    """Prove the credentials work as ``spec.accessMode`` says; raises ProviderError.

    ReadWrite: a HeadBucket (bucket get, container properties). WriteOnly: a tiny probe
    object under each distinct effective prefix, so a policy scoped to exactly those
    prefixes passes (and a HeadBucket, which it need not allow, is never tried).
    """
    if spec.access_mode == "WriteOnly":
        for prefix in _prefixes(spec):
            client.put_object(probe_key(prefix), PROBE_BODY, "text/plain; charset=utf-8")
        return Capabilities(write=True)
    client.head_bucket()
    return Capabilities(list=True)


@_within_deadline
def run_check(client: StorageClient, spec: ExternalStorageSpec, name_prefix: str,
              check_id: str | None = None) -> str:
    """Upload ``{path}/{name_prefix}<check_id>.md`` and return its key.

    ``check_id`` names the request (see ``reconcile.plan.check_id``): a retry of the same
    request after a crash overwrites the same object, so each request leaves exactly one.
    Without it, a fresh uuid4.
    """
    try:
        base = normalize_prefix(spec.path or "")
    except ValueError as exc:
        raise ProviderError(Reason.INVALID_SPEC, f"invalid spec.path: {exc}") from None
    name = f"{name_prefix}{check_id or uuid.uuid4()}.md"
    key = f"{base}/{name}" if base else name
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = (
        "# External storage check\n\n"
        f"Uploaded by the callstorage operator at {now} to prove that recordings and\n"
        f"transcriptions can be written to `{client.object_url(key)}`.\n"
        "This file is safe to delete.\n"
    ).encode()
    client.put_object(key, body, "text/markdown; charset=utf-8")
    return key
