"""Reads the client and ``callstorage.resolve`` share: one ExternalStorage, the CallType of
a platform call type name, and the check of a storage name before anything is sent."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from kubernetes import client

from callstorage.api import (
    CALL_TYPE_LABEL,
    CALLTYPE_PLURAL,
    EXTERNALSTORAGE_PLURAL,
    GROUP,
    RESERVED_STORAGE_NAME,
    VERSION,
    call_type_object_name,
)
from callstorage.api.names import is_dns1123_subdomain
from callstorage.client.errors import (
    CallStorageError,
    CallTypeNotFound,
    InvalidRequest,
    StorageNotFound,
    api_errors,
)
from callstorage.kube import (
    REQUEST_TIMEOUT,
)

LABEL_VALUE: Final = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def get_external_storage_object(
    api_client: client.ApiClient,
    namespace: str,
    name: str,
    not_found: Callable[[], CallStorageError] | None = None,
) -> dict[str, Any]:
    """The ExternalStorage object ``namespace/name``; ``StorageNotFound`` if absent."""
    def default_not_found() -> CallStorageError:
        return StorageNotFound(None, f"ExternalStorage {name!r} not found in namespace "
                               f"{namespace!r}")

    custom = client.CustomObjectsApi(api_client)
    with api_errors(not_found or default_not_found):
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, EXTERNALSTORAGE_PLURAL, name,
            _request_timeout=REQUEST_TIMEOUT)
    return obj


def find_call_type(api_client: client.ApiClient, namespace: str, call_type: str) -> dict[str, Any]:
    """The CallType object of a platform call type name; ``CallTypeNotFound`` if absent.

    A name that is a valid object name is the object's name. One that is not (the
    built-in ``audio_room``) is looked up by the ``callstorage.io/call-type`` label, then
    under its object name (``audio-room``).
    """
    def not_found() -> CallStorageError:
        return CallTypeNotFound(None, f"CallType {call_type!r} not found in namespace "
                                f"{namespace!r}")

    custom = client.CustomObjectsApi(api_client)
    object_name = call_type_object_name(call_type)
    if object_name != call_type and LABEL_VALUE.match(call_type):
        with api_errors():
            listed = custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, CALLTYPE_PLURAL,
                label_selector=f"{CALL_TYPE_LABEL}={call_type}",
                _request_timeout=REQUEST_TIMEOUT)
        items: list[dict[str, Any]] = list(listed.get("items") or [])
        if len(items) > 1:
            found = ", ".join(sorted(i["metadata"]["name"] for i in items))
            raise InvalidRequest("AmbiguousCallType", f"several CallTypes in {namespace!r} "
                                 f"carry {CALL_TYPE_LABEL}={call_type}: {found}")
        if items:
            return items[0]
    if not is_dns1123_subdomain(object_name):
        raise not_found()
    with api_errors(not_found):
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, CALLTYPE_PLURAL, object_name,
            _request_timeout=REQUEST_TIMEOUT)
    return obj


def check_storage_name(name: str) -> None:
    """Refuse the reserved ``stream-s3`` and names that cannot be object names
    (``InvalidRequest``), before anything is sent."""
    if name == RESERVED_STORAGE_NAME:
        raise InvalidRequest("ReservedName", f"the name {RESERVED_STORAGE_NAME!r} is reserved "
                             "for the platform storage (an ExternalStorage in the operator's "
                             "namespace, platform-default unless configured otherwise)")
    if not is_dns1123_subdomain(name):
        raise InvalidRequest("InvalidName", f"{name!r} is not a valid name: lowercase "
                             "letters, digits, '-' and '.', at most 253 characters")
