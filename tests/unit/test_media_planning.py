"""The media path's pure parts: planning keys, the pin's JSON, the 403 body, and the
transfer engine (part sizes, reading any source, bounded memory, retries, aborts) over an
in-memory store that behaves like a multi-part object store."""

from __future__ import annotations

import io
import os
import threading
import time
from typing import Any

import google_crc32c
import pytest

from callstorage.client import InvalidRequest
from callstorage.media import Artifact as A
from callstorage.media import (
    ReadAccessNotGranted,
    StoredLocation,
    StoredObject,
    UnknownArtifact,
    content_type_for,
    plan,
)
from callstorage.providers.base import PartRules, ProviderError, Reason, part_bytes
from callstorage.transfer import TransferOptions, _Reader, part_size_for, upload

PREFIXES = {"audio": "rec/audio", "video": "rec", "transcript": "tx", "metadata": ""}


def test_plan_puts_every_file_at_the_layout_key() -> None:
    planned = plan(PREFIXES, "abc", {
        "audio.wav": b"a",
        "meeting_recording.mp4": [b"1", b"2", b"3"],
        "screenshots/9f2b.png": b"s",
        "transcription/deepgram/t1/raw_transcript.json": b"t",
        "participants.json": b"p",
    })
    assert [(p.file, p.key, p.content_type) for p in planned] == [
        ("audio.wav", "rec/audio/abc_audio.wav", "audio/wav"),
        ("meeting_recording_part001.mp4", "rec/abc_meeting_recording_part001.mp4",
         "video/mp4"),
        ("meeting_recording_part002.mp4", "rec/abc_meeting_recording_part002.mp4",
         "video/mp4"),
        ("meeting_recording_part003.mp4", "rec/abc_meeting_recording_part003.mp4",
         "video/mp4"),
        ("screenshots/9f2b.png", "abc_screenshots/9f2b.png", "image/png"),
        ("transcription/deepgram/t1/raw_transcript.json",
         "tx/abc_transcription/deepgram/t1/raw_transcript.json", "application/json"),
        ("participants.json", "abc_participants.json", "application/json"),
    ]


def test_plan_one_part_keeps_the_plain_name_and_categories_can_be_given() -> None:
    planned = plan(PREFIXES, "c", [A("meeting_recording.mp4", parts=[b"x"]),
                                   A("notes.txt", source=b"n", category="transcript")])
    assert [p.key for p in planned] == ["rec/c_meeting_recording.mp4", "tx/c_notes.txt"]


@pytest.mark.parametrize(("artifacts", "words"), [
    ({"manifest.json": b"{}"}, "written by upload_artifacts"),
    ({"notes.txt": b"x"}, "unknown file"),
    ({"screenshots/../../etc": b"x"}, "'..'"),
    ({"meeting_recording.mp4": []}, "has no parts"),
    ([A("audio.wav")], "exactly one of source and parts"),
    ([A("audio.wav", source=b"a"), A("audio.wav", source=b"b")], "would both be written"),
    ([A("meeting_recording.mp4", parts=[b"1", b"2"]),
      A("meeting_recording_part002.mp4", source=b"x")], "would both be written"),
])
def test_plan_refuses_bad_artifacts(artifacts: Any, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        plan(PREFIXES, "abc", artifacts)


def test_plan_refuses_a_bad_call_id() -> None:
    with pytest.raises(InvalidRequest, match="call id"):
        plan(PREFIXES, "../x", {"audio.wav": b"a"})


def location(provider: str = "s3", **kw: Any) -> StoredLocation:
    values: dict[str, Any] = dict(
        call_id="abc", call_type="allhands", namespace="app", storage_namespace="app",
        storage_name="my-s3", storage_uid="u-1", source="CallType", provider=provider,
        endpoint=None, account=None, bucket="b", access_mode="ReadWrite",
        uploaded_at="2026-01-01T00:00:00Z", manifest_key="abc_manifest.json",
        objects=(StoredObject("audio.wav", "audio", "a/abc_audio.wav", 3, "AAAAAA==",
                              "audio/wav"),))
    values.update(kw)
    return StoredLocation(**values)


def test_location_round_trips_through_json_and_finds_objects() -> None:
    loc = location()
    assert StoredLocation.from_json(loc.to_json()) == loc
    assert loc.object("audio.wav") is loc.objects[0]
    assert loc.object("a/abc_audio.wav") is loc.objects[0]
    with pytest.raises(UnknownArtifact, match=r"has: audio\.wav"):
        loc.object("video.mp4")


@pytest.mark.parametrize("text", ["nope", "[]", '{"version": 2}', '{"version": 1}'])
def test_location_refuses_what_is_not_a_pin(text: str) -> None:
    with pytest.raises(InvalidRequest):
        StoredLocation.from_json(text)


def test_object_urls_name_the_place_per_provider() -> None:
    assert location().object_url("audio.wav") == "s3://b/a/abc_audio.wav"
    assert location("gcs").object_url("audio.wav") == "gs://b/a/abc_audio.wav"
    assert location("abs", account="acct").object_url("audio.wav") == \
        "https://acct.blob.core.windows.net/b/a/abc_audio.wav"


def test_write_only_error_carries_the_seed_body_and_the_place() -> None:
    error = ReadAccessNotGranted("s3", "s3://b/k", "app/my-s3")
    assert error.http_status == 403
    assert error.body == {
        "message": "Media is stored in your S3 bucket, but only write access was granted. "
                   "Update your storage configuration to read+write to fetch media via the "
                   "API.",
        "access_mode": "write_only"}
    assert "s3://b/k" in str(error)
    assert "Azure Blob Storage container" in \
        ReadAccessNotGranted("abs", "u", "x").body["message"]


def test_content_types() -> None:
    assert content_type_for("meeting_recording.mp4") == "video/mp4"
    assert content_type_for("screenshots/x.PNG") == "image/png"
    assert content_type_for("blob") == "application/octet-stream"


# --- transfer ------------------------------------------------------------------------------

S3ISH = PartRules(parallel=True, min_part_size=4, max_part_size=1000, max_parts=5)


def test_part_sizes_respect_the_provider() -> None:
    assert part_size_for(None, S3ISH, 1) == 4                 # at least the minimum
    assert part_size_for(100, S3ISH, 4) == 20                 # fits in max_parts
    assert part_size_for(10**9, S3ISH, 4) == 1000             # never above the maximum
    gcs = PartRules(parallel=False, min_part_size=256, max_part_size=10**6,
                    max_parts=10**6, alignment=256)
    assert part_size_for(None, gcs, 1000) == 1024             # aligned up


class Trickle(io.RawIOBase):
    """A pipe: never more than 3 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._data.read(min(n, 3) if n >= 0 else 3)


@pytest.mark.parametrize("make", [
    lambda d: d,
    lambda d: io.BytesIO(d),
    lambda d: Trickle(d),
    lambda d: iter([d[i:i + 7] for i in range(0, len(d), 7)]),
    lambda d: iter([d]),
])
def test_reader_returns_exact_sized_pieces_from_any_source(make: Any) -> None:
    data = bytes(range(256)) * 3
    reader = _Reader(make(data))
    pieces = []
    while piece := reader.read(100):
        pieces.append(piece)
    assert [len(p) for p in pieces] == [100] * 7 + [68]
    assert b"".join(pieces) == data


def test_reader_refuses_text() -> None:
    with pytest.raises(TypeError):
        _Reader(123)
    with pytest.raises(TypeError, match="not bytes"):
        _Reader(iter(["text"])).read(10)


class MemoryStore:
    """A multi-part object store in memory: parts are invisible until completed."""

    def __init__(self, rules: PartRules, fail: dict[int, int] | None = None,
                 fail_reason: Reason = Reason.ENDPOINT_UNREACHABLE, delay: float = 0.0) -> None:
        self.part_rules = rules
        self.objects: dict[str, bytes] = {}
        self.aborted: list[str] = []
        self.fail = dict(fail or {})  # part number -> failures left
        self.fail_reason = fail_reason
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.sent: list[int] = []
        self.finals: list[int | None] = []
        self.kinds: set[str] = set()

    def put_whole(self, key: str, data: bytes, content_type: str, crc32c: int) -> None:
        assert google_crc32c.value(data) == crc32c
        self.objects[key] = bytes(data)

    def start_upload(self, key: str, content_type: str) -> Any:
        store = self
        parts: dict[int, bytes] = {}

        class Upload:
            def upload_part(self, number: int, data: Any, offset: int, crc32c: int,
                            final_size: int | None, object_crc32c: int | None = None
                            ) -> None:
                store.kinds.add(type(data).__name__)
                data = part_bytes(data)
                assert google_crc32c.value(data) == crc32c
                with store.lock:
                    store.in_flight += 1
                    store.max_in_flight = max(store.max_in_flight, store.in_flight)
                    left = store.fail.get(number, 0)
                    if left:
                        store.fail[number] = left - 1
                try:
                    time.sleep(store.delay)
                    if left:
                        raise ProviderError(store.fail_reason, f"part {number} failed")
                    parts[number] = bytes(data)
                    store.sent.append(number)
                    store.finals.append(final_size)
                finally:
                    with store.lock:
                        store.in_flight -= 1

            def complete(self, total_size: int) -> None:
                data = b"".join(parts[n] for n in sorted(parts))
                assert len(data) == total_size
                store.objects[key] = data

            def abort(self) -> None:
                store.aborted.append(key)
        return Upload()


def test_upload_in_parallel_parts_with_bounded_parts_in_flight() -> None:
    store = MemoryStore(S3ISH, delay=0.01)
    data = os.urandom(64)
    result = upload(store, "k", io.BytesIO(data), "video/mp4",  # type: ignore[arg-type]
                    TransferOptions(part_size=4, concurrency=3))
    assert store.objects["k"] == data
    assert (result.size, result.crc32c) == (64, google_crc32c.value(data))
    assert result.parts == 5  # 64 bytes in at most 5 parts: the part size grew to 13
    assert 1 < store.max_in_flight <= 3


def test_a_stream_longer_than_the_parts_allow_is_refused_and_aborted() -> None:
    store = MemoryStore(S3ISH)
    with pytest.raises(ProviderError, match="more than 5 parts"):
        upload(store, "k", iter([os.urandom(30)]), "x",  # type: ignore[arg-type]
               TransferOptions(part_size=4))
    assert (store.objects, store.aborted) == ({}, ["k"])


def test_small_objects_go_in_one_request() -> None:
    store = MemoryStore(S3ISH)
    result = upload(store, "k", b"abc", "text/plain", TransferOptions(part_size=4))  # type: ignore[arg-type]
    assert (store.objects, result.parts) == ({"k": b"abc"}, 1)
    upload(store, "empty", b"", "text/plain")  # type: ignore[arg-type]
    assert store.objects["empty"] == b""


def test_transient_part_failures_are_retried() -> None:
    store = MemoryStore(S3ISH, fail={2: 1})
    data = os.urandom(20)
    upload(store, "k", data, "x", TransferOptions(part_size=4, retry_delay=0.01))  # type: ignore[arg-type]
    assert store.objects["k"] == data
    assert store.aborted == []


@pytest.mark.parametrize("reason", [Reason.ACCESS_DENIED, Reason.ENDPOINT_UNREACHABLE])
def test_a_failing_part_aborts_and_nothing_appears(reason: Reason) -> None:
    store = MemoryStore(S3ISH, fail={3: 99}, fail_reason=reason)
    with pytest.raises(ProviderError):
        upload(store, "k", os.urandom(20), "x",  # type: ignore[arg-type]
               TransferOptions(part_size=4, attempts=2, retry_delay=0.01))
    assert store.objects == {}
    assert store.aborted == ["k"]


def test_a_failing_source_aborts_and_nothing_appears() -> None:
    store = MemoryStore(S3ISH)

    def recorder() -> Any:
        yield os.urandom(8)
        raise OSError("the recorder crashed")

    with pytest.raises(OSError, match="crashed"):
        upload(store, "k", recorder(), "x", TransferOptions(part_size=4))  # type: ignore[arg-type]
    assert store.objects == {}
    assert store.aborted == ["k"]


def test_sequential_providers_get_parts_in_order_and_the_size_with_the_last() -> None:
    rules = PartRules(parallel=False, min_part_size=4, max_part_size=100, max_parts=100)
    store = MemoryStore(rules)
    data = os.urandom(18)
    upload(store, "k", data, "x", TransferOptions(part_size=4, concurrency=8))  # type: ignore[arg-type]
    assert store.sent == [1, 2, 3, 4, 5]
    assert store.finals == [None, None, None, None, 18]
    assert store.max_in_flight == 1
    assert store.objects["k"] == data


def test_files_are_sent_from_disk_and_retried_parts_resend_the_same_bytes(
    tmp_path: Any,
) -> None:
    data = os.urandom(50)
    path = tmp_path / "rec.mp4"
    path.write_bytes(data)
    store = MemoryStore(S3ISH, fail={2: 1, 4: 1})
    result = upload(store, "k", path, "video/mp4",  # type: ignore[arg-type]
                    TransferOptions(part_size=10, concurrency=3, retry_delay=0.01))
    assert store.kinds == {"FileWindow"}  # no part of a file is held in memory
    assert store.objects["k"] == data
    assert (result.size, result.parts, result.crc32c) == (50, 5, google_crc32c.value(data))


def spec_of(spec: dict[str, Any]) -> Any:
    from callstorage.storagespec import parse_external_storage

    return parse_external_storage({"apiVersion": "callstorage.io/v1alpha1",
                                   "kind": "ExternalStorage",
                                   "metadata": {"name": "s", "namespace": "app"},
                                   "spec": spec})


S3_SPEC = {"storageType": "s3", "bucket": "other-bucket",
           "s3": {"region": "us-east-1", "credentialsSecretRef": {"name": "c"}}}


def test_a_changed_bucket_still_serves_the_pinned_place() -> None:
    from callstorage.media import _check_same_place

    _check_same_place(location(), spec_of(S3_SPEC), "app/my-s3")  # no error


@pytest.mark.parametrize(("pin", "spec", "reason"), [
    (location(), {"storageType": "gcs", "bucket": "bbb",
                  "gcs": {"credentialsSecretRef": {"name": "c"}}}, "ProviderChanged"),
    (location(), {**S3_SPEC, "s3": {**S3_SPEC["s3"], "endpoint": "https://minio.example"}},
     "EndpointChanged"),
    (location(endpoint="https://minio.example"), S3_SPEC, "EndpointChanged"),
    (location("abs", account="acct", endpoint="https://acct.blob.core.windows.net"),
     {"storageType": "abs", "bucket": "bbb",
      "abs": {"accountName": "other", "credentialsSecretRef": {"name": "c"}}},
     "AccountChanged"),
])
def test_credentials_are_never_signed_for_another_place(pin: StoredLocation,
                                                       spec: dict[str, Any],
                                                       reason: str) -> None:
    from callstorage.media import LocationUnavailable, _check_same_place

    with pytest.raises(LocationUnavailable) as caught:
        _check_same_place(pin, spec_of(spec), "app/my-s3")
    assert caught.value.reason == reason
