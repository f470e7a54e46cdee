"""ExternalStorage reconciliation against the real API server and the S3 emulator.

Each test creates objects in its own namespace, with real keys of emulator users whose IAM
policies decide what they may do, and waits on the status the operator writes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

import storages
from callstorage.api import CHECK_ANNOTATION
from storages import EXS
from testbed import kubeutil
from testbed.procs import free_port
from testbed.s3 import S3Keys, S3Server, put_only_policy, readwrite_policy

pytestmark = pytest.mark.usefixtures("operator")


s3_spec = storages.s3_storage_spec


def create_storage(api: Any, ns: str, name: str, spec: dict[str, Any],
                   annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return kubeutil.create_object(api, EXS, ns,
                                  storages.external_storage(name, spec, annotations))


def events_text(api: Any, ns: str) -> str:
    items = client.CoreV1Api(api).list_namespaced_event(ns).items
    return "\n".join(f"{e.reason}: {e.message}" for e in items)


def assert_never_shown(api: Any, ns: str, keys: S3Keys) -> None:
    """Neither the key id nor the secret appear in any status or event of ``ns``."""
    custom = client.CustomObjectsApi(api)
    text = str(custom.list_namespaced_custom_object("callstorage.io", "v1alpha1", ns, EXS))
    text += events_text(api, ns)
    assert keys.secret_access_key not in text
    assert keys.access_key_id not in text


def test_valid_credentials_turn_ready_with_full_status(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    kubeutil.secret(kube_api, namespace, "creds", rw_keys.as_secret_data())
    created = create_storage(kube_api, namespace, "my-s3", s3_spec(
        bucket, s3_server.endpoint, "creds", path="/directory_name/",
        prefixes={"audio": "recordings/audio"}))
    # the bar: Ready within 5 s of apply (a deadline, not a benchmark)
    obj = storages.wait_ready(kube_api, EXS, namespace, "my-s3", "True", "Validated",
                              timeout=5)
    st = obj["status"]
    assert st["effectivePrefixes"] == {"audio": "recordings/audio", "video": "directory_name",
                                       "transcript": "directory_name",
                                       "metadata": "directory_name"}
    assert st["lastValidatedAt"]
    assert st["configuredAt"]
    assert st["nextValidationAt"]
    assert st["capabilities"]["list"] is True
    secret = client.CoreV1Api(kube_api).read_namespaced_secret("creds", namespace)
    assert st["observedSecretVersion"] == secret.metadata.resource_version
    # the operator never writes spec: same generation, same spec
    assert obj["metadata"]["generation"] == created["metadata"]["generation"]
    assert obj["spec"] == created["spec"]
    assert obj["metadata"].get("annotations") in (None, {})
    # A first success is news in status only (one Event per storage would double the
    # operator's writes at scale). A check posts an Event after it in the same order.
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "my-s3",
        {"metadata": {"annotations": {CHECK_ANNOTATION: "after-ready"}}})
    kubeutil.wait_object(kube_api, EXS, namespace, "my-s3",
                         lambda _: "CheckSucceeded" in events_text(kube_api, namespace), 10,
                         "the check's event")
    assert "Validated" not in events_text(kube_api, namespace)
    assert_never_shown(kube_api, namespace, rw_keys)


def test_wrong_secret_is_invalid_credentials(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    bad = {**rw_keys.as_secret_data(), "secretAccessKey": "not-the-secret-0000"}
    kubeutil.secret(kube_api, namespace, "creds", bad)
    create_storage(kube_api, namespace, "bad", s3_spec(bucket, s3_server.endpoint, "creds"))
    obj = storages.wait_ready(kube_api, EXS, namespace, "bad", "False", "InvalidCredentials")
    assert bucket in storages.condition(obj)["message"]
    assert obj["status"]["consecutiveFailures"] >= 1
    assert_never_shown(kube_api, namespace, rw_keys)


def test_missing_bucket_is_bucket_not_found(
    kube_api: Any, namespace: str, s3_server: S3Server, credential_values: set[str],
) -> None:
    missing = f"missing-{namespace}"
    # allowed on that bucket name, so the answer is "no such bucket", not "denied"
    keys = s3_server.create_user(f"nb-{namespace}", readwrite_policy(missing))
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    kubeutil.secret(kube_api, namespace, "creds", keys.as_secret_data())
    create_storage(kube_api, namespace, "nobucket",
                   s3_spec(missing, s3_server.endpoint, "creds"))
    obj = storages.wait_ready(kube_api, EXS, namespace, "nobucket", "False", "BucketNotFound")
    assert missing in storages.condition(obj)["message"]


def test_missing_secret_then_created_recovers_by_itself(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    create_storage(kube_api, namespace, "later", s3_spec(bucket, s3_server.endpoint, "later"))
    obj = storages.wait_ready(kube_api, EXS, namespace, "later", "False", "SecretNotFound")
    assert f"{namespace}/later" in storages.condition(obj)["message"]
    kubeutil.secret(kube_api, namespace, "later", {"accessKeyId": rw_keys.access_key_id,
                                                   "endpoint": s3_server.endpoint})
    storages.wait_ready(kube_api, EXS, namespace, "later", "False", "SecretKeyMissing")
    kubeutil.secret(kube_api, namespace, "later", rw_keys.as_secret_data(), replace=True)
    storages.wait_ready(kube_api, EXS, namespace, "later", "True", "Validated", timeout=10)


def test_secret_in_another_namespace_is_never_read(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    other = f"{namespace}-other"
    kubeutil.create_namespace(kube_api, other)
    try:
        kubeutil.secret(kube_api, other, "creds", rw_keys.as_secret_data())
        create_storage(kube_api, namespace, "cross",
                       s3_spec(bucket, s3_server.endpoint, "creds"))
        storages.wait_ready(kube_api, EXS, namespace, "cross", "False", "SecretNotFound")
    finally:
        kubeutil.delete_namespace(kube_api, other)


@pytest.fixture
def hanging_endpoint() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    sock.close()


def test_dead_and_hanging_endpoints_do_not_delay_others(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
    hanging_endpoint: str,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    kubeutil.secret(kube_api, namespace, "creds", {  # keys bound to all three endpoints
        **rw_keys.as_secret_data(),
        "endpoint": f"{s3_server.endpoint},{hanging_endpoint},{closed}"})
    create_storage(kube_api, namespace, "hangs", s3_spec(bucket, hanging_endpoint, "creds"))
    create_storage(kube_api, namespace, "down", s3_spec(bucket, closed, "creds"))
    create_storage(kube_api, namespace, "good", s3_spec(bucket, s3_server.endpoint, "creds"))
    # the good one is validated while the hanging endpoint still holds its worker
    storages.wait_ready(kube_api, EXS, namespace, "good", "True", "Validated", timeout=10)
    hanging = kubeutil.get_object(kube_api, EXS, namespace, "hangs")
    assert storages.condition(hanging).get("reason") != "Timeout"
    storages.wait_ready(kube_api, EXS, namespace, "down", "False", "EndpointUnreachable")
    storages.wait_ready(kube_api, EXS, namespace, "hangs", "False", "Timeout", timeout=30)


def test_metadata_endpoint_is_not_allowed(kube_api: Any, namespace: str, bucket: str,
                                          rw_keys: S3Keys) -> None:
    # Even a Secret that names the metadata address (a mistake, or its owner's attempt)
    # gets no connection there: the endpoint policy refuses it.
    kubeutil.secret(kube_api, namespace, "creds", {**rw_keys.as_secret_data(),
                                                   "endpoint": "http://169.254.169.254"})
    create_storage(kube_api, namespace, "imds",
                   s3_spec(bucket, "http://169.254.169.254", "creds"))
    storages.wait_ready(kube_api, EXS, namespace, "imds", "False", "EndpointNotAllowed")


def test_write_only_probes_each_prefix_and_read_write_is_denied(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str,
    credential_values: set[str],
) -> None:
    prefixes = {"audio": "rec/audio", "video": "rec/video"}
    keys = s3_server.create_user(f"wo-{namespace}",
                                 put_only_policy(bucket, ["rec/audio", "rec/video", "meta"]))
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    kubeutil.secret(kube_api, namespace, "wo", keys.as_secret_data())
    create_storage(kube_api, namespace, "wo", s3_spec(
        bucket, s3_server.endpoint, "wo", "WriteOnly", path="meta", prefixes=prefixes))
    obj = storages.wait_ready(kube_api, EXS, namespace, "wo", "True", "Validated", timeout=10)
    assert obj["status"]["capabilities"]["write"] is True
    for prefix in ("rec/audio/", "rec/video/", "meta/"):
        probes = [k for k in s3_server.list_keys(bucket, prefix)
                  if k.startswith(f"{prefix}.write_probe_")]
        assert probes, f"no probe object under {prefix}"
    create_storage(kube_api, namespace, "wo-as-rw", s3_spec(
        bucket, s3_server.endpoint, "wo", "ReadWrite", path="meta"))
    storages.wait_ready(kube_api, EXS, namespace, "wo-as-rw", "False", "AccessDenied")
    assert_never_shown(kube_api, namespace, keys)


def test_secret_rotation_flips_ready_and_back(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    kubeutil.secret(kube_api, namespace, "creds", rw_keys.as_secret_data())
    create_storage(kube_api, namespace, "rot", s3_spec(bucket, s3_server.endpoint, "creds"))
    storages.wait_ready(kube_api, EXS, namespace, "rot", "True", "Validated", timeout=10)
    bad = {**rw_keys.as_secret_data(), "secretAccessKey": "rotated-wrong-value"}
    kubeutil.secret(kube_api, namespace, "creds", bad, replace=True)
    storages.wait_ready(kube_api, EXS, namespace, "rot", "False", "InvalidCredentials",
                        timeout=10)
    kubeutil.secret(kube_api, namespace, "creds", rw_keys.as_secret_data(), replace=True)
    storages.wait_ready(kube_api, EXS, namespace, "rot", "True", "Validated", timeout=10)
    # the failure was a Warning; the recovery is a Normal Event
    kubeutil.wait_object(kube_api, EXS, namespace, "rot",
                         lambda _: "Validated: " in events_text(kube_api, namespace), 10,
                         "the recovery's event")
    assert "InvalidCredentials: " in events_text(kube_api, namespace)


def test_check_annotation_uploads_a_new_file_each_time(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    kubeutil.secret(kube_api, namespace, "creds", rw_keys.as_secret_data())
    create_storage(kube_api, namespace, "chk",
                   s3_spec(bucket, s3_server.endpoint, "creds", path="checks/"))
    storages.wait_ready(kube_api, EXS, namespace, "chk", "True", timeout=10)
    custom = client.CustomObjectsApi(kube_api)
    seen: set[str] = set()
    for value in ("first", "second"):
        custom.patch_namespaced_custom_object(
            "callstorage.io", "v1alpha1", namespace, EXS, "chk",
            {"metadata": {"annotations": {CHECK_ANNOTATION: value}}})
        obj = kubeutil.wait_object(
            kube_api, EXS, namespace, "chk",
            lambda o, v=value: ((o or {}).get("status", {}).get("lastCheck") or {})
            .get("requestedAt") == v, 10, f"check {value} answered")
        assert obj is not None
        check = obj["status"]["lastCheck"]
        assert check["succeeded"] is True, check
        key = check["object"].split(f"{bucket}/", 1)[-1]
        assert key.startswith("checks/stream-")
        assert key.endswith(".md")
        assert key in s3_server.list_keys(bucket, "checks/")
        seen.add(key)
    assert len(seen) == 2


def test_suspend_stops_validation_and_says_so(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    kubeutil.secret(kube_api, namespace, "creds", rw_keys.as_secret_data())
    create_storage(kube_api, namespace, "sus",
                   s3_spec(bucket, s3_server.endpoint, "creds", suspend=True))
    obj = kubeutil.wait_object(
        kube_api, EXS, namespace, "sus",
        lambda o: storages.condition(o, "Suspended").get("status") == "True", 10,
        "Suspended condition")
    assert obj is not None
    assert storages.condition(obj).get("status") != "True"  # never validated
    assert "nextValidationAt" not in obj["status"]
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "sus", {"spec": {"suspend": False}})
    obj = storages.wait_ready(kube_api, EXS, namespace, "sus", "True", timeout=10)
    assert storages.condition(obj, "Suspended") == {}


def test_deleted_secret_is_reported_within_seconds(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    kubeutil.secret(kube_api, namespace, "creds", rw_keys.as_secret_data())
    create_storage(kube_api, namespace, "gone", s3_spec(bucket, s3_server.endpoint, "creds"))
    storages.wait_ready(kube_api, EXS, namespace, "gone", "True", timeout=10)
    client.CoreV1Api(kube_api).delete_namespaced_secret("creds", namespace)
    obj = storages.wait_ready(kube_api, EXS, namespace, "gone", "False", "SecretNotFound",
                              timeout=10)
    assert "observedSecretVersion" not in obj["status"]
