"""Defects of issue 10 that a user sees in status, each against the real API server.

(The pure and race-only ones live in tests/unit/test_controller.py and
tests/unit/test_providers_errors.py; the readiness ones in test_status_contract.py.)
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

import storages
from callstorage.api import CHECK_ANNOTATION
from callstorage.client import Client, S3Request
from storages import CT, EXS
from testbed import kubeutil
from testbed.gcs import GCSServer
from testbed.s3 import S3Keys, S3Server

pytestmark = pytest.mark.usefixtures("operator")


def test_a_suspended_storage_runs_no_check_and_says_so(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    """Defect 5: the CRD says suspend stops on-demand checks too."""
    kubeutil.secret(kube_api, namespace, "creds", rw_keys.as_secret_data())
    kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
        "sus", storages.s3_storage_spec(bucket, s3_server.endpoint, "creds", path="checks",
                                        suspend=True)))
    kubeutil.wait_object(kube_api, EXS, namespace, "sus",
                         lambda o: storages.condition(o, "Suspended").get("status") == "True",
                         10, "Suspended")
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "sus",
        {"metadata": {"annotations": {CHECK_ANNOTATION: "try-1"}}})
    obj = kubeutil.wait_object(
        kube_api, EXS, namespace, "sus",
        lambda o: ((o or {}).get("status", {}).get("lastCheck") or {}).get("requestedAt")
        == "try-1", 10, "the check answered")
    assert obj is not None
    check = obj["status"]["lastCheck"]
    assert check["succeeded"] is False
    assert "suspended" in check["message"]
    assert s3_server.list_keys(bucket, "checks/") == []


def test_a_partial_update_keeps_the_provider_fields_it_does_not_name(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    """Defect 6: an S3Request with only a region must not drop endpoint/forcePathStyle."""
    cs = Client(namespace, kube_api)
    cs.create_external_storage(
        "minio", "s3", bucket, "rec/", aws_s3=S3Request(
            s3_region="us-east-1", s3_api_key=rw_keys.access_key_id,
            s3_secret=rw_keys.secret_access_key, s3_custom_endpoint_url=s3_server.endpoint,
            s3_force_path_style=True))
    cs.update_external_storage("minio", aws_s3=S3Request(s3_region="eu-west-1"))
    spec = kubeutil.get_object(kube_api, EXS, namespace, "minio")["spec"]  # type: ignore[index]
    assert spec["s3"]["region"] == "eu-west-1"
    assert spec["s3"]["endpoint"] == s3_server.endpoint
    assert spec["s3"]["forcePathStyle"] is True
    assert spec["s3"]["credentialsSecretRef"]["name"]
    cs.update_external_storage("minio", bucket=bucket, prefixes={"audio": "a"})
    cs.update_external_storage("minio", prefixes={"video": "v"})
    spec = kubeutil.get_object(kube_api, EXS, namespace, "minio")["spec"]  # type: ignore[index]
    assert spec["prefixes"] == {"video": "v"}  # replaces the map, as documented
    assert spec["s3"]["endpoint"] == s3_server.endpoint


class _HugeErrorS3(http.server.BaseHTTPRequestHandler):
    """An S3-like endpoint whose every write fails with a 40,000-character message."""

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>InvalidArgument</Code>"
                f"<Message>{'x' * 40_000}</Message></Error>").encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def huge_error_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HugeErrorS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_status_stays_bounded_whatever_a_server_or_tenant_sends(
    kube_api: Any, namespace: str, huge_error_endpoint: str, rw_keys: S3Keys,
    s3_server: S3Server, bucket: str,
) -> None:
    """Defect 7: a 40,000-character provider message and 25 CallTypes on one storage."""
    kubeutil.secret(kube_api, namespace, "creds", {
        **rw_keys.as_secret_data(), "endpoint": f"{s3_server.endpoint} {huge_error_endpoint}"})
    kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
        "loud", storages.s3_storage_spec("loud-bucket", huge_error_endpoint, "creds",
                                         "WriteOnly")))
    obj = storages.wait_ready(kube_api, EXS, namespace, "loud", "False", timeout=20)
    message = storages.condition(obj)["message"]
    # the server's 40,000 characters are not published at all (issue 15): its status and
    # error code are
    assert message == "PutObject on loud-bucket/.write_probe_callstorage returned 400 " \
        "InvalidArgument"

    kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
        "shared", storages.s3_storage_spec(bucket, s3_server.endpoint, "creds")))
    for i in range(25):
        kubeutil.create_object(kube_api, CT, namespace, {
            "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
            "metadata": {"name": f"ct-{i:02d}"}, "spec": {"externalStorage": "shared"}})
    obj = kubeutil.wait_object(
        kube_api, EXS, namespace, "shared",
        lambda o: ((o or {}).get("status") or {}).get("usedByCount") == 25, 20,
        "usedByCount 25")
    assert obj is not None
    assert obj["status"]["usedBy"] == [f"ct-{i:02d}" for i in range(20)]


def test_a_pathological_credentials_file_ends_ready_true(
    kube_api: Any, namespace: str, gcs_server: GCSServer, credential_values: set[str],
) -> None:
    """Defect 8: credentials.json nested 100,000 levels deep raised RecursionError past
    the provider; the old Ready=True stayed."""
    import secrets as pysecrets

    bucket = f"gcs-{pysecrets.token_hex(4)}"
    gcs_server.create_bucket(bucket)
    info = gcs_server.create_service_account(f"sa-{pysecrets.token_hex(3)}")
    gcs_server.grant(bucket, str(info["client_email"]), "admin")
    credential_values.add(str(info["private_key"]).splitlines()[1])
    kubeutil.secret(kube_api, namespace, "creds", {"credentials.json": json.dumps(info),
                                                   "endpoint": gcs_server.endpoint})
    kubeutil.create_object(kube_api, EXS, namespace, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "ExternalStorage",
        "metadata": {"name": "gcs"},
        "spec": {"storageType": "gcs", "bucket": bucket,
                 "gcs": {"endpoint": gcs_server.endpoint,
                         "credentialsSecretRef": {"name": "creds"}}}})
    storages.wait_ready(kube_api, EXS, namespace, "gcs", "True", timeout=20)
    deep = "[" * 100_000 + "]" * 100_000
    kubeutil.secret(kube_api, namespace, "creds", {"credentials.json": deep,
                                                   "endpoint": gcs_server.endpoint},
                    replace=True)
    obj = storages.wait_ready(kube_api, EXS, namespace, "gcs", "False", "InvalidCredentials",
                              timeout=20)
    assert "not a JSON service-account key" in storages.condition(obj)["message"]
