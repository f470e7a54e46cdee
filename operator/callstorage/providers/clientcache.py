"""SDK clients kept between validations, keyed by everything that shapes them.

Building an SDK client is far dearer than the request it makes: a boto3 client built from a
fresh Session costs ~300 ms of CPU (botocore finds, reads and parses its JSON service
models per Session), while a HeadBucket costs a few milliseconds. N storages sharing one
Secret and endpoint need one client, not N; a Secret rotation changes the key, so the next
validation builds a new client with the new credentials.

The key must cover every input of the build (endpoint, region, CA, timeouts and a digest
of the credentials): a hit then gives exactly the client a fresh build would. Entries are
leased: an evicted client still in use by another validation is closed when released.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C")
Closer = Callable[[], None]


def digest(*parts: str | bytes | None) -> str:
    """A SHA-256 over ``parts`` (for keys holding credentials: never the values themselves)."""
    h = hashlib.sha256()
    for part in parts:
        raw = b"\x00none" if part is None else part.encode() if isinstance(part, str) else part
        h.update(len(raw).to_bytes(8, "big") + raw)
    return h.hexdigest()


@dataclass
class _Entry(Generic[C]):
    client: C
    close: Closer
    leases: int = 0
    evicted: bool = False


class ClientCache(Generic[C]):
    """At most ``size`` idle clients, least recently used evicted first (thread-safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, _Entry[C]] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lease(self, key: Hashable, build: Callable[[], tuple[C, Closer]]) -> tuple[C, Closer]:
        """The client for ``key`` (built by ``build`` on a miss) and its release function.

        ``build`` runs under the cache's lock: SDK sessions that build clients are not
        thread-safe, and two validations missing on the same key build it once.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                client, close = build()
                self.builds += 1
                entry = self._entries[key] = _Entry(client, close)
                self._evict()
            else:
                self._entries.move_to_end(key)
            entry.leases += 1
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self._lock:
                entry.leases -= 1
                done = entry.evicted and entry.leases == 0
            if done:
                entry.close()
        return entry.client, release

    def clear(self) -> None:
        """Drop every entry (closing the idle ones)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
            for entry in entries:
                entry.evicted = True
            idle = [e for e in entries if e.leases == 0]
        for entry in idle:
            entry.close()

    def _evict(self) -> None:
        while len(self._entries) > self.size:
            _, entry = self._entries.popitem(last=False)
            entry.evicted = True
            if entry.leases == 0:
                entry.close()
