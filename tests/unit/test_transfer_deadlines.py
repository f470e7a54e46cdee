"""Each request of an upload has its own deadline, set in the thread that sends it: the
arithmetic (a floor plus the size at a minimum rate), the total deadline capping it, and a
request cut off read as Timeout and retried (the sockets' side: tests/integration/
test_media_deadline.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from callstorage.providers import deadline
from callstorage.providers.base import PartRules, ProviderError, Reason
from callstorage.transfer import DEFAULT_PART_SIZE, TransferOptions, upload

MiB = 1024 * 1024
RULES = PartRules(parallel=True, min_part_size=4, max_part_size=1000, max_parts=100)


def test_a_part_gets_the_floor_plus_its_size_at_the_minimum_rate() -> None:
    default = TransferOptions()
    assert default.request_deadline == 30
    assert default.min_throughput == 64 * 1024
    assert default.total_deadline is None
    assert default.deadline_for(None) == 30  # create, complete, abort, presign, build
    assert default.deadline_for(0) == 30
    assert default.deadline_for(DEFAULT_PART_SIZE) == 30 + 128  # 8 MiB at 64 KiB/s
    assert default.deadline_for(5 * 1024 * MiB) == 30 + 81920  # S3's largest part
    fast = TransferOptions(request_deadline=2, min_throughput=MiB)
    assert fast.deadline_for(3 * MiB) == 5
    assert default.finish_deadline(1) == 30.25
    assert default.finish_deadline(10_000) == 30 + 2500  # S3 assembles 10,000 parts
    for bad in ({"request_deadline": 0}, {"min_throughput": 0}, {"total_deadline": 0},
                {"total_deadline": -1.0}):
        with pytest.raises(ValueError, match="must be"):
            TransferOptions(**bad)


class Recorder:
    """A store in memory recording, per request, the thread and its deadline as seen
    there (seconds left, and what set it)."""

    part_rules = RULES

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str, float, str]] = []
        self.lock = threading.Lock()

    def note(self, what: str, size: int = 0) -> None:
        call = deadline.current()
        assert call is not None, f"{what} ran outside a deadline"
        with self.lock:
            self.seen.append((what, size, threading.current_thread().name,
                              call.expires - time.monotonic(), call.setting))

    def put_whole(self, key: str, data: bytes, content_type: str, crc32c: int) -> None:
        self.note("put", len(data))

    def start_upload(self, key: str, content_type: str) -> Any:
        self.note("start")
        store = self

        class Upload:
            def upload_part(self, number: int, data: Any, offset: int, crc32c: int,
                            final_size: int | None, object_crc32c: int | None = None
                            ) -> None:
                store.note("part", len(data))

            def complete(self, total_size: int) -> None:
                store.note("complete")

            def abort(self) -> None:
                store.note("abort")

        return Upload()


def test_each_request_runs_under_its_deadline_in_the_thread_that_sends_it() -> None:
    store = Recorder()
    options = TransferOptions(part_size=100, concurrency=3, request_deadline=10,
                              min_throughput=10)
    upload(store, "k", b"x" * 250, "video/mp4", options)  # type: ignore[arg-type]
    parts = [s for s in store.seen if s[0] == "part"]
    assert sorted(s[1] for s in parts) == [50, 100, 100]
    for _, size, thread, left, setting in parts:
        assert thread.startswith("callstorage-upload")  # set in the pool thread
        assert options.deadline_for(size) - 1 < left <= options.deadline_for(size)
        assert f"plus {size} bytes at min_throughput" in setting
    (_, _, _, left, _), = [s for s in store.seen if s[0] == "complete"]
    assert options.finish_deadline(3) - 1 < left <= options.finish_deadline(3)
    (_, _, _, left, _), = [s for s in store.seen if s[0] == "start"]
    assert 9 < left <= 10
    assert deadline.current() is None  # nothing left set in the caller's thread


def test_the_total_deadline_caps_every_request() -> None:
    store = Recorder()
    options = TransferOptions(part_size=100, concurrency=2, request_deadline=60,
                              total_deadline=3)
    upload(store, "k", b"x" * 250, "video/mp4", options)  # type: ignore[arg-type]
    assert store.seen
    for what, _, _, left, setting in store.seen:
        assert left <= 3, what
        assert setting == "TransferOptions.total_deadline"


class Stuck(Recorder):
    """Every whole-object request hangs until its deadline has passed, then fails as
    an SDK does when its connection is shut under it."""

    def put_whole(self, key: str, data: bytes, content_type: str, crc32c: int) -> None:
        self.note("put", len(data))
        call = deadline.current()
        assert call is not None
        while not call.passed():
            time.sleep(0.01)
        raise ConnectionResetError("connection reset by peer")


def test_a_request_cut_off_is_retried_then_fails_as_timeout() -> None:
    store = Stuck()
    options = TransferOptions(request_deadline=0.2, min_throughput=MiB, attempts=3,
                              retry_delay=0.01)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        upload(store, "k", b"abc", "audio/wav", options)  # type: ignore[arg-type]
    assert caught.value.reason is Reason.TIMEOUT
    assert "total deadline of" in caught.value.message
    assert [s[0] for s in store.seen] == ["put"] * 3
    assert time.monotonic() - started < 3 * options.deadline_for(3) + 0.5


def test_nothing_is_retried_past_the_total_deadline() -> None:
    store = Stuck()
    options = TransferOptions(request_deadline=5, attempts=5, retry_delay=0.01,
                              total_deadline=0.3)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        upload(store, "k", b"abc", "audio/wav", options)  # type: ignore[arg-type]
    assert caught.value.reason is Reason.TIMEOUT
    assert "TransferOptions.total_deadline" in caught.value.message
    assert len(store.seen) == 1
    assert time.monotonic() - started < 0.3 + 0.5


def test_cli_upload_timeout_is_the_uploads_total_deadline(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """``callstorage upload --timeout`` reaches ``upload_artifacts`` as ``total_deadline``
    (what a trickling storage then does with it: tests/integration/test_media_deadline)."""
    import io

    from callstorage import media
    from callstorage.cli import main

    seen: list[TransferOptions] = []

    def fake_upload(*_: Any, options: TransferOptions, **__: Any) -> Any:
        seen.append(options)
        raise media.UploadFailed("Timeout", "audio.wav: not done within the total "
                                 "deadline of 2.5s (TransferOptions.total_deadline)")

    monkeypatch.setattr(media, "upload_artifacts", fake_upload)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: n}}]\n")
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    err = io.StringIO()
    code = main(["--kubeconfig", str(kubeconfig), "upload", "--call-type", "t",
                 "--call-id", "c1", "--timeout", "2.5", f"audio.wav={tmp_path / 'a.wav'}"],
                out=io.StringIO(), err=err)
    assert code != 0
    assert "Timeout" in err.getvalue()
    assert [o.total_deadline for o in seen] == [2.5]
    assert main(["--kubeconfig", str(kubeconfig), "upload", "--call-type", "t",
                 "--call-id", "c1", f"audio.wav={tmp_path / 'a.wav'}"],
                out=io.StringIO(), err=io.StringIO()) != 0
    assert seen[-1].total_deadline is None
