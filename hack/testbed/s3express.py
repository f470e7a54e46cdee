"""A local stand-in for S3 directory buckets (S3 Express One Zone), on 127.0.0.1.

moto has no directory buckets and no CreateSession. For a bucket named ``*--x-s3`` an S3
SDK first calls CreateSession (``GET /bucket?session``, signed with the caller's IAM keys),
then signs every request on that bucket with the short-lived session credentials it got
back (``x-amz-s3session-token``). This stand-in does what AWS does with those steps and
nothing more: it checks every SigV4 signature against the secret of the key id it names,
issues each caller its own session credentials, accepts a session only on the bucket it
was issued for, and records who signed every request, so a test can tell, on the wire,
whose keys a request went out with. HeadBucket and PutObject are answered; nothing stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from testbed.localhttp import LocalHTTPServer, Request, Response
from testbed.s3 import S3Keys

_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/"
                   r"(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
                   r"SignedHeaders=(?P<headers>[^,]+), Signature=(?P<sig>[0-9a-f]{64})$")


@dataclass(frozen=True)
class Session:
    """Session credentials CreateSession issued to ``issued_to`` (an IAM key id)."""

    access_key_id: str
    secret_access_key: str
    token: str
    issued_to: str
    bucket: str


@dataclass(frozen=True)
class Seen:
    """One request as it reached the stand-in: the key id it was signed with, and the IAM
    key id behind it (itself for IAM keys, the session's owner for a session)."""

    method: str
    path: str
    operation: str  # CreateSession, HeadBucket, PutObject or Other
    key_id: str
    identity: str
    status: int


@dataclass
class S3ExpressStandIn:
    """Directory buckets of one zone behind one endpoint; IAM users by ``user()``."""

    log_dir: Path
    buckets: set[str] = field(default_factory=set)
    #: IAM key ids whose CreateSession is refused with AccessDenied (no permission)
    denied: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._users: dict[str, str] = {}
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._server = LocalHTTPServer("s3express-stand-in", self._handle, self.log_dir)
        self.url = self._server.url

    def user(self) -> S3Keys:
        """A new IAM user's keys (bound to this endpoint)."""
        keys = S3Keys("AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30),
                      self.url)
        with self._lock:
            self._users[keys.access_key_id] = keys.secret_access_key
        return keys

    def sessions_of(self, key_id: str) -> set[str]:
        """The session key ids issued to IAM key ``key_id``."""
        with self._lock:
            return {s.access_key_id for s in self._sessions.values() if s.issued_to == key_id}

    def stop(self) -> None:
        self._server.stop()

    # -- the wire --

    def _handle(self, request: Request) -> Response:
        bucket, _, key = request.path.lstrip("/").partition("/")
        operation = ("CreateSession" if "session" in request.query and not key else
                     "HeadBucket" if request.method == "HEAD" and not key else
                     "PutObject" if request.method == "PUT" and key else "Other")
        found = _AUTH.fullmatch(request.headers.get("Authorization") or "")
        key_id = found["key"] if found else ""
        with self._lock:
            session = self._sessions.get(key_id)
            secret = session.secret_access_key if session else self._users.get(key_id)
        identity = session.issued_to if session else key_id
        response = self._answer(request, found, secret, session, bucket, operation)
        with self._lock:
            self.seen.append(Seen(request.method, request.path, operation, key_id,
                                  identity, response.status))
        return response

    def _answer(self, request: Request, found: re.Match[str] | None, secret: str | None,
                session: Session | None, bucket: str, operation: str) -> Response:
        if found is None or secret is None:
            return _error(403, "InvalidAccessKeyId")
        if not _signature_ok(request, found, secret, self.url):
            return _error(403, "SignatureDoesNotMatch")
        if bucket not in self.buckets:
            return _error(404, "NoSuchBucket")
        if operation == "CreateSession":
            if session is not None:
                return _error(403, "AccessDenied")  # sessions do not make sessions
            if found["key"] in self.denied:
                return _error(403, "AccessDenied")
            return self._create_session(found["key"], bucket)
        if session is None or session.bucket != bucket or \
                request.headers.get("x-amz-s3session-token") != session.token:
            return _error(403, "AccessDenied")  # zonal calls need this bucket's session
        if operation == "PutObject":
            etag = hashlib.md5(request.body).hexdigest()  # noqa: S324 - S3's ETag
            return Response(200, headers={"ETag": f'"{etag}"'})
        if operation == "HeadBucket":
            return Response(200)
        return _error(501, "NotImplemented")

    def _create_session(self, issued_to: str, bucket: str) -> Response:
        session = Session("ASIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30),
                          secrets.token_urlsafe(40), issued_to, bucket)
        with self._lock:
            self._sessions[session.access_key_id] = session
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><CreateSessionResult '
            'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Credentials>'
            f"<SessionToken>{session.token}</SessionToken>"
            f"<SecretAccessKey>{session.secret_access_key}</SecretAccessKey>"
            f"<AccessKeyId>{session.access_key_id}</AccessKeyId>"
            "<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>"
            "</CreateSessionResult>")
        return Response(200, body.encode(), {"Content-Type": "application/xml"})


def _error(status: int, code: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{code}</Message></Error>")
    return Response(status, body.encode(), {"Content-Type": "application/xml"})


def _signature_ok(request: Request, found: re.Match[str], secret: str, base: str) -> bool:
    """Whether the request's SigV4 signature is the one ``secret`` makes (computed by
    botocore's own signer over the headers the request says it signed)."""
    signed = found["headers"].split(";")
    headers = {name: request.headers.get(name, "") for name in signed}
    url = base + request.raw_path
    if request.query:
        url += "?" + urllib.parse.urlencode(request.query)
    aws = AWSRequest(method=request.method, url=url, headers=headers, data=request.body)
    aws.context["timestamp"] = request.headers.get("x-amz-date", "")
    auth = S3SigV4Auth(Credentials(found["key"], secret), found["service"], found["region"])
    canonical = auth.canonical_request(aws)
    expected = auth.signature(auth.string_to_sign(aws, canonical), aws)
    return hmac.compare_digest(expected, found["sig"])
