"""The test bed is a real control plane: behaviour only a real kube-apiserver, etcd and
controller-manager show."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from testbed import kubeutil
from testbed.binaries import KUBERNETES_VERSION
from testbed.controlplane import ControlPlane
from testbed.procs import wait_for

GROUP, VERSION, EXS = "callstorage.io", "v1alpha1", "externalstorages"


def storage(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ExternalStorage",
            "metadata": {"name": name},
            "spec": {"storageType": "gcs", "bucket": "my-bucket",
                     "gcs": {"credentialsSecretRef": {"name": "gcs-creds"}}}}


def test_version_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.get("/version"))
    assert version["gitVersion"] == KUBERNETES_VERSION
    assert version["minor"] == KUBERNETES_VERSION.split(".")[1]


def test_schema_defaults_conflicts_and_status_subresource(kube_api: Any,
                                                          namespace: str) -> None:
    custom = client.CustomObjectsApi(kube_api)
    created = kubeutil.create_object(kube_api, EXS, namespace, storage("real"))
    # structural-schema defaulting happens in the API server, not in any client
    assert created["spec"]["accessMode"] == "ReadWrite"
    assert created["spec"]["validationInterval"] == "1h"

    stale = dict(created)
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, EXS, "real",
                                          {"spec": {"path": "moved"}})
    with pytest.raises(ApiException) as conflict:
        custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, EXS, "real", stale)
    assert conflict.value.status == 409

    current = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, EXS, "real")
    # a write to the status subresource ignores spec, even when the body carries one
    after = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, EXS, "real",
        {"spec": {"bucket": "changed-through-status"}, "status": {"usedBy": ["probe"]}})
    assert after["status"]["usedBy"] == ["probe"]
    assert after["spec"]["bucket"] == "my-bucket"
    assert after["metadata"]["generation"] == current["metadata"]["generation"]


def test_schema_rejects_bad_objects(kube_api: Any, namespace: str) -> None:
    bad = storage("bad")
    bad["spec"]["storageType"] = "ftp"
    with pytest.raises(ApiException) as rejected:
        kubeutil.create_object(kube_api, EXS, namespace, bad)
    assert rejected.value.status == 422


def test_namespaces_finish_deleting_and_owners_cascade(kube_api: Any, crds: list[str]) -> None:
    core = client.CoreV1Api(kube_api)
    ns = f"gc-{secrets.token_hex(3)}"
    kubeutil.create_namespace(kube_api, ns)
    owner = core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="owner")))
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(
        name="owned", owner_references=[client.V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)])))
    core.delete_namespaced_config_map("owner", ns)

    def owned_gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", ns)
            return False
        except ApiException as exc:
            return exc.status == 404
    wait_for(owned_gone, 30, "the garbage collector to delete the owned ConfigMap")

    kubeutil.delete_namespace(kube_api, ns)

    def ns_gone() -> bool:
        try:
            core.read_namespace(ns)
            return False
        except ApiException as exc:
            return exc.status == 404
    wait_for(ns_gone, 60, "the namespace controller to finish deleting the namespace")
