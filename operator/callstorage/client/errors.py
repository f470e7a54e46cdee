"""The errors the client raises at its callers, and turning the Kubernetes client's
exceptions into them without ever echoing a request body (which may hold a credential)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError


class CallStorageError(Exception):
    """Base of every error this package raises at its callers: a reason code and a message.

    ``reason`` is machine-readable (a status reason such as ``StorageNotFound`` or
    ``AccessDenied``); ``message`` is one sentence for a human. Neither ever holds a
    credential.
    """

    default_reason = "Error"

    def __init__(self, reason: str | None, message: str) -> None:
        self.reason = reason or self.default_reason
        self.message = message
        super().__init__(f"{self.reason}: {message}")

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class NotFoundError(CallStorageError):
    """Something named does not exist."""

    default_reason = "NotFound"


class StorageNotFound(NotFoundError):
    """The ExternalStorage a name refers to does not exist."""

    default_reason = "StorageNotFound"


class CallTypeNotFound(NotFoundError):
    """The CallType does not exist."""

    default_reason = "CallTypeNotFound"


class StorageNotReady(CallStorageError):
    """The storage exists but its ``Ready`` condition is not True; ``reason`` is the
    condition's reason (``AccessDenied``, ``BucketNotFound``, ...) and ``storage`` what
    was resolved."""

    default_reason = "StorageNotReady"

    def __init__(self, reason: str | None, message: str, storage: Any = None) -> None:
        super().__init__(reason, message)
        self.storage = storage


class CheckFailed(CallStorageError):
    """The operator ran the on-demand check and it failed."""

    default_reason = "CheckFailed"


class CheckTimeout(CallStorageError):
    """The operator did not report the check in time."""

    default_reason = "Timeout"


class InvalidRequest(CallStorageError):
    """The request itself is wrong (bad or reserved name, missing field, rejected spec)."""

    default_reason = "InvalidRequest"


class AlreadyExists(CallStorageError):
    """An object of that name exists already."""

    default_reason = "AlreadyExists"


class ApiUnreachable(CallStorageError):
    """The Kubernetes API server cannot be reached, or refuses our credentials."""

    default_reason = "ApiUnreachable"


class ApiError(CallStorageError):
    """Any other answer from the API server (forbidden, conflict, server error)."""

    default_reason = "ApiError"


def _server_message(exc: ApiException) -> tuple[str | None, str]:
    """The reason and message of a ``metav1.Status`` body, never the raw exception text."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body.get("reason"), body["message"]
    return None, f"HTTP {exc.status} {exc.reason or ''}".strip()


def _redact(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value:
            text = text.replace(value, "***")
    return text


@contextmanager
def api_errors(
    not_found: Callable[[], CallStorageError] | None = None,
    redact: Iterable[str] = (),
) -> Iterator[None]:
    """Turn client exceptions into ``CallStorageError``s, without chaining the original
    (its text holds headers and request bodies)."""
    try:
        yield
    except ApiException as exc:
        reason, message = _server_message(exc)
        message = _redact(message, redact)
        status = exc.status or 0
        error: CallStorageError
        if status == 404 and not_found is not None:
            error = not_found()
        elif status == 404:
            error = NotFoundError(reason, message)
        elif status == 409 and reason == "AlreadyExists":
            error = AlreadyExists(reason, message)
        elif status in (400, 422):
            error = InvalidRequest(reason or "Invalid", message)
        elif status == 410:
            error = ApiError("Expired", message)
        elif status == 401:
            error = ApiUnreachable("Unauthorized",
                                   "the API server rejected the kubeconfig's credentials")
        elif status == 0:
            error = ApiUnreachable(None, message)
        else:
            error = ApiError(reason, message)
        raise error from None
    except (HTTPError, OSError) as exc:
        detail = getattr(exc, "reason", None) or exc
        raise ApiUnreachable(
            None, f"cannot reach the Kubernetes API server: {_redact(str(detail), redact)}"
        ) from None
