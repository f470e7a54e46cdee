"""The status contract as kstatus (the library Flux uses) computes it, and the readiness
defects of issue 10, against the real API server, the operator and the S3 emulator.

kstatus is the real sigs.k8s.io/cli-utils library, built by the test bed (testbed.kstatus);
nothing here restates its rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

import callstorage
import storages
from callstorage.api.readiness import readiness
from cases.readiness import CASES, Case
from storages import CT, EXS
from testbed import kstatus, kubeutil
from testbed.s3 import S3Keys, S3Server

pytestmark = pytest.mark.usefixtures("operator")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kstatus_agrees_with_the_table(case: Case) -> None:
    (computed,) = kstatus.compute([case.object])
    assert computed.status == case.kstatus, computed.message


def _kstatus_of(api: Any, plural: str, ns: str, name: str) -> str:
    obj = kubeutil.get_object(api, plural, ns, name)
    assert obj is not None
    return kstatus.compute([obj])[0].status


def _wait_kstatus(api: Any, plural: str, ns: str, name: str, want: str,
                  also: Callable[[dict[str, Any]], bool] = lambda o: True,
                  timeout: float = 20) -> dict[str, Any]:
    seen: list[str] = []

    def ok(obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        got = kstatus.compute([obj])[0].status
        seen.append(got)
        return got == want and also(obj)
    obj = kubeutil.wait_object(api, plural, ns, name, ok, timeout,
                               f"kstatus {want} for {plural} {ns}/{name} (seen {seen[-3:]})")
    assert obj is not None
    return obj


def _patch_spec(api: Any, ns: str, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", ns, EXS, name, {"spec": spec})


def test_phases_new_validating_retrying_ready_suspended_terminating(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
    hanging_port: int,
) -> None:
    kubeutil.secret(kube_api, namespace, "creds", {  # bound to both endpoints it will use
        **rw_keys.as_secret_data(),
        "endpoint": f"{s3_server.endpoint}, http://127.0.0.1:{hanging_port}"})
    # validating: an endpoint that never answers keeps the first validation under way;
    # the operator has already said so (Ready=Unknown) before its first network call
    kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
        "st", storages.s3_storage_spec(bucket, f"http://127.0.0.1:{hanging_port}", "creds")))
    obj = _wait_kstatus(kube_api, EXS, namespace, "st", "InProgress",
                        lambda o: storages.condition(o).get("reason") == "Validating")
    assert storages.condition(obj, "Reconciling").get("status") == "True"
    # retrying: a timeout may pass by itself, so it is InProgress, not Failed
    obj = storages.wait_ready(kube_api, EXS, namespace, "st", "False", "Timeout", timeout=30)
    assert kstatus.compute([obj])[0].status == "InProgress"
    assert storages.condition(obj, "Reconciling").get("reason") == "RetryScheduled"
    assert storages.condition(obj, "Stalled") == {}
    # ready
    _patch_spec(kube_api, namespace, "st", {"s3": {"endpoint": s3_server.endpoint}})
    storages.wait_ready(kube_api, EXS, namespace, "st", "True", "Validated", timeout=20)
    assert _kstatus_of(kube_api, EXS, namespace, "st") == "Current"
    # suspended: the last result holds for the new generation
    _patch_spec(kube_api, namespace, "st", {"suspend": True})
    obj = _wait_kstatus(kube_api, EXS, namespace, "st", "Current",
                        lambda o: storages.condition(o, "Suspended").get("status") == "True")
    assert readiness(obj).ready
    assert readiness(obj).health == "Suspended"
    # terminating: held by a CallType
    kubeutil.create_object(kube_api, CT, namespace, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
        "metadata": {"name": "ct"}, "spec": {"externalStorage": "st"}})
    kubeutil.wait_object(kube_api, EXS, namespace, "st",
                         lambda o: "ct" in ((o or {}).get("status") or {}).get("usedBy", []),
                         10, "usedBy ct")
    client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "st")
    _wait_kstatus(kube_api, EXS, namespace, "st", "Terminating")


def test_stalled_storage_and_its_call_type_are_failed(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    kubeutil.secret(kube_api, namespace, "bad", {"accessKeyId": rw_keys.access_key_id,
                                                 "secretAccessKey": "wrong-on-purpose",
                                                 "endpoint": s3_server.endpoint})
    kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
        "st", storages.s3_storage_spec(bucket, s3_server.endpoint, "bad")))
    kubeutil.create_object(kube_api, CT, namespace, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
        "metadata": {"name": "ct"}, "spec": {"externalStorage": "st"}})
    obj = _wait_kstatus(kube_api, EXS, namespace, "st", "Failed")
    stalled = storages.condition(obj, "Stalled")
    assert stalled["reason"] == storages.condition(obj)["reason"] == "InvalidCredentials"
    assert storages.condition(obj, "Reconciling") == {}
    ct = _wait_kstatus(kube_api, CT, namespace, "ct", "Failed")
    assert readiness(ct).health == "Degraded"


def test_call_type_created_with_its_storage_waits_without_a_warning(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    """Defect 9: waiting for a storage that is being validated is not a warning."""
    kubeutil.secret(kube_api, namespace, "creds", rw_keys.as_secret_data())
    kubeutil.create_object(kube_api, CT, namespace, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
        "metadata": {"name": "ct"}, "spec": {"externalStorage": "st"}})
    kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
        "st", storages.s3_storage_spec(bucket, s3_server.endpoint, "creds")))
    storages.wait_ready(kube_api, CT, namespace, "ct", "True", "StorageReady", timeout=20)
    events = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
    warnings = [f"{e.involved_object.kind}/{e.involved_object.name} {e.reason}: {e.message}"
                for e in events if e.type == "Warning"]
    assert warnings == []


def test_generation_bumps_without_validation_keep_one_answer(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    """Defect 3: toggling suspend and deleting (with the in-use finalizer) bump the
    generation without a new validation; every reader still sees the same Ready."""
    kubeutil.secret(kube_api, namespace, "creds", rw_keys.as_secret_data())
    kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
        "st", storages.s3_storage_spec(bucket, s3_server.endpoint, "creds")))
    kubeutil.create_object(kube_api, CT, namespace, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
        "metadata": {"name": "ct"}, "spec": {"externalStorage": "st"}})
    storages.wait_ready(kube_api, EXS, namespace, "st", "True", timeout=20)
    storages.wait_ready(kube_api, CT, namespace, "ct", "True", timeout=20)

    def agreed(obj: dict[str, Any] | None) -> bool:
        return obj is not None and \
            obj["status"].get("observedGeneration") == obj["metadata"]["generation"] and \
            readiness(obj).ready

    for step in ({"suspend": True}, {"suspend": False}):
        _patch_spec(kube_api, namespace, "st", step)
        obj = kubeutil.wait_object(kube_api, EXS, namespace, "st", agreed, 10,
                                   f"Ready for the generation after {step}")
        assert obj is not None
    client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "st")
    obj = kubeutil.wait_object(
        kube_api, EXS, namespace, "st",
        lambda o: agreed(o) and bool((o or {})["metadata"].get("deletionTimestamp")), 10,
        "Ready while held for deletion")
    assert obj is not None
    resolved = callstorage.resolve(namespace, "ct", api_client=kube_api, require_ready=True)
    assert resolved.name == "st"
    assert resolved.ready
    ct = storages.wait_ready(kube_api, CT, namespace, "ct", "True", "StorageReady")
    assert readiness(ct).ready
