"""What the uploader promises about checksums and concurrency, against stores in memory
(the emulators' side is in tests/integration/test_media_integrity.py)."""

from __future__ import annotations

import base64
import os
import threading
import time
from typing import Any

import google_crc32c
import pytest

from callstorage.media import UploadFailed, _Planned, _upload_all
from callstorage.providers.base import ChecksumMismatch, PartRules, part_bytes
from callstorage.providers.s3 import S3Upload, composite_crc32c
from callstorage.transfer import TransferOptions, upload

PARALLEL = PartRules(parallel=True, min_part_size=4, max_part_size=1000, max_parts=100)
IN_ORDER = PartRules(parallel=False, min_part_size=4, max_part_size=1000, max_parts=100)


class CountingStore:
    """Objects in memory; every request (whole object or part) counted while in flight."""

    def __init__(self, rules: PartRules, delay: float = 0.02) -> None:
        self.part_rules = rules
        self.delay = delay
        self.objects: dict[str, bytes] = {}
        self.object_crcs: list[tuple[int, int | None]] = []  # (part number, object CRC)
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()

    def request(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1

    def put_whole(self, key: str, data: bytes, content_type: str, crc32c: int) -> None:
        self.request()
        self.objects[key] = bytes(data)

    def start_upload(self, key: str, content_type: str) -> Any:
        self.request()  # starting and completing an upload are requests too
        store, parts = self, {}

        class Upload:
            def upload_part(self, number: int, data: Any, offset: int, crc32c: int,
                            final_size: int | None, object_crc32c: int | None = None
                            ) -> None:
                store.request()
                parts[number] = part_bytes(data)
                with store.lock:
                    store.object_crcs.append((number, object_crc32c))

            def complete(self, total_size: int) -> None:
                store.request()
                store.objects[key] = b"".join(parts[n] for n in sorted(parts))

            def abort(self) -> None:
                pass

        return Upload()


@pytest.mark.parametrize("rules", [PARALLEL, IN_ORDER], ids=["parallel", "in-order"])
def test_objects_and_parts_together_never_exceed_the_concurrency(rules: PartRules) -> None:
    """docs/media.md: at most ``concurrency`` requests at once, small objects and the
    parts of large ones together (it was twice that: a pool for each)."""
    store = CountingStore(rules)
    small = [_Planned(f"s{i}.png", "metadata", f"k/s{i}", "image/png", os.urandom(3))
             for i in range(8)]
    large = [_Planned("v.mp4", "video", "k/v", "video/mp4", iter([os.urandom(40)])),
             _Planned("w.mp4", "video", "k/w", "video/mp4", iter([os.urandom(3)]))]
    _upload_all(store, [*small, *large], TransferOptions(  # type: ignore[arg-type]
        part_size=4, concurrency=3))
    assert len(store.objects) == 10
    assert store.max_in_flight <= 3
    if rules.parallel:
        assert store.max_in_flight == 3  # and the bound is used


def test_the_last_part_carries_the_object_checksum() -> None:
    store = CountingStore(IN_ORDER, delay=0)
    data = os.urandom(18)
    upload(store, "k", data, "x", TransferOptions(part_size=4))  # type: ignore[arg-type]
    assert store.object_crcs == [(1, None), (2, None), (3, None), (4, None),
                                 (5, google_crc32c.value(data))]


def test_a_part_the_server_got_damaged_is_sent_again_and_a_lasting_fault_fails_clearly(
) -> None:
    store = CountingStore(PARALLEL, delay=0)
    damaged = {"left": 1}

    class Flaky(CountingStore):
        def start_upload(self, key: str, content_type: str) -> Any:
            inner = store.start_upload(key, content_type)

            class Upload:
                def upload_part(self, number: int, *args: Any) -> None:
                    if number == 2 and damaged["left"]:
                        damaged["left"] -= 1
                        raise ChecksumMismatch(f"UploadPart {number}", resendable=True)
                    inner.upload_part(number, *args)

                def complete(self, total_size: int) -> None:
                    inner.complete(total_size)

                def abort(self) -> None:
                    store.objects.pop(key, None)

            return Upload()

    data = os.urandom(20)
    item = _Planned("v.mp4", "video", "k/v", "video/mp4", data)
    options = TransferOptions(part_size=4, retry_delay=0.01)
    _upload_all(Flaky(PARALLEL), [item], options)  # type: ignore[arg-type]
    assert store.objects["k/v"] == data  # sent again, and whole

    damaged["left"] = 99
    with pytest.raises(UploadFailed, match="checksum mismatch") as caught:
        _upload_all(Flaky(PARALLEL), [item], options)  # type: ignore[arg-type]
    assert caught.value.reason == "ChecksumMismatch"
    assert "v.mp4: UploadPart 2" in caught.value.message


class FakeS3:
    """CompleteMultipartUpload answering with a given checksum."""

    def __init__(self, reported: dict[str, str]) -> None:
        self.reported = reported
        self.deleted: list[str] = []
        self.meta = type("Meta", (), {"endpoint_url": "http://127.0.0.1:1"})()

    def upload_part(self, **kw: Any) -> dict[str, Any]:
        return {"ETag": '"e"'}

    def complete_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        return dict(self.reported)

    def delete_object(self, Bucket: str, Key: str) -> None:
        self.deleted.append(Key)


def _b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


@pytest.mark.parametrize(("reported", "ok"), [
    ({}, True),                                      # moto: no checksum in the answer
    ({"ChecksumCRC32C": "RIGHT-2"}, True),           # S3: of the parts' checksums
    ({"ChecksumCRC32C": "AAAAAA==-2"}, False),
    ({"ChecksumCRC32C": "WHOLE", "ChecksumType": "FULL_OBJECT"}, True),
    ({"ChecksumCRC32C": "AAAAAA==", "ChecksumType": "FULL_OBJECT"}, False),
])
def test_s3_completion_is_checked_against_what_was_sent(reported: dict[str, str],
                                                        ok: bool) -> None:
    parts = [os.urandom(10), os.urandom(7)]
    crcs = [_b64(google_crc32c.value(p)) for p in parts]
    whole = _b64(google_crc32c.value(b"".join(parts)))
    answer = {k: v.replace("RIGHT", composite_crc32c(crcs)).replace("WHOLE", whole)
              for k, v in reported.items()}
    fake = FakeS3(answer)
    owner = type("Owner", (), {"_client": fake, "bucket": "b"})()
    session = S3Upload(owner, "k", "u")  # type: ignore[arg-type]
    session.upload_part(1, parts[0], 0, google_crc32c.value(parts[0]), None)
    session.upload_part(2, parts[1], 10, google_crc32c.value(parts[1]), 17,
                        google_crc32c.value(b"".join(parts)))
    if ok:
        session.complete(17)
        assert fake.deleted == []
    else:
        with pytest.raises(ChecksumMismatch, match="CompleteMultipartUpload on b/k"):
            session.complete(17)
        assert fake.deleted == ["k"]  # other bytes than ours are not left under the key
