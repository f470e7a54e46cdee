"""callstorage: a Kubernetes operator for where call recordings and transcriptions are stored.

The library surface is imported on first use (module ``__getattr__``), so ``import
callstorage`` stays cheap for the CLI and the operator:

    import callstorage
    storage = callstorage.resolve("app-1", "allhands", call_storage=None)
    client = callstorage.Client("app-1")
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it.
_LAZY = {
    "resolve": "callstorage.resolution",
    "ResolvedStorage": "callstorage.resolution",
    "Source": "callstorage.resolution",
    "choose_storage": "callstorage.resolution",
    "Client": "callstorage.client",
    "S3Request": "callstorage.client",
    "AzureRequest": "callstorage.client",
    "CallStorageError": "callstorage.client",
    "StorageNotFound": "callstorage.client",
    "StorageNotReady": "callstorage.client",
    "CallTypeNotFound": "callstorage.client",
    "CheckFailed": "callstorage.client",
    "CheckTimeout": "callstorage.client",
}

__all__ = [
    "AzureRequest",
    "CallStorageError",
    "CallTypeNotFound",
    "CheckFailed",
    "CheckTimeout",
    "Client",
    "ResolvedStorage",
    "S3Request",
    "Source",
    "StorageNotFound",
    "StorageNotReady",
    "__version__",
    "choose_storage",
    "resolve",
]

if TYPE_CHECKING:
    from callstorage.client import (
        AzureRequest,
        CallStorageError,
        CallTypeNotFound,
        CheckFailed,
        CheckTimeout,
        Client,
        S3Request,
        StorageNotFound,
        StorageNotReady,
    )
    from callstorage.resolution import ResolvedStorage, Source, choose_storage, resolve


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'callstorage' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
