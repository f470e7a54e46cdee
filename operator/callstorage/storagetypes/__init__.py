"""The storage types ``spec.storageType`` may name: one module per provider, registered here.

``PROVIDERS`` is the one list of them. The API models (the storageType enum and the
provider blocks), the controller (which Secrets an object refers to), the SDK client
(which request builds which block), the least-privilege policies and the CLI all loop over
it; ``tests/unit/test_storagetypes.py`` holds it against the CRD's storageType enum and
provider blocks. Adding a provider: a module exporting a ``StorageProvider`` (its client
may live in the same module, importing its SDK inside ``build``), its entry here, and its
block and rules in ``crds/externalstorages.yaml`` (``python hack/sync_crds.py`` copies the
CRD into the chart).
"""

from __future__ import annotations

from typing import Any

from callstorage.storagetypes import azure, gcs, s3
from callstorage.storagetypes.base import StorageProvider

PROVIDERS: dict[str, StorageProvider[Any]] = {p.name: p for p in (
    s3.PROVIDER,
    gcs.PROVIDER,
    azure.PROVIDER,
)}


def provider(storage_type: str) -> StorageProvider[Any]:
    """The descriptor of ``storage_type``; KeyError naming the known ones."""
    try:
        return PROVIDERS[storage_type]
    except KeyError:
        raise KeyError(f"unknown storage type {storage_type!r}; expected "
                       f"{', '.join(PROVIDERS)}") from None


__all__ = ["PROVIDERS", "StorageProvider", "provider"]
