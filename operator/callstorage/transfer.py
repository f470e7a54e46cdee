"""Moving one object's bytes to a provider in parts, with bounded memory.

The provider-neutral half of the media path (``callstorage.media`` is the other): a
source (a file path, bytes, a binary file-like object or an iterator of bytes, as a
recorder produces them) is cut in parts of a fixed size. A file on disk is sent part by
part straight from the file (``FileWindow``), so its upload holds no part in memory;
streams are read into memory, and at most ``concurrency + 2`` parts exist at once (those
being sent, the one being read and one read ahead), whatever the object's size, so a 4 GB
recording costs the same memory as a 40 MB one. An object
that fits in one part goes in one request; a larger one through the provider's
multi-part mechanism (``MediaClient.start_upload``), which shows nothing under the key
until every part has arrived, so an interrupted upload never leaves a partial object
where readers look. Each part is retried on network errors and timeouts (the bytes stay
in memory until the part is acknowledged); a part that still fails aborts the upload.

Every part carries its CRC32C for the provider to check (the last one the object's as
well), and the object's CRC32C is computed on the way, for the caller's record; a server
that reports other bytes than were sent fails the part (``ChecksumMismatch``: sent again
where that can repair it). At most ``concurrency`` requests are in flight, whatever
mix of objects shares the pool. No Kubernetes imports here: the benchmark
runs this module alone.

Every request runs under a total deadline that really ends its I/O
(``providers.deadline``: its connections are shut down when it passes, so an endpoint
that trickles one byte every half second cannot hold a thread): a request carrying bytes
gets ``request_deadline`` plus its size at ``min_throughput``, any other request
``request_deadline``, each set in the thread that sends it (``Deadlines``). A request cut
off is retried like a network error; the upload then fails as ``Timeout``. An upload may
also have a ``total_deadline``, which caps every request's: when it passes, all of the
upload's requests in flight are cut off and nothing is retried.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, Final, TypeAlias, TypeVar

import google_crc32c

from callstorage.providers import deadline, within_deadline
from callstorage.providers.base import (
    FileWindow,
    MediaClient,
    PartData,
    PartialUpload,
    PartRules,
    ProviderError,
    Reason,
)

T = TypeVar("T")
MiB: Final = 1024 * 1024
DEFAULT_PART_SIZE: Final = 8 * MiB
DEFAULT_CONCURRENCY: Final = 8
#: Seconds any request may take (a part-sized one: this plus its size at the minimum rate).
DEFAULT_REQUEST_DEADLINE: Final = 30.0
#: The slowest a request may move its bytes (per request: parallel parts share the link).
DEFAULT_MIN_THROUGHPUT: Final = 64 * 1024
#: Past the upload's total deadline, aborting a multi-part upload may take this long.
ABORT_GRACE: Final = 0.5

#: What can be uploaded: a path, bytes, a binary file-like object, or an iterable of bytes.
Source: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] " \
    "| Iterable[bytes]"


@dataclass(frozen=True)
class TransferOptions:
    """How to move bytes: part size, parallel requests, attempts per request, and the
    deadlines: each request's (``request_deadline``, plus its size at
    ``min_throughput`` bytes per second for one carrying bytes) and the whole upload's
    (``total_deadline``, None: none beyond its requests')."""

    part_size: int = DEFAULT_PART_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    attempts: int = 3
    retry_delay: float = 0.5
    request_deadline: float = DEFAULT_REQUEST_DEADLINE
    min_throughput: int = DEFAULT_MIN_THROUGHPUT
    total_deadline: float | None = None

    def __post_init__(self) -> None:
        if self.part_size < 1 or self.concurrency < 1 or self.attempts < 1:
            raise ValueError("part_size, concurrency and attempts must be >= 1")
        if not self.request_deadline > 0 or self.min_throughput < 1:
            raise ValueError("request_deadline must be > 0 and min_throughput >= 1")
        if self.total_deadline is not None and not self.total_deadline > 0:
            raise ValueError("total_deadline must be > 0 (or None)")

    def deadline_for(self, size: int | None) -> float:
        """Seconds a request carrying ``size`` bytes (None: none) may take, all of it."""
        return self.request_deadline + (size or 0) / self.min_throughput

    def finish_deadline(self, parts: int) -> float:
        """Seconds completing a multi-part upload of ``parts`` may take (S3 assembles the
        parts before it answers: minutes for thousands of them)."""
        return self.request_deadline + parts / 4


@dataclass(frozen=True)
class TransferResult:
    """What was written: size, CRC32C (an int; ``crc32c_b64`` as GCS and S3 print it),
    and the number of parts (1 for a single request)."""

    size: int
    crc32c: int
    parts: int

    @property
    def crc32c_b64(self) -> str:
        return crc32c_b64(self.crc32c)


def crc32c_b64(value: int) -> str:
    """A CRC32C as base64 of its 4 big-endian bytes (``gsutil hash``, S3's header)."""
    return base64.b64encode(value.to_bytes(4, "big")).decode()


# --- sources -----------------------------------------------------------------------------


class _Reader:
    """``read(n)`` of exactly ``n`` bytes (fewer only at the end) from any source."""

    def __init__(self, source: Any) -> None:
        self.size: int | None = None
        self._close: Callable[[], None] = lambda: None
        self._chunks: Iterator[bytes] | None = None
        self._left = b""
        self._file: IO[bytes] | None = None
        self.fd: int | None = None  # a file on disk: parts can be sent from it directly
        if isinstance(source, str | os.PathLike):
            fh = open(source, "rb")  # noqa: SIM115 - closed by close()
            self._file, self._close = fh, fh.close
            self.fd = fh.fileno()
            self.size = os.fstat(fh.fileno()).st_size
        elif isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            self._file, self.size = io.BytesIO(data), len(data)
        elif hasattr(source, "read"):
            self._file = source
            self.size = _remaining_size(source)
        elif isinstance(source, Iterable) and not isinstance(source, str):
            self._chunks = iter(source)
        else:
            raise TypeError(f"cannot upload a {type(source).__name__}: give a path, bytes, "
                            "a binary file-like object or an iterable of bytes")

    def read(self, n: int) -> bytes:
        if self._file is not None:
            data = self._file.read(n)
            if not isinstance(data, bytes):
                raise TypeError("the file-like object must be opened in binary mode")
            if len(data) == n or not data:
                return data
            pieces = [data]  # a pipe or socket may return less than asked for
            got = len(data)
            while got < n:
                more = self._file.read(n - got)
                if not more:
                    break
                pieces.append(more)
                got += len(more)
            return b"".join(pieces)
        assert self._chunks is not None
        pieces, got = ([self._left], len(self._left)) if self._left else ([], 0)
        self._left = b""
        while got < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"the iterator yielded {type(chunk).__name__}, not bytes")
            pieces.append(bytes(chunk))
            got += len(chunk)
        data = b"".join(pieces)
        if len(data) > n:
            data, self._left = data[:n], data[n:]
        return data

    def close(self) -> None:
        self._close()


def _remaining_size(fh: Any) -> int | None:
    """Bytes left in a seekable file-like object, or None (a pipe, a socket, a stream)."""
    try:
        if not fh.seekable():
            return None
        here = fh.tell()
        end = fh.seek(0, io.SEEK_END)
        fh.seek(here)
        return int(end - here)
    except (AttributeError, OSError, ValueError):
        return None


def part_size_for(size: int | None, rules: PartRules, wanted: int) -> int:
    """The part size to use: ``wanted`` within the provider's limits, aligned, and large
    enough that a known ``size`` fits in ``rules.max_parts`` parts."""
    part = max(wanted, rules.min_part_size)
    if size is not None:
        part = max(part, math.ceil(size / rules.max_parts))
    part = math.ceil(part / rules.alignment) * rules.alignment
    return min(part, rules.max_part_size)


# --- deadlines ---------------------------------------------------------------------------

TOTAL_SETTING: Final = "TransferOptions.total_deadline"


class Deadlines:
    """The deadlines of one upload (``upload_artifacts``: of all its objects): each
    request's own, capped by the upload's total deadline counted from the creation."""

    def __init__(self, options: TransferOptions) -> None:
        self.options = options
        self.total = options.total_deadline
        self.ends = None if self.total is None else time.monotonic() + self.total

    def left(self) -> float:
        """Seconds until the total deadline (inf: none)."""
        return math.inf if self.ends is None else self.ends - time.monotonic()

    def over(self) -> bool:
        return self.left() <= 0

    def request(self, fn: Callable[[], T], size: int | None = None) -> T:
        """``fn()``, one request (``size``: the bytes it carries), under its deadline."""
        seconds = self.options.deadline_for(size)
        setting = "TransferOptions.request_deadline" if size is None else \
            f"TransferOptions.request_deadline plus {size} bytes at min_throughput"
        return self.run(fn, seconds, setting)

    def run(self, fn: Callable[[], T], seconds: float, setting: str, grace: float = 0.0
            ) -> T:
        """``fn()`` as a provider call of ``seconds`` (at most until the total deadline
        plus ``grace``) in this thread: its connections are shut down at the deadline,
        and it raises ``ProviderError`` (Timeout) if it was reached."""
        now = time.monotonic()
        expires = now + seconds
        if self.ends is not None and self.ends + grace < expires:
            assert self.total is not None
            if self.ends + grace <= now:
                raise ProviderError(Reason.TIMEOUT, "not started: the total deadline of "
                                    f"{self.total:g}s ({TOTAL_SETTING}) has passed")
            expires, seconds, setting = self.ends + grace, self.total, TOTAL_SETTING
        with deadline.bounded(expires, seconds, setting):
            return within_deadline(fn)


# --- the transfer ------------------------------------------------------------------------


class _Slots:
    """A counting semaphore that can be woken for good when the transfer fails."""

    def __init__(self, count: int) -> None:
        self._sem = threading.Semaphore(count)
        self.failed = threading.Event()

    def acquire(self) -> None:
        while not self._sem.acquire(timeout=0.1):
            if self.failed.is_set():
                return

    def release(self) -> None:
        self._sem.release()


def _retrying(fn: Callable[[], None], size: int, clock: Deadlines, stop: threading.Event
              ) -> None:
    """``fn()``, a request carrying ``size`` bytes, each attempt under its deadline."""
    options = clock.options
    for attempt in range(1, options.attempts + 1):
        try:
            clock.request(fn, size)
            return
        except ProviderError as exc:
            # Worth sending the same bytes again only when the network or the service
            # failed (a request cut off at its deadline too); what needs a person
            # (credentials, permissions, a missing bucket: the reasons' policy says
            # which) fails at once, and nothing starts past the total deadline.
            if exc.stalled or attempt == options.attempts or stop.is_set() or clock.over():
                raise
        time.sleep(min(options.retry_delay * 2 ** (attempt - 1), max(clock.left(), 0)))


def upload(client: MediaClient, key: str, source: Any, content_type: str,
           options: TransferOptions | None = None,
           pool: ThreadPoolExecutor | None = None,
           clock: Deadlines | None = None) -> TransferResult:
    """Write ``source`` to ``key`` through ``client``; returns its size and CRC32C.

    Raises ``ProviderError`` (after retries) for the storage's refusals and failures
    (``Timeout`` for a request past its deadline), and whatever the source raises (a file
    that cannot be read, an iterator's error); in either case a multi-part upload is
    aborted and nothing appears under ``key``. ``pool`` lends threads (else the transfer
    makes its own); ``clock`` is the deadlines of a larger upload this one is part of
    (else the total deadline of ``options`` counts from now).
    """
    options = options or TransferOptions()
    clock = clock or Deadlines(options)
    reader = _Reader(source)
    try:
        rules = client.part_rules
        part_size = part_size_for(reader.size, rules, options.part_size)
        parts: Iterator[tuple[PartData, int, bool]]
        if reader.fd is not None and reader.size is not None and reader.size > part_size:
            parts = _file_parts(reader.fd, reader.size, part_size)
        else:
            first = reader.read(part_size)
            second = reader.read(part_size) if len(first) == part_size else b""
            if not second:  # fits in one request: atomic by itself
                crc = google_crc32c.value(first)
                never = threading.Event()

                _in(pool, lambda: _retrying(
                    lambda: client.put_whole(key, first, content_type, crc), len(first),
                    clock, never))
                return TransferResult(len(first), crc, 1)
            parts = _memory_parts(reader, first, second, part_size)
        return _multipart(client, key, parts, content_type, part_size, rules, clock, pool)
    finally:
        reader.close()


def _in(pool: ThreadPoolExecutor | None, call: Callable[[], T]) -> T:
    """``call()``, in ``pool`` if one is lent: a pool shared by several objects bounds
    every request in flight by its size (``media._upload_all``), these ones too."""
    return call() if pool is None else pool.submit(call).result()


def _memory_parts(reader: _Reader, first: bytes, second: bytes, part_size: int
                  ) -> Iterator[tuple[PartData, int, bool]]:
    """Parts read into memory: (bytes, length, last). One part is read ahead, so the last
    one is known as such when it is sent (a GCS session needs the size with it)."""
    current, ahead = first, second
    while current:
        yield current, len(current), not ahead
        current = ahead
        ahead = reader.read(part_size) if current else b""


def _file_parts(fd: int, size: int, part_size: int
                ) -> Iterator[tuple[PartData, int, bool]]:
    """Parts of a file on disk, sent from the file: (window, length, last)."""
    for offset in range(0, size, part_size):
        length = min(part_size, size - offset)
        yield FileWindow(fd, offset, length), length, offset + length >= size


def _checksums(data: PartData, whole: int) -> tuple[int, int]:
    """CRC32C of the part, and the object's CRC32C so far extended by it."""
    if isinstance(data, bytes):
        return google_crc32c.value(data), google_crc32c.extend(whole, data)
    part = 0
    while block := data.read(MiB):
        part = google_crc32c.extend(part, block)
        whole = google_crc32c.extend(whole, block)
    data.seek(0)
    return part, whole


class _PartSender:
    """Sends one part of a multi-part upload with its retries, in whichever thread runs
    it; the first failure is kept and stops the parts not yet sent."""

    def __init__(self, session: PartialUpload, clock: Deadlines, slots: _Slots,
                 pooled: bool) -> None:
        self.session, self.clock, self.slots, self.pooled = session, clock, slots, pooled
        self.errors: list[BaseException] = []

    def __call__(self, number: int, data: PartData, offset: int, crc: int,
                 final: tuple[int, int] | None) -> None:
        try:
            if self.slots.failed.is_set():
                return
            size, whole = final if final is not None else (None, None)
            _retrying(lambda: self.session.upload_part(number, data, offset, crc, size, whole),
                      len(data), self.clock, self.slots.failed)
        except BaseException as exc:
            self.errors.append(exc)
            self.slots.failed.set()
            raise
        finally:
            if self.pooled:
                self.slots.release()


def _multipart(client: MediaClient, key: str, parts: Iterator[tuple[PartData, int, bool]],
               content_type: str, part_size: int, rules: PartRules,
               clock: Deadlines, pool: ThreadPoolExecutor | None) -> TransferResult:
    options = clock.options
    session: PartialUpload = _in(pool, lambda: clock.request(
        lambda: client.start_upload(key, content_type)))
    parallel = rules.parallel and options.concurrency > 1
    own_pool = ThreadPoolExecutor(options.concurrency, "callstorage-upload") \
        if parallel and pool is None else None
    pool = own_pool or pool
    # A lent pool (shared with other objects, ``media._upload_all``) carries even parts
    # sent one at a time, so its size bounds every request; one slot keeps them in order.
    slots = _Slots(options.concurrency if parallel else 1)
    futures: list[Future[None]] = []
    send = _PartSender(session, clock, slots, pooled=pool is not None)
    whole = offset = number = 0
    try:
        for data, length, last in parts:
            number += 1
            if number > rules.max_parts:
                raise ProviderError(Reason.INVALID_SPEC, f"{key}: more than {rules.max_parts} "
                                    f"parts of {part_size} bytes; use a larger part size")
            crc, whole = _checksums(data, whole)
            final = (offset + length, whole) if last else None
            if pool is not None:
                slots.acquire()
                if slots.failed.is_set():
                    break
                futures.append(pool.submit(send, number, data, offset, crc, final))
            else:
                send(number, data, offset, crc, final)
            offset += length
        for future in futures:
            future.exception()  # wait for every part; errors are collected by send()
        if send.errors:
            raise send.errors[0]
        _in(pool, lambda: clock.run(lambda: session.complete(offset),
                                    options.finish_deadline(number),
                                    "TransferOptions.request_deadline plus 0.25s per part"))
    except BaseException:
        _stop(slots, futures)
        _in(pool, lambda: _abort(session, clock))
        raise
    finally:
        if own_pool is not None:
            own_pool.shutdown(wait=True)
    return TransferResult(offset, whole, number)


def _abort(session: PartialUpload, clock: Deadlines) -> None:
    """Drop what was sent, best effort: past the total deadline, for ABORT_GRACE more."""
    with contextlib.suppress(ProviderError):
        clock.run(session.abort, clock.options.request_deadline,
                  "TransferOptions.request_deadline", grace=ABORT_GRACE)


def _stop(slots: _Slots, futures: list[Future[None]]) -> None:
    """No part starts any more; those under way are waited for."""
    slots.failed.set()
    for future in futures:
        future.cancel()
    for future in futures:
        if not future.cancelled():
            future.exception()
