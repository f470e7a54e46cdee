"""The provider interface and the error taxonomy every provider maps its SDK errors onto.

Provider code is synchronous (boto3, google-cloud-storage and azure-storage-blob block);
the operator runs it in a thread pool, never on kopf's event loop. Every message a
provider puts in a ``ProviderError`` ends up in status and events, so it must never carry
a credential, a signature or anything derived from one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from callstorage.api.capabilities import Capabilities
from callstorage.api.reasons import Reason, is_stalled
from callstorage.storagetypes.base import ErrorRule, lookup_error

__all__ = ["Capabilities", "ErrorRule", "ProviderError", "ProviderInputs", "Reason",
           "StorageClient", "lookup_error"]


class ProviderError(Exception):
    """A validation failure with a reason code and a message safe to publish."""

    def __init__(self, reason: Reason, message: str, stalled: bool | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        # None: the reason's policy decides; True where this instance of a usually
        # transient reason needs a person (a host name that does not resolve)
        self.stalled = is_stalled(reason) if stalled is None else stalled

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class ProviderInputs:
    """What a provider needs besides the spec: the referenced Secrets' decoded data.

    ``secret`` is None when the spec names no credentials Secret (ambient credentials).
    ``ca_bundle`` is the PEM from ``spec.tls.caSecretRef``, if any.
    """

    secret: Mapping[str, bytes] | None
    ca_bundle: bytes | None = None

    def __repr__(self) -> str:  # never let a traceback or log line print the Secret
        keys = sorted(self.secret) if self.secret is not None else None
        return f"ProviderInputs(secret_keys={keys}, ca_bundle={self.ca_bundle is not None})"


class StorageClient(Protocol):
    """One bucket (Azure: container) reached with one set of credentials."""

    def head_bucket(self) -> None:
        """Prove the bucket exists and the credentials may see it (S3 HeadBucket, GCS
        bucket get, Azure container properties). Raises ProviderError."""

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        """Write one object. Raises ProviderError."""

    def object_url(self, key: str) -> str:
        """A URL naming the object (s3://, gs://, https://account/container/...)."""

    def close(self) -> None:
        """Release connections."""
