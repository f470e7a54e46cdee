"""The seed SDK's provider requests (``aws_s3=S3Request(...)``, ``gcs_credentials=``,
``azure_blob=AzureRequest(...)``) as a spec block and the data of a credentials Secret. What
each request means is its storage type's (``callstorage.storagetypes``): this module only
picks the one that matches ``storage_type``."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, TypeVar

from callstorage.api import (
    AccessMode,
)
from callstorage.client.errors import InvalidRequest
from callstorage.storagetypes import PROVIDERS
from callstorage.storagetypes.base import request_from_mapping
from callstorage.storagetypes.gcs import gcs_request

T = TypeVar("T")


def from_mapping(cls: type[T], value: T | Mapping[str, Any], what: str) -> T:
    """A request from itself or a dict in any of the seed's spellings (InvalidRequest)."""
    try:
        return request_from_mapping(cls, value, what)
    except ValueError as exc:
        raise InvalidRequest(None, str(exc)) from None


class Credentials:
    """Secret data on its way to the API server; prints as its key names only."""

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)

    def __repr__(self) -> str:
        return f"Credentials(keys={sorted(self._data)})"

    def encoded(self) -> dict[str, str]:
        return {k: base64.b64encode(v.encode()).decode() for k, v in self._data.items()}

    def values(self) -> list[str]:
        return list(self._data.values())


def normalise_storage_type(value: str) -> str:
    storage_type = value.strip().lower()
    if storage_type not in PROVIDERS:
        raise InvalidRequest(None, f"storage_type must be {_one_of(list(PROVIDERS))}, "
                             f"not {value!r}")
    return storage_type


def _one_of(values: list[str]) -> str:
    return ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]


def normalise_access_mode(value: str) -> str:
    modes = {m.value.lower(): m.value for m in AccessMode}
    mode = modes.get(value.replace("_", "").replace("-", "").lower())
    if mode is None:
        raise InvalidRequest(None, f"access_mode must be ReadWrite or WriteOnly, not {value!r}")
    return mode


def provider_block(
    storage_type: str, requests: Mapping[str, Any]
) -> tuple[dict[str, Any], Credentials | None]:
    """The provider block of the spec (without its Secret reference) and the Secret data,
    from the request given for ``storage_type`` (``requests``: the seed's keyword, e.g.
    ``aws_s3``, -> the request; None where not given)."""
    provider = PROVIDERS[storage_type]
    given = {arg for arg, value in requests.items() if value is not None}
    wrong = given - {provider.request_arg}
    if wrong:
        raise InvalidRequest(None, f"storage_type {storage_type} does not take "
                             f"{', '.join(sorted(wrong))}")
    request = requests.get(provider.request_arg)
    if request is None:
        raise InvalidRequest(None, f"storage_type {storage_type} needs "
                             f"{provider.request_arg}=...")
    try:
        block, secret = provider.from_request(request)
    except ValueError as exc:
        raise InvalidRequest(None, str(exc)) from None
    return block, (Credentials(secret) if secret is not None else None)


def given_requests(
    aws_s3: Any, gcs_credentials: Any, azure_blob: Any, gcs_endpoint: str | None,
    others: Mapping[str, Any],
) -> dict[str, Any]:
    """Every provider request a call was given, by the seed's keyword."""
    unknown = set(others) - {p.request_arg for p in PROVIDERS.values()}
    if unknown:
        raise InvalidRequest(None, f"unknown argument {', '.join(sorted(unknown))}")
    if gcs_credentials is not None:
        try:
            gcs_credentials = gcs_request(gcs_credentials, gcs_endpoint)
        except ValueError as exc:
            raise InvalidRequest(None, str(exc)) from None
    return {"aws_s3": aws_s3, "gcs_credentials": gcs_credentials, "azure_blob": azure_blob,
            **others}
