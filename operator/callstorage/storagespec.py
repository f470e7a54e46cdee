"""The ExternalStorage spec, assembled: the fields of ``callstorage.api`` plus one provider
block per registered storage type (``spec.s3``, ``spec.gcs``, ``spec.abs``).

This is the one module that imports both ``callstorage.api`` (the base models, names,
reasons and prefixes) and ``callstorage.storagetypes`` (the provider blocks, built on that
base), so the dependency between those two packages goes one way: storage types depend on
the API's base, never the reverse (``tests/unit/test_import_layers.py`` holds it).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError, create_model, field_validator, model_validator

from callstorage.api import durations
from callstorage.api.model import (
    Model,
    ProviderSpec,
    SecretRef,
    problem,
    problem_lines,
    too_long,
)
from callstorage.api.v1alpha1 import (
    API_VERSION,
    EXTERNALSTORAGE_KIND,
    AccessModeName,
    InvalidSpecError,
    Prefixes,
    TLSSpec,
    check_prefix,
    error_lines,
    plain,
    validate_name,
)
from callstorage.storagetypes import PROVIDERS
from callstorage.storagetypes.azure import ABSSpec
from callstorage.storagetypes.gcs import GCSSpec
from callstorage.storagetypes.s3 import S3Spec

B = TypeVar("B", bound=ProviderSpec)

#: ``spec.storageType``: the provider, one member per registered storage type
#: (``callstorage.storagetypes.PROVIDERS``), in the CRD's enum order.
StorageType = StrEnum(  # type: ignore[misc]  # built from the registry
    "StorageType", {name.upper(): name for name in PROVIDERS})


class ExternalStorageSpecFields(Model):
    """``spec`` of an ExternalStorage, but for the provider blocks: ``ExternalStorageSpec``
    adds one optional field per registered storage type (``spec.s3``, ``spec.gcs``, ...)."""

    storage_type: str
    bucket: str
    path: str | None = None
    access_mode: AccessModeName = "ReadWrite"
    prefixes: Prefixes | None = None
    tls: TLSSpec | None = None
    validation_interval: str = "1h"
    suspend: bool = False

    @field_validator("storage_type")
    @classmethod
    def _check_storage_type(cls, value: str) -> str:
        if value not in PROVIDERS:
            supported = ", ".join(f'"{name}"' for name in PROVIDERS)
            raise problem([f'Unsupported value: "{value}": supported values: {supported}'])
        return value

    @field_validator("bucket")
    @classmethod
    def _check_bucket_length(cls, value: str) -> str:
        if len(value) > 222:
            raise problem([too_long(222)])
        return value

    _check_path = field_validator("path")(check_prefix)

    @field_validator("validation_interval")
    @classmethod
    def _check_interval(cls, value: str) -> str:
        if len(value) > 20:
            raise problem([too_long(20)])
        try:
            durations.validate_interval(value)
        except ValueError as error:
            raise problem([str(error)]) from None
        return value

    @model_validator(mode="after")
    def _check_provider(self) -> ExternalStorageSpecFields:
        # The provider block matching storageType, and no other; then its bucket rules.
        lines: list[str] = []
        blocks = self.provider_blocks()
        for block, value in blocks.items():
            if block == self.storage_type and value is None:
                lines.append(
                    f"{block}: Required value: must be set when storageType is {block}")
        for block, value in blocks.items():
            if block != self.storage_type and value is not None:
                lines.append(
                    f"{block}: Forbidden: must not be set when storageType is "
                    f"{self.storage_type}; keep only the block that matches storageType")
        lines += [f"bucket: {message}"
                  for message in PROVIDERS[self.storage_type].bucket_problems(self.bucket)]
        if lines:
            raise problem_lines(lines)
        return self

    def provider_blocks(self) -> dict[str, ProviderSpec | None]:
        """Storage type -> its block in this spec (None where absent)."""
        blocks: dict[str, ProviderSpec | None] = {}
        for name in PROVIDERS:
            value = getattr(self, name, None)
            blocks[name] = value if isinstance(value, ProviderSpec) else None
        return blocks

    @property
    def provider(self) -> ProviderSpec:
        """The provider block that matches ``storage_type``."""
        block = self.provider_blocks()[self.storage_type]
        assert block is not None  # guaranteed by _check_provider
        return block

    def block(self, model: type[B]) -> B:
        """The provider block, as the storage type's own model; ValueError if the spec is
        of another storage type (a provider module asks for its own block)."""
        block = self.provider
        if not isinstance(block, model):
            raise ValueError(f"spec.{self.storage_type} is not a {model.__name__}")
        return block

    @property
    def credentials_secret_ref(self) -> SecretRef | None:
        """The provider's credentials Secret; None means ambient credentials (S3 only)."""
        return self.provider.credentials_ref

    @property
    def interval_seconds(self) -> float:
        """``validation_interval`` in seconds; 0 means periodic validation is off."""
        return durations.parse_duration(self.validation_interval)

    def secret_names(self) -> set[str]:
        """Names of every Secret this spec references (credentials and CA bundle)."""
        found = set()
        if self.credentials_secret_ref is not None:
            found.add(self.credentials_secret_ref.name)
        if self.tls is not None:
            found.add(self.tls.ca_secret_ref.name)
        return found



# One optional block per registered storage type, named as the type (``spec.s3``, ...).
if TYPE_CHECKING:
    ExternalStorageSpec = ExternalStorageSpecFields
else:
    ExternalStorageSpec = create_model(
        "ExternalStorageSpec", __base__=ExternalStorageSpecFields, __module__=__name__,
        __doc__="``spec`` of an ExternalStorage.",
        **{name: (p.spec_model | None, None) for name, p in PROVIDERS.items()})


def _spec_of(obj: Mapping[str, Any]) -> Any:
    if "spec" not in obj:
        raise InvalidSpecError("spec: Required value")
    return plain(obj["spec"])


def parse_external_storage(obj: Mapping[str, Any]) -> ExternalStorageSpec:
    """The spec of an ExternalStorage object; InvalidSpecError listing every problem."""
    problems: list[str] = []
    name = (obj.get("metadata") or {}).get("name")
    if isinstance(name, str):
        try:
            validate_name(name)
        except InvalidSpecError as error:
            problems += error.problems
    try:
        spec = ExternalStorageSpec.model_validate(_spec_of(obj))
    except InvalidSpecError as error:
        raise InvalidSpecError(problems + error.problems) from None
    except ValidationError as error:
        raise InvalidSpecError(problems + error_lines(error, "spec")) from None
    if problems:
        raise InvalidSpecError(problems)
    return spec


def external_storage_manifest(
    name: str, namespace: str | None, spec: ExternalStorageSpec, *,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A complete ExternalStorage object, ready for ``kubectl apply`` or the API
    (``namespace`` None: left to the request that creates it)."""
    validate_name(name)
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": API_VERSION,
        "kind": EXTERNALSTORAGE_KIND,
        "metadata": metadata,
        "spec": spec.to_dict(),
    }


__all__ = [
    "ABSSpec",
    "ExternalStorageSpec",
    "GCSSpec",
    "S3Spec",
    "StorageType",
    "external_storage_manifest",
    "parse_external_storage",
]
