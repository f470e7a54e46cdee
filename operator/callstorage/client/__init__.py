"""A Python client that speaks the seed SDK's language over the Kubernetes API.

Code written against Stream's examples ports with few changes: a namespace plays the part
of the application, ``create_external_storage(name=, storage_type=, bucket=, path=,
aws_s3=S3Request(...))`` creates a credentials Secret and an ExternalStorage,
``check_external_storage(name)`` asks the operator for a check and waits for its answer,
``update_call_type(name, external_storage=)`` points a CallType at a storage.

The package, by concern: ``facade`` (``Client``), ``errors`` (what it raises),
``kubeconfig`` (which cluster and namespace), ``lookups`` (reads shared with
``callstorage.resolve``), ``provider_requests`` (the seed's provider requests as spec
blocks and Secrets, per ``callstorage.storagetypes``) and ``views`` (what it returns).
"""

from __future__ import annotations

from callstorage.client.errors import (
    AlreadyExists,
    ApiError,
    ApiUnreachable,
    CallStorageError,
    CallTypeNotFound,
    CheckFailed,
    CheckTimeout,
    InvalidRequest,
    NotFoundError,
    StorageNotFound,
    StorageNotReady,
)
from callstorage.client.facade import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SECRET_SUFFIX,
    STORAGE_LABEL,
    UNSET,
    Client,
    merge_patched,
)
from callstorage.client.facade import same_instant as _same_instant
from callstorage.client.kubeconfig import api_client_from_config, default_namespace
from callstorage.client.lookups import (
    check_storage_name,
    find_call_type,
    get_external_storage_object,
)
from callstorage.client.provider_requests import from_mapping as _from_mapping
from callstorage.client.views import CallTypeInfo, CheckResult, ExternalStorageInfo
from callstorage.storagetypes.azure import AzureRequest
from callstorage.storagetypes.gcs import GCSRequest
from callstorage.storagetypes.s3 import S3Request

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "SECRET_SUFFIX",
    "STORAGE_LABEL",
    "UNSET",
    "AlreadyExists",
    "ApiError",
    "ApiUnreachable",
    "AzureRequest",
    "CallStorageError",
    "CallTypeInfo",
    "CallTypeNotFound",
    "CheckFailed",
    "CheckResult",
    "CheckTimeout",
    "Client",
    "ExternalStorageInfo",
    "GCSRequest",
    "InvalidRequest",
    "NotFoundError",
    "S3Request",
    "StorageNotFound",
    "StorageNotReady",
    "_from_mapping",
    "_same_instant",
    "api_client_from_config",
    "check_storage_name",
    "default_namespace",
    "find_call_type",
    "get_external_storage_object",
    "merge_patched",
]
