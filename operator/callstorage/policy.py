"""The least-privilege grant a storage's credentials need, per provider (MeetStream section 1).

What the operator does with the credentials decides what they need:

- every mode writes media under each distinct effective prefix, and the on-demand check
  writes ``{path}/{check prefix}<uuid>.md`` (the uuid derived from the request: one object
  per request);
- ``WriteOnly`` validation overwrites one probe object per prefix
  (``<prefix>/.write_probe_callstorage``), so writing is all it needs;
- ``ReadWrite`` validation reads bucket metadata (S3 HeadBucket = ``s3:ListBucket`` on the
  bucket, GCS bucket get, Azure container properties) and the platform serves media back,
  so it also reads objects under the prefixes.

Nothing here looks at credentials: the principal is left as a placeholder to fill in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from callstorage.api import PROBE_OBJECT_NAME

READ_WRITE: Final = "ReadWrite"
WRITE_ONLY: Final = "WriteOnly"

GCS_MEMBER_PLACEHOLDER: Final = "serviceAccount:SERVICE_ACCOUNT_EMAIL"
AZURE_ASSIGNEE_PLACEHOLDER: Final = "SERVICE_PRINCIPAL_OBJECT_ID"
_AZURE_BLOBS: Final = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"


@dataclass(frozen=True)
class Policy:
    """A provider's grant: the JSON ``document`` to apply, and ``notes`` on how."""

    storage_type: str
    kind: str
    document: dict[str, Any]
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        """The document as indented JSON, ready for the provider's CLI."""
        return json.dumps(self.document, indent=2)


def distinct_prefixes(prefixes: Iterable[str]) -> list[str]:
    """Normalised, sorted prefixes with duplicates and already-covered ones removed.

    ``recordings`` covers ``recordings/audio``; the empty prefix (bucket root) covers all.
    """
    normalised = sorted({p.strip("/") for p in prefixes})
    kept: list[str] = []
    for prefix in normalised:  # sorted, so a covering prefix comes before what it covers
        if not any(_covers(k, prefix) for k in kept):
            kept.append(prefix)
    return kept


def _covers(outer: str, inner: str) -> bool:
    return outer == "" or inner == outer or inner.startswith(outer + "/")


def _check_pattern(path: str | None, check_object_prefix: str | None,
                   prefixes: list[str]) -> str | None:
    """The key pattern of check objects, or None when a media prefix already covers it."""
    if check_object_prefix is None:
        return None
    base = (path or "").strip("/")
    if any(_covers(p, base) for p in prefixes):
        return None
    return f"{base}/{check_object_prefix}" if base else check_object_prefix


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
    _check_mode(access_mode)
    arn = f"arn:{_partition(region)}:s3:::{bucket}"
    kept = distinct_prefixes(prefixes)
    objects = [f"{arn}/{p}/*" if p else f"{arn}/*" for p in kept]
    check = _check_pattern(path, check_object_prefix, kept)
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
    _check_mode(access_mode)
    kept = distinct_prefixes(prefixes)
    media = [f"{p}/" if p else "" for p in kept]
    check = _check_pattern(path, check_object_prefix, kept)
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


def _azure_condition(actions: list[str], patterns: list[str]) -> str | None:
    """An ABAC condition (version 2.0) allowing ``actions`` only on blobs under ``patterns``."""
    if "" in patterns:
        return None
    not_actions = " AND ".join(
        f"!(ActionMatches{{'{_AZURE_BLOBS}/read'}} AND NOT SubOperationMatches{{'Blob.List'}})"
        if action == "read" else f"!(ActionMatches{{'{_AZURE_BLOBS}/{action}'}})"
        for action in actions
    )
    paths = " OR ".join(f"@Resource[{_AZURE_BLOBS}:path] StringStartsWith '{p}'"
                        for p in patterns)
    return f"(({not_actions}) OR ({paths}))"


def azure_role(
    account_name: str,
    container: str,
    prefixes: Iterable[str],
    access_mode: str = READ_WRITE,
    *,
    path: str | None = None,
    check_object_prefix: str | None = "stream-",
    assignee: str = AZURE_ASSIGNEE_PLACEHOLDER,
) -> dict[str, Any]:
    """A role assignment scoped to the container, with a condition limiting blobs to the
    prefixes.

    ``ReadWrite`` uses the built-in "Storage Blob Data Contributor" (it includes the
    container read that validation's container-properties call needs). ``WriteOnly``
    defines a custom role with only the blob write data actions, since every built-in
    blob role also reads.
    """
    _check_mode(access_mode)
    kept = distinct_prefixes(prefixes)
    media = [f"{p}/" if p else "" for p in kept]
    check = _check_pattern(path, check_object_prefix, kept)
    write = [*media, check] if check is not None else media
    scope = ("/subscriptions/SUBSCRIPTION_ID/resourceGroups/RESOURCE_GROUP/providers/"
             f"Microsoft.Storage/storageAccounts/{account_name}/blobServices/default/"
             f"containers/{container}")
    document: dict[str, Any] = {}
    if access_mode == WRITE_ONLY:
        role = "callstorage blob writer"
        document["roleDefinition"] = {
            "Name": role,
            "IsCustom": True,
            "Description": "Create blobs; no read, list or delete (callstorage WriteOnly).",
            "Actions": [],
            "NotActions": [],
            "DataActions": [f"{_AZURE_BLOBS}/write", f"{_AZURE_BLOBS}/add/action"],
            "NotDataActions": [],
            "AssignableScopes": [scope],
        }
        condition = _azure_condition(["write", "add/action"], write)
    else:
        role = "Storage Blob Data Contributor"
        # Reads stay on media prefixes; the check prefix only ever needs writing.
        read_condition = _azure_condition(["read", "delete", "move/action"], media)
        write_condition = _azure_condition(["write", "add/action"], write)
        parts = [c for c in (write_condition, read_condition) if c is not None]
        condition = " AND ".join(parts) if parts else None
    assignment: dict[str, Any] = {"role": role, "scope": scope, "assignee": assignee}
    if condition is not None:
        assignment["condition"] = condition
        assignment["conditionVersion"] = "2.0"
    document["roleAssignment"] = assignment
    return document


def probe_notes(storage_type: str, prefixes: Iterable[str]) -> tuple[str, ...]:
    """How WriteOnly probes stay bounded: one object per prefix, overwritten each time;
    on a versioned bucket a lifecycle rule drops the old versions."""
    keys = [f"{p}/{PROBE_OBJECT_NAME}" if p else PROBE_OBJECT_NAME
            for p in sorted({p.strip("/") for p in prefixes})]
    first = (f"WriteOnly validation overwrites one probe object per prefix "
             f"({', '.join(keys)}); nothing else is written by validation.")
    if storage_type == "s3":
        rules = [{"ID": f"callstorage-probe-{i}", "Status": "Enabled",
                  "Filter": {"Prefix": key},
                  "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}
                 for i, key in enumerate(keys)]
        return (first, "On a versioned bucket, expire the probes' old versions "
                "(aws s3api put-bucket-lifecycle-configuration): "
                + json.dumps({"Rules": rules}, separators=(",", ":")))
    if storage_type == "gcs":
        return (first, "On a bucket with object versioning, a lifecycle rule "
                "(condition isLive=false, matchesPrefix the probe keys, action Delete) "
                "drops the probes' old generations.")
    return (first, "With blob versioning on, a lifecycle management rule deleting "
            "previous versions of the probe blobs (prefixMatch) keeps them from piling up.")


def least_privilege_policy(
    storage_type: str,
    bucket: str,
    access_mode: str,
    prefixes: Mapping[str, str] | Iterable[str],
    *,
    path: str | None = None,
    check_object_prefix: str | None = "stream-",
    region: str | None = None,
    account_name: str | None = None,
    member: str | None = None,
) -> Policy:
    """The grant for one storage; ``prefixes`` are its effective prefixes (a per-category
    mapping or just the values). ``member`` names the principal (GCS member, Azure
    assignee) instead of a placeholder."""
    values = list(prefixes.values()) if isinstance(prefixes, Mapping) else list(prefixes)
    probes = probe_notes(storage_type, values) if access_mode == WRITE_ONLY else ()
    if storage_type == "s3":
        return Policy("s3", "AWS IAM identity policy", s3_policy(
            bucket, values, access_mode, path=path, check_object_prefix=check_object_prefix,
            region=region), notes=(*probes,
            "Attach to the IAM user or role whose keys the credentials Secret holds, "
            "e.g. aws iam put-user-policy --policy-document file://policy.json.",
            "A bucket encrypted with SSE-KMS also needs kms:GenerateDataKey on its key.",
        ))
    if storage_type == "gcs":
        return Policy("gcs", "GCS bucket IAM bindings", gcs_policy(
            bucket, values, access_mode, path=path, check_object_prefix=check_object_prefix,
            member=member or GCS_MEMBER_PLACEHOLDER), notes=(*probes,
            "Add the bindings to the bucket's IAM policy (version 3); conditions need "
            "uniform bucket-level access.",
            "The member is the client_email of the service account in credentials.json.",
        ))
    if storage_type == "abs":
        if not account_name:
            raise ValueError("an Azure storage needs its account name")
        return Policy("abs", "Azure role assignment", azure_role(
            account_name, bucket, values, access_mode, path=path,
            check_object_prefix=check_object_prefix,
            assignee=member or AZURE_ASSIGNEE_PLACEHOLDER), notes=(*probes,
            "Fill in SUBSCRIPTION_ID and RESOURCE_GROUP; create roleDefinition (if any) with "
            "az role definition create, then the assignment with az role assignment create.",
            "An account key bypasses Azure RBAC entirely: use a service principal "
            "(clientId, clientSecret, tenantId) for least privilege.",
        ))
    raise ValueError(f"unknown storage type {storage_type!r}; expected s3, gcs or abs")


def _check_mode(access_mode: str) -> None:
    if access_mode not in (READ_WRITE, WRITE_ONLY):
        raise ValueError(f"unknown access mode {access_mode!r}; "
                         f"expected {READ_WRITE} or {WRITE_ONLY}")
