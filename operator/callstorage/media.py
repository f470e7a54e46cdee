"""The media path: write a call's recordings and transcripts to its storage, and serve
them back with short-lived URLs when the tenant granted read access.

``upload_artifacts(namespace, call_type, call_id, artifacts)`` resolves the storage (call
> call type > platform default, ``callstorage.resolve``), writes every artifact to the key
the layout gives (``callstorage.layout``: ``{prefix}/{call_id}_audio.wav``, ...; on the
platform storage ``{prefix}/{namespace}/{call_id}_audio.wav``), then a
``{call_id}_manifest.json`` listing them, and returns a ``StoredLocation``: the pin, sealed
by the platform (``callstorage.pins``). The caller keeps it (it is JSON);
``presigned_url(location, artifact, namespace=...)`` later serves from exactly that bucket
and key, whatever became of the storage's spec since, with the storage's current
credentials and access mode (MeetStream: "media written before a change remains fetchable
at its original location"; a switch from write-only to read-write needs no re-upload), and
only for a pin the platform sealed, to the namespace it was made for.

Credentials come from the storage's Secrets, read from the storage's own namespace, and
go through the same client builders as validation (same endpoint policy, CA bundle,
timeouts). Every call here blocks: from async code use ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from callstorage import layout
from callstorage.api import InvalidSpecError
from callstorage.api.timestamps import rfc3339
from callstorage.client import (
    CallStorageError,
    InvalidRequest,
    api_client_from_config,
    get_external_storage_object,
)
from callstorage.client.errors import api_errors
from callstorage.kube import REQUEST_TIMEOUT
from callstorage.media_errors import (
    InvalidPin,
    LocationUnavailable,
    MediaError,
    PinKeyUnavailable,
    PinNotForCaller,
    ReadAccessNotGranted,
    StorageDeleted,
    UnknownArtifact,
    UploadFailed,
)
from callstorage.pins import PinKey, StoredLocation, StoredObject, as_location, load_pin_key
from callstorage.providers.base import (
    ChecksumMismatch,
    MediaClient,
    ProviderError,
    ProviderInputs,
)
from callstorage.providers.inputs import SecretRead, provider_inputs, secret_reads
from callstorage.storagespec import ExternalStorageSpec, parse_external_storage
from callstorage.storagetypes import provider
from callstorage.transfer import Deadlines, Source, TransferOptions, TransferResult, upload

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from callstorage.resolution import ResolvedStorage
    from callstorage.settings import Settings

__all__ = [
    "DEFAULT_EXPIRES",
    "MAX_EXPIRES",
    "Artifact",
    "InvalidPin",
    "LocationUnavailable",
    "MediaError",
    "PinKey",
    "PinKeyUnavailable",
    "PinNotForCaller",
    "ReadAccessNotGranted",
    "StorageDeleted",
    "StoredLocation",
    "StoredObject",
    "UnknownArtifact",
    "UploadFailed",
    "presigned_url",
    "upload_artifacts",
]

MANIFEST: Final = "manifest.json"
DEFAULT_EXPIRES: Final = 3600  # seed: "Presigned URL from your bucket (1-hour expiry)"
MAX_EXPIRES: Final = 7 * 24 * 3600  # the longest S3 SigV4 and GCS V4 URLs may live
_CONTENT_TYPES: Final = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".mp4": "video/mp4",
                         ".json": "application/json", ".png": "image/png",
                         ".jpg": "image/jpeg", ".txt": "text/plain", ".vtt": "text/vtt",
                         ".srt": "application/x-subrip"}


# --- what to upload ----------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """One file of a call: ``name`` as in the layout (``audio.wav``,
    ``meeting_recording.mp4``, ``screenshots/9f2b.png``,
    ``transcription/deepgram/<id>/raw_transcript.json``) and its bytes: ``source`` (a
    path, bytes, a binary file-like object or an iterator of bytes), or ``parts`` for a
    recording cut into files of at most 2 hours (stored as ``<stem>_part001<ext>``, ...).
    ``category`` is needed only for names the layout does not know."""

    name: str
    source: Source | None = None
    parts: Sequence[Source] | None = None
    category: str | None = None
    content_type: str | None = None

    def __repr__(self) -> str:
        what = f"parts={len(self.parts)}" if self.parts is not None else \
            f"source={type(self.source).__name__}"
        return f"Artifact({self.name!r}, {what})"


@dataclass(frozen=True)
class _Planned:
    file: str
    category: str
    key: str
    content_type: str
    source: Any


def content_type_for(file_name: str) -> str:
    """The content type stored with a file: by extension, else binary."""
    ext = ("." + file_name.rsplit(".", 1)[1].lower()) if "." in file_name else ""
    return _CONTENT_TYPES.get(ext) or mimetypes.guess_type(file_name)[0] \
        or "application/octet-stream"


def _as_artifacts(artifacts: Mapping[str, Any] | Iterable[Artifact]) -> list[Artifact]:
    if isinstance(artifacts, Mapping):
        # A list or tuple value is a recording in parts; anything else is one source.
        return [Artifact(name, parts=value) if isinstance(value, list | tuple)
                else Artifact(name, source=value) for name, value in artifacts.items()]
    result = list(artifacts)
    for item in result:
        if not isinstance(item, Artifact):
            raise InvalidRequest("InvalidArtifact", "artifacts must be a mapping of file "
                                 "name to source, or Artifact objects")
    return result


def plan(prefixes: Mapping[str, str], call_id: str,
         artifacts: Mapping[str, Any] | Iterable[Artifact], tenant: str | None = None
         ) -> list[_Planned]:
    """Every object to write (pure): file name, category, key and content type, with
    recordings in parts numbered; under a ``tenant`` folder on a shared storage
    (``layout.object_key``). Raises ``InvalidRequest`` before anything is sent."""
    try:
        layout.check_call_id(call_id)
    except ValueError as exc:
        raise InvalidRequest("InvalidCallId", str(exc)) from None
    planned: list[_Planned] = []
    seen: dict[str, str] = {}
    for art in _as_artifacts(artifacts):
        if (art.source is None) == (art.parts is None):
            raise InvalidRequest("InvalidArtifact", f"artifact {art.name!r}: give exactly "
                                 "one of source and parts")
        if art.name == MANIFEST:
            raise InvalidRequest("InvalidArtifact", f"{MANIFEST} is written by "
                                 "upload_artifacts itself, listing every artifact")
        sources = [art.source] if art.parts is None else list(art.parts)
        if not sources:
            raise InvalidRequest("InvalidArtifact", f"artifact {art.name!r} has no parts")
        for index, source in enumerate(sources):
            try:
                file_name = layout.segment_file_name(art.name, index, len(sources))
                category = art.category or layout.category_of(art.name)
                key = layout.object_key(prefixes, category, call_id, file_name, tenant)
            except ValueError as exc:
                raise InvalidRequest("InvalidArtifact", str(exc)) from None
            if key in seen:
                raise InvalidRequest("InvalidArtifact", f"{file_name!r} and {seen[key]!r} "
                                     f"would both be written to {key}")
            seen[key] = file_name
            planned.append(_Planned(file_name, category, key,
                                    art.content_type or content_type_for(art.name), source))
    return planned


def manifest_body(location: StoredLocation) -> bytes:
    """The ``{call_id}_manifest.json`` written last: what was stored, where, and checks."""
    body = {
        "callId": location.call_id, "callType": location.call_type,
        "storage": {"namespace": location.storage_namespace, "name": location.storage_name,
                    "provider": location.provider, "bucket": location.bucket},
        "uploadedAt": location.uploaded_at,
        "files": [o.to_dict() for o in location.objects if o.file != MANIFEST],
    }
    return json.dumps(body, indent=2).encode()


# --- storage access ----------------------------------------------------------------------


def _secret_data(api: ApiClient, namespace: str, read: SecretRead) -> dict[str, bytes]:
    from kubernetes import client as k8s

    def missing() -> CallStorageError:
        return MediaError("SecretNotFound", read.not_found(namespace))

    with api_errors(missing):
        secret = k8s.CoreV1Api(api).read_namespaced_secret(
            read.name, namespace, _request_timeout=REQUEST_TIMEOUT)
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def _inputs(api: ApiClient, namespace: str, spec: ExternalStorageSpec) -> ProviderInputs:
    """The storage's Secrets, read from its own namespace only (as the operator does)."""
    data = {read: _secret_data(api, namespace, read) for read in secret_reads(spec)}
    try:
        return provider_inputs(spec, namespace, data)
    except ProviderError as exc:
        raise MediaError(str(exc.reason), exc.message) from None


def _parse(obj: Mapping[str, Any], where: str) -> ExternalStorageSpec:
    try:
        return parse_external_storage(obj)
    except InvalidSpecError as exc:
        raise MediaError("InvalidSpec", f"ExternalStorage {where}: {exc.summary()}") from None


def _media_client(api: ApiClient, namespace: str, spec: ExternalStorageSpec,
                  settings: Settings, connections: int, error: type[MediaError],
                  clock: Deadlines) -> MediaClient:
    """The client, built as one request under its deadline (``transfer.Deadlines``)."""
    from callstorage.providers import build_media_client

    inputs = _inputs(api, namespace, spec)
    try:
        return clock.request(lambda: build_media_client(spec, inputs, settings, connections))
    except ProviderError as exc:
        raise error(str(exc.reason), exc.message) from None


def _endpoint(spec: ExternalStorageSpec) -> str | None:
    """Where the spec's credentials are sent: its endpoint, the provider's public one for
    its account, or None (the provider's public endpoint)."""
    return provider(spec.storage_type).endpoint_url(spec.provider)


def _account(spec: ExternalStorageSpec) -> str | None:
    """The account the spec's media lives in besides the bucket (Azure's), if any."""
    return provider(spec.storage_type).account(spec.provider)


# --- upload ------------------------------------------------------------------------------


def upload_artifacts(
    namespace: str,
    call_type: str,
    call_id: str,
    artifacts: Mapping[str, Any] | Iterable[Artifact],
    call_storage: str | None = None,
    *,
    api_client: ApiClient | None = None,
    settings: Settings | None = None,
    options: TransferOptions | None = None,
    require_ready: bool = True,
    pin_key: PinKey | None = None,
) -> StoredLocation:
    """Write a call's artifacts to its storage and return where they went (the pin, sealed
    with ``pin_key``, by default the key in Secret ``callstorage-pin-key`` of the
    operator's namespace, created if missing; see ``callstorage.pins``).

    ``artifacts`` maps file names of the layout to sources (``{"audio.wav": path,
    "meeting_recording.mp4": open(...), "screenshots/a.png": b"..."}``; a list value is a
    recording in parts), or is a list of ``Artifact``. Large objects go in parallel parts
    with bounded memory (``options``). The manifest is written last, so its presence
    means every object it lists is complete. Calling again after a failure rewrites every
    object whole: safe. Keys on the platform storage carry the namespace (``tenant_folder``).

    Raises ``CallTypeNotFound``/``StorageNotFound`` (resolution), ``StorageNotReady``
    (with ``require_ready``), ``InvalidRequest`` (bad call id, names or sources, before
    anything is sent), ``PinKeyUnavailable``, ``UploadFailed`` (with the provider's
    reason), ``MediaError`` (Secrets).
    """
    from callstorage.resolution import resolve_with_object
    from callstorage.settings import get_settings

    settings = settings or get_settings()
    options = options or TransferOptions()
    clock = Deadlines(options)  # the total deadline counts from here
    api = api_client if api_client is not None else api_client_from_config()
    resolved, obj = resolve_with_object(namespace, call_type, call_storage, api_client=api,
                                        settings=settings, require_ready=require_ready)
    spec = _parse(obj, f"{resolved.namespace}/{resolved.name}")
    tenant = tenant_folder(namespace, resolved.namespace, resolved.name, settings)
    planned = plan(resolved.prefixes, call_id, artifacts, tenant)
    for item in planned:  # a missing file is the caller's mistake: say so before sending
        if isinstance(item.source, str | os.PathLike) and not os.path.isfile(item.source):
            raise InvalidRequest("InvalidArtifact", f"{item.file}: no such file "
                                 f"{os.fspath(item.source)!r}")
    # Before anything is written: media nobody can pin would be lost to the caller.
    key = pin_key or load_pin_key(api, settings, create=True)
    client = _media_client(api, resolved.namespace, spec, settings, options.concurrency,
                           UploadFailed, clock)
    try:
        objects = _upload_all(client, planned, options, clock)
        location = _location(namespace, call_type, call_id, resolved, obj, spec, tenant,
                             objects)
        manifest = _Planned(MANIFEST, layout.METADATA, location.manifest_key,
                            "application/json", manifest_body(location))
        result = _send(client, manifest, clock, None)
        return replace(location, objects=(*objects, _stored(manifest, result))).sealed(key)
    finally:
        client.close()


def _location(namespace: str, call_type: str, call_id: str, resolved: ResolvedStorage,
              obj: Mapping[str, Any], spec: ExternalStorageSpec, tenant: str | None,
              objects: list[StoredObject]) -> StoredLocation:
    """The pin of an upload (before the manifest is written and the pin sealed)."""
    return StoredLocation(
        call_id=call_id, call_type=call_type, namespace=namespace,
        storage_namespace=resolved.namespace, storage_name=resolved.name,
        storage_uid=str((obj.get("metadata") or {}).get("uid", "")),
        source=str(resolved.source), provider=spec.storage_type, endpoint=_endpoint(spec),
        account=_account(spec), bucket=spec.bucket,
        access_mode=spec.access_mode,
        uploaded_at=rfc3339(),
        manifest_key=layout.object_key(resolved.prefixes, layout.METADATA, call_id,
                                       MANIFEST, tenant),
        objects=tuple(objects))


def tenant_folder(namespace: str, storage_namespace: str, storage_name: str,
                  settings: Settings) -> str | None:
    """The folder a namespace's calls get on a storage: its own name on a storage other
    namespaces use too (the platform storage), so two tenants' calls with the same id
    never share a key; none on a tenant's own storage (the seed's layout as it is)."""
    shared = (storage_namespace, storage_name) == (settings.namespace,
                                                   settings.platform_storage)
    return namespace if shared or storage_namespace != namespace else None


def _stored(item: _Planned, result: TransferResult) -> StoredObject:
    return StoredObject(item.file, item.category, item.key, result.size, result.crc32c_b64,
                        item.content_type)


def _send(client: MediaClient, item: _Planned, clock: Deadlines,
          pool: ThreadPoolExecutor | None) -> TransferResult:
    try:
        return upload(client, item.key, item.source, item.content_type, clock.options, pool,
                      clock)
    except ChecksumMismatch as exc:
        raise UploadFailed("ChecksumMismatch", f"{item.file}: {exc.message}") from None
    except ProviderError as exc:
        raise UploadFailed(str(exc.reason), f"{item.file}: {exc.message}") from None
    except (OSError, TypeError) as exc:  # the source: an unreadable file, a wrong type
        raise InvalidRequest("InvalidArtifact", f"{item.file}: cannot read the source: "
                             f"{exc}") from None


def _upload_all(client: MediaClient, planned: list[_Planned], options: TransferOptions,
                clock: Deadlines | None = None) -> list[StoredObject]:
    """Large objects one after another (each in parallel parts), small ones side by side,
    all through one pool of ``concurrency`` threads: parts and small objects together
    never exceed ``concurrency`` requests in flight (docs/media.md). Every request has
    its deadline (``clock``), set in the thread that sends it; the pool is left only
    when all its threads are done."""
    clock = clock or Deadlines(options)
    results: dict[int, TransferResult] = {}
    with ThreadPoolExecutor(options.concurrency, thread_name_prefix="callstorage-media"
                            ) as pool:
        pending: list[tuple[int, Future[TransferResult]]] = []
        try:
            for index, item in enumerate(planned):
                if _is_small(item.source, options.part_size):
                    pending.append((index, pool.submit(_send, client, item, clock, None)))
                else:
                    results[index] = _send(client, item, clock, pool)
            for index, future in pending:
                results[index] = future.result()
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise
    return [_stored(item, results[i]) for i, item in enumerate(planned)]


def _is_small(source: Any, part_size: int) -> bool:
    """Known to fit in one request (bytes, a small file): may go beside others."""
    if isinstance(source, bytes | bytearray | memoryview):
        return len(source) <= part_size
    if isinstance(source, str | os.PathLike):
        try:
            return os.path.getsize(source) <= part_size
        except OSError:
            return False
    return False


# --- read URLs ---------------------------------------------------------------------------


def presigned_url(
    location: StoredLocation | Mapping[str, Any] | str,
    artifact: str,
    expires: int = DEFAULT_EXPIRES,
    *,
    namespace: str,
    api_client: ApiClient | None = None,
    settings: Settings | None = None,
    pin_key: PinKey | None = None,
    options: TransferOptions | None = None,
) -> str:
    """A URL that downloads ``artifact`` of a pinned call for ``expires`` seconds, for
    the caller ``namespace`` (the application asking).

    Served from the pinned bucket and key, signed with the storage's current credentials
    (S3 presign, GCS V4 signed URL, Azure SAS). Before anything else, the pin must carry
    the platform's seal (``pin_key``, by default read from Secret ``callstorage-pin-key``
    of the operator's namespace) and have been made for ``namespace``. Raises
    ``InvalidPin`` (forged, edited or an old format), ``PinNotForCaller``,
    ``ReadAccessNotGranted`` (403, the seed's body) when the storage is ``WriteOnly`` now,
    ``StorageDeleted`` when the pinned storage is gone, ``LocationUnavailable`` when its
    provider, endpoint or account changed, ``UnknownArtifact``. Building the client and
    signing (which asks Azure for a user delegation key with a service principal) are
    requests under ``options.request_deadline`` each (a ``Timeout`` past it).
    """
    from callstorage.settings import get_settings

    location = as_location(location)
    if not isinstance(expires, int) or not 1 <= expires <= MAX_EXPIRES:
        raise InvalidRequest("InvalidExpiry", f"expires must be 1..{MAX_EXPIRES} seconds, "
                             f"got {expires!r}")
    settings = settings or get_settings()
    api = api_client if api_client is not None else api_client_from_config()
    location.check_seal(pin_key or load_pin_key(api, settings))
    location.check_caller(namespace)
    stored = location.object(artifact)
    place = location.object_url(artifact)
    spec = _pinned_storage(api, location, place)
    if spec.access_mode == "WriteOnly":
        raise ReadAccessNotGranted(location.provider, place, location.storage)
    _check_same_place(location, spec, location.storage)
    pinned = spec.model_copy(update={"bucket": location.bucket})
    clock = Deadlines(options or TransferOptions())
    client = _media_client(api, location.storage_namespace, pinned, settings, 1,
                           LocationUnavailable, clock)
    try:
        return clock.request(lambda: client.presigned_get_url(stored.key, expires))
    except ProviderError as exc:
        raise MediaError(str(exc.reason), exc.message) from None
    finally:
        client.close()


def _pinned_storage(api: ApiClient, location: StoredLocation, place: str
                    ) -> ExternalStorageSpec:
    """The spec of the very storage object the pin names (same uid), or ``StorageDeleted``."""
    where = location.storage

    def gone() -> CallStorageError:
        return StorageDeleted(None, f"ExternalStorage {where}, where call "
                              f"{location.call_id}'s media was written, was deleted; the "
                              f"file is still at {place}, but no storage holds credentials "
                              "to read it")

    obj = get_external_storage_object(api, location.storage_namespace,
                                      location.storage_name, not_found=gone)
    if str((obj.get("metadata") or {}).get("uid", "")) != location.storage_uid:
        raise StorageDeleted(None, f"ExternalStorage {where}, where call "
                             f"{location.call_id}'s media was written, was deleted and "
                             f"created again (another object); the file is still at {place}")
    return _parse(obj, where)


def _check_same_place(location: StoredLocation, spec: ExternalStorageSpec, where: str
                      ) -> None:
    """The storage's credentials may sign for the pinned bucket only where they belong:
    the same provider, endpoint and (Azure) account. A changed bucket is fine."""
    if spec.storage_type != location.provider:
        raise LocationUnavailable("ProviderChanged", f"ExternalStorage {where} is now "
                                  f"{spec.storage_type}; call {location.call_id}'s media is "
                                  f"in {location.provider} bucket {location.bucket}")
    current = _endpoint(spec)
    account = _account(spec)
    if account is not None and account != location.account:
        raise LocationUnavailable("AccountChanged", f"ExternalStorage {where} now uses "
                                  f"account {account}; call "
                                  f"{location.call_id}'s media is in account "
                                  f"{location.account}")
    if (current or None) != (location.endpoint or None):
        raise LocationUnavailable("EndpointChanged", f"ExternalStorage {where} now points at "
                                  f"{current or 'the provider default endpoint'}; call "
                                  f"{location.call_id}'s media is at "
                                  f"{location.endpoint or 'the provider default endpoint'}, "
                                  "where its current credentials are not sent")
