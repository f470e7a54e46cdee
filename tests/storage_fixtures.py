"""Session fixtures for the storage emulators (loaded by conftest's ``pytest_plugins``).

Each emulator starts the first time a test asks for it and stops at the end of the run;
its logs go to a per-emulator directory under pytest's temporary directory.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from testbed.azurite import AzuriteServer
from testbed.gcs import GCSServer
from testbed.s3 import S3Keys, S3Server, readwrite_policy


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server.start(tmp_path_factory.mktemp("s3-logs")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    with AzuriteServer.start(tmp_path_factory.mktemp("azurite-logs")) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    with GCSServer.start(tmp_path_factory.mktemp("gcs-logs")) as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: a connect gets RST


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers (a stuck endpoint)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)  # held open, never read from or written to

    thread = threading.Thread(target=accept, name="hanging-endpoint", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


class _Listener:
    """A TCP listener whose accept loop runs in a thread of its own and hands every
    connection to ``_accepted``; ``close`` stops it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, name=type(self).__name__,
                                          daemon=True)]
        self._threads[0].start()

    def url(self, scheme: str = "http", path: str = "") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._accepted(conn)

    def _accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(5)
        self._sock.close()


class TricklingListener(_Listener):
    """A TCP listener on 127.0.0.1 that answers every connection with ``prefix`` and
    then one byte every ``interval`` seconds, for ever: no per-read timeout ever fires.
    It records, per connection, when it was accepted and when the client closed it (as
    seen on the wire: EOF or a failed send)."""

    HTTP = b"HTTP/1.1 200 OK\r\nX-Trickle: "  # then a header line that never ends
    # a TLS record header announcing 16 KiB of handshake: the client waits for all of it
    TLS = bytes([0x16, 0x03, 0x03, 0x40, 0x00])

    def __init__(self, prefix: bytes = HTTP, interval: float = 0.5) -> None:
        self.prefix, self.interval = prefix, interval
        self._lock = threading.Lock()
        self._times: list[list[float | None]] = []  # [accepted, closed or None]
        super().__init__()

    def _accepted(self, conn: socket.socket) -> None:
        with self._lock:
            times: list[float | None] = [time.monotonic(), None]
            self._times.append(times)
        thread = threading.Thread(target=self._trickle, args=(conn, times),
                                  name="trickle", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _trickle(self, conn: socket.socket, times: list[float | None]) -> None:
        try:
            conn.sendall(self.prefix)
            while not self._stop.is_set():
                readable, _, _ = select.select([conn], [], [], self.interval)
                if readable and not conn.recv(65536):  # the request, or EOF
                    break
                conn.sendall(b"a" if self.prefix == self.HTTP else b"\0")
        except OSError:
            pass  # reset by the client: closed too
        finally:
            if not self._stop.is_set():
                with self._lock:
                    times[1] = time.monotonic()
            conn.close()

    def connections(self) -> list[tuple[float, float | None]]:
        """(accepted, closed or None) per connection, by monotonic time."""
        with self._lock:
            return [(t[0] or 0.0, t[1]) for t in self._times]

    def open_connections(self) -> int:
        return sum(closed is None for _, closed in self.connections())


@pytest.fixture
def trickling_listener() -> Iterator[TricklingListener]:
    """An endpoint that trickles one byte every 0.5 s (HTTP), stopped at the end."""
    listener = TricklingListener()
    yield listener
    listener.close()


@pytest.fixture
def bucket(s3_server: S3Server, namespace: str) -> str:
    """A fresh S3 bucket for one test (named after its namespace)."""
    name = f"rec-{namespace}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def rw_keys(s3_server: S3Server, bucket: str, namespace: str,
            credential_values: set[str]) -> S3Keys:
    """Keys of a user who may read, write and list ``bucket`` (registered for the
    end-of-run leak check)."""
    keys = s3_server.create_user(f"rw-{namespace}", readwrite_policy(bucket))
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    return keys


class CountingListener(_Listener):
    """A TCP listener (127.0.0.1 unless told) that counts the connections it accepts (and
    closes them at once): what a host of the attacker's would see."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.connections = 0
        super().__init__(host, port)

    def _accepted(self, conn: socket.socket) -> None:
        self.connections += 1
        conn.close()

    stop = _Listener.close


@pytest.fixture
def counting_listener() -> Iterator[CountingListener]:
    """A listener on 127.0.0.1 that counts connections: security tests assert on it."""
    counting = CountingListener()
    yield counting
    counting.close()
