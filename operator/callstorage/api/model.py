"""The pieces every model of the API is built from: the shared pydantic config, Secret
references, and the errors validators raise.

The provider blocks in ``callstorage.storagetypes`` are built from these;
``callstorage.storagespec`` assembles ``ExternalStorageSpec`` from those blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from callstorage.api import names


# Errors raised by validators. "callstorage" messages belong to the field the error is
# reported at; "callstorage_lines" messages already name a field relative to it.
def problem(messages: Iterable[str]) -> PydanticCustomError:
    """A validation error whose messages belong to the field being validated."""
    return PydanticCustomError("callstorage", "{message}", {"message": "\n".join(messages)})


def problem_lines(lines: Iterable[str]) -> PydanticCustomError:
    """A validation error whose lines each start with a field path relative to the model."""
    return PydanticCustomError("callstorage_lines", "{message}", {"message": "\n".join(lines)})


def too_long(limit: int) -> str:
    """The API server's wording for a string over ``maxLength``."""
    return f"Too long: may not be more than {limit} bytes"


class Model(BaseModel):
    """Shared config: camelCase on the wire, strict JSON types, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _reject_namespace(data: Any) -> Any:
    """Refuse ``namespace`` in a Secret reference with the CRD's message, not "unknown"."""
    if isinstance(data, Mapping) and "namespace" in data:
        raise problem_lines([f"namespace: Forbidden: {names.REF_NAMESPACE_MESSAGE}"])
    return data


def _secret_name(value: str) -> str:
    if len(value) > 253:
        raise problem([too_long(253)])
    if not names.is_dns1123_subdomain(value):
        raise problem([names.REF_NAME_MESSAGE])
    return value


class SecretRef(Model):
    """A Secret in the referring object's own namespace (no cross-namespace references)."""

    name: str

    @model_validator(mode="before")
    @classmethod
    def _no_namespace(cls, data: Any) -> Any:
        return _reject_namespace(data)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _secret_name(value)


class KeyedSecretRef(SecretRef):
    """A key of a Secret in the referring object's own namespace."""

    key: str = "ca.crt"

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        if len(value) > 253:
            raise problem([too_long(253)])
        if not names.is_secret_key(value):
            raise problem([names.REF_KEY_MESSAGE])
        return value


def url(value: str | None) -> str | None:
    """Validator of an endpoint URL field (the CRD's pattern and length)."""
    if value is None:
        return None
    if len(value) > 512:
        raise problem([too_long(512)])
    if not names.is_http_url(value):
        raise problem([names.URL_MESSAGE])
    return value


class ProviderSpec(Model):
    """Base of a provider block (``spec.<storageType>``). ``credentials_secret_ref`` is the
    credentials Secret; None means ambient credentials where a provider allows them."""

    @property
    def credentials_ref(self) -> SecretRef | None:
        """The credentials Secret this block names, if any."""
        ref = getattr(self, "credentials_secret_ref", None)
        return ref if isinstance(ref, SecretRef) else None
