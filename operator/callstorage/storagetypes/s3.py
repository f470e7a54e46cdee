"""Amazon S3 and S3-compatible servers (MinIO, R2, Ceph, ...): every fact of the ``s3``
storage type. The SDK client (boto3) is ``callstorage.providers.s3``.

Secret keys: ``accessKeyId``, ``secretAccessKey``, optionally ``sessionToken``, and
``endpoint``: the custom endpoint (``spec.s3.endpoint``) these keys may be sent to. Without
a Secret the operator's own (ambient) identity is used, only if the installation allows it,
only in the namespaces it names, and only with AWS's public endpoints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr, field_validator
from pydantic.dataclasses import dataclass

from callstorage.api import names
from callstorage.api.model import ProviderSpec, SecretRef, problem, too_long, url
from callstorage.api.reasons import Reason
from callstorage.storagetypes.base import (
    ENDPOINT_KEY,
    READ_WRITE,
    REQUEST_CONFIG,
    BlockAndSecret,
    Destination,
    ErrorRule,
    Policy,
    PolicyRequest,
    StorageProvider,
    check_mode,
    check_pattern,
    distinct_prefixes,
    probe_keys,
    probe_notes,
    public_https,
    request_from_mapping,
    secret_text,
)

ACCESS_KEY_ID = "accessKeyId"
SECRET_ACCESS_KEY = "secretAccessKey"  # noqa: S105 - names of Secret keys
SESSION_TOKEN = "sessionToken"  # noqa: S105

_S3_CHARS = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
# AWS reserves these for access points, Object Lambda, Multi-Region Access Points and table
# buckets. Directory buckets (--x-s3) are real buckets recordings can go to, so stay allowed.
S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--table-s3")


class S3Spec(ProviderSpec):
    """``spec.s3``: Amazon S3 or an S3-compatible server."""

    region: str
    endpoint: str | None = None
    force_path_style: bool = False
    credentials_secret_ref: SecretRef | None = None

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        if len(value) > 64:
            raise problem([too_long(64)])
        if not names.is_region(value):
            raise problem([names.REGION_MESSAGE])
        return value

    _check_endpoint = field_validator("endpoint")(url)


def s3_bucket_problems(bucket: str) -> list[str]:
    """Broken S3 general purpose bucket naming rules."""
    problems: list[str] = []
    if not 3 <= len(bucket) <= 63:
        problems.append("S3 bucket names must be 3-63 characters long")
    if not _S3_CHARS.fullmatch(bucket):
        problems.append(
            "S3 bucket names may contain only lowercase letters, digits, dots and hyphens, "
            "and must start and end with a letter or digit")
    if ".." in bucket:
        problems.append("S3 bucket names must not contain two adjacent dots")
    if names.is_ip_shaped(bucket):
        problems.append("S3 bucket names must not be formatted as an IP address")
    if bucket.startswith(S3_RESERVED_PREFIXES):
        problems.append("S3 bucket names must not start with xn--, sthree- or amzn-s3-demo-")
    if bucket.endswith(S3_RESERVED_SUFFIXES):
        problems.append(
            "S3 bucket names must not end with -s3alias, --ol-s3, .mrap or --table-s3")
    return problems


# Error codes that mean "these credentials are wrong", as opposed to "not allowed".
CREDENTIAL_ERROR_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "InvalidClientTokenId", "UnrecognizedClientException",
    "RequestTimeTooSkewed", "InvalidSecurity", "MissingSecurityHeader",
    "CredentialsNotSupported", "ExpiredTokenException",
})
NOT_FOUND_CODES = frozenset({"NoSuchBucket", "404", "NotFound"})
REGION_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed",
                          "IllegalLocationConstraintException", "301"})


# code -> reason, most specific first. HEAD answers carry no body, so their "code" is the
# bare status ("403", "404"). Anything not listed is a ServiceError and is retried.
ERROR_TABLE: tuple[ErrorRule, ...] = (
    ErrorRule(Reason.INVALID_CREDENTIALS, codes=CREDENTIAL_ERROR_CODES,
              why="the key id, secret or session token is wrong or expired"),
    ErrorRule(Reason.BUCKET_NOT_FOUND, codes=NOT_FOUND_CODES),
    ErrorRule(Reason.BUCKET_NOT_FOUND, status=404),
    ErrorRule(Reason.INVALID_SPEC, codes=REGION_CODES, why="spec.s3.region is wrong"),
    ErrorRule(Reason.INVALID_SPEC, status=301, why="spec.s3.region is wrong"),
    ErrorRule(Reason.INVALID_SPEC, codes=frozenset({"InvalidBucketName"})),
    ErrorRule(Reason.INVALID_CREDENTIALS, status=401),
    ErrorRule(Reason.ACCESS_DENIED, codes=frozenset({"AccessDenied", "AllAccessDisabled",
                                                     "AccountProblem"})),
    ErrorRule(Reason.ACCESS_DENIED, status=403),
    # throttling, timeouts, conflicts and server errors pass by themselves
    ErrorRule(Reason.SERVICE_ERROR, codes=frozenset({
        "SlowDown", "RequestTimeout", "OperationAborted", "ServiceUnavailable",
        "InternalError", "Throttling", "TooManyRequests", "PreconditionFailed"})),
)


def _partition(region: str | None) -> str:
    """The ARN partition of a region: China and GovCloud are not ``aws``."""
    if region and region.startswith("cn-"):
        return "aws-cn"
    if region and region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def s3_policy(
    bucket: str,
    prefixes: Iterable[str],
    access_mode: str = READ_WRITE,
    *,
    path: str | None = None,
    check_object_prefix: str | None = "stream-",
    region: str | None = None,
) -> dict[str, Any]:
    """An IAM identity policy (attach it to the user or role whose keys the Secret holds).

    ``PutObject`` on ``bucket/<prefix>/*`` per distinct prefix (and on the check objects
    when no prefix covers ``path``); ``ReadWrite`` adds ``GetObject`` on the same keys and
    ``ListBucket`` on the bucket, which is what HeadBucket needs.
    """
    check_mode(access_mode)
    arn = f"arn:{_partition(region)}:s3:::{bucket}"
    kept = distinct_prefixes(prefixes)
    objects = [f"{arn}/{p}/*" if p else f"{arn}/*" for p in kept]
    check = check_pattern(path, check_object_prefix, kept)
    write = [*objects, f"{arn}/{check}*"] if check is not None else objects
    statements: list[dict[str, Any]] = [
        {"Sid": "CallstorageWriteMedia", "Effect": "Allow", "Action": ["s3:PutObject"],
         "Resource": write},
    ]
    if access_mode == READ_WRITE:
        statements += [
            {"Sid": "CallstorageReadMedia", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": objects},
            {"Sid": "CallstorageHeadBucket", "Effect": "Allow", "Action": ["s3:ListBucket"],
             "Resource": [arn]},
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def _lifecycle(request: PolicyRequest) -> str:
    rules = [{"ID": f"callstorage-probe-{i}", "Status": "Enabled", "Filter": {"Prefix": key},
              "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}
             for i, key in enumerate(probe_keys(request.prefixes))]
    return ("On a versioned bucket, expire the probes' old versions "
            "(aws s3api put-bucket-lifecycle-configuration): "
            + json.dumps({"Rules": rules}, separators=(",", ":")))


def _policy(request: PolicyRequest) -> Policy:
    return Policy("s3", "AWS IAM identity policy", s3_policy(
        request.bucket, request.prefixes, request.access_mode, path=request.path,
        check_object_prefix=request.check_object_prefix,
        region=request.options.get("region")), notes=(
        *probe_notes(request, _lifecycle(request)),
        "Attach to the IAM user or role whose keys the credentials Secret holds, "
        "e.g. aws iam put-user-policy --policy-document file://policy.json.",
        "A bucket encrypted with SSE-KMS also needs kms:GenerateDataKey on its key.",
    ))


def _policy_options(block: S3Spec) -> dict[str, Any]:
    return {"region": block.region}


@dataclass(frozen=True, config=REQUEST_CONFIG)
class S3Request:
    """Amazon S3 (or S3-compatible) settings, as the seed's ``S3Request``.

    Without ``s3_api_key``/``s3_secret`` the operator uses its own IAM identity, if the
    installation allows it. ``s3_force_path_style`` is for S3-compatible servers.
    """

    s3_region: str
    s3_api_key: SecretStr | None = None
    s3_secret: SecretStr | None = None
    s3_custom_endpoint_url: str | None = None
    s3_force_path_style: bool | None = None


def _from_request(value: Any) -> BlockAndSecret:
    request = request_from_mapping(S3Request, value, "aws_s3")
    block: dict[str, Any] = {"region": request.s3_region}
    if request.s3_custom_endpoint_url:
        block["endpoint"] = request.s3_custom_endpoint_url
    if request.s3_force_path_style is not None:
        block["forcePathStyle"] = request.s3_force_path_style
    key_id, secret = secret_text(request.s3_api_key), secret_text(request.s3_secret)
    if bool(key_id) != bool(secret):
        raise ValueError("give both s3_api_key and s3_secret, or neither "
                         "(ambient IAM credentials)")
    if key_id and secret:
        data = {ACCESS_KEY_ID: key_id, SECRET_ACCESS_KEY: secret}
        if request.s3_custom_endpoint_url:  # the Secret binds its keys to the endpoint
            data[ENDPOINT_KEY] = request.s3_custom_endpoint_url
        return block, data
    return block, None


# AWS's own S3 endpoints (regional, legacy dash-style, dual-stack, FIPS, China): the only
# places S3 credentials go without a Secret naming the endpoint.
S3_PUBLIC = public_https(r"s3(-fips)?(\.dualstack)?([.-][a-z0-9-]+)?\.amazonaws\.com(\.cn)?")


def _destinations(block: S3Spec, secret: Mapping[str, bytes] | None) -> list[Destination]:
    if not block.endpoint:
        return []  # boto3's default: AWS's regional endpoint
    return [Destination("spec.s3.endpoint", block.endpoint, (ENDPOINT_KEY,), S3_PUBLIC)]


PROVIDER = StorageProvider(
    name="s3",
    title="Amazon S3 (or S3-compatible)",
    spec_model=S3Spec,
    bucket_problems=s3_bucket_problems,
    secret_keys=(ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, ENDPOINT_KEY),
    error_table=ERROR_TABLE,
    place="S3 bucket",
    client_module="callstorage.providers.s3",
    policy=_policy,
    policy_options=_policy_options,
    request_arg="aws_s3",
    from_request=_from_request,
    example_block={"region": "us-east-1", "credentialsSecretRef": {"name": "s3-credentials"}},
    default_host=lambda block: f"s3.{block.get('region') or 'us-east-1'}.amazonaws.com",
    destinations=_destinations,
    url_scheme="s3",
)
