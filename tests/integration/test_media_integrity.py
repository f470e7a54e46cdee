"""What the media path checks on the wire, per emulator: a body damaged on the way fails
the upload (the pin never records a checksum of bytes the storage does not hold), a GCS
session that keeps less than a chunk gets the rest again, and the requests in flight at
the endpoint never exceed ``concurrency``.

The bytes are damaged by an HTTP relay in front of the emulator (``testbed.httpfault``,
TLS on both sides for Azurite), the storages are real ExternalStorages on the test bed's
API server, and what is stored is read back through a presigned URL.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Iterator
from typing import Any, cast

import pytest
from tests.integration.test_media import (
    Backend,
    crc,
    make_storage,
    set_call_type,
)

from callstorage.media import UploadFailed, presigned_url, upload_artifacts
from callstorage.transfer import TransferOptions
from testbed import kubeutil
from testbed.gcs import GCSServer
from testbed.httpfault import FaultyHTTPProxy

MiB = 1024 * 1024
PARTS = TransferOptions(part_size=5 * MiB, concurrency=3, attempts=2, retry_delay=0.1)
pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture(params=["s3", "gcs", "abs"])
def backend(request: pytest.FixtureRequest, kube_api: Any, namespace: str,
            credential_values: set[str]) -> Backend:
    kind = str(request.param)
    server = request.getfixturevalue({"s3": "s3_server", "gcs": "gcs_server",
                                      "abs": "azurite"}[kind])
    if kind != "abs":
        return Backend(kind, server, credential_values)
    kubeutil.secret(kube_api, namespace, "ca", {"ca.crt": server.ca_pem.decode()})
    return Backend(kind, server, credential_values, verify=str(server.ca_path))


@pytest.fixture
def relay(backend: Backend, tmp_path: Any) -> Iterator[FaultyHTTPProxy]:
    """The backend's storages reach it through a relay that can damage bodies."""
    tls = upstream_ca = None
    if backend.kind == "abs":
        tls, upstream_ca = backend.server.ca.issue(["127.0.0.1"]), backend.server.ca_path
    with FaultyHTTPProxy(backend.upstream_port(), tls=tls, upstream_ca=upstream_ca,
                         workdir=tmp_path / "relay") as proxy:
        backend.proxy = cast(Any, proxy)  # anything with a port will do
        yield proxy


def storage(api: Any, ns: str, backend: Backend) -> str:
    bucket = backend.new_bucket()
    make_storage(api, ns, backend, "media", bucket, path="calls")
    set_call_type(api, ns, "allhands", "media")
    return bucket


def with_marker(size: int, at: int) -> tuple[bytes, bytes]:
    """Random bytes with a marker the relay looks for at ``at``."""
    marker = secrets.token_bytes(16)
    data = bytearray(os.urandom(size))
    data[at:at + len(marker)] = marker
    return bytes(data), marker


def test_a_body_damaged_on_the_way_fails_the_upload_and_is_not_pinned(
    kube_api: Any, namespace: str, backend: Backend, relay: FaultyHTTPProxy,
) -> None:
    bucket = storage(kube_api, namespace, backend)
    audio, audio_marker = with_marker(300_000, 1000)       # one request
    video, video_marker = with_marker(12 * MiB, 6 * MiB)   # in the second of three parts

    for name, data, marker in (("audio.wav", audio, audio_marker),
                               ("meeting_recording.mp4", video, video_marker)):
        relay.corrupt(marker)  # every time: sending it again cannot help
        with pytest.raises(UploadFailed) as caught:
            upload_artifacts(namespace, "allhands", "c1", {name: data},
                             api_client=kube_api, options=PARTS)
        assert caught.value.reason == "ChecksumMismatch", caught.value
        assert f"{name}: " in caught.value.message
        assert "checksum mismatch" in caught.value.message
        assert relay.corrupted >= 1
        assert backend.keys(bucket) == []  # nothing under the key, no manifest

    # Damaged once: a part or block is sent again and the upload completes. A GCS
    # session learns of it only at the end (no per-chunk checksum): the upload fails and
    # is tried again whole.
    relay.corrupt(video_marker, times=1)
    if backend.kind == "gcs":
        with pytest.raises(UploadFailed, match="checksum mismatch"):
            upload_artifacts(namespace, "allhands", "c1", {"meeting_recording.mp4": video},
                             api_client=kube_api, options=PARTS)
        assert backend.keys(bucket) == []
    location = upload_artifacts(namespace, "allhands", "c1",
                                {"meeting_recording.mp4": video},
                                api_client=kube_api, options=PARTS)
    stored = location.object("meeting_recording.mp4")
    assert stored.crc32c == crc(video)
    got = backend.fetch(presigned_url(location, "meeting_recording.mp4", api_client=kube_api,
                                       namespace=namespace))
    assert got.status_code == 200
    assert got.content == video


@pytest.mark.parametrize("last_chunk", [False, True], ids=["middle-chunk", "last-chunk"])
def test_gcs_session_keeping_less_than_a_chunk_gets_the_rest_again(
    kube_api: Any, namespace: str, gcs_server: GCSServer, credential_values: set[str],
    last_chunk: bool,
) -> None:
    backend = Backend("gcs", gcs_server, credential_values)
    bucket = storage(kube_api, namespace, backend)
    video = os.urandom(12 * MiB + 5)
    before = gcs_server.short_persisted
    gcs_server.short_persist_once(256 * 1024, last_chunk=last_chunk)
    # One attempt per request: the rest is sent from where the session stands, not by
    # sending the whole chunk again after an error.
    location = upload_artifacts(namespace, "allhands", "c2",
                                {"meeting_recording.mp4": video}, api_client=kube_api,
                                options=dataclasses.replace(PARTS, attempts=1))
    assert gcs_server.short_persisted == before + 1  # the fault did happen
    assert "calls/c2_meeting_recording.mp4" in backend.keys(bucket)
    got = backend.fetch(presigned_url(location, "meeting_recording.mp4", api_client=kube_api,
                                       namespace=namespace))
    assert got.content == video
    assert location.object("meeting_recording.mp4").crc32c == crc(video)


def test_requests_in_flight_at_the_endpoint_never_exceed_the_concurrency(
    kube_api: Any, namespace: str, backend: Backend, relay: FaultyHTTPProxy,
) -> None:
    """docs/media.md: ``concurrency`` requests at most, small files and the parts of
    large ones together (there was a pool for each: twice as many)."""
    bucket = storage(kube_api, namespace, backend)
    artifacts: dict[str, Any] = {f"screenshots/{i}.png": os.urandom(100_000)
                                 for i in range(6)}
    artifacts["meeting_recording.mp4"] = iter([os.urandom(16 * MiB)])
    relay.answer_delay = 0.3  # each request stays open long enough to overlap
    # The upload's requests only, not the operator's validation of the same storage: they
    # name the call's keys (S3, Azure: in the path; GCS: in the body) or its GCS session.
    relay.counts = lambda head, body: b"c3_" in head + body[:4096] or b"upload_id=" in head
    relay.reset_counts()
    upload_artifacts(namespace, "allhands", "c3", artifacts, api_client=kube_api,
                     options=PARTS)
    assert len(backend.keys(bucket)) == 8  # 7 files and the manifest
    assert relay.max_in_flight <= PARTS.concurrency, "\n".join(
        f"{start:.2f}-{end:.2f} {line}" for start, end, line in sorted(relay.history))
    assert relay.max_in_flight == PARTS.concurrency  # and the bound is used
