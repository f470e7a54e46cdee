"""The media path end to end: storages resolved through the real API server and the
operator, objects written to and read back from each emulator (moto with IAM, Azurite,
the test bed's GCS endpoint), read URLs fetched with ``requests``."""

from __future__ import annotations

import io
import json
import os
import secrets
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
import requests
from kubernetes import client

import storages
from callstorage import media
from callstorage.media import (
    ReadAccessNotGranted,
    StorageDeleted,
    StoredLocation,
    UploadFailed,
    presigned_url,
    upload_artifacts,
)
from callstorage.transfer import TransferOptions, crc32c_b64
from storages import CT, EXS
from testbed import kubeutil
from testbed.azurite import AzuriteServer
from testbed.s3 import S3Server, put_only_policy, readwrite_policy
from testbed.tcpproxy import KillableProxy

ACCOUNT = "callstorage1"
MiB = 1024 * 1024
SMALL_PARTS = TransferOptions(part_size=5 * MiB, concurrency=3, attempts=2, retry_delay=0.1)
pytestmark = pytest.mark.usefixtures("operator")


# --- one storage provider, as the tests need it --------------------------------------------


@dataclass
class Backend:
    """Buckets, credentials and specs of one emulator."""

    kind: str
    server: Any
    credential_values: set[str]
    verify: str | bool = True
    proxy: KillableProxy | None = None
    buckets: list[str] = field(default_factory=list)

    def new_bucket(self) -> str:
        name = f"m{self.kind}-{secrets.token_hex(4)}"
        if self.kind == "s3" or self.kind == "gcs":
            self.server.create_bucket(name)
        else:
            self.server.create_container(ACCOUNT, name)
        self.buckets.append(name)
        return name

    def secret(self, buckets: list[str], write_only: bool = False,
               prefixes: tuple[str, ...] = ()) -> dict[str, str]:
        """Credentials for ``buckets``: read-write, or put-only under ``prefixes``."""
        if self.kind == "s3":
            if write_only:
                statements = [s for b in buckets
                              for s in put_only_policy(b, list(prefixes))["Statement"]]
            else:
                statements = [s for b in buckets for s in readwrite_policy(b)["Statement"]]
            keys = self.server.create_user(f"u-{secrets.token_hex(4)}", {
                "Version": "2012-10-17", "Statement": statements})
            self.credential_values.update({keys.access_key_id, keys.secret_access_key})
            return {**keys.as_secret_data(), "endpoint": self.endpoint()}
        if self.kind == "gcs":
            info = self.server.create_service_account(f"sa-{secrets.token_hex(3)}")
            for b in buckets:
                self.server.grant(b, info["client_email"],
                                  "objectCreator" if write_only else "admin")
            self.credential_values.add(str(info["private_key"]).splitlines()[1])
            return {"credentials.json": json.dumps(info), "endpoint": self.endpoint(),
                    "tokenUri": str(info["token_uri"])}
        key = str(self.server.key_for(ACCOUNT))
        self.credential_values.add(key)
        return {"accountKey": key, "endpoint": self.endpoint()}

    def endpoint(self) -> str:
        if self.kind == "s3" or self.kind == "gcs":
            upstream = str(self.server.endpoint)
        else:
            upstream = str(self.server.endpoint_for(ACCOUNT))
        if self.proxy is None:
            return upstream
        parts = urllib.parse.urlsplit(upstream)
        return parts._replace(netloc=f"127.0.0.1:{self.proxy.port}").geturl()

    def upstream_port(self) -> int:
        if self.kind == "abs":
            return int(urllib.parse.urlsplit(self.server.endpoint_for(ACCOUNT)).port or 0)
        return int(urllib.parse.urlsplit(self.server.endpoint).port or 0)

    def spec(self, bucket: str, secret: str, mode: str = "ReadWrite",
             **extra: Any) -> dict[str, Any]:
        if self.kind == "s3":
            return storages.s3_storage_spec(bucket, self.endpoint(), secret, mode, **extra)
        if self.kind == "gcs":
            return {"storageType": "gcs", "bucket": bucket, "accessMode": mode,
                    "gcs": {"endpoint": self.endpoint(),
                            "credentialsSecretRef": {"name": secret}}, **extra}
        return {"storageType": "abs", "bucket": bucket, "accessMode": mode,
                "abs": {"accountName": ACCOUNT, "endpoint": self.endpoint(),
                        "credentialsSecretRef": {"name": secret}},
                "tls": {"caSecretRef": {"name": "ca", "key": "ca.crt"}}, **extra}

    def keys(self, bucket: str) -> list[str]:
        if self.kind == "s3":
            return sorted(self.server.list_keys(bucket))
        if self.kind == "gcs":
            return sorted(self.server.list_objects(bucket))
        return sorted(self.server.list_blobs(ACCOUNT, bucket))

    def fetch(self, url: str) -> requests.Response:
        return requests.get(url, timeout=30, verify=self.verify)


@pytest.fixture(params=["s3", "gcs", "abs"])
def backend(request: pytest.FixtureRequest, kube_api: Any, namespace: str,
            credential_values: set[str]) -> Backend:
    kind = str(request.param)
    if kind == "s3":
        return Backend(kind, request.getfixturevalue("s3_server"), credential_values)
    if kind == "gcs":
        return Backend(kind, request.getfixturevalue("gcs_server"), credential_values)
    azurite: AzuriteServer = request.getfixturevalue("azurite")
    kubeutil.secret(kube_api, namespace, "ca", {"ca.crt": azurite.ca_pem.decode()})
    return Backend(kind, azurite, credential_values, verify=str(azurite.ca_path))


def make_storage(api: Any, ns: str, backend: Backend, name: str, bucket: str,
                 mode: str = "ReadWrite", secret_buckets: list[str] | None = None,
                 **extra: Any) -> None:
    """A Ready ExternalStorage ``name`` on ``bucket`` with its own credentials Secret."""
    prefixes = sorted({extra.get("path", "") or "", *(extra.get("prefixes") or {}).values()})
    kubeutil.secret(api, ns, f"{name}-creds", backend.secret(
        secret_buckets or [bucket], write_only=mode == "WriteOnly", prefixes=tuple(prefixes)))
    kubeutil.create_object(api, EXS, ns, storages.external_storage(
        name, backend.spec(bucket, f"{name}-creds", mode, **extra)))
    storages.wait_ready(api, EXS, ns, name, "True", "Validated", timeout=20)


def set_call_type(api: Any, ns: str, name: str, storage: str) -> None:
    custom = client.CustomObjectsApi(api)
    if kubeutil.get_object(api, CT, ns, name) is None:
        kubeutil.create_object(api, CT, ns, {
            "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
            "metadata": {"name": name}, "spec": {"externalStorage": storage}})
    else:
        custom.patch_namespaced_custom_object("callstorage.io", "v1alpha1", ns, CT, name,
                                              {"spec": {"externalStorage": storage}})


def crc(data: bytes) -> str:
    return crc32c_b64(google_crc32c.value(data))


# --- tests -------------------------------------------------------------------------------


def test_upload_lands_at_documented_keys_and_read_url_returns_the_bytes(
    kube_api: Any, namespace: str, backend: Backend, tmp_path: Path,
) -> None:
    bucket = backend.new_bucket()
    make_storage(kube_api, namespace, backend, "media", bucket, path="calls",
                 prefixes={"audio": "recordings/audio", "transcript": "transcripts"})
    set_call_type(kube_api, namespace, "allhands", "media")
    audio = os.urandom(300_000)
    (tmp_path / "audio.wav").write_bytes(audio)
    part1, part2 = os.urandom(11 * MiB + 17), os.urandom(2 * MiB)
    shot = os.urandom(2000)
    transcript = [b'{"words": [', b'"hello"', b"]}"]
    participants = b'[{"id": "u1"}]'

    location = upload_artifacts(namespace, "allhands", "abc123", {
        "audio.wav": tmp_path / "audio.wav",                       # a file
        "meeting_recording.mp4": [io.BytesIO(part1), iter([part2[:MiB], part2[MiB:]])],
        "screenshots/9f2b.png": shot,                             # bytes
        "transcription/deepgram/t1/raw_transcript.json": iter(transcript),  # a stream
        "participants.json": io.BytesIO(participants),            # a file-like object
    }, api_client=kube_api, options=SMALL_PARTS)

    expected = {
        "audio.wav": ("recordings/audio/abc123_audio.wav", audio),
        "meeting_recording_part001.mp4": ("calls/abc123_meeting_recording_part001.mp4",
                                          part1),
        "meeting_recording_part002.mp4": ("calls/abc123_meeting_recording_part002.mp4",
                                          part2),
        "screenshots/9f2b.png": ("calls/abc123_screenshots/9f2b.png", shot),
        "transcription/deepgram/t1/raw_transcript.json": (
            "transcripts/abc123_transcription/deepgram/t1/raw_transcript.json",
            b"".join(transcript)),
        "participants.json": ("calls/abc123_participants.json", participants),
    }
    assert backend.keys(bucket) == sorted([k for k, _ in expected.values()]
                                          + ["calls/abc123_manifest.json"])
    assert location.bucket == bucket
    assert location.storage_name == "media"
    assert location.manifest_key == "calls/abc123_manifest.json"
    # the pin is JSON and survives a round trip
    assert StoredLocation.from_json(location.to_json()) == location

    manifest = backend.fetch(presigned_url(location, "manifest.json", namespace=namespace,
                                           api_client=kube_api))
    assert manifest.status_code == 200, manifest.text
    listed = {f["file"]: f for f in manifest.json()["files"]}
    assert set(listed) == set(expected)
    for file, (key, data) in expected.items():
        assert (listed[file]["key"], listed[file]["size"], listed[file]["crc32c"]) == (
            key, len(data), crc(data))
    for file in ("audio.wav", "meeting_recording_part001.mp4", "screenshots/9f2b.png"):
        got = backend.fetch(presigned_url(location, file, namespace=namespace,
                                          api_client=kube_api))
        assert got.status_code == 200, got.text
        assert got.content == expected[file][1]


def test_write_only_storage_refuses_read_urls_with_the_seed_body(
    kube_api: Any, namespace: str, backend: Backend,
) -> None:
    bucket = backend.new_bucket()
    make_storage(kube_api, namespace, backend, "wo", bucket, mode="WriteOnly", path="calls")
    set_call_type(kube_api, namespace, "allhands", "wo")
    location = upload_artifacts(namespace, "allhands", "c1", {"audio.wav": b"RIFF...."},
                                api_client=kube_api)
    assert "calls/c1_audio.wav" in backend.keys(bucket)
    with pytest.raises(ReadAccessNotGranted) as caught:
        presigned_url(location, "audio.wav", namespace=namespace, api_client=kube_api)
    place = {"s3": "S3 bucket", "gcs": "GCS bucket",
             "abs": "Azure Blob Storage container"}[backend.kind]
    assert caught.value.http_status == 403
    assert caught.value.body == {
        "message": f"Media is stored in your {place}, but only write access was granted. "
                   "Update your storage configuration to read+write to fetch media via the "
                   "API.",
        "access_mode": "write_only"}
    assert location.object_url("audio.wav") in caught.value.message


def test_pinned_location_survives_repointing_a_bucket_change_but_not_deletion(
    kube_api: Any, namespace: str, backend: Backend,
) -> None:
    first, second, moved = backend.new_bucket(), backend.new_bucket(), backend.new_bucket()
    make_storage(kube_api, namespace, backend, "first", first,
                 secret_buckets=[first, moved])
    make_storage(kube_api, namespace, backend, "second", second)
    set_call_type(kube_api, namespace, "allhands", "first")
    early = os.urandom(5000)
    pin = upload_artifacts(namespace, "allhands", "early", {"audio.wav": early},
                           api_client=kube_api).to_json()  # kept by the caller as JSON

    set_call_type(kube_api, namespace, "allhands", "second")
    late = upload_artifacts(namespace, "allhands", "late", {"audio.wav": b"later"},
                            api_client=kube_api)
    assert late.bucket == second
    assert "late_audio.wav" in backend.keys(second)

    got = backend.fetch(presigned_url(pin, "audio.wav", namespace=namespace,
                                      api_client=kube_api))
    assert got.status_code == 200
    assert got.content == early

    # the storage moves to another bucket: earlier media is still served from its own
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "first", {"spec": {"bucket": moved}})
    url = presigned_url(pin, "audio.wav", namespace=namespace, api_client=kube_api)
    assert first in url
    assert moved not in url
    got = backend.fetch(url)
    assert got.status_code == 200
    assert got.content == early

    client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "first")
    kubeutil.wait_object(kube_api, EXS, namespace, "first", lambda o: o is None, 20,
                         "storage first deleted")
    with pytest.raises(StorageDeleted, match="was deleted") as caught:
        presigned_url(pin, "audio.wav", namespace=namespace, api_client=kube_api)
    assert caught.value.reason == "StorageDeleted"


@pytest.fixture
def relay(backend: Backend) -> Iterator[KillableProxy]:
    with KillableProxy(backend.upstream_port()) as proxy:
        backend.proxy = proxy
        yield proxy


def test_interrupted_upload_leaves_no_partial_object_and_a_retry_completes(
    kube_api: Any, namespace: str, backend: Backend, relay: KillableProxy,
) -> None:
    bucket = backend.new_bucket()
    make_storage(kube_api, namespace, backend, "flaky", bucket, path="calls")
    set_call_type(kube_api, namespace, "allhands", "flaky")
    video = os.urandom(16 * MiB + 3)
    relay.cut_after(7 * MiB)  # the endpoint dies while the second part is on the wire
    with pytest.raises(UploadFailed) as caught:
        upload_artifacts(namespace, "allhands", "c9", {"meeting_recording.mp4": video},
                         api_client=kube_api, options=SMALL_PARTS)
    assert relay.dead.is_set()
    assert caught.value.reason in ("EndpointUnreachable", "Timeout", "ServiceError")
    assert "meeting_recording.mp4" in caught.value.message
    assert backend.keys(bucket) == []  # nothing under the final key, no manifest

    relay.revive()
    location = upload_artifacts(namespace, "allhands", "c9",
                                {"meeting_recording.mp4": video},
                                api_client=kube_api, options=SMALL_PARTS)
    assert backend.keys(bucket) == ["calls/c9_manifest.json",
                                    "calls/c9_meeting_recording.mp4"]
    got = backend.fetch(presigned_url(location, "meeting_recording.mp4",
                                      namespace=namespace, api_client=kube_api))
    assert got.status_code == 200
    assert got.content == video
    assert location.object("meeting_recording.mp4").crc32c == crc(video)


def test_bad_artifacts_are_refused_before_anything_is_sent(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str,
    credential_values: set[str], tmp_path: Path,
) -> None:
    backend = Backend("s3", s3_server, credential_values)
    make_storage(kube_api, namespace, backend, "media", bucket)
    set_call_type(kube_api, namespace, "allhands", "media")
    for artifacts, words in (
        ({"notes.txt": b"x"}, "unknown file"),
        ({"manifest.json": b"{}"}, "written by upload_artifacts"),
        ({"audio.wav": tmp_path / "missing.wav"}, "no such file"),
        ({"screenshots/../x.png": b"x"}, "'..'"),
    ):
        with pytest.raises(media.InvalidRequest, match=words):
            upload_artifacts(namespace, "allhands", "c1", artifacts, api_client=kube_api)
    assert s3_server.list_keys(bucket) == []


def test_cli_upload_then_url(
    kube_api: Any, namespace: str, s3_server: S3Server, credential_values: set[str],
    control_plane: Any, tmp_path: Path,
) -> None:
    from callstorage.cli import main

    backend = Backend("s3", s3_server, credential_values)
    bucket = backend.new_bucket()
    make_storage(kube_api, namespace, backend, "media", bucket, path="rec")
    set_call_type(kube_api, namespace, "allhands", "media")
    audio, part1, part2 = os.urandom(1000), os.urandom(6 * MiB), os.urandom(100)
    for name, data in (("a.wav", audio), ("p1.mp4", part1), ("p2.mp4", part2)):
        (tmp_path / name).write_bytes(data)
    kc = ["--kubeconfig", str(control_plane.kubeconfig)]
    out, err = io.StringIO(), io.StringIO()
    code = main([*kc, "upload", "-n", namespace, "--call-type", "allhands", "--call-id", "x1",
                 "--part-size", "5", f"audio.wav={tmp_path / 'a.wav'}",
                 f"meeting_recording.mp4={tmp_path / 'p1.mp4'}",
                 f"meeting_recording.mp4={tmp_path / 'p2.mp4'}",
                 "--output-file", str(tmp_path / "pin.json")], out=out, err=err)
    assert code == 0, err.getvalue()
    pin = json.loads(out.getvalue())
    assert [o["key"] for o in pin["objects"]] == [
        "rec/x1_audio.wav", "rec/x1_meeting_recording_part001.mp4",
        "rec/x1_meeting_recording_part002.mp4", "rec/x1_manifest.json"]
    out = io.StringIO()
    code = main([*kc, "url", "-n", namespace, str(tmp_path / "pin.json"),
                 "meeting_recording_part001.mp4",
                 "--expires", "60"], out=out, err=err)
    assert code == 0, err.getvalue()
    assert backend.fetch(out.getvalue().strip()).content == part1

    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "media",
        {"spec": {"accessMode": "WriteOnly"}})
    out, err = io.StringIO(), io.StringIO()
    code = main([*kc, "url", "-n", namespace, str(tmp_path / "pin.json"), "audio.wav"],
                out=out, err=err)
    assert code == 1
    assert out.getvalue() == ""
    assert f"s3://{bucket}/rec/x1_audio.wav" in err.getvalue()
    assert "(ReadAccessNotGranted)" in err.getvalue()
