"""Name rules: Secret and object references, URLs, accounts, regions (each storage type's
bucket rules live with it, in ``callstorage.storagetypes``).

Each function returns the messages of every rule a value breaks, worded and ordered as the
CEL rules in ``crds/externalstorages.yaml`` are, so a user sees the same sentence from
``kubectl apply`` and from the operator. The rules are the providers' documented ones,
limited to what can be checked without asking the provider.
"""

from __future__ import annotations

import re

_IP_SHAPED = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$")
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


def is_ip_shaped(name: str) -> bool:
    """Whether ``name`` is formatted as an IPv4 address (S3 and GCS refuse such buckets)."""
    return _IP_SHAPED.fullmatch(name) is not None


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
