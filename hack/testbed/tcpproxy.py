"""A TCP relay on 127.0.0.1 that can die mid-transfer, as an endpoint does when it crashes.

Point a storage's endpoint at the relay instead of the emulator; ``cut_after(n)`` makes it
drop every connection (with a reset) and stop listening once ``n`` more bytes have gone
upstream; ``revive()`` listens again on the same port; ``response_delay`` holds each
answer back (the request has been served, the client does not know yet). ``freeze()``
makes every open connection go silent both ways while staying open (a stuck middlebox, a
half-dead API server: what a watch cannot tell from a quiet stream); new connections pass.
``mute()`` lets requests through and drops every answer from then on, on open and new
connections alike (a hung API server: what a client sends lands, nothing comes back, not
even a TLS handshake's). ``blackhole`` accepts new connections and never answers (a
hanging endpoint); ``accepted``
counts connections, so a test can count a client's attempts. TLS passes through untouched.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType


class KillableProxy:
    """Relay ``127.0.0.1:<port>`` to ``upstream_port``; see the module docstring."""

    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._budget: int | None = None
        self.response_delay = 0.0  # seconds each chunk towards the client is held back
        self.upstream_bytes = 0
        self.accepted = 0  # connections accepted, blackholed ones included
        self.blackhole = False  # accept, never answer (until closed)
        self.muted = False  # relay requests, drop answers (for good: see mute())
        self._frozen: set[socket.socket] = set()
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
            with self._lock:
                self.accepted += 1
            if self.blackhole:  # held open, never read, never answered
                with self._lock:
                    self._conns.append(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
            except OSError:
                client.close()
                continue
            # The 5 s was for connecting only: an idle stream (a watch) must stay open as
            # long as its ends want, not be ended by the relay after 5 s of silence.
            upstream.settimeout(None)
            with self._lock:
                if self.dead.is_set():  # killed while connecting: a crash resets this too
                    _reset(client)
                    _reset(upstream)
                    return
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _held(self, *socks: socket.socket) -> None:
        """Wait while any of ``socks`` is frozen (until thawed or killed)."""
        while any(s in self._frozen for s in socks) and not self.dead.is_set():
            time.sleep(0.05)

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                self._held(src, dst)  # frozen: not even an end of stream gets through
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
                    if self.muted:
                        continue  # the endpoint hangs: the request landed, no answer
                    if self.response_delay:  # the request has landed; the answer is late
                        time.sleep(self.response_delay)
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

    def freeze(self) -> None:
        """Every open connection stops relaying, both ways, and stays open."""
        with self._lock:
            self._frozen.update(self._conns)

    def mute(self) -> None:
        """Requests go on landing upstream; no answer comes back any more. For good:
        a stream that lost bytes cannot resume (TLS would fail), so there is no unmute."""
        self.muted = True

    def thaw(self) -> None:
        with self._lock:
            self._frozen.clear()

    def kill(self) -> None:
        """Stop listening and reset every connection, now."""
        with self._lock:
            self._budget = None
            conns, self._conns = self._conns, []
            self._frozen.clear()
            self.dead.set()
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in conns:
            _reset(conn)

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


def _reset(conn: socket.socket) -> None:
    """RST, not FIN: a crash, not a goodbye. A close() alone sends nothing while a pump
    thread is blocked in recv() on the socket (the kernel keeps it open for that call);
    shutting down the read side wakes the pump, and the last close then resets."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        conn.close()
