"""Uploads to a storage whose endpoint trickles end at their deadlines (issue 24, item 2).

The endpoint answers every connection with one byte every 0.5 s for ever (an HTTP
header, or a TLS handshake record, that never ends): no SDK read timeout ever fires.
``upload_artifacts`` must still fail, as ``Timeout`` naming the file, within its
requests' deadlines (``TransferOptions.request_deadline`` plus size at
``min_throughput``, per attempt) or the upload's ``total_deadline``, plus a second;
every connection the endpoint accepted must be closed on the wire by then, and no
thread of the upload may be left running.

The storages are suspended, so no operator validating them opens connections of its
own to the endpoint: what the listener sees is the upload's alone.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import storages
from callstorage.media import UploadFailed, upload_artifacts
from callstorage.pins import PinKey
from callstorage.transfer import TransferOptions
from storage_fixtures import TricklingListener
from testbed import kubeutil
from testbed.gcs import GCSServer
from testbed.procs import wait_for

pytestmark = pytest.mark.integration

EXS, CT = "externalstorages", "calltypes"
ACCOUNT = "callstorage1"
MiB = 1024 * 1024


def _storage(kind: str, listener: TricklingListener, request: pytest.FixtureRequest,
             credential_values: set[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """The Secret's data and the (suspended) spec of a ``kind`` storage at ``listener``."""
    bucket = f"drip-{secrets.token_hex(3)}"
    ref = {"name": "drip-creds"}
    if kind == "s3":
        secret = secrets.token_hex(16)
        credential_values.add(secret)
        return ({"accessKeyId": "AKIATRICKLE", "secretAccessKey": secret,
                 "endpoint": listener.url()},
                storages.s3_storage_spec(bucket, listener.url(), ref["name"], suspend=True))
    if kind == "gcs":  # a real token from the emulator; the storage requests trickle
        gcs: GCSServer = request.getfixturevalue("gcs_server")
        info = gcs.create_service_account(f"drip-{secrets.token_hex(3)}")
        credential_values.add(str(info["private_key"]).splitlines()[1])
        return ({"credentials.json": json.dumps(info), "endpoint": listener.url(),
                 "tokenUri": str(info["token_uri"])},
                {"storageType": "gcs", "bucket": bucket, "suspend": True,
                 "gcs": {"endpoint": listener.url(), "credentialsSecretRef": ref}})
    key = base64.b64encode(os.urandom(64)).decode()  # as account keys are
    credential_values.add(key)
    endpoint = f"{listener.url('https')}/{ACCOUNT}"  # stuck in the TLS handshake
    return ({"accountKey": key, "endpoint": endpoint},
            {"storageType": "abs", "bucket": bucket, "suspend": True,
             "abs": {"accountName": ACCOUNT, "endpoint": endpoint,
                     "credentialsSecretRef": ref}})


@pytest.fixture(params=["s3", "gcs", "abs"])
def drip(request: pytest.FixtureRequest, kube_api: Any, namespace: str,
         credential_values: set[str]) -> Iterator[TricklingListener]:
    """A trickling endpoint, and call type ``drip`` of ``namespace`` storing there."""
    kind = str(request.param)
    listener = TricklingListener(TricklingListener.TLS if kind == "abs"
                                 else TricklingListener.HTTP)
    try:
        data, spec = _storage(kind, listener, request, credential_values)
        kubeutil.secret(kube_api, namespace, "drip-creds", data)
        kubeutil.create_object(kube_api, EXS, namespace,
                               storages.external_storage("drip", spec))
        kubeutil.create_object(kube_api, CT, namespace, {
            "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
            "metadata": {"name": "drip"}, "spec": {"externalStorage": "drip"}})
        yield listener
    finally:
        listener.close()


def _upload_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith(("callstorage-media", "callstorage-upload"))]


def _upload(kube_api: Any, namespace: str, artifacts: dict[str, Any],
            options: TransferOptions) -> tuple[UploadFailed, float, float]:
    """The upload's error, when it started and how long it took."""
    started = time.monotonic()
    with pytest.raises(UploadFailed) as caught:
        upload_artifacts(namespace, "drip", "c1", artifacts, api_client=kube_api,
                         options=options, require_ready=False, pin_key=PinKey.generate())
    return caught.value, started, time.monotonic() - started


def _all_closed_by(listener: TricklingListener, moment: float) -> None:
    """Every connection the endpoint accepted was closed on the wire by ``moment``."""
    assert listener.connections(), "the endpoint saw no connection"
    wait_for(lambda: listener.open_connections() == 0, max(moment - time.monotonic(), 0.1),
             "every connection to the trickling endpoint to be closed")
    late = [closed for _, closed in listener.connections()
            if closed is None or closed > moment]
    assert not late, late


def test_each_request_ends_at_its_deadline_and_the_upload_fails_as_timeout(
        kube_api: Any, namespace: str, drip: TricklingListener) -> None:
    """No total deadline: each attempt of the PUT is cut at its own deadline (1 s plus
    100 kB at 1 MiB/s), retried once, then the upload fails naming the file."""
    options = TransferOptions(request_deadline=1.0, min_throughput=MiB, attempts=2,
                              retry_delay=0.1)
    body = os.urandom(100_000)
    per_request = options.deadline_for(len(body))
    error, started, took = _upload(kube_api, namespace, {"audio.wav": body}, options)
    assert took < 2 * per_request + 0.1 + 1, took
    assert error.reason == "Timeout", error
    assert "audio.wav" in error.message
    assert f"total deadline of {per_request:g}s" in error.message, error.message
    _all_closed_by(drip, started + took + 1)
    lifetimes = [(closed or time.monotonic()) - accepted
                 for accepted, closed in drip.connections()]
    assert max(lifetimes) < per_request + 1, lifetimes
    assert not _upload_threads()


def test_the_total_deadline_cuts_off_everything_in_flight(
        kube_api: Any, namespace: str, drip: TricklingListener) -> None:
    """Three small objects side by side and a large one in parts, requests with a long
    deadline of their own: the upload's total deadline (2 s) ends them all at once."""
    total = 2.0
    options = TransferOptions(part_size=5 * MiB, concurrency=4, request_deadline=60,
                              total_deadline=total, attempts=3, retry_delay=0.1)
    artifacts = {"audio.wav": os.urandom(1000), "participants.json": b"[]",
                 "screenshots/a.png": os.urandom(2000),
                 "meeting_recording.mp4": os.urandom(11 * MiB)}
    error, started, took = _upload(kube_api, namespace, artifacts, options)
    assert took < total + 1, took
    assert error.reason == "Timeout", error
    assert "TransferOptions.total_deadline" in error.message, error.message
    assert any(name in error.message for name in artifacts), error.message
    _all_closed_by(drip, started + total + 1)
    assert not _upload_threads()
