"""Name rules: buckets per provider, Secret and object references, URLs, accounts, regions.

Each function returns the messages of every rule a value breaks, worded and ordered as the
CEL rules in ``crds/externalstorages.yaml`` are, so a user sees the same sentence from
``kubectl apply`` and from the operator. The rules are the providers' documented ones,
limited to what can be checked without asking the provider.
"""

from __future__ import annotations

import re

_IP_SHAPED = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$")
_S3_CHARS = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
_GCS_CHARS = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
_ABS_CHARS = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
# Host names, IPv4 or bracketed IPv6, an optional port and a plain path: nothing that
# could carry credentials (user info) or be read differently by two URL parsers.
HTTP_URL_PATTERN = (
    r"^https?://([A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[A-Za-z0-9._~!$&()*+,;=:@/-]*)?$"
)
_HTTP_URL = re.compile(HTTP_URL_PATTERN)

# AWS reserves these for access points, Object Lambda, Multi-Region Access Points and table
# buckets. Directory buckets (--x-s3) are real buckets recordings can go to, so stay allowed.
S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--table-s3")

REF_NAME_MESSAGE = (
    "must be a Secret name: lowercase letters, digits, '-' and '.', "
    "starting and ending with a letter or digit"
)
REF_KEY_MESSAGE = "must be a Secret key: letters, digits, '-', '_' and '.'"
REF_NAMESPACE_MESSAGE = (
    "Secrets are read from this object's own namespace only; remove namespace "
    "(copy the Secret into this namespace if needed)"
)
STORAGE_REFERENCE_MESSAGE = (
    "must be the name of an ExternalStorage in this namespace (lowercase letters, digits, "
    "'-' and '.'), or stream-s3 for the platform storage"
)
REGION_MESSAGE = "must be a region name such as us-east-1 (lowercase letters, digits, hyphens)"
ACCOUNT_MESSAGE = "must be a storage account name, 3-24 lowercase letters and digits"
URL_MESSAGE = (
    "must be an http:// or https:// URL without user info, query or fragment, "
    "e.g. https://storage.example.com:9000"
)


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
    if _IP_SHAPED.fullmatch(bucket):
        problems.append("S3 bucket names must not be formatted as an IP address")
    if bucket.startswith(S3_RESERVED_PREFIXES):
        problems.append("S3 bucket names must not start with xn--, sthree- or amzn-s3-demo-")
    if bucket.endswith(S3_RESERVED_SUFFIXES):
        problems.append(
            "S3 bucket names must not end with -s3alias, --ol-s3, .mrap or --table-s3")
    return problems


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
    if _IP_SHAPED.fullmatch(bucket):
        problems.append("GCS bucket names must not be formatted as an IP address")
    if bucket.startswith("goog") or "google" in bucket:
        problems.append("GCS bucket names must not start with goog or contain google")
    return problems


def abs_container_problems(container: str) -> list[str]:
    """Broken Azure Blob Storage container naming rules."""
    problems: list[str] = []
    if not 3 <= len(container) <= 63:
        problems.append("Azure container names must be 3-63 characters long")
    if not _ABS_CHARS.fullmatch(container):
        problems.append(
            "Azure container names may contain only lowercase letters, digits and hyphens, "
            "and must start and end with a letter or digit")
    if "--" in container:
        problems.append("Azure container names must not contain consecutive hyphens")
    return problems


BUCKET_RULES = {
    "s3": s3_bucket_problems,
    "gcs": gcs_bucket_problems,
    "abs": abs_container_problems,
}


def bucket_problems(storage_type: str, bucket: str) -> list[str]:
    """Broken bucket (container) naming rules of ``storage_type``; [] for an unknown type."""
    rules = BUCKET_RULES.get(storage_type)
    return rules(bucket) if rules is not None else []


def is_dns1123_subdomain(name: str) -> bool:
    """Whether ``name`` is a valid Kubernetes object name (DNS-1123 subdomain)."""
    return len(name) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(name) is not None


def is_secret_key(key: str) -> bool:
    """Whether ``key`` is a valid key of a Secret's data."""
    return _SECRET_KEY.fullmatch(key) is not None


def is_region(region: str) -> bool:
    """Whether ``region`` looks like a region name (AWS ``us-east-1``, R2 ``auto``, ...)."""
    return _REGION.fullmatch(region) is not None


def is_account_name(name: str) -> bool:
    """Whether ``name`` is a valid Azure storage account name."""
    return _ACCOUNT.fullmatch(name) is not None


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host and no user info, query or fragment."""
    return _HTTP_URL.fullmatch(url) is not None
