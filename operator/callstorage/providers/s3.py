"""Amazon S3 and S3-compatible servers (MinIO, R2, Ceph, ...) through boto3: the client
of the ``s3`` storage type (its facts: ``callstorage.storagetypes.s3``).

Secret keys: ``accessKeyId``, ``secretAccessKey`` and optionally ``sessionToken``. Without
a Secret the operator's own (ambient) identity is used, only if the installation allows it.

S3 answers a refused HeadBucket with a bare 403 and no body, which cannot tell a wrong
key from a right key without permission. On a 403 we therefore make one more signed call
that does return an error document (GetBucketLocation): a credential error code there
(SignatureDoesNotMatch, InvalidAccessKeyId, ExpiredToken, ...) means InvalidCredentials,
anything else means the credentials are good and AccessDenied is the truth.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.credentials
import botocore.exceptions
import botocore.session
import google_crc32c
from botocore.config import Config

from callstorage.providers.base import (
    ChecksumMismatch,
    PartData,
    PartRules,
    ProviderError,
    ProviderInputs,
    Reason,
    safe_code,
)
from callstorage.providers.clientcache import ClientCache, Closer, digest
from callstorage.providers.credentials import SecretKeys, redact
from callstorage.providers.endpoint_policy import Policy, validate_url
from callstorage.providers.guard import guard_boto_client
from callstorage.providers.transport import CABundle, classify
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec
from callstorage.storagetypes.s3 import (
    ACCESS_KEY_ID,
    CREDENTIAL_ERROR_CODES,
    PROVIDER,
    SECRET_ACCESS_KEY,
    SESSION_TOKEN,
    S3Spec,
)


def reason_for_code(code: str, status: int) -> Reason:
    """The reason an S3 error code (or bare status, for HEAD requests) stands for."""
    return PROVIDER.reason_for(status, code)


MiB = 1024 * 1024
# S3's multipart limits: parts of 5 MiB..5 GiB (the last may be smaller), 10,000 of them.
S3_PART_RULES = PartRules(parallel=True, min_part_size=5 * MiB, max_part_size=5 * 1024 * MiB,
                          max_parts=10_000)


def _crc32c_b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


class S3StorageClient:
    """One bucket through one boto3 client."""

    part_rules = S3_PART_RULES

    def __init__(self, client: Any, bucket: str, region: str, release: Callable[[], None],
                 sensitive: list[str], settings: Settings,
                 signing: botocore.credentials.ReadOnlyCredentials | None = None) -> None:
        self._client = client
        self._signing = signing  # the keys of a client shared by credentials (see _signer)
        self.bucket = bucket
        self.region = region
        self._release = release  # the client is shared (see _CLIENTS): give it back
        self._sensitive = sensitive
        self._settings = settings

    def __repr__(self) -> str:
        return f"S3StorageClient(bucket={self.bucket!r}, region={self.region!r})"

    def head_bucket(self) -> None:
        with _signing_as(self._signing):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except Exception as exc:
                error = self._error("HeadBucket", f"on {self.bucket}", exc)
                if error.reason is Reason.ACCESS_DENIED:
                    error = self._disambiguate_403(error)
                raise error from None

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        with _signing_as(self._signing):
            try:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                        ContentType=content_type)
            except Exception as exc:
                raise self._error("PutObject", f"on {self.bucket}/{key}", exc) from None

    def object_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- media (callstorage.media) --
    # Every body carries its CRC32C, which S3 checks, so the SDK need not hash each body
    # with SHA-256 for the signature (see _config: payload signing is off for media).

    def put_whole(self, key: str, data: bytes | bytearray, content_type: str,
                  crc32c: int) -> None:
        what = f"PutObject on {self.bucket}/{key}"
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                    ContentType=content_type,
                                    ChecksumCRC32C=_crc32c_b64(crc32c))
        except Exception as exc:
            if _corrupted(exc):
                raise ChecksumMismatch(what, resendable=True) from None
            raise self._error("PutObject", f"on {self.bucket}/{key}", exc) from None

    def start_upload(self, key: str, content_type: str) -> S3Upload:
        try:
            answer = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type,
                ChecksumAlgorithm="CRC32C")
        except Exception as exc:
            raise self._error("CreateMultipartUpload", f"on {self.bucket}/{key}",
                              exc) from None
        return S3Upload(self, key, str(answer["UploadId"]))

    def presigned_get_url(self, key: str, expires_s: int) -> str:
        try:
            url: str = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=expires_s)
        except Exception as exc:  # signing is local: only a missing credential fails
            raise self._error("presign GetObject", f"on {self.bucket}/{key}", exc) from None
        return url

    def close(self) -> None:
        self._release()

    def _disambiguate_403(self, head_error: ProviderError) -> ProviderError:
        try:
            self._client.get_bucket_location(Bucket=self.bucket)
            proof = "GetBucketLocation on it succeeded"
        except botocore.exceptions.ClientError as exc:
            code, _ = _parts(exc)
            if code in CREDENTIAL_ERROR_CODES:
                return ProviderError(Reason.INVALID_CREDENTIALS, self._clean(
                    f"HeadBucket on {self.bucket} returned 403 {code}: the credentials were "
                    "refused"))
            if code != "AccessDenied":
                return head_error
            proof = "GetBucketLocation was refused with AccessDenied, not a credential error"
        except Exception:
            return head_error
        return ProviderError(Reason.ACCESS_DENIED, self._clean(
            f"HeadBucket on {self.bucket} returned 403 AccessDenied: the credentials are "
            f"valid ({proof}) but may not read the bucket (s3:ListBucket)"))

    def _error(self, operation: str, target: str, exc: BaseException) -> ProviderError:
        if isinstance(exc, ProviderError):  # raised by one of our handlers on the client
            return exc
        if isinstance(exc, botocore.exceptions.ClientError):
            # Our words, the status and S3's error code: never the server's message text
            code, status = _parts(exc)
            reason = reason_for_code(code, status)
            words = _WORDS.get(reason, "")
            if reason is Reason.INVALID_SPEC:
                actual = safe_code(exc.response.get("ResponseMetadata", {}).get(
                    "HTTPHeaders", {}).get("x-amz-bucket-region"))
                hint = f" (the bucket is in {actual})" if actual else ""
                words = f"check spec.s3.region ({self.region}){hint}"
            elif reason is Reason.ACCESS_DENIED and code == str(status):  # HEAD: no body
                words = "the credentials were refused; they may be wrong or lack permission"
            text = f"{operation} {target} returned {status}"
            if code != str(status):
                text += f" {code}"
            return ProviderError(reason, self._clean(f"{text}: {words}" if words else text))
        if isinstance(exc, botocore.exceptions.ParamValidationError):  # e.g. a bucket name
            return ProviderError(Reason.INVALID_SPEC, self._clean(f"{operation} {target}: {exc}"))
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return ProviderError(Reason.INVALID_CREDENTIALS,
                                 f"{operation} {target}: no ambient AWS credentials found")
        network = classify(exc, self._settings.connect_timeout, self._settings.read_timeout)
        endpoint = self._client.meta.endpoint_url
        if network is not None:
            reason, detail = network
            return ProviderError(reason, self._clean(f"{operation} {target} ({endpoint}): "
                                                     f"{detail}"))
        return ProviderError(Reason.ENDPOINT_UNREACHABLE, self._clean(
            f"{operation} {target} ({endpoint}) failed: {type(exc).__name__}"))

    def _clean(self, text: str) -> str:
        return redact(text, self._sensitive)


class S3Upload:
    """One S3 multipart upload: parts may go in any order and be sent again."""

    def __init__(self, owner: S3StorageClient, key: str, upload_id: str) -> None:
        self._owner = owner
        self._key = key
        self._upload_id = upload_id
        self._parts: dict[int, dict[str, Any]] = {}
        self._object_crc32c: int | None = None  # given with the last part
        self._lock = threading.Lock()

    def upload_part(self, number: int, data: PartData, offset: int,
                    crc32c: int, final_size: int | None,
                    object_crc32c: int | None = None) -> None:
        o = self._owner
        checksum = _crc32c_b64(crc32c)  # S3 refuses the part (BadDigest) if it differs
        try:
            answer = o._client.upload_part(
                Bucket=o.bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number,
                Body=data, ChecksumCRC32C=checksum)
        except Exception as exc:
            if _corrupted(exc):
                raise ChecksumMismatch(f"UploadPart {number} of {o.bucket}/{self._key}",
                                       resendable=True) from None
            raise o._error("UploadPart", f"{number} of {o.bucket}/{self._key}", exc) from None
        with self._lock:
            self._parts[number] = {"PartNumber": number, "ETag": answer["ETag"],
                                   "ChecksumCRC32C": checksum}
            if object_crc32c is not None:
                self._object_crc32c = object_crc32c

    def complete(self, total_size: int) -> None:
        o = self._owner
        with self._lock:
            parts = [self._parts[n] for n in sorted(self._parts)]
        try:
            answer = o._client.complete_multipart_upload(
                Bucket=o.bucket, Key=self._key, UploadId=self._upload_id,
                MultipartUpload={"Parts": parts})
        except Exception as exc:
            raise o._error("CompleteMultipartUpload", f"on {o.bucket}/{self._key}",
                           exc) from None
        if not self._as_sent(answer, [p["ChecksumCRC32C"] for p in parts]):
            with contextlib.suppress(Exception):  # other bytes than ours: not under the key
                o._client.delete_object(Bucket=o.bucket, Key=self._key)
            raise ChecksumMismatch(f"CompleteMultipartUpload on {o.bucket}/{self._key}",
                                   resendable=False)

    def _as_sent(self, answer: dict[str, Any], part_checksums: list[str]) -> bool:
        """The object's CRC32C S3 reports (of the parts' CRC32Cs, "<crc>-<parts>"; of the
        bytes for a FULL_OBJECT upload) is the one of what we sent. A server that reports
        none (moto, some S3-compatible ones) checked each part, or nothing."""
        reported = str(answer.get("ChecksumCRC32C") or "").partition("-")[0]
        if not reported:
            return True
        if answer.get("ChecksumType") == "FULL_OBJECT":
            return self._object_crc32c is None or reported == _crc32c_b64(self._object_crc32c)
        return reported == composite_crc32c(part_checksums)

    def abort(self) -> None:
        o = self._owner
        # Best effort (the endpoint may be gone): the parts are invisible under the key
        # either way, and a bucket lifecycle rule removes abandoned uploads.
        with contextlib.suppress(Exception):
            o._client.abort_multipart_upload(Bucket=o.bucket, Key=self._key,
                                             UploadId=self._upload_id)


#: What a reason means, in our words (an S3 error's own message is never published).
_WORDS = {
    Reason.INVALID_CREDENTIALS: "the credentials were refused",
    Reason.ACCESS_DENIED: "the credentials may not do this",
    Reason.BUCKET_NOT_FOUND: "the bucket does not exist",
}


def composite_crc32c(part_checksums: list[str]) -> str:
    """S3's CRC32C of a multipart object: the CRC32C of the parts' CRC32Cs."""
    raw = b"".join(base64.b64decode(c) for c in part_checksums)
    return _crc32c_b64(google_crc32c.value(raw))


def _corrupted(exc: BaseException) -> bool:
    """S3 refused a body whose checksum (ours, or the signature's SHA-256) it disagrees
    with: the bytes changed on the way."""
    return isinstance(exc, botocore.exceptions.ClientError) and _parts(exc)[0] in (
        "BadDigest", "XAmzContentSHA256Mismatch")


def _parts(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    """S3's error code (the status for a HEAD, which has no body) and the HTTP status."""
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code = safe_code(exc.response.get("Error", {}).get("Code")) or str(status)
    return code, status


def build(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings
          ) -> S3StorageClient:
    """An S3 client for ``spec`` with the Secret's keys (or ambient credentials)."""
    return _build(spec, inputs, settings, media_connections=None)


def build_media(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings,
                connections: int) -> S3StorageClient:
    """Like ``build``, for uploads: ``connections`` parallel connections, and bodies
    protected by their CRC32C instead of a SHA-256 in the signature."""
    return _build(spec, inputs, settings, media_connections=connections)


def _credentials(s3: S3Spec, inputs: ProviderInputs, settings: Settings
                 ) -> tuple[dict[str, Any], list[str]]:
    """The boto3 session arguments (region, and the Secret's keys if there is a Secret)
    and the values to redact from messages."""
    session_kwargs: dict[str, Any] = {"region_name": s3.region}
    if inputs.secret is None:
        if not settings.allow_ambient_credentials:
            raise ProviderError(
                Reason.AMBIENT_CREDENTIALS_DISABLED,
                "spec.s3.credentialsSecretRef is not set and this installation does not "
                "allow the operator's own (ambient) credentials",
            )
        return session_kwargs, []
    keys = SecretKeys(inputs, f"Secret {s3.credentials_secret_ref.name}"
                      if s3.credentials_secret_ref else "the credentials Secret")
    session_kwargs.update(
        aws_access_key_id=keys.token(ACCESS_KEY_ID),
        aws_secret_access_key=keys.token(SECRET_ACCESS_KEY),
        aws_session_token=keys.optional_token(SESSION_TOKEN),
    )
    return session_kwargs, keys.sensitive


def _build(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings,
           media_connections: int | None) -> S3StorageClient:
    s3 = spec.provider if isinstance(spec.provider, S3Spec) else None
    if s3 is None:
        raise ProviderError(Reason.INVALID_SPEC, "spec.s3 is required when storageType is s3")
    session_kwargs, sensitive = _credentials(s3, inputs, settings)
    if s3.endpoint:
        validate_url(s3.endpoint, "spec.s3.endpoint")
    # Every connection of the client, to the endpoint or the public S3 hosts, is checked
    policy = Policy.of(settings.endpoint_allowlist, settings.endpoint_denylist,
                       settings.connect_timeout)
    # Validations with a Secret share one client per endpoint whatever the keys: each
    # request is signed with its own validation's keys (_signer), so N storages with N
    # distinct Secrets cost one client build, not N (~20 ms of CPU each). Uploads and
    # ambient credentials keep a client per key. The binding of keys to endpoints is
    # checked before any client is taken (providers.build_client), so a shared client
    # never carries a storage's keys to an endpoint its Secret does not bind. A directory
    # bucket's requests are signed with a session botocore keeps per client and bucket
    # name: there, only identical keys share a client (and so a session).
    signing = None
    if inputs.secret is not None and media_connections is None and \
            not spec.bucket.endswith(SESSION_AUTH_SUFFIXES):
        signing = botocore.credentials.ReadOnlyCredentials(
            session_kwargs.pop("aws_access_key_id"), session_kwargs.pop("aws_secret_access_key"),
            session_kwargs.pop("aws_session_token"))
    key = (policy, s3.endpoint or "", s3.region, s3.force_path_style, digest(inputs.ca_bundle),
           "per-request keys" if signing is not None else
           digest(*(session_kwargs.get(k) for k in
                    ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"))),
           settings.connect_timeout, settings.read_timeout, settings.max_attempts,
           media_connections)
    connections = media_connections if media_connections is not None else \
        settings.max_concurrent_validations

    def make() -> tuple[Any, Closer]:
        ca = CABundle(inputs.ca_bundle)
        try:
            client = (_signer_session() if signing is not None else _shared_session()).client(
                "s3", endpoint_url=s3.endpoint or None,
                config=_config(s3.force_path_style, settings, media_connections,
                               connections),
                verify=ca.verify,
                **session_kwargs)
            guard_boto_client(client, policy)
            if signing is not None:
                client.meta.events.register_last("before-sign.s3", _refuse_session_auth)
        except BaseException:
            ca.close()
            raise

        def close() -> None:
            try:
                client.close()
            finally:
                ca.close()
        return client, close

    try:
        client, release = _CLIENTS.lease(key, make)
    except ProviderError:
        raise
    except Exception as exc:
        raise ProviderError(Reason.INVALID_SPEC, redact(
            f"cannot build an S3 client: {type(exc).__name__}: {exc}", sensitive)) from None
    return S3StorageClient(client, spec.bucket, s3.region, release, sensitive, settings,
                           signing)


# Clients by endpoint, region, addressing style, CA, credentials digest and timeouts. A
# fresh boto3 Session per validation cost ~300 ms of CPU (botocore parses its JSON models
# per Session); one shared Session builds a client in ~20 ms, a cached client costs nothing.
_CLIENTS: ClientCache[Any] = ClientCache(size=64)
_SESSION: list[boto3.session.Session] = []


def _shared_session() -> boto3.session.Session:
    """The one Session that builds every client (only under _CLIENTS' lock: Sessions are not
    thread-safe). Clients get explicit keys, which never mix with the operator's own
    profile or environment; only storages without a Secret use its ambient credentials."""
    if not _SESSION:
        _SESSION.append(boto3.session.Session())
    return _SESSION[0]


#: Buckets botocore signs for with session credentials from CreateSession, cached in the
#: client by bucket name (S3 Express One Zone directory buckets and their access points).
SESSION_AUTH_SUFFIXES = ("--x-s3", "--xa-s3")


def _refuse_session_auth(request: Any, **_: Any) -> None:
    """On a client shared by credentials, refuse a request botocore would sign from its
    per-bucket session cache (a bucket that SESSION_AUTH_SUFFIXES missed): that session
    may be another storage's. Registered last, after botocore's own resolver."""
    if request.context.get("signing", {}).get("identity_cache") is not None:
        raise ProviderError(Reason.INTERNAL_ERROR, (
            "this bucket needs session authentication (CreateSession), which a client "
            "shared by several credentials cannot keep apart; nothing was sent"))


_SIGNING = threading.local()
_SIGNER_SESSION: list[boto3.session.Session] = []


@contextlib.contextmanager
def _signing_as(keys: botocore.credentials.ReadOnlyCredentials | None) -> Iterator[None]:
    """Requests made on this thread inside the block are signed with ``keys`` (clients of
    the signer session only; None: nothing to set, the client has its own keys)."""
    if keys is None:
        yield
        return
    _SIGNING.keys = keys
    try:
        yield
    finally:
        _SIGNING.keys = None


class _PerThreadCredentials(botocore.credentials.Credentials):  # type: ignore[misc]
    """The credentials of a shared validation client: whatever ``_signing_as`` set on the
    signing thread. None set: the request is refused (NoCredentialsError), never signed
    with another storage's keys."""

    def __init__(self) -> None:
        super().__init__("", "")

    def get_frozen_credentials(self) -> botocore.credentials.ReadOnlyCredentials:
        keys: botocore.credentials.ReadOnlyCredentials | None = getattr(_SIGNING, "keys", None)
        if keys is None:
            raise botocore.exceptions.NoCredentialsError()
        return keys


class _PerThreadProvider(botocore.credentials.CredentialProvider):  # type: ignore[misc]
    METHOD = "callstorage-per-request"

    def load(self) -> botocore.credentials.Credentials:
        return _PerThreadCredentials()


def _signer_session() -> boto3.session.Session:
    """The Session of clients shared by credentials (only under _CLIENTS' lock): its only
    credential source is the signing thread's keys, never the environment or a profile."""
    if not _SIGNER_SESSION:
        core = botocore.session.Session()
        core.register_component("credential_provider",
                                botocore.credentials.CredentialResolver([_PerThreadProvider()]))
        _SIGNER_SESSION.append(boto3.session.Session(botocore_session=core))
    return _SIGNER_SESSION[0]


def _config(force_path_style: bool, settings: Settings,
            media_connections: int | None = None, connections: int | None = None) -> Config:
    s3: dict[str, Any] = {"addressing_style": "path" if force_path_style else "auto"}
    extra: dict[str, Any] = {}
    if connections is not None:  # one per concurrent validation or upload part
        extra["max_pool_connections"] = max(10, connections)
    if media_connections is not None:
        # Media bodies carry a CRC32C the server verifies; hashing every part with SHA-256
        # for the signature as well would cost more CPU than the transfer itself.
        s3["payload_signing_enabled"] = False
        extra["signature_version"] = "s3v4"  # presigned URLs too (botocore may pick v2)
    return Config(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        s3=s3,
        **extra,
        # Checksum headers only where S3 requires them: several S3-compatible servers
        # reject the CRC headers newer botocore sends on every PutObject.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra="callstorage",
    )
