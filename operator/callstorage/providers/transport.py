"""What every provider needs from the network layer: a CA bundle file, and a plain-words
reason for a failed connection (or one the connect-time guard refused).

The three SDKs wrap the same few socket-level failures (refused, no such host, timeout,
untrusted certificate) in their own exception types, several layers deep; ``classify``
walks an exception's chain to the underlying cause so each provider maps them alike.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator

from callstorage.providers import deadline
from callstorage.providers.base import ProviderError, Reason
from callstorage.providers.guard import ConnectionDenied, RedirectRefused


class CABundle:
    """A private CA (``spec.tls.caSecretRef``) as the file SDKs want, trusted *in addition
    to* the public roots, so a custom endpoint and a public token service both verify.

    Files are content-addressed and shared: one file per distinct bundle (named by its
    SHA-256) in a private directory, counted by the clients using it and removed when the
    last one closes. So the operator's temp space holds at most one file per distinct CA
    among its live clients, each at most the public roots plus the size cap
    (``Settings.max_ca_bundle_bytes``, checked before any client is built).
    """

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
        self.path = _CA_STORE.acquire(_public_roots() + b"\n" + pem + b"\n")

    @property
    def verify(self) -> str | bool:
        """What ``verify=`` / ``connection_verify=`` take: the file, or True (public roots)."""
        return self.path if self.path is not None else True

    def close(self) -> None:
        """Release the file (removed when no other client uses it); safe to repeat."""
        if self.path is not None:
            _CA_STORE.release(self.path)
            self.path = None


def _public_roots() -> bytes:
    try:
        import certifi

        with open(certifi.where(), "rb") as fh:
            return fh.read()
    except (ImportError, OSError):  # no certifi: the private CA alone
        return b""


class CAStore:
    """Reference-counted, content-addressed CA files in one private directory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._refs: dict[str, int] = {}  # path -> clients using it

    @property
    def directory(self) -> str | None:
        """The directory (None until the first bundle): what tests and benchmarks measure."""
        return self._dir

    def files(self) -> dict[str, int]:
        """Each file held, with its number of users."""
        with self._lock:
            return dict(self._refs)

    def acquire(self, content: bytes) -> str:
        """The path of a file holding ``content``, written if no client holds it yet."""
        with self._lock:
            if self._dir is None or not os.path.isdir(self._dir):
                self._dir = tempfile.mkdtemp(prefix="callstorage-ca-")  # mode 0700
                self._refs.clear()
            path = os.path.join(self._dir, hashlib.sha256(content).hexdigest() + ".pem")
            if self._refs.get(path, 0) == 0:
                fd, tmp = tempfile.mkstemp(dir=self._dir, suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(content)
                    os.replace(tmp, path)  # readers never see half a file
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
            self._refs[path] = self._refs.get(path, 0) + 1
            return path

    def release(self, path: str) -> None:
        with self._lock:
            left = self._refs.get(path, 0) - 1
            if left > 0:
                self._refs[path] = left
                return
            self._refs.pop(path, None)
            with contextlib.suppress(OSError):
                os.unlink(path)

    def remove_all(self) -> None:
        """Remove the directory (at exit)."""
        with self._lock:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._refs.clear()


_CA_STORE = CAStore()
atexit.register(_CA_STORE.remove_all)


def ca_store() -> CAStore:
    """The process's CA file store."""
    return _CA_STORE


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


def overdue(chain: list[BaseException]) -> str | None:
    """The Timeout detail if this thread's provider call has passed its total deadline
    (``providers.deadline``) or ``chain`` holds its DeadlineExceeded, else None."""
    call = deadline.current()
    if call is not None and call.passed():
        return call.detail()
    for e in chain:
        if isinstance(e, deadline.DeadlineExceeded):
            return e.detail
    return None


def classify(exc: BaseException, settings_connect: float, settings_read: float
             ) -> tuple[Reason, str] | None:
    """The reason and a short description of a network-level failure, or None if ``exc``
    is not one (then it is the provider's to map)."""
    refused = refusal(exc)
    if refused is not None:  # the guard's refusals first: they are not network failures
        return refused
    chain = list(_chain(exc))
    late = overdue(chain)
    if late is not None:  # whatever the SDK made of the connections shut at the deadline
        return Reason.TIMEOUT, late
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
