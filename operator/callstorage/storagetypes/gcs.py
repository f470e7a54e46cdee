"""Google Cloud Storage, with a service-account key: every fact of the ``gcs`` storage
type. The SDK client (google-cloud-storage) is ``callstorage.providers.gcs``.

Secret keys: ``credentials.json`` (the key file as downloaded) and, for a custom endpoint
(``spec.gcs.endpoint``) or a key whose ``token_uri`` is not Google's, ``endpoint`` (and
``tokenUri``): where the key may be used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr, field_validator
from pydantic.dataclasses import dataclass

from callstorage.api import names
from callstorage.api.model import ProviderSpec, SecretRef, url
from callstorage.api.reasons import Reason
from callstorage.storagetypes.base import (
    ENDPOINT_KEY,
    READ_WRITE,
    REQUEST_CONFIG,
    TOKEN_URI_KEY,
    BlockAndSecret,
    Destination,
    ErrorRule,
    Policy,
    PolicyRequest,
    StorageProvider,
    check_mode,
    check_pattern,
    distinct_prefixes,
    probe_notes,
    public_https,
)

CREDENTIALS_JSON = "credentials.json"
GCS_MEMBER_PLACEHOLDER = "serviceAccount:SERVICE_ACCOUNT_EMAIL"

_GCS_CHARS = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")


class GCSSpec(ProviderSpec):
    """``spec.gcs``: Google Cloud Storage."""

    credentials_secret_ref: SecretRef
    endpoint: str | None = None

    _check_endpoint = field_validator("endpoint")(url)


def gcs_bucket_problems(bucket: str) -> list[str]:
    """Broken Google Cloud Storage bucket naming rules."""
    problems: list[str] = []
    if not 3 <= len(bucket) <= (222 if "." in bucket else 63):
        problems.append(
            "GCS bucket names must be 3-63 characters long, or up to 222 if they contain dots")
    if not all(1 <= len(part) <= 63 for part in bucket.split(".")):
        problems.append(
            "each dot-separated part of a GCS bucket name must be 1-63 characters long")
    if not _GCS_CHARS.fullmatch(bucket):
        problems.append(
            "GCS bucket names may contain only lowercase letters, digits, hyphens, "
            "underscores and dots, and must start and end with a letter or digit")
    if names.is_ip_shaped(bucket):
        problems.append("GCS bucket names must not be formatted as an IP address")
    if bucket.startswith("goog") or "google" in bucket:
        problems.append("GCS bucket names must not start with goog or contain google")
    return problems


# GCS JSON-API errors: the status, and the first error's "reason" as the code.
ERROR_TABLE: tuple[ErrorRule, ...] = (
    ErrorRule(Reason.INVALID_CREDENTIALS, status=401),
    ErrorRule(Reason.ACCESS_DENIED, status=403),
    ErrorRule(Reason.BUCKET_NOT_FOUND, status=404),
    ErrorRule(Reason.INVALID_SPEC, status=400, codes=frozenset({"invalid",
                                                                "invalidBucketName"}),
              why="the bucket name is not valid for GCS"),
    ErrorRule(Reason.SERVICE_ERROR, status=429),
)


def _gcs_condition(bucket: str, patterns: list[str], title: str) -> dict[str, str] | None:
    if "" in patterns:
        return None  # the whole bucket: no condition needed
    base = f"projects/_/buckets/{bucket}/objects/"
    expression = " || ".join(f'resource.name.startsWith("{base}{p}")' for p in patterns)
    return {"title": title, "description": "Only the keys callstorage writes",
            "expression": expression}


def gcs_policy(
    bucket: str,
    prefixes: Iterable[str],
    access_mode: str = READ_WRITE,
    *,
    path: str | None = None,
    check_object_prefix: str | None = "stream-",
    member: str = GCS_MEMBER_PLACEHOLDER,
) -> dict[str, Any]:
    """Bindings to add to the bucket's IAM policy (version 3, for IAM Conditions).

    ``WriteOnly``: ``roles/storage.objectCreator`` (create objects, nothing else), limited by
    a condition to the prefixes, as Stream's example shows. ``ReadWrite`` adds
    ``roles/storage.objectViewer`` under the same condition, to serve media back, and
    ``roles/storage.legacyBucketReader``, the smallest built-in role with
    ``storage.buckets.get`` (validation's bucket get); ``objectAdmin`` would also allow
    deleting and overwriting media, which callstorage never needs.
    """
    check_mode(access_mode)
    kept = distinct_prefixes(prefixes)
    media = [f"{p}/" if p else "" for p in kept]
    check = check_pattern(path, check_object_prefix, kept)
    write = [*media, check] if check is not None else media

    def binding(role: str, condition: dict[str, str] | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"role": role, "members": [member]}
        if condition is not None:
            entry["condition"] = condition
        return entry

    bindings = [binding("roles/storage.objectCreator",
                        _gcs_condition(bucket, write, "callstorage-write"))]
    if access_mode == READ_WRITE:
        bindings += [
            binding("roles/storage.objectViewer",
                    _gcs_condition(bucket, media, "callstorage-read")),
            binding("roles/storage.legacyBucketReader", None),
        ]
    return {"version": 3, "bindings": bindings}


def _policy(request: PolicyRequest) -> Policy:
    return Policy("gcs", "GCS bucket IAM bindings", gcs_policy(
        request.bucket, request.prefixes, request.access_mode, path=request.path,
        check_object_prefix=request.check_object_prefix,
        member=request.member or GCS_MEMBER_PLACEHOLDER), notes=(
        *probe_notes(request, "On a bucket with object versioning, a lifecycle rule "
                     "(condition isLive=false, matchesPrefix the probe keys, action Delete) "
                     "drops the probes' old generations."),
        "Add the bindings to the bucket's IAM policy (version 3); conditions need "
        "uniform bucket-level access.",
        "The member is the client_email of the service account in credentials.json.",
    ))


def _policy_options(block: GCSSpec) -> dict[str, Any]:
    return {}


@dataclass(frozen=True, config=REQUEST_CONFIG)
class GCSRequest:
    """A service-account key file's content, and an optional custom endpoint (the seed
    passes the key alone, as ``gcs_credentials``: text, bytes or the parsed dict)."""

    credentials: SecretStr
    endpoint: str | None = None


def _gcs_credentials_text(value: str | bytes | Mapping[str, Any]) -> str:
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    text = value.decode() if isinstance(value, bytes) else value
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):  # say so, but never echo the content
        raise ValueError("gcs_credentials must be the JSON of a service account key file")
    return text


def gcs_request(credentials: str | bytes | Mapping[str, Any] | GCSRequest,
                endpoint: str | None = None) -> GCSRequest:
    """The request for a key file's content in any of the seed's forms."""
    if isinstance(credentials, GCSRequest):
        return credentials
    return GCSRequest(SecretStr(_gcs_credentials_text(credentials)), endpoint)


def _from_request(value: Any) -> BlockAndSecret:
    request = gcs_request(value)
    block = {"endpoint": request.endpoint} if request.endpoint else {}
    data = {CREDENTIALS_JSON: request.credentials.get_secret_value()}
    if request.endpoint:  # the Secret binds its key to the endpoint (and token_uri there)
        data[ENDPOINT_KEY] = request.endpoint
    return block, data


#: Google's own token endpoints (a downloaded key's ``token_uri``) and storage API.
GOOGLE_TOKEN_HOSTS = frozenset({"oauth2.googleapis.com", "accounts.google.com"})
GCS_PUBLIC = public_https(r"storage\.googleapis\.com")
GOOGLE_TOKEN_PUBLIC = public_https(*(re.escape(h) for h in sorted(GOOGLE_TOKEN_HOSTS)))


def key_token_uri(secret: Mapping[str, bytes] | None) -> str | None:
    """The ``token_uri`` of the Secret's key file, if it has one (read leniently: a key
    that does not parse is the client's to report)."""
    raw = (secret or {}).get(CREDENTIALS_JSON)
    try:
        info = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        return None
    token_uri = info.get("token_uri") if isinstance(info, dict) else None
    return token_uri if isinstance(token_uri, str) and token_uri else None


def _destinations(block: GCSSpec, secret: Mapping[str, bytes] | None) -> list[Destination]:
    found = []
    if block.endpoint:
        found.append(Destination("spec.gcs.endpoint", block.endpoint, (ENDPOINT_KEY,),
                                 GCS_PUBLIC))
    token_uri = key_token_uri(secret)
    if token_uri is not None:  # the signed assertion is POSTed there
        found.append(Destination(f"the token_uri of {CREDENTIALS_JSON}", token_uri,
                                 (TOKEN_URI_KEY, ENDPOINT_KEY), GOOGLE_TOKEN_PUBLIC))
    return found


PROVIDER = StorageProvider(
    name="gcs",
    title="Google Cloud Storage",
    spec_model=GCSSpec,
    bucket_problems=gcs_bucket_problems,
    secret_keys=(CREDENTIALS_JSON, ENDPOINT_KEY, TOKEN_URI_KEY),
    error_table=ERROR_TABLE,
    place="GCS bucket",
    client_module="callstorage.providers.gcs",
    policy=_policy,
    policy_options=_policy_options,
    request_arg="gcs_credentials",
    from_request=_from_request,
    example_block={"credentialsSecretRef": {"name": "gcs-credentials"}},
    default_host=lambda block: "storage.googleapis.com",
    destinations=_destinations,
    url_scheme="gs",
    endpoint_arg="gcs_endpoint",
)
