"""An HTTP/1.1 relay on 127.0.0.1 that sees each request whole: it can damage a body in
flight and count the requests an endpoint is serving at once.

Point a storage's endpoint at the relay instead of the emulator. Each request is read
whole (head and body, ``Content-Length`` or chunked) before it goes on, so a test can
``corrupt(marker)``: every request body holding ``marker`` gets one bit of it flipped
(``times`` bounds how many, None: all), as a faulty NIC, middlebox or memory would,
beneath TCP's and TLS's notice. ``in_flight`` / ``max_in_flight`` count requests from
the moment their head arrived to the moment their answer went back (what the endpoint
serves at once; ``counts`` picks which requests count, ``history`` lists them);
``answer_delay`` holds each answer back so that concurrent requests do overlap. With
``tls`` the relay serves HTTPS (a certificate of the test bed's CA) and speaks HTTPS to
the endpoint (``upstream_ca``): Azurite only talks TLS.

An ``Expect: 100-continue`` is answered by the relay itself and not passed on.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from testbed.tlscerts import ServingCert

_NO_BODY_STATUSES = (204, 304)


class FaultyHTTPProxy:
    """Relay ``127.0.0.1:<port>`` to ``127.0.0.1:<upstream_port>``; see the module."""

    def __init__(self, upstream_port: int, tls: ServingCert | None = None,
                 upstream_ca: Path | None = None, workdir: Path | None = None) -> None:
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self._times: int | None = None
        self.corrupted = 0  # bodies damaged so far
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.answer_delay = 0.0
        #: which requests (head, body) the counts and ``history`` take in (None: all)
        self.counts: Callable[[bytes, bytes], bool] | None = None
        #: (start, end, request line) of every request relayed, to explain a count
        self.history: list[tuple[float, float, str]] = []
        self._server_tls: ssl.SSLContext | None = None
        self._client_tls: ssl.SSLContext | None = None
        if tls is not None:
            assert workdir is not None, "a TLS relay needs a directory for its key"
            cert, key = tls.write(workdir, "httpfault")
            self._server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._server_tls.load_cert_chain(cert, key)
        if upstream_ca is not None:
            self._client_tls = ssl.create_default_context(cafile=str(upstream_ca))
        self._conns: set[socket.socket] = set()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="httpfault-accept").start()

    def corrupt(self, marker: bytes, times: int | None = None) -> None:
        """Flip a bit of ``marker`` in the next ``times`` request bodies holding it."""
        with self._lock:
            self._marker, self._times = marker, times

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = self.max_in_flight = 0
            self.history = []

    # --- relaying ------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="httpfault-conn").start()

    def _serve(self, raw: socket.socket) -> None:
        upstream: socket.socket | None = None
        answers: IO[bytes] | None = None
        conn: socket.socket = raw
        try:
            if self._server_tls is not None:
                conn = self._server_tls.wrap_socket(raw, server_side=True)
            self._track(conn)
            reader = conn.makefile("rb")
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                if b"100-continue" in head.lower():
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = _drop_header(head, b"expect")
                body = _read_body(reader, head)
                body = self._maybe_corrupt(body)
                counted = self.counts is None or self.counts(head, body)
                started = self._started() if counted else 0.0
                try:
                    if upstream is None or answers is None:
                        upstream = self._connect()
                        answers = upstream.makefile("rb")
                    upstream.sendall(head + body)
                    answer, keep = _read_answer(answers, head)
                    if self.answer_delay:
                        time.sleep(self.answer_delay)
                finally:
                    if counted:
                        self._finished(head.split(b"\r\n", 1)[0], started)
                conn.sendall(answer)
                if not keep:
                    upstream.close()
                    upstream = answers = None
        except (OSError, ValueError):
            return
        finally:
            for sock in (conn, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.upstream_port), 10)
        sock.settimeout(60)
        if self._client_tls is not None:
            sock = self._client_tls.wrap_socket(sock, server_hostname="127.0.0.1")
        self._track(sock)
        return sock

    def _maybe_corrupt(self, body: bytes) -> bytes:
        with self._lock:
            marker = self._marker
            if marker is None or self._times == 0:
                return body
            at = body.find(marker)
            if at < 0:
                return body
            if self._times is not None:
                self._times -= 1
            self.corrupted += 1
        damaged = bytearray(body)
        damaged[at] ^= 0x01
        return bytes(damaged)

    def _started(self) -> float:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return time.monotonic()

    def _finished(self, request_line: bytes, started: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self.history.append((started, time.monotonic(),
                                 request_line.decode("latin-1")[:120]))

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.add(sock)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> FaultyHTTPProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- HTTP/1.1 framing ------------------------------------------------------------------


def _read_head(reader: IO[bytes]) -> bytes | None:
    """The request or status line and headers, through the blank line; None at EOF."""
    lines: list[bytes] = []
    while True:
        line = reader.readline(65537)
        if not line:
            return None if not lines else b"".join(lines)
        if not lines and line in (b"\r\n", b"\n"):
            continue  # stray CRLF between requests
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


def _drop_header(head: bytes, name: bytes) -> bytes:
    lines = head.split(b"\r\n")
    kept = [lines[0]] + [line for line in lines[1:]
                         if line.partition(b":")[0].strip().lower() != name]
    return b"\r\n".join(kept)


def _read_body(reader: IO[bytes], head: bytes, until_close: bool = False) -> bytes:
    """The body as framed on the wire (chunked bodies stay chunked)."""
    if (_header(head, b"transfer-encoding") or b"").lower() == b"chunked":
        out: list[bytes] = []
        while True:
            size_line = reader.readline(1024)
            if not size_line:
                raise ValueError("chunked body ended early")
            out.append(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = reader.readline(65537)
                    out.append(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(out)
            out.append(_exactly(reader, size + 2))
    length = _header(head, b"content-length")
    if length is not None:
        return _exactly(reader, int(length))
    return reader.read() if until_close else b""


def _exactly(reader: IO[bytes], n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise ValueError("body ended early")
    return data


def _read_answer(reader: IO[bytes], request_head: bytes) -> tuple[bytes, bool]:
    """The endpoint's whole answer, and whether its connection may be used again."""
    while True:
        head = _read_head(reader)
        if head is None:
            raise ValueError("the endpoint closed the connection")
        status = int(head.split(b" ", 2)[1])
        if status != 100:
            break
    if request_head.startswith(b"HEAD ") or status in _NO_BODY_STATUSES:
        body = b""
    else:
        framed = _header(head, b"content-length") is not None or (
            _header(head, b"transfer-encoding") or b"").lower() == b"chunked"
        body = _read_body(reader, head, until_close=not framed)
        if not framed:
            return head + body, False
    keep = (_header(head, b"connection") or b"").lower() != b"close"
    return head + body, keep
