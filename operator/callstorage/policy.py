"""The least-privilege grant a storage's credentials need, per provider (MeetStream section 1).

What the operator does with the credentials decides what they need:

- every mode writes media under each distinct effective prefix, and the on-demand check
  writes ``{path}/{check prefix}<uuid>.md``;
- ``WriteOnly`` validation writes probes under each prefix, so writing is all it needs;
- ``ReadWrite`` validation reads bucket metadata (S3 HeadBucket = ``s3:ListBucket`` on the
  bucket, GCS bucket get, Azure container properties) and the platform serves media back,
  so it also reads objects under the prefixes.

Each storage type's grant lives with it (``callstorage.storagetypes.<type>``, the
descriptor's ``policy``); this module picks it by storage type. Nothing here looks at
credentials: the principal is left as a placeholder to fill in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from callstorage.storagetypes import PROVIDERS
from callstorage.storagetypes.azure import AZURE_ASSIGNEE_PLACEHOLDER, azure_role
from callstorage.storagetypes.base import (
    READ_WRITE,
    WRITE_ONLY,
    Policy,
    PolicyRequest,
    check_mode,
    distinct_prefixes,
)
from callstorage.storagetypes.gcs import GCS_MEMBER_PLACEHOLDER, gcs_policy
from callstorage.storagetypes.s3 import s3_policy

__all__ = [
    "AZURE_ASSIGNEE_PLACEHOLDER",
    "GCS_MEMBER_PLACEHOLDER",
    "READ_WRITE",
    "WRITE_ONLY",
    "Policy",
    "PolicyRequest",
    "azure_role",
    "distinct_prefixes",
    "gcs_policy",
    "least_privilege_policy",
    "s3_policy",
]


def least_privilege_policy(
    storage_type: str,
    bucket: str,
    access_mode: str,
    prefixes: Mapping[str, str] | Iterable[str],
    *,
    path: str | None = None,
    check_object_prefix: str | None = "stream-",
    member: str | None = None,
    **options: Any,
) -> Policy:
    """The grant for one storage; ``prefixes`` are its effective prefixes (a per-category
    mapping or just the values). ``member`` names the principal (GCS member, Azure
    assignee) instead of a placeholder; ``options`` are the provider's own settings
    (``region=`` for S3, ``account_name=`` for Azure: its descriptor's ``policy_options``).
    """
    provider = PROVIDERS.get(storage_type)
    if provider is None:
        raise ValueError(f"unknown storage type {storage_type!r}; expected "
                         f"{', '.join(PROVIDERS)}")
    check_mode(access_mode)
    values = list(prefixes.values()) if isinstance(prefixes, Mapping) else list(prefixes)
    return provider.policy(PolicyRequest(
        bucket=bucket, access_mode=access_mode, prefixes=values, path=path,
        check_object_prefix=check_object_prefix, member=member, options=options))
