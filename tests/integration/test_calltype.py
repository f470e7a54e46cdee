"""CallType reconciliation and in-use protection against the real API server."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

import storages
from callstorage.api import IN_USE_FINALIZER
from storages import CT, EXS
from testbed import kubeutil
from testbed.procs import wait_for
from testbed.s3 import S3Server, readwrite_policy

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def ready_storage(kube_api: Any, namespace: str, s3_server: S3Server,
                  credential_values: set[str]) -> str:
    bucket = f"ct-{namespace}"
    s3_server.create_bucket(bucket)
    keys = s3_server.create_user(f"ct-{namespace}", readwrite_policy(bucket))
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    kubeutil.secret(kube_api, namespace, "creds", keys.as_secret_data())
    storages.create_storage(kube_api, namespace, "my-s3",
                            storages.s3_storage_spec(bucket, s3_server.endpoint, "creds"))
    storages.wait_ready(kube_api, EXS, namespace, "my-s3", timeout=10)
    return "my-s3"


def test_call_type_resolves_and_storage_lists_it(kube_api: Any, namespace: str,
                                                ready_storage: str) -> None:
    storages.call_type(kube_api, namespace, "allhands", ready_storage)
    obj = storages.wait_ready(kube_api, CT, namespace, "allhands", "True", "StorageReady")
    resolved = obj["status"]["resolvedStorage"]
    assert resolved["name"] == "my-s3"
    assert resolved["source"] == "CallType"
    assert resolved["storageType"] == "s3"
    storage = kubeutil.wait_object(
        kube_api, EXS, namespace, ready_storage,
        lambda o: (o or {}).get("status", {}).get("usedBy") == ["allhands"], 10, "usedBy")
    assert storage is not None
    assert IN_USE_FINALIZER in storage["metadata"]["finalizers"]


def test_missing_storage_then_created(kube_api: Any, namespace: str,
                                      s3_server: S3Server, credential_values: set[str]) -> None:
    storages.call_type(kube_api, namespace, "early", "later-s3")
    storages.wait_ready(kube_api, CT, namespace, "early", "False", "StorageNotFound")
    bucket = f"late-{namespace}"
    s3_server.create_bucket(bucket)
    keys = s3_server.create_user(f"late-{namespace}", readwrite_policy(bucket))
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    kubeutil.secret(kube_api, namespace, "creds", keys.as_secret_data())
    storages.create_storage(kube_api, namespace, "later-s3",
                            storages.s3_storage_spec(bucket, s3_server.endpoint, "creds"))
    storages.wait_ready(kube_api, CT, namespace, "early", "True", "StorageReady", timeout=15)


def test_storage_turning_not_ready_flips_its_call_types(
    kube_api: Any, namespace: str, ready_storage: str, s3_server: S3Server,
) -> None:
    storages.call_type(kube_api, namespace, "allhands", ready_storage)
    storages.wait_ready(kube_api, CT, namespace, "allhands", "True", "StorageReady")
    kubeutil.secret(kube_api, namespace, "creds",
                    {"accessKeyId": "AKIDNOTAREALKEY00000", "secretAccessKey": "wrong",
                     "endpoint": s3_server.endpoint}, replace=True)
    obj = storages.wait_ready(kube_api, CT, namespace, "allhands", "False", "StorageNotReady",
                              timeout=10)
    assert "InvalidCredentials" in storages.condition(obj)["message"]


def test_platform_default_and_reserved_name(kube_api: Any, namespace: str) -> None:
    storages.call_type(kube_api, namespace, "default", None)
    storages.call_type(kube_api, namespace, "livestream", "stream-s3")
    for name in ("default", "livestream"):
        obj = kubeutil.wait_object(
            kube_api, CT, namespace, name,
            lambda o: bool((o or {}).get("status", {}).get("resolvedStorage")), 10,
            "resolvedStorage")
        assert obj is not None
        resolved = obj["status"]["resolvedStorage"]
        assert resolved["source"] == "PlatformDefault"
        assert resolved["namespace"] == "callstorage-system"
        assert resolved["name"] == "platform-default"


def test_referenced_storage_waits_for_its_call_types_before_deletion(
    kube_api: Any, namespace: str, ready_storage: str,
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    storages.call_type(kube_api, namespace, "allhands", ready_storage)
    kubeutil.wait_object(
        kube_api, EXS, namespace, ready_storage,
        lambda o: IN_USE_FINALIZER in ((o or {}).get("metadata", {}).get("finalizers") or []),
        10, "the in-use finalizer")
    custom.delete_namespaced_custom_object("callstorage.io", "v1alpha1", namespace, EXS,
                                           ready_storage)
    obj = kubeutil.wait_object(
        kube_api, EXS, namespace, ready_storage,
        lambda o: storages.condition(o, "DeletionBlocked").get("status") == "True", 10,
        "DeletionBlocked condition")
    assert obj is not None
    assert obj["metadata"].get("deletionTimestamp")
    assert "allhands" in storages.condition(obj, "DeletionBlocked")["message"]
    # the call type keeps resolving to its own storage, never to the platform bucket
    ct = kubeutil.get_object(kube_api, CT, namespace, "allhands")
    assert ct is not None
    assert ct["status"]["resolvedStorage"]["name"] == ready_storage
    # the event is posted right after the status that says so
    wait_for(lambda: any(e.reason == "DeletionBlocked" for e in client.CoreV1Api(kube_api)
                         .list_namespaced_event(namespace).items), 10, "DeletionBlocked event")
    # repointing the call type releases the storage, which then goes away
    custom.patch_namespaced_custom_object("callstorage.io", "v1alpha1", namespace, CT,
                                          "allhands", {"spec": {"externalStorage": "other"}})
    kubeutil.wait_object(kube_api, EXS, namespace, ready_storage, lambda o: o is None, 15,
                         "the storage to be deleted")
    storages.wait_ready(kube_api, CT, namespace, "allhands", "False", "StorageNotFound")


def test_unreferenced_storage_deletes_immediately(kube_api: Any, namespace: str,
                                                  ready_storage: str) -> None:
    obj = kubeutil.get_object(kube_api, EXS, namespace, ready_storage)
    assert obj is not None
    assert not obj["metadata"].get("finalizers")
    client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, ready_storage)
    kubeutil.wait_object(kube_api, EXS, namespace, ready_storage, lambda o: o is None, 5,
                         "the storage to be deleted")
