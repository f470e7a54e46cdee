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
import importlib
import secrets
import uuid
from collections.abc import Callable

from callstorage.api.prefixes import effective_prefixes, normalize_prefix
from callstorage.api.v1alpha1 import ExternalStorageSpec
from callstorage.providers.base import (
    Capabilities,
    ProviderError,
    ProviderInputs,
    Reason,
    StorageClient,
)
from callstorage.settings import Settings
from callstorage.storagetypes import PROVIDERS

__all__ = [
    "BUILDERS",
    "Builder",
    "build_client",
    "load_client_modules",
    "probe_key",
    "run_check",
    "validate_storage",
]

Builder = Callable[[ExternalStorageSpec, ProviderInputs, Settings], StorageClient]



def _builder(client_module: str) -> Builder:
    def build(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings
              ) -> StorageClient:
        client: StorageClient = importlib.import_module(client_module).build(
            spec, inputs, settings)
        return client
    return build


#: storageType -> the function building its client (from the descriptor's client module)
BUILDERS: dict[str, Builder] = {
    name: _builder(provider.client_module) for name, provider in PROVIDERS.items()}

def load_client_modules() -> None:
    """Import every storage type's client module (and so its SDK) now: the operator, which
    builds clients of every type, pays for the imports at start-up rather than inside the
    first validation's time limit."""
    for provider in PROVIDERS.values():
        importlib.import_module(provider.client_module)


PROBE_BODY = b"callstorage write probe: proves these credentials can write here\n"


def build_client(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings
                 ) -> StorageClient:
    """A client for the spec's bucket with the Secret's credentials; raises ProviderError
    (SecretKeyMissing, EndpointNotAllowed, ...) before any connection to the storage."""
    builder = BUILDERS.get(spec.storage_type)
    if builder is None:
        raise ProviderError(Reason.INVALID_SPEC, f"unknown storageType {spec.storage_type!r}")
    return builder(spec, inputs, settings)


def _prefixes(spec: ExternalStorageSpec) -> list[str]:
    try:
        return sorted(set(effective_prefixes(spec).values()))
    except ValueError as exc:
        raise ProviderError(Reason.INVALID_SPEC, f"invalid prefix: {exc}") from None


def probe_key(prefix: str) -> str:
    """A new probe object key under ``prefix`` (the bucket root for "")."""
    name = f".write_probe_{secrets.token_hex(8)}"
    return f"{prefix}/{name}" if prefix else name


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


def run_check(client: StorageClient, spec: ExternalStorageSpec, name_prefix: str) -> str:
    """Upload a new ``{path}/{name_prefix}<uuid4>.md`` and return its key."""
    try:
        base = normalize_prefix(spec.path or "")
    except ValueError as exc:
        raise ProviderError(Reason.INVALID_SPEC, f"invalid spec.path: {exc}") from None
    name = f"{name_prefix}{uuid.uuid4()}.md"
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
