"""Azure Blob Storage through azure-storage-blob (``spec.bucket`` is the container): the
client of the ``abs`` storage type (its facts: ``callstorage.storagetypes.azure``).

Secret keys: ``accountKey`` (SharedKey), or ``clientId`` + ``clientSecret`` + ``tenantId``
(a service principal, authenticated against ``spec.abs.authorityHost`` or Entra ID).

For a service principal the token is fetched explicitly first, with the configured
timeouts and retries: otherwise the blob client's retry policy wraps the token request and
a wrong secret is retried with the storage SDK's long backoff before it surfaces.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import threading
import urllib.parse
from typing import Any

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ClientSecretCredential
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    LinearRetry,
    generate_blob_sas,
)

from callstorage.providers import deadline
from callstorage.providers.base import (
    ChecksumMismatch,
    PartData,
    PartRules,
    ProviderError,
    ProviderInputs,
    Reason,
    part_bytes,
    safe_code,
)
from callstorage.providers.clientcache import ClientCache, Closer, digest
from callstorage.providers.credentials import SecretKeys, redact
from callstorage.providers.endpoint_policy import Policy, validate_url
from callstorage.providers.guard import guarded_session
from callstorage.providers.transport import CABundle, network_error, refusal
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec
from callstorage.storagetypes.azure import (
    ACCOUNT_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    KNOWN_AUTHORITY_HOSTS,
    PROVIDER,
    PUBLIC_AUTHORITY,
    TENANT_ID,
    ABSSpec,
)
from callstorage.storagetypes.azure import (
    account_url as account_url_of,
)

STORAGE_SCOPE = "https://storage.azure.com/.default"

#: What a reason means, in our words (Azure's own message is never published).
_WORDS = {
    Reason.INVALID_CREDENTIALS: "the credentials were refused",
    Reason.ACCESS_DENIED: "the credentials may not do this",
    Reason.BUCKET_NOT_FOUND: "the container does not exist",
}
_AADSTS = re.compile(r"\bAADSTS\d{1,10}\b")


def reason_for_error(status: int, code: str, message: str) -> Reason:
    """The reason an Azure Storage error stands for."""
    # Azurite answers a bad SharedKey signature with AuthorizationFailure and Azure's
    # "Server failed to authenticate the request" text; a firewall uses the same code.
    if "failed to authenticate" in message.lower():
        return Reason.INVALID_CREDENTIALS
    return PROVIDER.reason_for(status, code)


MiB = 1024 * 1024
# Block blobs: up to 50,000 staged blocks of up to 4000 MiB, invisible until committed.
AZURE_PART_RULES = PartRules(parallel=True, min_part_size=1, max_part_size=4000 * MiB,
                             max_parts=50_000)
# A SAS is valid from a little before now: the storage service's clock may be behind ours.
_SAS_CLOCK_SKEW = dt.timedelta(minutes=5)


def block_id(number: int) -> str:
    """The id of block ``number``; Azure wants ids of one length within a blob."""
    return base64.b64encode(f"callstorage-{number:08d}".encode()).decode()


class AzureStorageClient:
    """One container through one BlobServiceClient."""

    part_rules = AZURE_PART_RULES

    def __init__(self, service: BlobServiceClient, container: str, account_url: str,
                 credential: ClientSecretCredential | None, ca: CABundle,
                 sensitive: list[str], settings: Settings,
                 account_name: str = "", account_key: str | None = None,
                 release: Closer | None = None) -> None:
        self._service = service
        self._release = release  # a client leased from _CLIENTS: hand it back
        self.account_name = account_name
        self._account_key = account_key
        self._container = service.get_container_client(container)
        self.container = container
        self.account_url = account_url.rstrip("/")
        self._credential = credential
        self._ca = ca
        self._sensitive = sensitive
        self._settings = settings
        self._token_checked = credential is None

    def __repr__(self) -> str:
        return f"AzureStorageClient(account_url={self.account_url!r}, container={self.container!r})"

    def head_bucket(self) -> None:
        what = f"GetContainerProperties on {self.container}"
        self._ensure_token(what)
        try:
            self._container.get_container_properties()
        except Exception as exc:
            raise self._error(what, exc) from None

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        what = f"PutBlob on {self.container}/{key}"
        self._ensure_token(what)
        try:
            self._container.upload_blob(
                key, body, overwrite=False,  # never clobber an object we did not write
                content_settings=ContentSettings(content_type=content_type))
        except Exception as exc:
            raise self._error(what, exc) from None

    def object_url(self, key: str) -> str:
        return f"{self.account_url}/{self.container}/{urllib.parse.quote(key)}"

    # -- media (callstorage.media) --

    def put_whole(self, key: str, data: bytes | bytearray, content_type: str,
                  crc32c: int) -> None:
        what = f"PutBlob on {self.container}/{key}"
        self._ensure_token(what)
        body = bytes(data)
        md5 = hashlib.md5(body).digest()  # noqa: S324 - Azure's transfer checksum
        try:  # a retried upload replaces what an earlier attempt of ours wrote
            answer = self._container.get_blob_client(key).upload_blob(
                body, length=len(body), overwrite=True, validate_content="md5",
                content_settings=ContentSettings(content_type=content_type))
        except Exception as exc:
            raise self._error(what, exc) from None
        _check_md5(what, answer, md5)

    def start_upload(self, key: str, content_type: str) -> AzureUpload:
        self._ensure_token(f"PutBlock on {self.container}/{key}")
        return AzureUpload(self, key, content_type)

    def presigned_get_url(self, key: str, expires_s: int) -> str:
        what = f"SAS for {self.container}/{key}"
        now = dt.datetime.now(dt.UTC)
        start, expiry = now - _SAS_CLOCK_SKEW, now + dt.timedelta(seconds=expires_s)
        sas: str
        try:
            if self._account_key is not None:
                sas = generate_blob_sas(
                    self.account_name, self.container, key, account_key=self._account_key,
                    permission=BlobSasPermissions(read=True), start=start, expiry=expiry)
            else:  # a service principal signs with a user delegation key
                self._ensure_token(what)
                delegation = self._service.get_user_delegation_key(start, expiry)
                sas = generate_blob_sas(
                    self.account_name, self.container, key, user_delegation_key=delegation,
                    permission=BlobSasPermissions(read=True), start=start, expiry=expiry)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._error(what, exc) from None
        return f"{self.object_url(key)}?{sas}"

    def close(self) -> None:
        if self._release is not None:
            self._release()
            return
        try:
            self._service.close()
            if self._credential is not None:
                self._credential.close()
        finally:
            self._ca.close()

    def _ensure_token(self, what: str) -> None:
        if self._token_checked or self._credential is None:
            return
        try:
            self._credential.get_token(STORAGE_SCOPE)
        except ClientAuthenticationError as exc:
            raise self._auth_error(f"{what}: token request", exc) from None
        except Exception as exc:
            raise self._error(f"{what}: token request", exc) from None
        self._token_checked = True

    def _error(self, what: str, exc: BaseException) -> ProviderError:
        if _md5_refused(exc):
            return ChecksumMismatch(what, resendable=True)
        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            # the status and Azure's error code; the server's message only classifies
            status = int(exc.status_code)
            code = safe_code(getattr(exc, "error_code", None))  # a StorageErrorCode enum
            reason = reason_for_error(status, code, str(exc.message or exc.reason or ""))
            head = f"{what} returned {status}" + (f" {code}" if code else "")
            words = _WORDS.get(reason, "")
            return ProviderError(reason, self._clean(f"{head}: {words}" if words else head))
        if isinstance(exc, ClientAuthenticationError):
            return self._auth_error(what, exc)
        return network_error(what, exc, self._settings.connect_timeout,
                             self._settings.read_timeout, self._clean)

    def _auth_error(self, what: str, exc: ClientAuthenticationError) -> ProviderError:
        """azure-identity wraps every failure of a token request in this error: a refusal
        by the guard or a network failure is that; else Entra ID refused the principal
        (named by its AADSTS code: its description is never published)."""
        refused = refusal(exc)
        if refused is not None:
            return ProviderError(refused[0], self._clean(f"{what}: {refused[1]}"))
        if exc.__cause__ is not None and exc.status_code is None:
            return network_error(what, exc.__cause__, self._settings.connect_timeout,
                                 self._settings.read_timeout, self._clean)
        found = _AADSTS.search(str(exc.message or ""))
        code = f" ({found.group(0)})" if found else ""
        return ProviderError(Reason.INVALID_CREDENTIALS, self._clean(
            f"{what}: the service principal could not get a token{code}"))

    def _clean(self, text: str) -> str:
        return redact(text, self._sensitive)


class AzureUpload:
    """One block blob being staged: blocks in any order, visible once the list commits."""

    def __init__(self, owner: AzureStorageClient, key: str, content_type: str) -> None:
        self._owner = owner
        self._key = key
        self._content_type = content_type
        self._blob = owner._container.get_blob_client(key)
        self._blocks: dict[int, int] = {}  # block number -> size
        self._lock = threading.Lock()

    def upload_part(self, number: int, data: PartData, offset: int,
                    crc32c: int, final_size: int | None,
                    object_crc32c: int | None = None) -> None:
        o = self._owner
        what = f"PutBlock {number} on {o.container}/{self._key}"
        body = part_bytes(data)
        md5 = hashlib.md5(body).digest()  # noqa: S324 - Azure's transfer checksum
        try:  # Content-MD5: Azure (and Azurite) refuse a block whose bytes differ
            answer = self._blob.stage_block(block_id(number), body, length=len(body),
                                            transactional_content_md5=md5)
        except Exception as exc:
            raise o._error(what, exc) from None
        _check_md5(what, answer, md5)
        with self._lock:
            self._blocks[number] = len(body)

    def complete(self, total_size: int) -> None:
        o = self._owner
        what = f"PutBlockList on {o.container}/{self._key}"
        with self._lock:
            blocks = [BlobBlock(block_id(n)) for n in sorted(self._blocks)]
            sent = sum(self._blocks.values())
        try:
            self._blob.commit_block_list(
                blocks, content_settings=ContentSettings(content_type=self._content_type))
        except Exception as exc:
            raise o._error(what, exc) from None
        # Each block's bytes were checked on arrival; the blob made of them has their size
        # (a credential that may write but not read cannot tell: it was checked per block).
        try:
            size = self._blob.get_blob_properties().size
        except HttpResponseError as exc:
            if exc.status_code == 403:
                return
            raise o._error(f"GetBlobProperties on {o.container}/{self._key}", exc) from None
        except Exception as exc:
            raise o._error(f"GetBlobProperties on {o.container}/{self._key}", exc) from None
        if not size == sent == total_size:
            raise ChecksumMismatch(f"{what}: {size} bytes committed of {total_size}",
                                   resendable=False)

    def abort(self) -> None:
        """Nothing to do: uncommitted blocks are invisible and expire after a week."""


def _account_key(keys: SecretKeys) -> str:
    """The account key: base64 of some bytes, as Azure's (64 bytes) and Azurite's are."""
    value = keys.require(ACCOUNT_KEY)
    if "AccountKey=" in value or ";" in value:
        raise keys.malformed(ACCOUNT_KEY, "holds a connection string, not an account key; "
                             "put only the value of its AccountKey= part there")
    try:
        if base64.b64decode(value, validate=True):
            return value
    except (binascii.Error, ValueError):
        pass
    raise keys.malformed(ACCOUNT_KEY, "is not base64, as Azure account keys are")


def _check_md5(what: str, answer: Any, md5: bytes) -> None:
    """Azure answers a Put Block or Put Blob with the MD5 of the bytes it received
    (Azurite does not: it checked ours): it must be ours."""
    reported = answer.get("content_md5") if isinstance(answer, dict) else None
    if reported and bytes(reported) != md5:
        raise ChecksumMismatch(what, resendable=True)


def _md5_refused(exc: BaseException) -> bool:
    """Azure refuses a body whose Content-MD5 it disagrees with: Md5Mismatch (Azurite:
    400 InvalidOperation, "Provided contentMD5 doesn't match.")."""
    if not isinstance(exc, HttpResponseError) or exc.status_code != 400:
        return False
    code = safe_code(getattr(exc, "error_code", None))
    return code in ("Md5Mismatch", "Crc64Mismatch") or (
        code == "InvalidOperation" and "contentmd5" in str(exc.message or "").lower())


class _Transport(RequestsTransport):  # type: ignore[misc]
    """azure-core's requests transport whose retry back-offs (the blob and identity
    retry policies sleep through their transport) end with the provider call's total
    deadline (``providers.deadline``)."""

    def sleep(self, duration: float) -> None:
        deadline.sleep(duration)


class _Retry(LinearRetry):
    """The blob retry policy, its back-offs ending with the provider call's deadline too:
    the container and blob clients (``get_container_client``, ``get_blob_client``) wrap
    the transport in one whose ``sleep`` is ``time.sleep``, so ``_Transport.sleep`` is
    never reached from them; a request cut off at its deadline would sleep a back-off
    past it."""

    def sleep(self, settings: Any, transport: Any) -> None:
        backoff = self.get_backoff_time(settings)
        if backoff and backoff > 0:
            deadline.sleep(backoff)


# Validation clients by account URL, credentials, CA and timeouts, as S3's
# (providers/clientcache.py): a cached service principal keeps its token, and a cached
# client its connections. A changed Secret is a new key.
_CLIENTS: ClientCache[tuple[Any, ...]] = ClientCache(size=64)


def build(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings
          ) -> AzureStorageClient:
    """A blob client for ``spec`` with an account key or a service principal (its SDK
    client kept between validations)."""
    return _build(spec, inputs, settings, cached=True)


def build_media(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings,
                connections: int) -> AzureStorageClient:
    """A client of its own for one upload (never shared with validations)."""
    return _build(spec, inputs, settings, cached=False)


def _build(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings,
           cached: bool) -> AzureStorageClient:
    abs_ = spec.provider if isinstance(spec.provider, ABSSpec) else None
    if abs_ is None:
        raise ProviderError(Reason.INVALID_SPEC, "spec.abs is required when storageType is abs")
    keys = SecretKeys(inputs, f"Secret {abs_.credentials_secret_ref.name}")
    account_url = abs_.endpoint or account_url_of(abs_.account_name) or ""
    if abs_.endpoint:
        validate_url(abs_.endpoint, "spec.abs.endpoint")
    sp_keys = (CLIENT_ID, CLIENT_SECRET, TENANT_ID)
    use_key = keys.present(ACCOUNT_KEY) or not any(keys.present(k) for k in sp_keys)
    if use_key and not keys.present(ACCOUNT_KEY):
        raise ProviderError(Reason.SECRET_KEY_MISSING,
                            f"{keys.what} needs key {ACCOUNT_KEY!r}, or {CLIENT_ID!r}, "
                            f"{CLIENT_SECRET!r} and {TENANT_ID!r} for a service principal")
    authority = abs_.authority_host or PUBLIC_AUTHORITY
    authority_host = (urllib.parse.urlsplit(authority).hostname or "").lower()
    if not use_key and urllib.parse.urlsplit(authority).scheme != "https":
        raise ProviderError(Reason.INVALID_SPEC, "spec.abs.authorityHost must be an https URL "
                            "(Azure identity refuses to send a client secret over plain HTTP)")
    if not use_key:
        validate_url(authority, "spec.abs.authorityHost")
    # Read (and so checked) before any client: a malformed value is InvalidCredentials
    account_key = _account_key(keys) if use_key else None
    client_id, secret, tenant_id = ("", "", "") if use_key else \
        (keys.token(CLIENT_ID), keys.token(CLIENT_SECRET), keys.token(TENANT_ID))
    # Every connection (blob endpoint, authority) is checked by the guard when it opens
    policy = Policy.of(settings.endpoint_allowlist, settings.endpoint_denylist,
                       settings.connect_timeout)

    def make() -> tuple[tuple[Any, ...], Closer]:
        ca = CABundle(inputs.ca_bundle)

        def transport() -> RequestsTransport:
            """A transport of our own session: guarded connections, no redirects."""
            return _Transport(session=guarded_session(policy), session_owner=True,
                              connection_timeout=settings.connect_timeout,
                              read_timeout=settings.read_timeout,
                              connection_verify=ca.verify)
        credential: Any
        sp_credential: ClientSecretCredential | None = None
        try:
            if account_key is not None:
                credential = AzureNamedKeyCredential(abs_.account_name, account_key)
            else:
                try:
                    sp_credential = ClientSecretCredential(
                        tenant_id, client_id, secret, authority=authority,
                        # instance discovery would ask the public cloud about a private
                        # authority
                        disable_instance_discovery=authority_host not in KNOWN_AUTHORITY_HOSTS,
                        retry_total=settings.max_attempts - 1, transport=transport())
                except ValueError as exc:  # an invalid tenant id or authority
                    raise ProviderError(Reason.INVALID_CREDENTIALS, redact(
                        f"{keys.what}: {exc}", keys.sensitive), retry=False) from None
                credential = sp_credential
            service = BlobServiceClient(
                account_url, credential=credential,
                retry_policy=_Retry(backoff=1, random_jitter_range=0,
                                    retry_total=settings.max_attempts - 1),
                permit_redirects=False, transport=transport(),
                connection_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout)
        except ProviderError:
            ca.close()
            raise
        except Exception as exc:
            ca.close()
            raise ProviderError(Reason.INVALID_SPEC, redact(
                f"cannot build an Azure Blob client: {type(exc).__name__}: {exc}",
                keys.sensitive)) from None

        def close() -> None:
            try:
                service.close()
                if sp_credential is not None:
                    sp_credential.close()
            finally:
                ca.close()
        return (service, sp_credential, ca, account_key), close

    if cached:
        # the policy is part of the key: a client guarded by another policy is never reused
        key = (policy, account_url, abs_.account_name, authority, use_key,
               digest(*[(inputs.secret or {}).get(k) for k in
                        (ACCOUNT_KEY, CLIENT_ID, CLIENT_SECRET, TENANT_ID)]),
               digest(inputs.ca_bundle), settings.connect_timeout, settings.read_timeout,
               settings.max_attempts)
        parts, release = _CLIENTS.lease(key, make)
    else:
        parts, release = make()
    service, sp_credential, ca, account_key = parts
    return AzureStorageClient(service, spec.bucket, account_url, sp_credential, ca,
                              keys.sensitive, settings, account_name=abs_.account_name,
                              account_key=account_key, release=release)
