"""Secret -> provider inputs: which Secrets a storage's provider reads, and the inputs they
make. The one home of this step: the controller's Secret cache (``secretcache``) and the
media path (``media``, which the CLI's ``upload`` and ``url`` use) read the Secrets each
their own way, then both hand the data to ``provider_inputs``.

Secrets are always read from the storage's own namespace; which ones, and which key of the
CA bundle's, is the spec's to say (``secret_reads``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from callstorage.api.reasons import Reason
from callstorage.providers.base import ProviderError, ProviderInputs

if TYPE_CHECKING:
    from callstorage.storagespec import ExternalStorageSpec


@dataclass(frozen=True)
class SecretRead:
    """A Secret of the storage's namespace its provider inputs come from: ``field`` is the
    spec field naming it (for messages), ``key`` the one key used (the CA bundle's; None:
    the whole Secret, the credentials)."""

    name: str
    field: str
    key: str | None = None

    def not_found(self, namespace: str) -> str:
        """The message for this Secret being absent."""
        return f"Secret {namespace}/{self.name} ({self.field}) not found"


def secret_reads(spec: ExternalStorageSpec) -> list[SecretRead]:
    """The Secrets ``spec`` needs read, credentials first (none: ambient credentials)."""
    reads = []
    ref = spec.credentials_secret_ref
    if ref is not None:
        reads.append(SecretRead(ref.name, f"spec.{spec.storage_type}.credentialsSecretRef"))
    if spec.tls is not None and spec.tls.ca_secret_ref is not None:
        ca = spec.tls.ca_secret_ref
        reads.append(SecretRead(ca.name, "spec.tls.caSecretRef", ca.key))
    return reads


def provider_inputs(spec: ExternalStorageSpec, namespace: str,
                    data: Mapping[SecretRead, Mapping[str, bytes]]) -> ProviderInputs:
    """The provider inputs from the decoded data of each of ``secret_reads(spec)``;
    ProviderError(SecretKeyMissing) when the CA Secret lacks its key."""
    secret: Mapping[str, bytes] | None = None
    ca_bundle: bytes | None = None
    for read in secret_reads(spec):
        values = data[read]
        if read.key is None:
            secret = values
            continue
        if not values.get(read.key):
            raise ProviderError(Reason.SECRET_KEY_MISSING,
                                f"Secret {namespace}/{read.name} has no key {read.key!r} "
                                f"({read.field}.key)")
        ca_bundle = values[read.key]
    return ProviderInputs(secret=secret, ca_bundle=ca_bundle, namespace=namespace)
