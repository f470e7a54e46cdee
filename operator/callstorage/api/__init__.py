"""The callstorage.io/v1alpha1 API: models of the CRDs and the pure helpers around them.

``crds/*.yaml`` is the schema; the models here mirror it (``v1alpha1``, with the provider
blocks from ``callstorage.storagetypes``), and ``prefixes``, ``conditions``, ``reasons``
and ``durations`` hold what the rest of the operator derives from a spec.

The names below are imported on first use (as in ``callstorage/__init__``): the provider
modules build their blocks from ``callstorage.api.model`` and ``callstorage.api.reasons``
while ``v1alpha1`` builds ``ExternalStorageSpec`` from those blocks, so importing a
submodule of this package must not import ``v1alpha1`` first.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Public name -> module that defines it.
_EXPORTS = {
    "parse_duration": "callstorage.api.durations",
    "CATEGORIES": "callstorage.api.prefixes",
    "effective_prefixes": "callstorage.api.prefixes",
    "normalize_prefix": "callstorage.api.prefixes",
    "KeyedSecretRef": "callstorage.api.model",
    "ProviderSpec": "callstorage.api.model",
    "SecretRef": "callstorage.api.model",
    "API_VERSION": "callstorage.api.v1alpha1",
    "CALL_TYPE_LABEL": "callstorage.api.v1alpha1",
    "CALLTYPE_KIND": "callstorage.api.v1alpha1",
    "CALLTYPE_PLURAL": "callstorage.api.v1alpha1",
    "CHECK_ANNOTATION": "callstorage.api.v1alpha1",
    "EXTERNALSTORAGE_KIND": "callstorage.api.v1alpha1",
    "EXTERNALSTORAGE_PLURAL": "callstorage.api.v1alpha1",
    "GROUP": "callstorage.api.v1alpha1",
    "IN_USE_FINALIZER": "callstorage.api.v1alpha1",
    "PROBE_OBJECT_NAME": "callstorage.api.prefixes",
    "RESERVED_STORAGE_NAME": "callstorage.api.v1alpha1",
    "VERSION": "callstorage.api.v1alpha1",
    "AccessMode": "callstorage.api.v1alpha1",
    "AccessModeName": "callstorage.api.v1alpha1",
    "CallTypeSpec": "callstorage.api.v1alpha1",
    "ExternalStorageSpec": "callstorage.api.v1alpha1",
    "InvalidSpecError": "callstorage.api.v1alpha1",
    "Prefixes": "callstorage.api.v1alpha1",
    "StorageType": "callstorage.api.v1alpha1",
    "TLSSpec": "callstorage.api.v1alpha1",
    "call_type_manifest": "callstorage.api.v1alpha1",
    "call_type_object_name": "callstorage.api.v1alpha1",
    "external_storage_manifest": "callstorage.api.v1alpha1",
    "is_platform_reference": "callstorage.api.v1alpha1",
    "parse_call_type": "callstorage.api.v1alpha1",
    "parse_external_storage": "callstorage.api.v1alpha1",
    "validate_name": "callstorage.api.v1alpha1",
    "S3Spec": "callstorage.storagetypes.s3",
    "GCSSpec": "callstorage.storagetypes.gcs",
    "ABSSpec": "callstorage.storagetypes.azure",
}

__all__ = [
    "API_VERSION",
    "CALLTYPE_KIND",
    "CALLTYPE_PLURAL",
    "CALL_TYPE_LABEL",
    "CATEGORIES",
    "CHECK_ANNOTATION",
    "EXTERNALSTORAGE_KIND",
    "EXTERNALSTORAGE_PLURAL",
    "GROUP",
    "IN_USE_FINALIZER",
    "PROBE_OBJECT_NAME",
    "RESERVED_STORAGE_NAME",
    "VERSION",
    "ABSSpec",
    "AccessMode",
    "AccessModeName",
    "CallTypeSpec",
    "ExternalStorageSpec",
    "GCSSpec",
    "InvalidSpecError",
    "KeyedSecretRef",
    "Prefixes",
    "ProviderSpec",
    "S3Spec",
    "SecretRef",
    "StorageType",
    "TLSSpec",
    "call_type_manifest",
    "call_type_object_name",
    "effective_prefixes",
    "external_storage_manifest",
    "is_platform_reference",
    "normalize_prefix",
    "parse_call_type",
    "parse_duration",
    "parse_external_storage",
    "validate_name",
]

if TYPE_CHECKING:
    from callstorage.api.durations import (
        parse_duration,
    )
    from callstorage.api.model import (
        KeyedSecretRef,
        ProviderSpec,
        SecretRef,
    )
    from callstorage.api.prefixes import (
        CATEGORIES,
        PROBE_OBJECT_NAME,
        effective_prefixes,
        normalize_prefix,
    )
    from callstorage.api.v1alpha1 import (
        API_VERSION,
        CALL_TYPE_LABEL,
        CALLTYPE_KIND,
        CALLTYPE_PLURAL,
        CHECK_ANNOTATION,
        EXTERNALSTORAGE_KIND,
        EXTERNALSTORAGE_PLURAL,
        GROUP,
        IN_USE_FINALIZER,
        RESERVED_STORAGE_NAME,
        VERSION,
        AccessMode,
        AccessModeName,
        CallTypeSpec,
        ExternalStorageSpec,
        InvalidSpecError,
        Prefixes,
        StorageType,
        TLSSpec,
        call_type_manifest,
        call_type_object_name,
        external_storage_manifest,
        is_platform_reference,
        parse_call_type,
        parse_external_storage,
        validate_name,
    )
    from callstorage.storagetypes.azure import (
        ABSSpec,
    )
    from callstorage.storagetypes.gcs import (
        GCSSpec,
    )
    from callstorage.storagetypes.s3 import (
        S3Spec,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'callstorage.api' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
