"""A tiny threaded HTTP(S) server for the test bed's own fake endpoints.

The GCS emulator and the Entra ID token endpoint are a few hundred lines of request
handling each; they run in a thread of the process that starts them (tests, demo,
benchmarks) so they share state with the helper that creates buckets and identities,
and they stop with it: no child process can be left behind.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from testbed.tlscerts import ServingCert


@dataclass
class Request:
    method: str
    path: str  # percent-decoded path, without the query
    raw_path: str  # as sent, still percent-encoded
    query: dict[str, str]
    headers: Message
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
        import json

        return cls(status, json.dumps(obj).encode(),
                   {"Content-Type": "application/json; charset=UTF-8", **(headers or {})})


App = Callable[[Request], Response]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        request = Request(
            method=self.command,
            path=urllib.parse.unquote(parsed.path),
            raw_path=parsed.path,
            query=dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)),
            headers=self.headers,
            body=self._read_body(),
        )
        try:
            response = self.server.app(request)
        except Exception:  # a bug in the fake must show up as a 500 and in its log
            self.server.logger.exception("%s %s failed", self.command, parsed.path)
            response = Response.json(500, {"error": "internal error in test bed fake"})
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        self.server.logger.info("%s " + format, self.client_address[0], *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: App, logger: logging.Logger, tls: ssl.SSLContext | None) -> None:
        self.app = app
        self.logger = logger
        self.tls = tls
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = self.socket.accept()
        conn.settimeout(60)  # an idle or stuck client must not pin a thread forever
        if self.tls is not None:
            # The handshake happens on first read, in the connection's own thread, so a
            # client that never speaks TLS cannot block the accept loop.
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr


class LocalHTTPServer:
    """Serve ``app`` on 127.0.0.1 (a port the OS picks), over TLS when ``tls`` is given."""

    def __init__(self, name: str, app: App, log_dir: Path, tls: ServingCert | None = None
                 ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.logger = logging.getLogger(f"testbed.{name}.{id(self)}")
        self.logger.propagate = False  # the server's chatter stays in its own file
        self.logger.setLevel(logging.INFO)
        self._handler = logging.FileHandler(self.log_path)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.logger.addHandler(self._handler)
        context: ssl.SSLContext | None = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            with tempfile.TemporaryDirectory() as tmp:  # ssl loads keys from files only
                cert, key = tls.write(Path(tmp), "serving")
                context.load_cert_chain(cert, key)
        self._server = _Server(app, self.logger, context)
        scheme = "https" if tls is not None else "http"
        self.port: int = self._server.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"testbed-{name}", daemon=True
        )
        self._thread.start()
        self.logger.info("serving on %s", self.url)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()
        self.logger.removeHandler(self._handler)
        self._handler.close()
