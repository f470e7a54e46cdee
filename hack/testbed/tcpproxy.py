"""A TCP relay on 127.0.0.1 that can die mid-transfer, as an endpoint does when it crashes.

Point a storage's endpoint at the relay instead of the emulator; ``cut_after(n)`` makes it
drop every connection (with a reset) and stop listening once ``n`` more bytes have gone
upstream; ``revive()`` listens again on the same port. TLS passes through untouched.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


class KillableProxy:
    """Relay ``127.0.0.1:<port>`` to ``upstream_port``; see the module docstring."""

    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._budget: int | None = None
        self.upstream_bytes = 0
        self.dead = threading.Event()
        self._listener = self._listen(port)
        self.port: int = self._listener.getsockname()[1]
        self._start_accepting()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        return listener

    def _start_accepting(self) -> None:
        listener = self._listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True,
                         name="proxy-accept").start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.dead.is_set():  # raced with kill(): a dead endpoint accepts nothing
                client.close()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if counted:
                    with self._lock:
                        if self._budget is not None:
                            if len(data) >= self._budget:
                                data = data[:self._budget]
                                self._budget = 0
                            else:
                                self._budget -= len(data)
                        self.upstream_bytes += len(data)
                        out_of_budget = self._budget == 0
                    dst.sendall(data)
                    if out_of_budget:
                        self.kill()
                        return
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def cut_after(self, upstream_bytes: int) -> None:
        """Die once ``upstream_bytes`` more bytes have been relayed towards the endpoint."""
        with self._lock:
            self._budget = upstream_bytes

    def kill(self) -> None:
        """Stop listening and reset every connection, now."""
        with self._lock:
            self._budget = None
            conns, self._conns = self._conns, []
            self.dead.set()
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):  # RST, not FIN: a crash, not a goodbye
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                conn.close()

    def revive(self) -> None:
        """Listen again on the same port (the endpoint came back)."""
        self._listener = self._listen(self.port)
        self.dead.clear()
        self._start_accepting()

    def close(self) -> None:
        self.kill()

    def __enter__(self) -> KillableProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
