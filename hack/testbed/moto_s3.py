"""``python -m testbed.moto_s3 [moto_server args]``: moto's server, answering like S3 for
buckets that do not exist.

S3 authenticates a request (the signature), then looks the bucket up, then evaluates
policies: a correctly signed request for a bucket that does not exist gets 404
NoSuchBucket whatever the caller may do. moto evaluates IAM before it looks the bucket
up, so a user scoped to one bucket would get 403 AccessDenied for a missing one, and
"bucket not found" could not be told from "not allowed". This launcher makes moto's
access-denied answer fall back to NoSuchBucket when the bucket does not exist; signature
and access-key checks are untouched. It also checks a PutObject's or UploadPart's
``x-amz-checksum-*`` header against the body, as S3 does (moto stores it unchecked). If
moto's internals ever move, it runs moto as is and says so in the log.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import sys
import urllib.parse
import zlib
from typing import Any


def _answer_missing_buckets_like_s3() -> None:
    try:
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.s3.exceptions import MissingBucket, S3AccessDeniedError
        from moto.s3.models import s3_backends

        original = ActionAuthenticatorMixin._authenticate_and_authorize_s3_action
        registry = s3_backends.bucket_accounts  # bucket name -> (partition, account)
    except (ImportError, AttributeError) as exc:  # pragma: no cover - a moto upgrade
        print(f"[testbed] moto_s3: not patching missing-bucket answers: {exc!r}",
              file=sys.stderr, flush=True)
        return

    def authorize(self: Any, bucket_name: str | None = None, key_name: str | None = None
                  ) -> None:
        if "X-Amz-Signature" in self.querystring and "Authorization" not in self.headers:
            _check_presigned(self, bucket_name or "", key_name or "")
            return
        try:
            original(self, bucket_name=bucket_name, key_name=key_name)
        except S3AccessDeniedError:  # signature and key errors are other classes
            if bucket_name and bucket_name not in registry:
                raise MissingBucket(bucket=bucket_name) from None
            raise
        if self.method == "PUT" and key_name:
            _check_body_checksum(self)

    ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = (  # type: ignore[method-assign]
        authorize)


def _checksum(algorithm: str, body: bytes) -> str | None:
    import google_crc32c

    if algorithm == "crc32c":
        raw = google_crc32c.value(body).to_bytes(4, "big")
    elif algorithm == "crc32":
        raw = zlib.crc32(body).to_bytes(4, "big")
    elif algorithm in ("sha1", "sha256"):
        raw = hashlib.new(algorithm, body).digest()
    else:
        return None
    return base64.b64encode(raw).decode()


def _check_body_checksum(resp: Any) -> None:
    """As S3: a PutObject or UploadPart whose ``x-amz-checksum-<algorithm>`` header is not
    the checksum of its body is refused (400 BadDigest) and stores nothing. moto stores
    the header's value as given."""
    from moto.s3.exceptions import S3ClientError

    if "x-amz-copy-source" in resp.headers:
        return
    body = resp.body if isinstance(resp.body, bytes) else bytes(resp.body or b"")
    for header, value in resp.headers.items():
        name = header.lower()
        if not name.startswith("x-amz-checksum-") or name == "x-amz-checksum-type":
            continue
        algorithm = name.removeprefix("x-amz-checksum-")
        expected = _checksum(algorithm, body)
        if expected is not None and expected != value.strip():
            raise S3ClientError("BadDigest", f"The {algorithm.upper()} you specified did "
                                "not match the calculated checksum.")


def _check_presigned(resp: Any, bucket: str, key: str) -> None:
    """Accept a SigV4 presigned GET/HEAD/PUT of an object, or raise S3's error."""
    from moto.iam.access_control import (
        CreateAccessKeyFailure,
        IAMPolicy,
        IAMUserAccessKey,
        PermissionResult,
    )
    from moto.s3.exceptions import S3AccessDeniedError, S3ClientError

    # the query as sent (moto adds its own entries to ``querystring``)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(resp.uri).query,
                                    keep_blank_values=True))
    try:
        access_key_id, date, region, service, _ = q["X-Amz-Credential"].split("/")
        signed_at = dt.datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=dt.UTC)
        expires = int(q["X-Amz-Expires"])
        signed_headers = q["X-Amz-SignedHeaders"]
    except (KeyError, ValueError):
        raise S3ClientError("AuthorizationQueryParametersError",
                            "Query-string authentication is malformed") from None
    action = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject"}.get(
        resp.method)
    if q.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or action is None or not key:
        raise S3AccessDeniedError()
    try:
        user_key = IAMUserAccessKey(account_id=resp.current_account, partition="aws",
                                    access_key_id=access_key_id, headers={})
    except CreateAccessKeyFailure:
        raise S3ClientError("InvalidAccessKeyId", "The AWS Access Key Id you provided "
                            "does not exist in our records.") from None
    if dt.datetime.now(dt.UTC) > signed_at + dt.timedelta(seconds=expires):
        raise S3ClientError("AccessDenied", "Request has expired")

    def enc(value: str) -> str:
        return urllib.parse.quote(value, safe="-_.~")

    query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(q.items())
                     if k != "X-Amz-Signature")
    path = urllib.parse.quote(urllib.parse.unquote(resp.path), safe="/-_.~")
    headers = "".join(f"{h}:{(resp.headers.get(h) or '').strip()}\n"
                      for h in signed_headers.split(";"))
    canonical = "\n".join([resp.method, path, query, headers, signed_headers,
                           "UNSIGNED-PAYLOAD"])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", q["X-Amz-Date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    secret = user_key.create_credentials().secret_key
    signing = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, q["X-Amz-Signature"]):
        raise S3ClientError("SignatureDoesNotMatch", "The request signature we calculated "
                            "does not match the signature you provided.")
    resource = f"arn:aws:s3:::{bucket}/{key}"
    allowed = False
    for policy in user_key.collect_policies():
        result = IAMPolicy(policy).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            raise S3AccessDeniedError()
        allowed = allowed or result == PermissionResult.PERMITTED
    if not allowed:
        raise S3AccessDeniedError()


def main() -> None:
    _answer_missing_buckets_like_s3()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
