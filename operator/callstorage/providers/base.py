"""The provider interface and the error taxonomy every provider maps its SDK errors onto.

Provider code is synchronous (boto3, google-cloud-storage and azure-storage-blob block);
the operator runs it in a thread pool, never on kopf's event loop. Every message a
provider puts in a ``ProviderError`` ends up in status and events, so it must never carry
a credential, a signature or anything derived from one; nor any text a server sent (an
error message, a response body): our own words, the HTTP status and the provider's error
code (through ``safe_code``) only.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from callstorage.api.capabilities import Capabilities
from callstorage.api.reasons import Reason, is_stalled
from callstorage.storagetypes.base import ErrorRule, lookup_error

__all__ = ["Capabilities", "ChecksumMismatch", "ErrorRule", "ProviderError",
           "ProviderInputs", "Reason", "StorageClient", "lookup_error", "safe_code"]

#: An error code as providers spell them (NoSuchBucket, notFound, invalid_grant,
#: AADSTS7000215): anything else a server puts where a code belongs is dropped.
MAX_CODE_LENGTH = 64
_CODE = re.compile(rf"[A-Za-z][A-Za-z0-9_.:-]{{0,{MAX_CODE_LENGTH - 1}}}")


def safe_code(value: object) -> str:
    """``value`` if it looks like a provider's error code, else "" (never server prose)."""
    text = str(getattr(value, "value", value) or "")  # an SDK's enum of codes
    return text if _CODE.fullmatch(text) else ""


class ProviderError(Exception):
    """A validation failure with a reason code and a message safe to publish."""

    def __init__(self, reason: Reason, message: str, stalled: bool | None = None,
                 retry: bool | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        # None: the reason's policy decides; True where this instance of a usually
        # transient reason needs a person (a host name that does not resolve)
        self.stalled = is_stalled(reason) if stalled is None else stalled
        # None: the reason's policy decides; False where no retry can help until the
        # Secret changes (a credential that does not even parse)
        self.retry = retry

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class ChecksumMismatch(ProviderError):
    """The storage holds (or was about to hold) other bytes than were sent: a checksum the
    server computed differs from ours, or the server refused ours. ``resendable``: sending
    the same request again can repair it (a part or block); otherwise (a GCS session
    whose earlier chunks were damaged) only a new upload can."""

    def __init__(self, what: str, resendable: bool) -> None:
        again = "; the request was sent again" if resendable else ""
        super().__init__(Reason.SERVICE_ERROR, f"{what}: the storage received other bytes "
                         f"than were sent (checksum mismatch){again}",
                         stalled=not resendable)
        self.resendable = resendable


@dataclass(frozen=True)
class ProviderInputs:
    """What a provider needs besides the spec: the referenced Secrets' decoded data.

    ``secret`` is None when the spec names no credentials Secret (ambient credentials).
    ``ca_bundle`` is the PEM from ``spec.tls.caSecretRef``, if any. ``namespace`` is the
    storage's (None: not known, e.g. a storage checked outside a cluster), which decides
    whether ambient credentials may be used.
    """

    secret: Mapping[str, bytes] | None
    ca_bundle: bytes | None = None
    namespace: str | None = None

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


class FileWindow(io.RawIOBase):
    """``length`` bytes of an open file from ``offset``, as a seekable stream of its own.

    A part of a file on disk is sent from the file (``os.pread`` on a shared descriptor:
    thread-safe, no shared position) instead of from memory, so the memory of a file
    upload does not grow with the number of parts in flight; SDKs rewind it to retry.
    """

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__()
        self._fd, self._offset, self._length, self._pos = fd, offset, length, 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + pos))
        return self._pos

    def read(self, size: int = -1) -> bytes:
        left = self._length - self._pos
        n = left if size is None or size < 0 else min(size, left)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._offset + self._pos)
        self._pos += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


#: What a part is sent from: bytes in memory, or a window onto a file.
PartData: TypeAlias = "bytes | FileWindow"


def part_bytes(data: PartData) -> bytes:
    """The part as bytes (for SDKs that want them): read from the file if it is a window."""
    if isinstance(data, FileWindow):
        data.seek(0)
        return data.read()
    return data


class PartialUpload(Protocol):
    """One object being written in parts. Nothing is visible under its key until
    ``complete`` returns (S3 multipart, Azure block list, GCS resumable session), so an
    interrupted upload never leaves a partial object where readers look."""

    def upload_part(self, number: int, data: PartData, offset: int,
                    crc32c: int, final_size: int | None,
                    object_crc32c: int | None = None) -> None:
        """Send part ``number`` (1-based) holding the bytes at ``offset`` with its CRC32C
        for the server to check; safe to repeat. ``final_size`` and ``object_crc32c`` (the
        whole object's) come with the last part only, as a GCS session needs them there.
        Raises ProviderError (``ChecksumMismatch`` when the server got other bytes)."""

    def complete(self, total_size: int) -> None:
        """Make the object appear, whole, under its key. Raises ProviderError."""

    def abort(self) -> None:
        """Drop what was sent (best effort: never raises)."""


@dataclass(frozen=True)
class PartRules:
    """How a provider wants an object cut into parts."""

    #: Parts may be sent concurrently (S3, Azure); a GCS session takes them in order.
    parallel: bool
    min_part_size: int
    max_part_size: int
    max_parts: int
    #: Every part but the last must be a multiple of this (GCS: 256 KiB).
    alignment: int = 1


class MediaClient(StorageClient, Protocol):
    """What the media path (``callstorage.media``) needs beyond validation: large uploads
    in parts, and time-limited read URLs. Implemented by each provider's client."""

    part_rules: PartRules

    def put_whole(self, key: str, data: bytes | bytearray, content_type: str,
                  crc32c: int) -> None:
        """Write a small object in one request (atomic). Raises ProviderError."""

    def start_upload(self, key: str, content_type: str) -> PartialUpload:
        """Begin a multi-part upload of ``key``. Raises ProviderError."""

    def presigned_get_url(self, key: str, expires_s: int) -> str:
        """A URL that downloads ``key`` without other credentials for ``expires_s``
        seconds (S3 presign, GCS V4 signed URL, Azure SAS). Raises ProviderError."""
