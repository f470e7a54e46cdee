"""What the media path (``callstorage.media``, ``callstorage.pins``) raises at its callers.

Every class is a ``CallStorageError``: a machine-readable ``reason`` and one sentence, never
a credential or the pin key.
"""

from __future__ import annotations

from typing import Final

from callstorage.client import CallStorageError, InvalidRequest, NotFoundError
from callstorage.storagetypes import PROVIDERS


class MediaError(CallStorageError):
    """A media operation failed; ``reason`` is the provider's (``AccessDenied``, ...)."""

    default_reason = "MediaError"


class UploadFailed(MediaError):
    """An artifact could not be written. Nothing partial is left under its key; calling
    ``upload_artifacts`` again with the same arguments is safe."""

    default_reason = "UploadFailed"


class ReadAccessNotGranted(MediaError):
    """The storage is ``WriteOnly``: no read URL. ``http_status`` and ``body`` are what
    MeetStream's fetch endpoints answer, for a platform API to return unchanged."""

    default_reason = "ReadAccessNotGranted"
    http_status: Final = 403

    def __init__(self, provider: str, object_url: str, storage: str) -> None:
        descriptor = PROVIDERS.get(provider)
        place = descriptor.place if descriptor is not None else "bucket"
        self.body: dict[str, str] = {
            "message": f"Media is stored in your {place}, but only write access was "
                       "granted. Update your storage configuration to read+write to fetch "
                       "media via the API.",
            "access_mode": "write_only",
        }
        self.object_url = object_url
        super().__init__(None, f"{self.body['message']} The file is {object_url} "
                               f"(ExternalStorage {storage}, accessMode WriteOnly).")


class StorageDeleted(MediaError, NotFoundError):
    """The storage the media was pinned to no longer exists (or was deleted and created
    again: another object, maybe other credentials). The objects are still where the pin
    says; nothing here can read them any more."""

    default_reason = "StorageDeleted"


class LocationUnavailable(MediaError):
    """The storage still exists but can no longer reach the pinned location with its
    current settings (another provider, endpoint or account)."""

    default_reason = "LocationUnavailable"


class UnknownArtifact(MediaError, NotFoundError):
    """The pin holds no object of that name."""

    default_reason = "UnknownArtifact"


class InvalidPin(MediaError, InvalidRequest):
    """Not a pin ``upload_artifacts`` produced: malformed (``InvalidLocation``), of an
    older format (``PinOutdated``), or forged or edited (``PinTampered``)."""

    default_reason = "InvalidPin"


class PinNotForCaller(MediaError):
    """A genuine pin, made for another namespace (application) than the caller's."""

    default_reason = "PinNotForCaller"


class PinKeyUnavailable(MediaError):
    """The pin key cannot be read (or, for a first upload, created)."""

    default_reason = "PinKeyUnavailable"
