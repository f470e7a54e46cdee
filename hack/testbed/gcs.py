"""A GCS JSON-API endpoint on 127.0.0.1 that checks credentials for real.

No GCS emulator checks credentials, so this one is built for that, and implements just
the JSON API a storage validator and the Python client use: bucket get and insert, object
insert (``uploadType=media``, ``multipart`` and ``resumable``), list, get (metadata and
``alt=media``) and delete. Checksums are checked as GCS does: ``crc32c``/``md5Hash`` in
an insert's metadata, and ``X-Goog-Hash: crc32c=`` on the request that finishes a
resumable session (GCS has no per-chunk checksum). ``short_persist_once`` makes a
resumable chunk be kept only in part (a 308 whose ``Range`` says so).

Credentials: ``create_service_account(name)`` returns a service-account key JSON with a
fresh RSA key whose ``token_uri`` points at this server's ``/token``. A token request must
carry an RS256 JWT assertion signed by that key (checked against the public key, the
``kid``, issuer, audience and lifetime); the answer is an opaque access token. Every
storage call needs a known, unexpired token (else 401), and the token's account needs a
role on the bucket (else 403): ``objectCreator`` (create objects only), ``objectViewer``,
``objectAdmin`` (objects only, like GCP's: no ``storage.buckets.get``) or ``admin``.

V4 signed URLs (``GET /<bucket>/<object>?X-Goog-Signature=...``, GOOG4-RSA-SHA256) are
checked as GCS does: the signature against the account's public key over the canonical
request, the expiry, and the account's ``storage.objects.get`` on the bucket.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import google_crc32c
import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from testbed.localhttp import LocalHTTPServer, Request, Response

PROJECT = "callstorage-testbed"
_ADMIN = "testbed-admin"  # the principal of the helper's own token: may do everything

ROLES: dict[str, frozenset[str]] = {
    "objectCreator": frozenset({"storage.objects.create"}),
    "objectViewer": frozenset({"storage.objects.get", "storage.objects.list"}),
    "objectAdmin": frozenset({"storage.objects.create", "storage.objects.get",
                              "storage.objects.list", "storage.objects.delete"}),
    "admin": frozenset({"storage.buckets.get", "storage.objects.create", "storage.objects.get",
                        "storage.objects.list", "storage.objects.delete"}),
}


def _role(name: str) -> str:
    short = name.removeprefix("roles/storage.")
    if short not in ROLES:
        raise ValueError(f"unknown role {name!r}; one of {sorted(ROLES)}")
    return short


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _error(status: int, message: str, reason: str, headers: dict[str, str] | None = None
           ) -> Response:
    return Response.json(status, {"error": {
        "code": status, "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason}],
    }}, headers)


@dataclass
class _Object:
    name: str
    data: bytes
    content_type: str
    generation: int
    created: str
    metadata: dict[str, str] = field(default_factory=dict)

    def resource(self, bucket: str) -> dict[str, Any]:
        crc = google_crc32c.value(self.data).to_bytes(4, "big")
        return {
            "kind": "storage#object",
            "id": f"{bucket}/{self.name}/{self.generation}",
            "selfLink": f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(self.name, safe='')}",
            "name": self.name, "bucket": bucket,
            "generation": str(self.generation), "metageneration": "1",
            "contentType": self.content_type, "size": str(len(self.data)),
            "md5Hash": base64.b64encode(hashlib.md5(self.data).digest()).decode(),  # noqa: S324
            "crc32c": base64.b64encode(crc).decode(),
            "etag": base64.b64encode(str(self.generation).encode()).decode(),
            "timeCreated": self.created, "updated": self.created,
            "storageClass": "STANDARD", "metadata": self.metadata,
        }


@dataclass
class _Bucket:
    name: str
    created: str
    objects: dict[str, _Object] = field(default_factory=dict)

    def resource(self) -> dict[str, Any]:
        return {
            "kind": "storage#bucket", "id": self.name, "name": self.name,
            "projectNumber": "1", "metageneration": "1", "location": "US",
            "storageClass": "STANDARD", "etag": "CAE=", "locationType": "multi-region",
            "timeCreated": self.created, "updated": self.created,
        }


@dataclass
class _Upload:
    bucket: str
    meta: dict[str, Any]
    principal: str
    data: bytearray = field(default_factory=bytearray)


class GCSServer:
    """The fake GCS endpoint; start it with ``GCSServer.start(log_dir)``."""

    def __init__(self, log_dir: Path, token_lifetime: int = 3600) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._accounts: dict[str, tuple[str, rsa.RSAPublicKey]] = {}  # key id -> (email, key)
        self._grants: dict[tuple[str, str], str] = {}  # (bucket, email) -> role
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (principal, expiry)
        self._uploads: dict[str, _Upload] = {}
        self._short_persist = (0, False)  # see short_persist_once
        self.short_persisted = 0
        self._generation = int(time.time() * 1_000_000)
        self.token_lifetime = token_lifetime
        self.admin_token = secrets.token_urlsafe(32)
        self._tokens[self.admin_token] = (_ADMIN, float("inf"))
        self._http = LocalHTTPServer("gcs", self._app, log_dir)
        self.endpoint = self._http.url
        self.token_uri = f"{self.endpoint}/token"
        # google-auth always puts Google's token URL in ``aud``, whatever ``token_uri`` is.
        self._audiences = [self.token_uri, "https://oauth2.googleapis.com/token"]
        self.log_path = self._http.log_path

    @classmethod
    def start(cls, log_dir: Path) -> GCSServer:
        return cls(log_dir)

    # --- helpers for tests, the demo and benchmarks ---------------------------------------

    def create_bucket(self, name: str) -> None:
        with self._lock:
            if name in self._buckets:
                raise ValueError(f"bucket {name} exists")
            self._buckets[name] = _Bucket(name, _now_rfc3339())

    def create_service_account(self, name: str) -> dict[str, Any]:
        """A service-account key JSON (as ``credentials.json`` holds it) with a new key."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        email = f"{name}@{PROJECT}.iam.gserviceaccount.com"
        with self._lock:
            self._accounts[key_id] = (email, key.public_key())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": f"{self.endpoint}/auth",
            "token_uri": self.token_uri,
            "universe_domain": "googleapis.com",
        }

    def delete_service_account(self, email: str) -> None:
        """Remove the account's keys and revoke its tokens."""
        with self._lock:
            for key_id in [k for k, (e, _) in self._accounts.items() if e == email]:
                del self._accounts[key_id]
            for token in [t for t, (p, _) in self._tokens.items() if p == email]:
                del self._tokens[token]

    def grant(self, bucket: str, sa_email: str, role: str) -> None:
        """Give ``sa_email`` ``role`` on ``bucket`` (replacing an earlier grant there)."""
        with self._lock:
            self._grants[(bucket, sa_email)] = _role(role)

    def list_objects(self, bucket: str, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(n for n in self._buckets[bucket].objects if n.startswith(prefix))

    def read_object(self, bucket: str, name: str) -> bytes:
        with self._lock:
            return self._buckets[bucket].objects[name].data

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> GCSServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- HTTP -----------------------------------------------------------------------------

    def _app(self, req: Request) -> Response:
        segments = [urllib.parse.unquote(s) for s in req.raw_path.split("/")[1:]]
        if req.method == "POST" and segments == ["token"]:
            return self._token(req)
        if req.method in ("GET", "HEAD") and "X-Goog-Signature" in req.query \
                and len(segments) >= 2:
            return self._signed_get(req, segments[0], "/".join(segments[1:]))
        principal = self._authenticate(req)
        if isinstance(principal, Response):
            return principal
        match (req.method, segments):
            case ("GET", ["storage", "v1", "b", bucket]):
                return self._bucket_get(principal, bucket)
            case ("POST", ["storage", "v1", "b"]):
                return self._bucket_insert(principal, req)
            case ("GET", ["storage", "v1", "b", bucket, "o"]):
                return self._object_list(principal, bucket, req.query)
            case ("GET", ["storage", "v1", "b", bucket, "o", name]) | (
                "GET", ["download", "storage", "v1", "b", bucket, "o", name]
            ):
                return self._object_get(principal, bucket, name, req.query)
            case ("DELETE", ["storage", "v1", "b", bucket, "o", name]):
                return self._object_delete(principal, bucket, name)
            case ("POST", ["upload", "storage", "v1", "b", bucket, "o"]):
                return self._object_insert(principal, bucket, req)
            case ("PUT", ["upload", "storage", "v1", "b", bucket, "o"]):
                return self._resumable_put(principal, req)
        return _error(404, f"no route for {req.method} {req.raw_path}", "notFound")

    def _token(self, req: Request) -> Response:
        form = dict(urllib.parse.parse_qsl(req.body.decode(errors="replace")))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Response.json(400, {"error": "unsupported_grant_type",
                                       "error_description": "Invalid grant_type."})
        assertion = form.get("assertion", "")

        def invalid(description: str) -> Response:
            return Response.json(400, {"error": "invalid_grant",
                                       "error_description": description})

        try:
            key_id = jwt.get_unverified_header(assertion).get("kid", "")
        except jwt.PyJWTError:
            return invalid("Invalid JWT.")
        with self._lock:
            account = self._accounts.get(key_id)
        if account is None:
            return invalid("Invalid grant: account not found")
        email, public_key = account
        try:
            claims = jwt.decode(
                assertion, public_key, algorithms=["RS256"], audience=self._audiences,
                issuer=email, options={"require": ["exp", "iat", "iss", "aud"]}, leeway=30,
            )
        except jwt.InvalidSignatureError:
            return invalid("Invalid JWT Signature.")
        except jwt.ExpiredSignatureError:
            return invalid("Invalid JWT: Token must be a short-lived token (60 minutes) and "
                           "in a reasonable timeframe.")
        except jwt.PyJWTError as exc:
            return invalid(f"Invalid JWT: {exc}")
        if int(claims["exp"]) - int(claims["iat"]) > 3600 + 60:
            return invalid("Invalid JWT: Token must be a short-lived token (60 minutes).")
        token = "ya29.testbed-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (email, time.time() + self.token_lifetime)
        return Response.json(200, {"access_token": token, "expires_in": self.token_lifetime,
                                   "token_type": "Bearer"})

    def _signed_get(self, req: Request, bucket: str, name: str) -> Response:
        """A V4 signed URL: verify it, then serve the object as its signer would see it."""
        q = req.query

        def denied(message: str) -> Response:
            body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
                    f"{'ExpiredToken' if 'expired' in message else 'SignatureDoesNotMatch'}"
                    f"</Code><Message>{message}</Message></Error>").encode()
            return Response(400 if "expired" in message else 403, body,
                            {"Content-Type": "application/xml; charset=UTF-8"})

        try:
            email, _date, _location, _service, _ = q["X-Goog-Credential"].split("/")
            signed_at = dt.datetime.strptime(q["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=dt.UTC)
            expires = int(q["X-Goog-Expires"])
            signed_headers = q["X-Goog-SignedHeaders"]
            signature = binascii.unhexlify(q["X-Goog-Signature"])
        except (KeyError, ValueError, binascii.Error):
            return denied("Malformed signed URL.")
        if q.get("X-Goog-Algorithm") != "GOOG4-RSA-SHA256":
            return denied("Unsupported algorithm.")
        if dt.datetime.now(dt.UTC) > signed_at + dt.timedelta(seconds=expires):
            return denied("Request has expired")
        query = "&".join(sorted(
            f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(v, safe='~')}"
            for k, v in q.items() if k != "X-Goog-Signature"))
        headers = "".join(f"{h}:{(req.headers.get(h) or '').strip()}\n"
                          for h in signed_headers.split(";"))
        canonical = "\n".join([req.method, req.raw_path, query, headers, signed_headers,
                               "UNSIGNED-PAYLOAD"])
        to_sign = "\n".join(["GOOG4-RSA-SHA256", q["X-Goog-Date"],
                             "/".join(q["X-Goog-Credential"].split("/")[1:]),
                             hashlib.sha256(canonical.encode()).hexdigest()])
        with self._lock:
            keys = [k for e, k in self._accounts.values() if e == email]
        for public_key in keys:
            try:
                public_key.verify(signature, to_sign.encode(), padding.PKCS1v15(),
                                  hashes.SHA256())
                break
            except InvalidSignature:
                continue
        else:
            return denied("The request signature we calculated does not match the "
                          "signature you provided.")
        b = self._check(email, bucket, "storage.objects.get", "object")
        if isinstance(b, Response):
            return b
        with self._lock:
            obj = b.objects.get(name)
        if obj is None:
            return _error(404, f"No such object: {bucket}/{name}", "notFound")
        return Response(200, obj.data, {"Content-Type": obj.content_type,
                                        "x-goog-generation": str(obj.generation)})

    def _authenticate(self, req: Request) -> str | Response:
        header = req.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
        if scheme.lower() != "bearer" or not token:
            return _error(401, "Anonymous caller does not have access to this resource.",
                          "required", challenge)
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] < time.time():
            return _error(401, "Invalid Credentials", "authError", challenge)
        return entry[0]

    def _check(self, principal: str, bucket: str, permission: str, resource: str
               ) -> Response | _Bucket:
        """404 for a missing bucket, 403 without the permission, else the bucket."""
        with self._lock:
            b = self._buckets.get(bucket)
            role = self._grants.get((bucket, principal))
        if b is None:
            return _error(404, "The specified bucket does not exist.", "notFound")
        if principal != _ADMIN and (role is None or permission not in ROLES[role]):
            return _error(
                403,
                f"{principal} does not have {permission} access to the Google Cloud Storage "
                f"{resource}. Permission '{permission}' denied on resource (or it may not "
                "exist).",
                "forbidden",
            )
        return b

    def _bucket_get(self, principal: str, bucket: str) -> Response:
        b = self._check(principal, bucket, "storage.buckets.get", "bucket")
        return b if isinstance(b, Response) else Response.json(200, b.resource())

    def _bucket_insert(self, principal: str, req: Request) -> Response:
        if principal != _ADMIN:
            return _error(403, f"{principal} does not have storage.buckets.create access to "
                          "the Google Cloud project.", "forbidden")
        name = json.loads(req.body or b"{}").get("name", "")
        try:
            self.create_bucket(name)
        except ValueError:
            return _error(409, "Your previous request to create the named bucket succeeded "
                          "and you already own it.", "conflict")
        with self._lock:
            return Response.json(200, self._buckets[name].resource())

    def _object_list(self, principal: str, bucket: str, query: dict[str, str]) -> Response:
        b = self._check(principal, bucket, "storage.objects.list", "bucket")
        if isinstance(b, Response):
            return b
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        start = query.get("pageToken", "")
        limit = int(query.get("maxResults") or 1000)
        items: list[dict[str, Any]] = []
        prefixes: set[str] = set()
        next_token = None
        with self._lock:
            for name in sorted(b.objects):
                if not name.startswith(prefix) or name <= start:
                    continue
                if len(items) >= limit:
                    next_token = items[-1]["name"]
                    break
                rest = name[len(prefix):]
                if delimiter and delimiter in rest:
                    prefixes.add(prefix + rest.split(delimiter)[0] + delimiter)
                    continue
                items.append(b.objects[name].resource(bucket))
        out: dict[str, Any] = {"kind": "storage#objects", "items": items}
        if prefixes:
            out["prefixes"] = sorted(prefixes)
        if next_token:
            out["nextPageToken"] = next_token
        return Response.json(200, out)

    def _object_get(self, principal: str, bucket: str, name: str, query: dict[str, str]
                    ) -> Response:
        b = self._check(principal, bucket, "storage.objects.get", "object")
        if isinstance(b, Response):
            return b
        with self._lock:
            obj = b.objects.get(name)
        if obj is None:
            return _error(404, f"No such object: {bucket}/{name}", "notFound")
        if query.get("alt") == "media":
            res = obj.resource(bucket)
            return Response(200, obj.data, {
                "Content-Type": obj.content_type,
                "x-goog-generation": str(obj.generation),
                "x-goog-hash": f"crc32c={res['crc32c']},md5={res['md5Hash']}",
                "x-goog-stored-content-length": str(len(obj.data)),
            })
        return Response.json(200, obj.resource(bucket))

    def _object_delete(self, principal: str, bucket: str, name: str) -> Response:
        b = self._check(principal, bucket, "storage.objects.delete", "object")
        if isinstance(b, Response):
            return b
        with self._lock:
            if b.objects.pop(name, None) is None:
                return _error(404, f"No such object: {bucket}/{name}", "notFound")
        return Response(204)

    def _object_insert(self, principal: str, bucket: str, req: Request) -> Response:
        b = self._check(principal, bucket, "storage.objects.create", "object")
        if isinstance(b, Response):
            return b
        upload_type = req.query.get("uploadType", "media")
        meta: dict[str, Any] = {}
        if upload_type == "media":
            data = req.body
            meta = {"name": req.query.get("name", ""),
                    "contentType": req.headers.get("Content-Type")}
        elif upload_type == "multipart":
            parsed = _parse_multipart(req.headers.get("Content-Type", ""), req.body)
            if parsed is None:
                return _error(400, "Invalid multipart request.", "invalid")
            meta, data, part_type = parsed
            meta.setdefault("contentType", part_type)
        elif upload_type == "resumable":
            meta = json.loads(req.body or b"{}")
            meta.setdefault("name", req.query.get("name", ""))
            if not meta["name"]:
                return _error(400, "Required object name.", "required")
            upload_id = secrets.token_urlsafe(16)
            with self._lock:
                self._uploads[upload_id] = _Upload(bucket, meta, principal)
            # on the host the client reached (a relay in front of us, say), as GCS does
            host = req.headers.get("Host")
            base = f"http://{host}" if host else self.endpoint
            location = (f"{base}/upload/storage/v1/b/{urllib.parse.quote(bucket)}/o"
                        f"?uploadType=resumable&upload_id={upload_id}")
            return Response(200, b"", {"Location": location})
        else:
            return _error(400, f"Invalid upload type {upload_type}.", "invalid")
        return self._store(principal, b, meta, data)

    def _resumable_put(self, principal: str, req: Request) -> Response:
        upload_id = req.query.get("upload_id", "")
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None or upload.principal != principal:
            return _error(404, "No such upload.", "notFound")
        # "bytes 0-99/100", "bytes 0-99/*" (more to come) or "bytes */100" (finalise)
        span, _, total = req.headers.get("Content-Range", "").rpartition("/")
        start = span.removeprefix("bytes ").partition("-")[0]
        body = req.body
        with self._lock:
            if start.isdigit():  # a chunk sent again replaces what it covered, as in GCS
                if int(start) > len(upload.data):
                    return _error(400, "Invalid request. The chunk starts past the bytes "
                                  "received.", "invalid")
                del upload.data[int(start):]
            short, final_only = self._short_persist
            if short and len(body) > short and (total.isdigit() or not final_only):
                body = body[:-short]  # keep less than was sent: a 308 says so
                self._short_persist = (0, False)
                self.short_persisted += 1
            upload.data.extend(body)
        if total == "*" or (total.isdigit() and len(upload.data) < int(total)):
            return Response(308, b"", {"Range": f"bytes=0-{len(upload.data) - 1}"}
                            if upload.data else {})
        sent = _goog_hash(req.headers.get("X-Goog-Hash", "")).get("crc32c")
        got = base64.b64encode(google_crc32c.value(bytes(upload.data)).to_bytes(4, "big")
                               ).decode()
        if sent is not None and sent != got:  # as GCS: the object does not appear
            return _error(400, f'Provided CRC32C "{sent}" doesn\'t match calculated CRC32C '
                          f'"{got}".', "invalid")
        with self._lock:
            self._uploads.pop(upload_id, None)
            b = self._buckets.get(upload.bucket)
        if b is None:
            return _error(404, "The specified bucket does not exist.", "notFound")
        return self._store(principal, b, upload.meta, bytes(upload.data))

    def short_persist_once(self, withheld: int, last_chunk: bool = False) -> None:
        """Fault: the next resumable chunk longer than ``withheld`` bytes (with
        ``last_chunk``: the next one that states the object's size) is kept but for its
        last ``withheld`` bytes, and answered 308 with the ``Range`` actually held (GCS
        may persist less than a request carried); ``short_persisted`` counts them."""
        with self._lock:
            self._short_persist = (withheld, last_chunk)

    def _store(self, principal: str, b: _Bucket, meta: dict[str, Any], data: bytes
               ) -> Response:
        name = str(meta.get("name") or "")
        if not name:
            return _error(400, "Required object name.", "required")
        res = _Object(name, data, "", 0, "").resource(b.name)
        for field_name in ("crc32c", "md5Hash"):  # the client's checksums, when it sent them
            if field_name in meta and meta[field_name] != res[field_name]:
                return _error(400, f"Provided {field_name} does not match the data.", "invalid")
        with self._lock:
            role = self._grants.get((b.name, principal))
            if name in b.objects and principal != _ADMIN and (
                role is None or "storage.objects.delete" not in ROLES[role]
            ):  # overwriting needs delete permission, as in GCS
                return _error(403, f"{principal} does not have storage.objects.delete access "
                              f"to the Google Cloud Storage object.", "forbidden")
            self._generation += 1
            obj = _Object(name, data, meta.get("contentType") or "application/octet-stream",
                          self._generation, _now_rfc3339(), dict(meta.get("metadata") or {}))
            b.objects[name] = obj
            return Response.json(200, obj.resource(b.name))


def _goog_hash(header: str) -> dict[str, str]:
    """``X-Goog-Hash: crc32c=...,md5=...`` as a mapping."""
    pairs = (item.strip().partition("=") for item in header.split(",") if "=" in item)
    return {name: value for name, _, value in pairs}


def _parse_multipart(content_type: str, body: bytes
                     ) -> tuple[dict[str, Any], bytes, str] | None:
    """The JSON metadata part, the media part and its content type of a multipart/related
    body. Parsed by hand: the email package rewrites line endings inside binary parts."""
    params = dict(
        p.strip().split("=", 1) for p in content_type.split(";")[1:] if "=" in p
    )
    boundary = params.get("boundary", "").strip('"')
    if not boundary:
        return None
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            return None
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        parts.append((headers, content.removesuffix(b"\r\n")))
    if len(parts) != 2:
        return None
    try:
        meta = json.loads(parts[0][1])
    except ValueError:
        return None
    return meta, parts[1][1], parts[1][0].get("content-type", "application/octet-stream")
