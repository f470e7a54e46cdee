"""What every provider needs from the network layer: a CA bundle file, and a plain-words
reason for a failed connection (or one the connect-time guard refused).

The three SDKs wrap the same few socket-level failures (refused, no such host, timeout,
untrusted certificate) in their own exception types, several layers deep; ``classify``
walks an exception's chain to the underlying cause so each provider maps them alike.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterator

from callstorage.providers.base import ProviderError, Reason
from callstorage.providers.guard import ConnectionDenied, RedirectRefused


class CABundle:
    """A private CA (``spec.tls.caSecretRef``) as the file SDKs want, trusted *in addition
    to* the public roots, so a custom endpoint and a public token service both verify."""

    def __init__(self, pem: bytes | None) -> None:
        self.path: str | None = None
        if pem is None:
            return
        try:  # reject garbage here, with a message, rather than as a TLS error later
            ssl.create_default_context(cadata=pem.decode("ascii"))
        except (ssl.SSLError, ValueError, UnicodeDecodeError):
            raise ProviderError(
                Reason.INVALID_SPEC,
                "spec.tls.caSecretRef: the referenced key does not hold a PEM CA certificate",
            ) from None
        public = b""
        try:
            import certifi

            with open(certifi.where(), "rb") as fh:
                public = fh.read()
        except (ImportError, OSError):  # no certifi: the private CA alone
            pass
        fd, self.path = tempfile.mkstemp(prefix="callstorage-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(public + b"\n" + pem + b"\n")

    @property
    def verify(self) -> str | bool:
        """What ``verify=`` / ``connection_verify=`` take: the file, or True (public roots)."""
        return self.path if self.path is not None else True

    def close(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.path = None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, and the wrapped errors SDKs keep
    in ``reason`` (urllib3), ``kwargs['error']`` (botocore) or ``args`` (requests)."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 50:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested: list[object] = [current.__cause__, current.__context__,
                                getattr(current, "reason", None),
                                getattr(current, "inner_exception", None),
                                getattr(current, "exc_value", None)]
        kwargs = getattr(current, "kwargs", None)
        if isinstance(kwargs, dict):
            nested.append(kwargs.get("error"))
        nested.extend(current.args)
        todo.extend(n for n in nested if isinstance(n, BaseException))


def _is_timeout(exc: BaseException) -> str | None:
    name = type(exc).__name__
    if isinstance(exc, TimeoutError | socket.timeout) or name in (
        "ConnectTimeout", "ConnectTimeoutError", "ServiceRequestTimeoutError",
    ):
        return "connect" if "Connect" in name or "Request" in name else "response"
    if name in ("ReadTimeout", "ReadTimeoutError", "ServiceResponseTimeoutError"):
        return "response"
    return None


def refusal(exc: BaseException) -> tuple[Reason, str] | None:
    """The reason and message when the connect-time guard refused ``exc``'s connection
    (EndpointNotAllowed) or a redirect (ServiceError, naming the status), else None."""
    for e in _chain(exc):
        if isinstance(e, ConnectionDenied):
            return Reason.ENDPOINT_NOT_ALLOWED, str(e)
        if isinstance(e, RedirectRefused):
            return Reason.SERVICE_ERROR, str(e)
    return None


def classify(exc: BaseException, settings_connect: float, settings_read: float
             ) -> tuple[Reason, str] | None:
    """The reason and a short description of a network-level failure, or None if ``exc``
    is not one (then it is the provider's to map)."""
    refused = refusal(exc)
    if refused is not None:  # the guard's refusals first: they are not network failures
        return refused
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            detail = getattr(e, "verify_message", None) or "certificate verify failed"
            return (Reason.ENDPOINT_UNREACHABLE,
                    f"TLS certificate not trusted ({detail}); for a private CA set "
                    "spec.tls.caSecretRef")
    for e in chain:
        if isinstance(e, socket.gaierror):
            return Reason.ENDPOINT_UNREACHABLE, "host name not found"
        if isinstance(e, ConnectionRefusedError):
            return Reason.ENDPOINT_UNREACHABLE, "connection refused"
    # Order matters: urllib3's ConnectTimeoutError is also a TimeoutError, but says which.
    kinds = [k for k in (_is_timeout(e) for e in chain) if k is not None]
    if kinds and any("handshake" in str(e) for e in chain):  # urllib3 calls it a read
        return (Reason.TIMEOUT,
                f"no TLS handshake within the connect timeout ({settings_connect:g}s)")
    if "connect" in kinds:
        return (Reason.TIMEOUT,
                f"no connection within the connect timeout ({settings_connect:g}s)")
    if kinds:
        return (Reason.TIMEOUT,
                f"no response within the read timeout ({settings_read:g}s)")
    for e in chain:
        if isinstance(e, ssl.SSLError):
            return Reason.ENDPOINT_UNREACHABLE, f"TLS handshake failed ({e.reason or e})"
        if isinstance(e, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
            return Reason.ENDPOINT_UNREACHABLE, "connection reset by the endpoint"
        # A socket-level error (it has an errno; requests' exceptions are OSErrors without)
        if isinstance(e, OSError) and e.errno is not None:
            return Reason.ENDPOINT_UNREACHABLE, e.strerror or type(e).__name__
    names = {type(e).__name__ for e in chain}
    if names & {"EndpointConnectionError", "NewConnectionError", "ServiceRequestError",
                "ConnectionClosedError", "ProtocolError", "RemoteDisconnected",
                "ConnectionError"}:
        return Reason.ENDPOINT_UNREACHABLE, "could not connect"
    return None


_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def name_does_not_resolve(exc: BaseException) -> bool:
    """The endpoint's host name does not exist (not a passing DNS failure): retrying will
    not help until someone fixes the name or the DNS record."""
    return any(isinstance(e, socket.gaierror) and e.errno in _NO_SUCH_NAME
               for e in _chain(exc))


def network_error(what: str, exc: BaseException, settings_connect: float,
                  settings_read: float, clean: Callable[[str], str]) -> ProviderError:
    """``exc`` as a ProviderError when nothing more specific matched: a network reason if
    ``classify`` knows it, else EndpointUnreachable naming only the exception's type."""
    network = classify(exc, settings_connect, settings_read)
    if network is not None:
        return ProviderError(network[0], clean(f"{what}: {network[1]}"),
                             stalled=True if name_does_not_resolve(exc) else None)
    return ProviderError(Reason.ENDPOINT_UNREACHABLE, clean(f"{what} failed: {type(exc).__name__}"))
