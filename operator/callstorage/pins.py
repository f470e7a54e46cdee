"""The pin: where a call's media was written (``StoredLocation``), sealed by the platform.

``upload_artifacts`` returns a pin; ``presigned_url`` signs a read URL for the bucket and
key it names with the named storage's current credentials. A pin is JSON kept in the
platform's database and often handed back by tenants, so it is input that may be forged or
edited. Checking its fields against the storage's spec cannot tell a forged bucket from a
genuine old one (a pin must keep working after its storage moves to another bucket), so
every pin carries an HMAC-SHA256 over its canonical fields with a key only the platform
holds (``PinKey``), and nothing is signed for a pin whose seal does not verify.

The key lives in the Secret ``callstorage-pin-key`` of the operator's namespace (data
``key``, at least 32 bytes; ``previous`` is still accepted while pins sealed with it are
rotated out), read with the caller's Kubernetes credentials; the first upload creates it
with a random key if it is missing. A caller that keeps the key elsewhere passes it in
(``pin_key=``). The key is never logged, printed or put in an error.

A pin also records the namespace (application) it was made for: only that namespace may
have it signed, and only for a storage it may use (its own, or the platform storage).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from callstorage.client import AlreadyExists, ApiError, NotFoundError
from callstorage.client.errors import api_errors
from callstorage.kube import REQUEST_TIMEOUT
from callstorage.media_errors import InvalidPin, PinKeyUnavailable, PinNotForCaller, UnknownArtifact
from callstorage.storagetypes import provider

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from callstorage.settings import Settings

PIN_VERSION: Final = 2
#: The Secret, in the operator's namespace, that holds the pin key.
PIN_KEY_SECRET: Final = "callstorage-pin-key"  # noqa: S105 (a name)
PIN_KEY_ENTRY: Final = "key"
PREVIOUS_KEY_ENTRY: Final = "previous"
MIN_KEY_BYTES: Final = 32
_DOMAIN: Final = b"callstorage-pin/2\n"  # a seal for a pin is never valid for anything else
_PLATFORM_SOURCE: Final = "PlatformDefault"  # callstorage.resolution.Source.PLATFORM_DEFAULT


# --- the key -----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class PinKey:
    """The platform's pin key: ``current`` seals, ``current`` and ``previous`` verify."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        for key in (self.current, *self.previous):
            if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
                raise PinKeyUnavailable("PinKeyTooShort", f"a pin key must be at least "
                                        f"{MIN_KEY_BYTES} random bytes")

    def __repr__(self) -> str:
        return "PinKey(***)"

    @classmethod
    def generate(cls) -> PinKey:
        return cls(secrets.token_bytes(MIN_KEY_BYTES))

    def seal(self, payload: bytes) -> str:
        return _b64(hmac.new(self.current, payload, hashlib.sha256).digest())

    def verifies(self, payload: bytes, seal: str) -> bool:
        given = seal.encode("ascii", "replace")
        return any(hmac.compare_digest(_b64(hmac.new(k, payload, hashlib.sha256).digest())
                                       .encode(), given)
                   for k in (self.current, *self.previous))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_pin_key(api: ApiClient, settings: Settings, *, create: bool = False) -> PinKey:
    """The pin key from Secret ``callstorage-pin-key`` in the operator's namespace; with
    ``create`` a missing Secret is created with a random key (the first upload)."""
    from kubernetes import client as k8s

    where = f"Secret {settings.namespace}/{PIN_KEY_SECRET}"
    core = k8s.CoreV1Api(api)
    try:
        try:
            with api_errors():
                secret = core.read_namespaced_secret(PIN_KEY_SECRET, settings.namespace,
                                                     _request_timeout=REQUEST_TIMEOUT)
        except NotFoundError:
            if not create:
                raise PinKeyUnavailable("PinKeyMissing", f"{where}, the pin key, does not "
                                        "exist, so no pin can be verified: restore it (a "
                                        "new key, which the next upload creates, makes "
                                        "every earlier pin invalid)") from None
            secret = _create_key_secret(core, settings.namespace)
    except ApiError as exc:  # forbidden, mostly; ApiUnreachable passes as it is
        raise PinKeyUnavailable(None, f"cannot read {where}, the pin key: {exc.message}; "
                                "the caller needs get on it, and create for the first "
                                "upload") from None
    data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
    if PIN_KEY_ENTRY not in data:
        raise PinKeyUnavailable("PinKeyMissing", f"{where} has no entry {PIN_KEY_ENTRY!r}")
    previous = (data[PREVIOUS_KEY_ENTRY],) if data.get(PREVIOUS_KEY_ENTRY) else ()
    return PinKey(data[PIN_KEY_ENTRY], previous)


def _create_key_secret(core: Any, namespace: str) -> Any:
    from kubernetes import client as k8s

    body = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=PIN_KEY_SECRET, namespace=namespace, labels={
            "app.kubernetes.io/managed-by": "callstorage-client"}),
        type="Opaque", data={PIN_KEY_ENTRY: base64.b64encode(
            PinKey.generate().current).decode()})
    try:
        with api_errors():
            return core.create_namespaced_secret(namespace, body,
                                                 _request_timeout=REQUEST_TIMEOUT)
    except AlreadyExists:  # another uploader created it meanwhile: use theirs
        with api_errors():
            return core.read_namespaced_secret(PIN_KEY_SECRET, namespace,
                                               _request_timeout=REQUEST_TIMEOUT)


# --- the pin -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    """One object written for a call: its file name in the call (``audio.wav``,
    ``screenshots/a.png``, ``meeting_recording_part002.mp4``), category, key, size,
    CRC32C (base64, as ``gsutil hash`` and S3 print it) and content type."""

    file: str
    category: str
    key: str
    size: int
    crc32c: str
    content_type: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "category": self.category, "key": self.key,
                "size": self.size, "crc32c": self.crc32c, "contentType": self.content_type}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredObject:
        size = data["size"]
        if type(size) is not int:
            raise TypeError("size is not an integer")
        return cls(file=_text(data, "file"), category=_text(data, "category"),
                   key=_text(data, "key"), size=size, crc32c=_text(data, "crc32c"),
                   content_type=_text(data, "contentType"))


@dataclass(frozen=True)
class StoredLocation:
    """Where a call's media was written: the pin the caller keeps (``to_json``).

    It names the namespace (application) the call belongs to, the storage object
    (namespace, name and uid, so a deleted-and-recreated storage is told apart) and how it
    was chosen, the provider, endpoint (None: the provider's public one), Azure account,
    bucket, the access mode at write time, every object with its size and checksum, and
    ``seal``: the platform's HMAC over all of that (``PinKey``). The manifest
    (``manifest_key``) is among ``objects`` as ``manifest.json``.
    """

    call_id: str
    call_type: str
    namespace: str
    storage_namespace: str
    storage_name: str
    storage_uid: str
    source: str
    provider: str
    endpoint: str | None
    account: str | None
    bucket: str
    access_mode: str
    uploaded_at: str
    manifest_key: str
    objects: tuple[StoredObject, ...] = field(default_factory=tuple)
    seal: str = ""

    @property
    def storage(self) -> str:
        return f"{self.storage_namespace}/{self.storage_name}"

    def object(self, artifact: str) -> StoredObject:
        """The object written for ``artifact`` (its file name, or its key)."""
        for obj in self.objects:
            if artifact in (obj.file, obj.key):
                return obj
        known = ", ".join(o.file for o in self.objects)
        raise UnknownArtifact(None, f"call {self.call_id} has no artifact {artifact!r}; "
                              f"it has: {known}")

    def object_url(self, artifact: str) -> str:
        """``s3://bucket/key``, ``gs://bucket/key`` or the blob's https URL."""
        key = self.object(artifact).key
        return provider(self.provider).object_url(self.bucket, key, endpoint=self.endpoint,
                                                  account=self.account)

    def to_dict(self) -> dict[str, Any]:
        return {**self._fields(), "seal": self.seal}

    def _fields(self) -> dict[str, Any]:
        return {
            "version": PIN_VERSION, "callId": self.call_id, "callType": self.call_type,
            "namespace": self.namespace,
            "storage": {"namespace": self.storage_namespace, "name": self.storage_name,
                        "uid": self.storage_uid, "source": self.source},
            "provider": self.provider, "endpoint": self.endpoint, "account": self.account,
            "bucket": self.bucket, "accessMode": self.access_mode,
            "uploadedAt": self.uploaded_at, "manifest": self.manifest_key,
            "objects": [o.to_dict() for o in self.objects],
        }

    def canonical(self) -> bytes:
        """What the seal covers: every field but the seal, in one fixed serialisation."""
        return _DOMAIN + json.dumps(self._fields(), sort_keys=True, separators=(",", ":"),
                                    ensure_ascii=True).encode()

    def sealed(self, key: PinKey) -> StoredLocation:
        """This pin with the platform's seal (``upload_artifacts`` and ``repin``)."""
        return replace(self, seal=key.seal(self.canonical()))

    def check_seal(self, key: PinKey) -> None:
        """Raise ``InvalidPin`` (``PinTampered``) unless ``upload_artifacts`` sealed
        exactly these fields with ``key``."""
        if not self.seal or not key.verifies(self.canonical(), self.seal):
            raise InvalidPin("PinTampered", f"the pin of call {self.call_id!r} was not "
                             "produced by upload_artifacts, or was edited since: its seal "
                             "does not match; nothing is signed for it")

    def check_caller(self, namespace: str) -> None:
        """Raise ``PinNotForCaller`` unless ``namespace`` may have this pin signed: the
        namespace it was made for, on a storage that namespace may use (its own, or the
        platform storage, which every namespace may use)."""
        own = self.storage_namespace == self.namespace
        if namespace != self.namespace or not (own or self.source == _PLATFORM_SOURCE):
            raise PinNotForCaller(None, f"the pin of call {self.call_id!r} was made for "
                                  f"namespace {self.namespace!r}; namespace {namespace!r} "
                                  "may not have it signed")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredLocation:
        """Parse a pin (format 2). Its seal is checked where it is used (``check_seal``)."""
        version = data.get("version", 0)
        if version == 1:
            raise InvalidPin("PinOutdated", "this pin (format 1) carries no seal and is no "
                             "longer accepted: upload the call again, or re-seal pins the "
                             "platform stored itself with callstorage.pins.repin (never a "
                             "pin a tenant handed in)")
        if version != PIN_VERSION:
            raise InvalidPin("InvalidLocation", f"not a stored location: unsupported "
                             f"version {version!r}")
        seal = data.get("seal") or ""
        location = cls._parse(data, seal if isinstance(seal, str) else "")
        if not location.storage_uid:
            raise InvalidPin("InvalidLocation", "not a stored location: no storage uid")
        return location

    @classmethod
    def _parse(cls, data: Mapping[str, Any], seal: str) -> StoredLocation:
        # Strict types: what is sealed is exactly what was received (no "3" for 3).
        try:
            storage = data["storage"]
            objects = data["objects"]
            if not isinstance(objects, list):
                raise TypeError("objects is not a list")
            return cls(
                call_id=_text(data, "callId"), call_type=_text(data, "callType"),
                namespace=_text(data, "namespace"),
                storage_namespace=_text(storage, "namespace"),
                storage_name=_text(storage, "name"), storage_uid=_text(storage, "uid"),
                source=_text(storage, "source"), provider=_text(data, "provider"),
                endpoint=_optional_text(data, "endpoint"),
                account=_optional_text(data, "account"), bucket=_text(data, "bucket"),
                access_mode=_text(data, "accessMode"), uploaded_at=_text(data, "uploadedAt"),
                manifest_key=_text(data, "manifest"),
                objects=tuple(StoredObject.from_dict(o) for o in objects), seal=seal)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidPin("InvalidLocation", f"not a stored location: {exc!r}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> StoredLocation:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidPin("InvalidLocation", f"not JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise InvalidPin("InvalidLocation", "not a JSON object")
        return cls.from_dict(data)


def _text(data: Mapping[str, Any], key: str) -> str:
    """``data[key]``, which must be a string."""
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    """``data[key]``: a string, null or absent."""
    return None if data.get(key) is None else _text(data, key)


def as_location(location: StoredLocation | Mapping[str, Any] | str) -> StoredLocation:
    """A pin given as an object, its dict or its JSON."""
    if isinstance(location, StoredLocation):
        return location
    if isinstance(location, str | bytes):
        return StoredLocation.from_json(location)
    if isinstance(location, Mapping):
        return StoredLocation.from_dict(location)
    raise InvalidPin("InvalidLocation", f"not a stored location: {type(location).__name__}")


def repin(old: Mapping[str, Any] | str, key: PinKey) -> StoredLocation:
    """Seal a format-1 pin as format 2. Only for pins the platform stored itself: a
    format-1 pin has no seal, so whatever it names is sealed as it stands."""
    data = json.loads(old) if isinstance(old, str) else old
    if not isinstance(data, Mapping) or data.get("version") != 1:
        raise InvalidPin("InvalidLocation", "repin takes a format-1 pin")
    location = StoredLocation._parse(data, "")
    if not location.storage_uid:
        raise InvalidPin("InvalidLocation", "this pin names no storage uid; upload the call "
                         "again")
    return location.sealed(key)
