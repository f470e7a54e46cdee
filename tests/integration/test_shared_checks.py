"""Identical validations in flight share one request (the controller's shared checks).

Storages that would send the same validation request with the same credentials (same
namespace, same Secret at the same resourceVersion, same bucket and endpoint; for
ReadWrite, `path` and `prefixes` are never sent) take the answer of the one already in
flight. Counted on the wire: a proxy in front of the S3 emulator forwards every request
unchanged (the emulator still verifies each signature) and holds each HeadBucket, so the
storages' rounds overlap.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import storages
from storages import EXS
from testbed import kubeutil
from testbed.localhttp import LocalHTTPServer, Request, Response
from testbed.s3 import S3Keys, S3Server

HOLD_S = 1.5  # under the test operator's 3 s read timeout
pytestmark = pytest.mark.usefixtures("operator")
_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}


class HoldingS3Proxy:
    """Forwards to the S3 emulator, counting requests per method; HEADs wait HOLD_S."""

    def __init__(self, upstream: str, log_dir: Path) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.server = LocalHTTPServer("holding-s3-proxy", self._forward, log_dir)
        self.url = self.server.url

    def _forward(self, request: Request) -> Response:
        with self._lock:
            self.counts[request.method] += 1
        if request.method == "HEAD":
            time.sleep(HOLD_S)  # a slow endpoint: the answer the others can share
        target = request.raw_path
        if request.query:
            target += "?" + urllib.parse.urlencode(request.query)
        conn = http.client.HTTPConnection(self._host, self._port, timeout=10)
        try:
            # the Host header is forwarded as signed
            conn.request(request.method, target, body=request.body or None,
                         headers=dict(request.headers.items()))
            answer = conn.getresponse()
            body = answer.read()
            headers = {k: v for k, v in answer.getheaders() if k.lower() not in _HOP}
            return Response(answer.status, body, headers)
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def holding_proxy(s3_server: S3Server, tmp_path: Path) -> Iterator[HoldingS3Proxy]:
    proxy = HoldingS3Proxy(s3_server.endpoint, tmp_path)
    yield proxy
    proxy.stop()


def _secret_version(api: Any, ns: str, name: str) -> str:
    return str(client.CoreV1Api(api).read_namespaced_secret(name, ns).metadata
               .resource_version)


def test_storages_sharing_a_secret_and_bucket_send_one_head_bucket_in_flight(
    kube_api: Any, namespace: str, bucket: str, rw_keys: S3Keys,
    holding_proxy: HoldingS3Proxy,
) -> None:
    keys = S3Keys(rw_keys.access_key_id, rw_keys.secret_access_key, holding_proxy.url)
    kubeutil.secret(kube_api, namespace, "shared", keys.as_secret_data())
    names = [f"tenant-{i}" for i in range(6)]
    for name in names:  # one bucket, a path per tenant: the platform-bucket layout
        kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
            name, storages.s3_storage_spec(bucket, holding_proxy.url, "shared",
                                           path=f"/{name}/")))
    version = _secret_version(kube_api, namespace, "shared")
    for name in names:
        obj = storages.wait_ready(kube_api, EXS, namespace, name, "True", "Validated",
                                  timeout=30)
        assert obj["status"]["observedSecretVersion"] == version
        assert obj["status"]["lastValidatedAt"]
    heads = holding_proxy.counts["HEAD"]
    # each storage alone would send its own: 6
    assert 1 <= heads < len(names), f"{heads} HeadBuckets for {len(names)} storages"


def test_a_check_in_flight_never_answers_for_a_newer_secret(
    kube_api: Any, namespace: str, bucket: str, rw_keys: S3Keys,
    holding_proxy: HoldingS3Proxy,
) -> None:
    """The Secret is replaced by wrong keys while the good keys' HeadBucket is held: the
    storages revalidated for the new Secret must send their own request and fail, not
    take the answer of the request in flight."""
    good = S3Keys(rw_keys.access_key_id, rw_keys.secret_access_key, holding_proxy.url)
    kubeutil.secret(kube_api, namespace, "shared", good.as_secret_data())
    names = [f"tenant-{i}" for i in range(3)]
    for name in names:
        kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
            name, storages.s3_storage_spec(bucket, holding_proxy.url, "shared",
                                           path=f"/{name}/")))
    deadline = time.monotonic() + 20
    while holding_proxy.counts["HEAD"] == 0:  # the good keys' check is in flight
        assert time.monotonic() < deadline, "no HeadBucket reached the proxy"
        time.sleep(0.05)
    wrong = S3Keys(rw_keys.access_key_id, "x" * len(rw_keys.secret_access_key),
                   holding_proxy.url)
    kubeutil.secret(kube_api, namespace, "shared", wrong.as_secret_data(), replace=True)
    version = _secret_version(kube_api, namespace, "shared")
    for name in names:
        obj = storages.wait_ready(kube_api, EXS, namespace, name, "False",
                                  "InvalidCredentials", timeout=40)
        assert obj["status"]["observedSecretVersion"] == version
    assert holding_proxy.counts["HEAD"] >= 2  # the good keys' and the wrong keys' own
