"""The callstorage.io/v1alpha1 API: models of the CRDs and the pure helpers around them.

``crds/*.yaml`` is the schema; the models here mirror it (``v1alpha1``), and ``prefixes``,
``conditions``, ``reasons``, ``readiness`` and ``durations`` hold what the rest of the
operator derives from a spec.

This package is the base layer: the storage types (``callstorage.storagetypes``) build
their provider blocks on it, and ``callstorage.storagespec`` assembles the ExternalStorage
spec from both. Nothing here imports a storage type.
"""

from __future__ import annotations

from callstorage.api.durations import parse_duration
from callstorage.api.model import KeyedSecretRef, ProviderSpec, SecretRef
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
    InvalidSpecError,
    Prefixes,
    TLSSpec,
    call_type_manifest,
    call_type_object_name,
    is_platform_reference,
    parse_call_type,
    validate_name,
)

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
    "AccessMode",
    "AccessModeName",
    "CallTypeSpec",
    "InvalidSpecError",
    "KeyedSecretRef",
    "Prefixes",
    "ProviderSpec",
    "SecretRef",
    "TLSSpec",
    "call_type_manifest",
    "call_type_object_name",
    "effective_prefixes",
    "is_platform_reference",
    "normalize_prefix",
    "parse_call_type",
    "parse_duration",
    "validate_name",
]
