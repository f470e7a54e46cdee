"""Google Cloud Storage through google-cloud-storage, with a service-account key: the
client of the ``gcs`` storage type (its facts: ``callstorage.storagetypes.gcs``).

Secret key: ``credentials.json`` (the key file as downloaded). The access token is fetched
explicitly, once, before any storage call, with the configured timeouts: a wrong or revoked
key then fails as InvalidCredentials from the token endpoint, never as a storage error,
and google-auth's own unbounded defaults never apply. The key's ``token_uri`` is a URL the
operator will POST to: the token requests, like every storage request, go through sessions
whose connections the endpoint policy checks (``callstorage.providers.guard``) and which
follow no redirect.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import google.auth.crypt
import google.auth.exceptions
import requests
from google.api_core import exceptions as api_exceptions
from google.auth.transport.requests import AuthorizedSession
from google.auth.transport.requests import Request as AuthRequest
from google.cloud import storage
from google.oauth2 import service_account

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
from callstorage.providers.transport import CABundle, network_error
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec
from callstorage.storagetypes.gcs import (
    CREDENTIALS_JSON,
    PROVIDER,
    GCSSpec,
)

SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
_REQUIRED_FIELDS = ("client_email", "private_key", "token_uri")
# Fields google-auth or the storage client read when present: strings, or nothing
_OPTIONAL_TEXT_FIELDS = ("project_id", "private_key_id", "client_id", "universe_domain",
                         "quota_project_id")
_ONE_LINE = re.compile(r"[\x21-\x7e]+")

T = TypeVar("T")
MiB = 1024 * 1024
GOOGLE_API_ENDPOINT = "https://storage.googleapis.com"
# A resumable session takes its chunks in order, each (but the last) a multiple of 256 KiB.
GCS_PART_RULES = PartRules(parallel=False, min_part_size=256 * 1024,
                           max_part_size=1024 * MiB, max_parts=1_000_000,
                           alignment=256 * 1024)


def reason_for_status(status: int, code: str = "") -> Reason:
    """The reason a GCS JSON-API status (and error reason) stands for."""
    return PROVIDER.reason_for(status, code)


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: throttling, server errors, a dropped connection."""
    if isinstance(exc, api_exceptions.TooManyRequests | api_exceptions.ServerError):
        return True
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


class GCSStorageClient:
    """One bucket through one google-cloud-storage client."""

    part_rules = GCS_PART_RULES

    def __init__(self, client: storage.Client, credentials: service_account.Credentials,
                 auth_request: TokenRequest, bucket: str, ca: CABundle,
                 sensitive: list[str], settings: Settings,
                 http: AuthorizedSession | None = None, endpoint: str | None = None,
                 release: Closer | None = None) -> None:
        self._client = client
        self._release = release  # a client leased from _CLIENTS: hand it back
        self._http = http
        self.endpoint = endpoint
        self._credentials = credentials
        self._auth_request = auth_request
        self.bucket = bucket
        self._ca = ca
        self._sensitive = sensitive
        self._settings = settings
        self._timeout = (settings.connect_timeout, settings.read_timeout)

    def __repr__(self) -> str:
        return f"GCSStorageClient(bucket={self.bucket!r})"

    def head_bucket(self) -> None:
        self._ensure_token(f"bucket get on {self.bucket}")
        self._call(f"bucket get on {self.bucket}", lambda: self._client.get_bucket(
            self.bucket, timeout=self._timeout, retry=None))

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        what = f"object insert on {self.bucket}/{key}"
        self._ensure_token(what)
        blob = self._client.bucket(self.bucket).blob(key)
        self._call(what, lambda: blob.upload_from_string(
            body, content_type=content_type, timeout=self._timeout, retry=None))

    def object_url(self, key: str) -> str:
        return f"gs://{self.bucket}/{key}"

    # -- media (callstorage.media) --

    def put_whole(self, key: str, data: bytes | bytearray, content_type: str,
                  crc32c: int) -> None:
        what = f"object insert on {self.bucket}/{key}"
        self._ensure_token(what)
        blob = self._client.bucket(self.bucket).blob(key)
        blob.crc32c = _b64(crc32c)  # GCS checks it

        def insert() -> None:
            try:
                blob.upload_from_string(bytes(data), content_type=content_type,
                                        timeout=self._timeout, retry=None, checksum=None)
            except api_exceptions.BadRequest as exc:
                if "crc32c" in str(exc.message).lower():  # "Provided CRC32C ... doesn't match"
                    raise ChecksumMismatch(what, resendable=True) from None
                raise

        self._call(what, insert)

    def start_upload(self, key: str, content_type: str) -> GCSUpload:
        what = f"resumable upload of {self.bucket}/{key}"
        self._ensure_token(what)
        blob = self._client.bucket(self.bucket).blob(key)
        url = self._call(what, lambda: blob.create_resumable_upload_session(
            content_type=content_type, timeout=self._timeout, checksum=None, retry=None))
        if self._http is None:
            raise ProviderError(Reason.INVALID_SPEC, f"{what}: no HTTP session")
        return GCSUpload(self, self._http, key, str(url))

    def presigned_get_url(self, key: str, expires_s: int) -> str:
        blob = self._client.bucket(self.bucket).blob(key)
        try:  # signed locally with the service account's key: no request is made
            url: str = blob.generate_signed_url(
                version="v4", expiration=dt.timedelta(seconds=expires_s), method="GET",
                api_access_endpoint=self.endpoint or GOOGLE_API_ENDPOINT,
                credentials=self._credentials)
        except Exception as exc:
            raise ProviderError(Reason.INVALID_CREDENTIALS, self._clean(
                f"signing a URL for {self.bucket}/{key} failed: {type(exc).__name__}")
            ) from None
        return url

    def close(self) -> None:
        if self._release is not None:
            self._release()
            return
        try:
            self._client.close()
        finally:
            self._ca.close()

    def _ensure_token(self, what: str) -> None:
        if self._credentials.valid:
            return
        try:
            self._credentials.refresh(self._auth_request)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.RefreshError as exc:
            raise ProviderError(Reason.INVALID_CREDENTIALS, self._clean(
                f"{what}: the token endpoint refused the service-account key"
                f"{self._auth_request.answer(exc)}")) from None
        except Exception as exc:
            raise self._network_error(f"{what}: token request", exc) from None

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except ProviderError:
                raise
            except Exception as exc:
                if attempt < self._settings.max_attempts and _transient(exc):
                    deadline.sleep(min(0.5 * 2 ** (attempt - 1), 5.0))
                    continue
                raise self._error(what, exc) from None

    def _error(self, what: str, exc: BaseException) -> ProviderError:
        if isinstance(exc, api_exceptions.GoogleAPICallError) and exc.code is not None:
            # the status and GCS's error reason; the server's message is never published
            status, code = int(exc.code), _api_code(exc)
            reason = reason_for_status(status, code)
            words = "the bucket does not exist" if reason is Reason.BUCKET_NOT_FOUND else ""
            head = f"{what} returned {status} {_STATUS_NAMES.get(status, '')}".rstrip()
            head += f" ({code})" if code else ""
            return ProviderError(reason, self._clean(f"{head}: {words}" if words else head))
        if isinstance(exc, google.auth.exceptions.RefreshError):
            return ProviderError(Reason.INVALID_CREDENTIALS, self._clean(
                f"{what}: the token endpoint refused the service-account key"
                f"{self._auth_request.answer(exc)}"))
        return self._network_error(what, exc)

    def _network_error(self, what: str, exc: BaseException) -> ProviderError:
        return network_error(what, exc, self._settings.connect_timeout,
                             self._settings.read_timeout, self._clean)

    def _clean(self, text: str) -> str:
        return redact(text, self._sensitive)


class GCSUpload:
    """One GCS resumable session: chunks in order; the object appears with the last one.

    GCS checks no chunk on its own: the last request carries the object's CRC32C
    (``X-Goog-Hash``), which GCS checks before the object appears, and the object it
    reports must have that CRC32C too. A 308 says how much the session holds (``Range``);
    what it did not keep of a chunk is sent again from there.
    """

    #: Rounds in a row a chunk may be answered without the session growing.
    MAX_STALLS = 3

    def __init__(self, owner: GCSStorageClient, http: AuthorizedSession, key: str,
                 url: str) -> None:
        self._owner = owner
        self._http = http
        self._key = key
        self._url = url
        self._finalised = False
        self._lock = threading.Lock()  # one chunk at a time, in order

    def upload_part(self, number: int, data: PartData, offset: int,
                    crc32c: int, final_size: int | None,
                    object_crc32c: int | None = None) -> None:
        o = self._owner
        body = part_bytes(data)  # one chunk at a time: its memory is bounded anyway
        total = "*" if final_size is None else str(final_size)
        headers = {} if object_crc32c is None else {
            "X-Goog-Hash": f"crc32c={_b64(object_crc32c)}"}
        what = f"chunk {number} of {o.bucket}/{self._key}"
        end = offset + len(body)
        with self._lock:
            start, stalls = offset, 0
            while True:
                piece = body[start - offset:]
                span = f"bytes {start}-{end - 1}/{total}" if piece else f"bytes */{total}"
                answer = o._call(what, functools.partial(self._put, what, piece, span, headers))
                if answer.status_code in (200, 201):
                    break
                held = _persisted(answer)  # a 308: the session holds bytes 0..held-1
                if not offset <= held <= end:
                    raise ProviderError(Reason.SERVICE_ERROR, o._clean(
                        f"{what}: the session holds {held} bytes, not {offset}..{end}"),
                        stalled=True)
                if held == end and final_size is None:
                    return
                stalls = 0 if held > start else stalls + 1
                if stalls >= self.MAX_STALLS:
                    raise ProviderError(Reason.SERVICE_ERROR, o._clean(
                        f"{what}: the session keeps {held} of {end} bytes"))
                start = held
            if final_size is None:
                raise ProviderError(Reason.SERVICE_ERROR, o._clean(
                    f"{what}: the session finished before the last chunk"), stalled=True)
            self._check_object(what, answer, object_crc32c)
            self._finalised = True

    def _check_object(self, what: str, answer: requests.Response, crc32c: int | None
                      ) -> None:
        """The object GCS reports has the CRC32C of what we sent, else it is removed."""
        try:
            reported = str(answer.json().get("crc32c") or "")
        except ValueError:
            reported = ""
        if crc32c is None or not reported or reported == _b64(crc32c):
            return
        o = self._owner
        with contextlib.suppress(Exception):  # other bytes than ours: not under the key
            o._client.bucket(o.bucket).blob(self._key).delete(timeout=o._timeout, retry=None)
        raise ChecksumMismatch(what, resendable=False)

    def _put(self, what: str, data: bytes, span: str, headers: dict[str, str]
             ) -> requests.Response:
        answer = self._http.put(self._url, data=data,
                                headers={"Content-Range": span, **headers},
                                timeout=self._owner._timeout)
        if answer.status_code in (200, 201, 308):
            return answer
        if answer.status_code == 400 and headers and b"crc32c" in answer.content.lower():
            # GCS refused the object's CRC32C: an earlier chunk changed on the way
            raise ChecksumMismatch(what, resendable=False)
        raise api_exceptions.from_http_response(answer)  # type: ignore[no-untyped-call]

    def complete(self, total_size: int) -> None:
        if not self._finalised:
            raise ProviderError(Reason.ENDPOINT_UNREACHABLE, self._owner._clean(
                f"resumable upload of {self._owner.bucket}/{self._key} was not finished"))

    def abort(self) -> None:
        # A cancelled session leaves nothing behind; best effort: unfinished sessions
        # expire after a week anyway.
        with contextlib.suppress(Exception):
            self._http.delete(self._url, timeout=self._owner._timeout)


def _b64(crc32c: int) -> str:
    return base64.b64encode(crc32c.to_bytes(4, "big")).decode()


def _persisted(answer: requests.Response) -> int:
    """How many bytes a session holds, from a 308's ``Range: bytes=0-<last>`` (none: 0)."""
    value = answer.headers.get("Range", "")
    last = value.rpartition("-")[2]
    return int(last) + 1 if value.startswith("bytes=0-") and last.isdigit() else 0


_STATUS_NAMES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                 409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error",
                 503: "Service Unavailable"}


def _api_code(exc: api_exceptions.GoogleAPICallError) -> str:
    """The first error's ``reason`` (GCS's error code, e.g. ``invalid``), if any."""
    for error in exc.errors or []:
        if isinstance(error, dict) and error.get("reason"):
            return safe_code(error["reason"])
    return ""


class TokenRequest:
    """google-auth's transport for the token endpoint with our timeouts, remembering the
    status of the last answer: a RefreshError carries the endpoint's body, which is never
    published, but not its status, which is."""

    def __init__(self, session: requests.Session, timeout: tuple[float, float]) -> None:
        self._request = AuthRequest(session=session)
        self._timeout = timeout
        self.last_status: int | None = None

    def __call__(self, url: str, method: str = "GET", body: Any = None,
                 headers: Mapping[str, str] | None = None, timeout: Any = None,
                 **kwargs: Any) -> Any:
        # google-auth would wait up to 120s for the token endpoint; bound it like the rest
        response = self._request(url, method=method, body=body, headers=headers,
                                 timeout=self._timeout, **kwargs)
        self.last_status = int(response.status)
        return response

    def answer(self, exc: google.auth.exceptions.RefreshError) -> str:
        """`` (HTTP 400 invalid_grant)``: the status and the OAuth error code, if known."""
        data = exc.args[1] if len(exc.args) > 1 else None
        code = safe_code(data.get("error")) if isinstance(data, dict) else ""
        parts = [f"HTTP {self.last_status}" if self.last_status else "", code]
        shown = " ".join(p for p in parts if p)
        return f" ({shown})" if shown else ""


def _load_key(keys: SecretKeys) -> dict[str, Any]:
    """The service-account key file, checked field by field: anything google-auth or the
    storage client would trip over later (as a "network" or spec error) is refused here
    as InvalidCredentials naming the Secret key."""
    raw = keys.require(CREDENTIALS_JSON)
    try:
        info = json.loads(raw)
    except (ValueError, RecursionError):  # a key file is shallow; deep nesting is garbage
        raise keys.malformed(CREDENTIALS_JSON, "is not a JSON service-account key") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise keys.malformed(CREDENTIALS_JSON,
                             "is not a service-account key (\"type\": \"service_account\")")
    missing = [f for f in _REQUIRED_FIELDS if not isinstance(info.get(f), str) or not info[f]]
    if missing:
        raise keys.malformed(CREDENTIALS_JSON, "lacks " + ", ".join(missing)
                             + " (each a non-empty string)")
    for field in ("private_key", "private_key_id"):  # redact these even inside the JSON
        if isinstance(info.get(field), str):
            keys.sensitive.append(info[field])
    wrong = [f for f in _OPTIONAL_TEXT_FIELDS if info.get(f) is not None
             and not isinstance(info[f], str)]
    if wrong:
        raise keys.malformed(CREDENTIALS_JSON, "has " + ", ".join(wrong)
                             + " of the wrong type (a string is expected)")
    if not _ONE_LINE.fullmatch(info["client_email"]):
        raise keys.malformed(CREDENTIALS_JSON, "has a client_email that is not one line "
                             "of visible characters")
    return info


def _check_private_key(keys: SecretKeys, info: dict[str, Any]) -> None:
    """The key must sign as the token request will (RS256): an EC or DSA key parses, and
    only fails when the first token is requested, in a way that reads as a network error."""
    try:
        signer = google.auth.crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
            info["private_key"])
        signer.sign(b"callstorage: can this key sign RS256?")
    except Exception:  # whatever the parser or signer says, the key is unusable
        raise keys.malformed(CREDENTIALS_JSON, "has a private_key that is not an RSA "
                             "private key in PEM form, which service-account keys are"
                             ) from None


# Validation clients by endpoint, key, CA and timeouts, as S3's (providers/clientcache.py):
# a cached client keeps its access token, so a validation costs one request instead of
# a token request, a key parse and a new TLS session. A changed Secret is a new key.
_CLIENTS: ClientCache[tuple[Any, ...]] = ClientCache(size=64)


def build(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings
          ) -> GCSStorageClient:
    """A GCS client for ``spec`` with the service-account key from the Secret (its SDK
    client kept between validations)."""
    return _build(spec, inputs, settings, cached=True)


def build_media(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings,
                connections: int) -> GCSStorageClient:
    """A client of its own for one upload (never shared with validations)."""
    return _build(spec, inputs, settings, cached=False)


def _service_account(keys: SecretKeys, info: dict[str, Any]) -> Any:
    """The key's credentials; a key that does not parse (or sign) is the Secret's fault."""
    _check_private_key(keys, info)
    try:
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=list(SCOPES))
    except (ValueError, TypeError) as exc:  # e.g. a private key that does not parse
        raise keys.malformed(CREDENTIALS_JSON, "is not a usable service-account key "
                             f"({type(exc).__name__})") from None


def _build(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings,
           cached: bool) -> GCSStorageClient:
    gcs = spec.provider if isinstance(spec.provider, GCSSpec) else None
    if gcs is None:
        raise ProviderError(Reason.INVALID_SPEC, "spec.gcs is required when storageType is gcs")
    keys = SecretKeys(inputs, f"Secret {gcs.credentials_secret_ref.name}")
    info = _load_key(keys)
    validate_url(info["token_uri"], f"token_uri of {CREDENTIALS_JSON}")
    if gcs.endpoint:
        validate_url(gcs.endpoint, "spec.gcs.endpoint")
    # Every connection, token endpoint included, is checked by the guard when it opens
    policy = Policy.of(settings.endpoint_allowlist, settings.endpoint_denylist,
                       settings.connect_timeout)

    def make() -> tuple[tuple[Any, ...], Closer]:
        credentials = _service_account(keys, info)  # on a miss only: a cached one passed
        ca = CABundle(inputs.ca_bundle)
        try:
            auth_session = guarded_session(policy)
            auth_session.verify = ca.verify
            auth_request = TokenRequest(auth_session,
                                        (settings.connect_timeout, settings.read_timeout))
            http = AuthorizedSession(  # type: ignore[no-untyped-call]
                credentials, auth_request=auth_request)
            guarded_session(policy, http)
            http.verify = ca.verify
            options = {"api_endpoint": gcs.endpoint} if gcs.endpoint else None
            client = storage.Client(project=info.get("project_id") or "-",
                                    credentials=credentials, _http=http,
                                    client_options=options)
            # google-cloud-storage >= 3.x fetches each bucket's metadata (a bucket get,
            # which a write-only key may not even be allowed) in a thread of its own, for
            # its traces: a request outside any provider call's deadline, which an endpoint
            # trickling its answer holds for ever. Off, per client.
            client._bucket_metadata_cache = None
        except Exception as exc:
            ca.close()
            raise ProviderError(Reason.INVALID_SPEC, redact(
                f"cannot build a GCS client: {type(exc).__name__}: {exc}", keys.sensitive)
            ) from None

        def close() -> None:
            try:
                client.close()
            finally:
                ca.close()
        return (client, credentials, auth_request, http, ca), close

    if cached:
        # the policy is part of the key: a client guarded by another policy is never reused
        key = (policy, gcs.endpoint or "", digest(json.dumps(info, sort_keys=True)),
               digest(inputs.ca_bundle), settings.connect_timeout, settings.read_timeout,
               settings.max_attempts)
        parts, release = _CLIENTS.lease(key, make)
    else:
        parts, release = make()
    client, credentials, auth_request, http, ca = parts
    return GCSStorageClient(client, credentials, auth_request, spec.bucket, ca,
                            keys.sensitive, settings, http=http, endpoint=gcs.endpoint,
                            release=release)
