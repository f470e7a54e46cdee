"""Which storage one recording or transcription goes to (docs/api.md "Resolution").

The seed's order: (1) the storage named for the call, if any; (2) the call type's
``externalStorage``; (3) the platform storage. The reserved name ``stream-s3`` always
means the platform storage: an ordinary ExternalStorage in the operator's namespace.

``choose_storage`` is that order as a pure function; ``resolve`` reads the CallType and the
chosen ExternalStorage from the API server and describes it. A storage that is being
deleted but still exists (in-use protection keeps it while a CallType refers to it)
resolves to itself: recordings must never fall back to the platform bucket on their own,
because a tenant may have chosen their bucket for data residency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from callstorage.api import (
    InvalidSpecError,
    effective_prefixes,
    is_platform_reference,
    parse_call_type,
)
from callstorage.api.names import is_dns1123_subdomain
from callstorage.api.readiness import readiness
from callstorage.client import (
    CallStorageError,
    CallTypeNotFound,
    InvalidRequest,
    StorageNotFound,
    StorageNotReady,
    api_client_from_config,
    find_call_type,
    get_external_storage_object,
)
from callstorage.storagespec import parse_external_storage

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from callstorage.settings import Settings

__all__ = [
    "CallStorageError",
    "CallTypeNotFound",
    "ResolvedStorage",
    "Source",
    "StorageChoice",
    "StorageNotFound",
    "StorageNotReady",
    "choose_storage",
    "is_platform_reference",
    "resolve",
    "resolve_with_object",
]


class Source(StrEnum):
    """The level of the seed's order that decided the storage."""

    CALL = "Call"
    CALL_TYPE = "CallType"
    PLATFORM_DEFAULT = "PlatformDefault"


@dataclass(frozen=True)
class StorageChoice:
    """The storage the order selects: where to find it and why it was chosen.

    ``source`` is ``PlatformDefault`` whenever the platform storage is chosen, named
    ``stream-s3`` or not (as CallType ``status.resolvedStorage.source`` says);
    ``requested`` keeps the name as written where it was chosen (``stream-s3``, or None
    when nothing was specified), so an explicit choice of the platform stays visible.
    """

    namespace: str
    name: str
    source: Source
    requested: str | None

    @property
    def platform(self) -> bool:
        """Whether this is the platform storage."""
        return self.source is Source.PLATFORM_DEFAULT


def choose_storage(
    namespace: str,
    call_type_storage: str | None,
    call_storage: str | None = None,
    *,
    platform_namespace: str,
    platform_name: str,
) -> StorageChoice:
    """Apply the seed's order to the settings of one call.

    ``call_storage`` is the call-level choice (``recording_external_storage`` /
    ``transcription_external_storage``), ``call_type_storage`` the CallType's
    ``spec.externalStorage``; None or "" means "not specified". An explicit ``stream-s3``
    at either level ends the search there, with the platform storage.
    """
    for source, requested in ((Source.CALL, call_storage),
                              (Source.CALL_TYPE, call_type_storage)):
        if not requested:
            continue
        if is_platform_reference(requested):
            return StorageChoice(platform_namespace, platform_name, Source.PLATFORM_DEFAULT,
                                 requested)
        return StorageChoice(namespace, requested, source, requested)
    return StorageChoice(platform_namespace, platform_name, Source.PLATFORM_DEFAULT, None)


@dataclass(frozen=True)
class ResolvedStorage:
    """The storage a recording goes to, as the uploader needs it.

    ``prefixes`` maps each category (audio, video, transcript, metadata) to its effective
    key prefix (see ``callstorage.layout.object_key``). ``ready``/``reason``/``message``
    come from the storage's ``Ready`` condition; ``terminating`` says it is being deleted
    but still kept (and still the right place) because something refers to it.
    """

    namespace: str
    name: str
    source: Source
    storage_type: str
    bucket: str
    access_mode: str
    prefixes: dict[str, str]
    ready: bool
    reason: str
    message: str
    terminating: bool
    requested: str | None = None
    path: str | None = None
    call_type: str | None = field(default=None, compare=False)

    @property
    def platform(self) -> bool:
        """Whether this is the platform storage (``stream-s3``)."""
        return self.source is Source.PLATFORM_DEFAULT

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with camelCase keys (CallType ``status.resolvedStorage`` style)."""
        return {
            "namespace": self.namespace, "name": self.name, "source": str(self.source),
            "requested": self.requested, "platform": self.platform,
            "callType": self.call_type, "storageType": self.storage_type,
            "bucket": self.bucket, "path": self.path, "accessMode": self.access_mode,
            "prefixes": dict(self.prefixes), "ready": self.ready, "reason": self.reason,
            "message": self.message, "terminating": self.terminating,
        }


def describe_storage(
    obj: Mapping[str, Any], choice: StorageChoice, call_type: str | None = None
) -> ResolvedStorage:
    """Build the ``ResolvedStorage`` for an ExternalStorage object the choice named (pure)."""

    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    state = readiness(obj)
    try:
        # Derived from the spec, so a prefix change applies to the next upload at once.
        prefixes = effective_prefixes(parse_external_storage(obj))
    except (InvalidSpecError, ValueError):
        prefixes = dict(status.get("effectivePrefixes") or {})
    return ResolvedStorage(
        namespace=choice.namespace,
        name=choice.name,
        source=choice.source,
        storage_type=str(spec.get("storageType", "")),
        bucket=str(spec.get("bucket", "")),
        access_mode=str(spec.get("accessMode") or "ReadWrite"),
        prefixes=prefixes,
        ready=state.ready,
        reason=state.reason,
        message=state.message,
        terminating=bool(meta.get("deletionTimestamp")),
        requested=choice.requested,
        path=spec.get("path"),
        call_type=call_type,
    )


def resolve(
    namespace: str,
    call_type: str,
    call_storage: str | None = None,
    *,
    api_client: ApiClient | None = None,
    settings: Settings | None = None,
    require_ready: bool = False,
) -> ResolvedStorage:
    """The storage a recording of a call of ``call_type`` in ``namespace`` goes to.

    ``call_storage`` is the storage named for the call, if any. The CallType must exist
    (every call has one), even when the call names its own storage. Raises
    ``CallTypeNotFound``, ``StorageNotFound`` (the chosen storage does not exist; never a
    silent fallback), ``StorageNotReady`` only with ``require_ready=True``, and
    ``ApiUnreachable``/``ApiError`` for API trouble.
    """
    return resolve_with_object(namespace, call_type, call_storage, api_client=api_client,
                               settings=settings, require_ready=require_ready)[0]


def resolve_with_object(
    namespace: str,
    call_type: str,
    call_storage: str | None = None,
    *,
    api_client: ApiClient | None = None,
    settings: Settings | None = None,
    require_ready: bool = False,
) -> tuple[ResolvedStorage, dict[str, Any]]:
    """``resolve``, plus the ExternalStorage object it read (its spec and uid), so a
    caller that goes on to use the storage acts on the very object that was chosen."""
    from callstorage.settings import get_settings

    settings = settings or get_settings()
    api = api_client if api_client is not None else api_client_from_config()
    if not is_platform_reference(call_storage) and not is_dns1123_subdomain(call_storage or ""):
        raise InvalidRequest("InvalidName", f"call storage {call_storage!r} is not a valid "
                             "ExternalStorage name")
    call_type_obj = find_call_type(api, namespace, call_type)
    try:
        call_type_spec = parse_call_type(call_type_obj)
    except InvalidSpecError as exc:
        raise InvalidRequest("InvalidSpec", f"CallType {call_type!r}: {exc.summary()}") \
            from None
    choice = choose_storage(
        namespace, call_type_spec.external_storage, call_storage,
        platform_namespace=settings.namespace, platform_name=settings.platform_storage)
    obj = get_external_storage_object(
        api, choice.namespace, choice.name,
        not_found=lambda: StorageNotFound(None, _not_found_message(choice, call_type)))
    resolved = describe_storage(obj, choice, call_type)
    if require_ready and not resolved.ready:
        raise StorageNotReady(
            resolved.reason or None,
            f"ExternalStorage {choice.namespace}/{choice.name} is not ready: "
            f"{resolved.message or resolved.reason}", storage=resolved)
    return resolved, obj


def _not_found_message(choice: StorageChoice, call_type: str) -> str:
    where = f"{choice.namespace}/{choice.name}"
    if choice.platform:
        named = f" (named {choice.requested})" if choice.requested else ""
        return (f"the platform storage ExternalStorage {where}{named} does not exist; "
                "create it or set CALLSTORAGE_PLATFORM_STORAGE / CALLSTORAGE_NAMESPACE")
    if choice.source is Source.CALL:
        return f"ExternalStorage {where}, named for the call, does not exist"
    return f"ExternalStorage {where}, named by CallType {call_type!r}, does not exist"
