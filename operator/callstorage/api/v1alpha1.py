"""Pydantic models of the ``callstorage.io/v1alpha1`` kinds, mirroring ``crds/*.yaml``.

The CRDs are the source of truth: admission already refuses what they reject, so the
operator normally parses objects that are valid. These models check the same rules
anyway, because objects can predate a CRD upgrade and the Python client builds specs
without an API server. Every rule reports the message its CEL rule reports, as a line
``<field path>: <message>``; ``tests/cases/admission.py`` runs one table through both
and fails when they disagree.

Field names are snake_case in Python and camelCase on the wire (``by_alias``).

The ExternalStorage spec is assembled in ``callstorage.storagespec``, not here: it holds one
block per storage type, and the storage types (``callstorage.storagetypes``) are built on
this package, so this package never imports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import ValidationError, field_validator, model_validator

from callstorage.api import names
from callstorage.api.model import (
    KeyedSecretRef,
    Model,
    problem,
    too_long,
)
from callstorage.api.prefixes import CATEGORIES, MAX_PREFIX_LENGTH, prefix_problems

GROUP = "callstorage.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
EXTERNALSTORAGE_KIND = "ExternalStorage"
EXTERNALSTORAGE_PLURAL = "externalstorages"
CALLTYPE_KIND = "CallType"
CALLTYPE_PLURAL = "calltypes"
RESERVED_STORAGE_NAME = "stream-s3"
CHECK_ANNOTATION = "callstorage.io/check-requested-at"
IN_USE_FINALIZER = "callstorage.io/in-use-protection"
# Platform call type names need not be valid object names (the built-in ``audio_room``):
# such a CallType is named with '-' for '_' and carries the exact name in this label.
CALL_TYPE_LABEL = "callstorage.io/call-type"

RESERVED_NAME_MESSAGE = "stream-s3 is reserved for the platform storage; choose another name"


def is_platform_reference(name: str | None) -> bool:
    """Whether a storage setting (a CallType's ``externalStorage``, a call's storage) means
    the platform storage: omitted, empty, or the reserved ``stream-s3``. The one home of
    this rule (docs/api.md "Resolution")."""
    return not name or name == RESERVED_STORAGE_NAME


AccessModeName = Literal["ReadWrite", "WriteOnly"]


class AccessMode(StrEnum):
    """``spec.accessMode``: what the credentials are expected to allow."""

    READ_WRITE = "ReadWrite"
    WRITE_ONLY = "WriteOnly"


class InvalidSpecError(ValueError):
    """An object breaks the schema; ``problems`` holds one ``<path>: <message>`` per rule."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def summary(self) -> str:
        """All problems on one line, for a condition message or an event."""
        return "; ".join(self.problems)


class TLSSpec(Model):
    """``spec.tls``: a private CA to trust for a custom endpoint."""

    ca_secret_ref: KeyedSecretRef


def check_prefix(value: str | None) -> str | None:
    """A ``path`` or ``prefixes`` value as written; the rules, not the normalisation."""
    if value is None:
        return None
    problems = prefix_problems(value)
    if len(value) > MAX_PREFIX_LENGTH:
        problems.insert(0, too_long(MAX_PREFIX_LENGTH))
    if problems:
        raise problem(problems)
    return value


class Prefixes(Model):
    """``spec.prefixes``: per-category overrides of ``spec.path`` (any subset)."""

    audio: str | None = None
    video: str | None = None
    transcript: str | None = None
    metadata: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = [str(key) for key in data if key not in CATEGORIES]
            if unknown:
                raise problem([
                    "allowed keys are audio, video, transcript and metadata; not "
                    + ", ".join(unknown)])
        return data

    _check_values = field_validator(*CATEGORIES)(check_prefix)

    def as_dict(self) -> dict[str, str | None]:
        """Category -> value as written (None when not overridden)."""
        return {category: getattr(self, category) for category in CATEGORIES}


class CallTypeSpec(Model):
    """``spec`` of a CallType."""

    external_storage: str | None = None

    @field_validator("external_storage")
    @classmethod
    def _check_reference(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > 253:
            raise problem([too_long(253)])
        if not names.is_dns1123_subdomain(value):
            raise problem([names.STORAGE_REFERENCE_MESSAGE])
        return value

    @property
    def uses_platform_storage(self) -> bool:
        """Whether this call type records to the platform storage (omitted or stream-s3)."""
        return is_platform_reference(self.external_storage)


# Pydantic's wording -> the API server's, so both sources read alike.
_JSON_TYPES = {
    "string_type": "string",
    "bool_type": "boolean",
    "model_type": "object",
    "dict_type": "object",
    "model_attributes_type": "object",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number" if isinstance(value, float) else "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


def error_lines(error: ValidationError, root: str) -> list[str]:
    """One ``<path>: <message>`` line per problem, worded like the API server."""
    lines: list[str] = []
    for detail in error.errors(include_url=False):
        path = ".".join([root, *(str(part) for part in detail["loc"])])
        kind = detail["type"]
        if kind == "callstorage":
            lines += [f"{path}: {line}" for line in detail["msg"].split("\n")]
        elif kind == "callstorage_lines":
            lines += [f"{path}.{line}" for line in detail["msg"].split("\n")]
        elif kind == "missing":
            lines.append(f"{path}: Required value")
        elif kind == "extra_forbidden":
            lines.append(f'unknown field "{path}"')
        elif kind == "literal_error":
            supported = re.findall(r"'([^']*)'", detail.get("ctx", {}).get("expected", ""))
            quoted = ", ".join(f'"{value}"' for value in supported)
            lines.append(
                f'{path}: Unsupported value: "{detail["input"]}": supported values: {quoted}')
        elif kind in _JSON_TYPES:
            lines.append(f'{path}: Invalid value: "{_json_type(detail["input"])}": '
                         f"must be of type {_JSON_TYPES[kind]}")
        else:
            lines.append(f"{path}: {detail['msg']}")
    return lines


def validate_name(name: str) -> None:
    """Raise InvalidSpecError if ``name`` may not be used for an ExternalStorage."""
    if name == RESERVED_STORAGE_NAME:
        raise InvalidSpecError(f"metadata.name: {RESERVED_NAME_MESSAGE}")


def plain(value: Any) -> Any:
    """Plain dicts and lists: strict models refuse other mappings (kopf's body views)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def parse_call_type(obj: Mapping[str, Any]) -> CallTypeSpec:
    """The spec of a CallType object (absent spec = ``{}``); InvalidSpecError on problems."""
    try:
        return CallTypeSpec.model_validate(plain(obj.get("spec") or {}))
    except ValidationError as error:
        raise InvalidSpecError(error_lines(error, "spec")) from None


def call_type_object_name(call_type: str) -> str:
    """Object name of the CallType for a platform call type name (``audio_room`` -> ``audio-room``).

    Call type names may hold ``_``, object names may not; the CallType then carries the
    exact name in the ``callstorage.io/call-type`` label, which resolvers look up first.
    """
    return call_type.replace("_", "-")


def call_type_manifest(call_type: str, namespace: str, spec: CallTypeSpec) -> dict[str, Any]:
    """A complete CallType object for a platform call type name (see CALL_TYPE_LABEL)."""
    metadata: dict[str, Any] = {"name": call_type_object_name(call_type), "namespace": namespace}
    if metadata["name"] != call_type:
        metadata["labels"] = {CALL_TYPE_LABEL: call_type}
    return {
        "apiVersion": API_VERSION,
        "kind": CALLTYPE_KIND,
        "metadata": metadata,
        "spec": spec.to_dict(),
    }
