"""Credentials go only where their Secret says, checked on the wire against the real
operator and API server.

The confused deputy: a tenant who may edit ExternalStorages but not read Secrets points a
storage's endpoint (S3, GCS) or Azure authority at a listener of theirs on a loopback
address and names another storage's Secret. The listener must see zero connections, and
the storage says EndpointNotBound. A Secret that binds the listener's endpoint, written by
someone who may write Secrets, gets through: the listener counts, and loopback is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import storages
from callstorage.api import CHECK_ANNOTATION
from conftest import RunningOperator
from storage_fixtures import CountingListener
from storages import EXS
from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.s3 import S3Keys, S3Server

pytestmark = pytest.mark.integration



@pytest.fixture
def tenant(control_plane: ControlPlane, kube_api: Any, namespace: str) -> Any:
    """An API client for a user who may edit ExternalStorages of ``namespace`` (and read
    their status and events) but not read its Secrets."""
    user = f"tenant-{namespace}"
    rbac = client.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "storage-editor"},
        "rules": [{"apiGroups": ["callstorage.io"], "resources": ["externalstorages"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch"]},
                  {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "storage-editor"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "storage-editor"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": user}]})
    kubeconfig: Path = control_plane.user_kubeconfig(user, group="tenants")
    return control_plane.api_client(kubeconfig)


def _ready_false(api: Any, namespace: str, name: str, reason: str) -> dict[str, Any]:
    return storages.wait_ready(api, EXS, namespace, name, "False", reason, timeout=30)


def _check_fails(api: Any, namespace: str, name: str) -> dict[str, Any]:
    """Ask for an on-demand check as the tenant; it must fail without connecting."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, name,
        {"metadata": {"annotations": {CHECK_ANNOTATION: "deputy"}}})
    obj = kubeutil.wait_object(
        api, EXS, namespace, name,
        lambda o: ((o or {}).get("status", {}).get("lastCheck") or {}).get("requestedAt")
        == "deputy", 30, "the on-demand check")
    assert obj is not None
    return dict(obj["status"]["lastCheck"])


def test_s3_endpoint_pointed_elsewhere_sends_nothing(
    operator: RunningOperator, kube_api: Any, namespace: str, tenant: Any,
    listener: CountingListener, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    # The victim: a Ready storage whose Secret binds its keys to the emulator.
    kubeutil.secret(kube_api, namespace, "victim-creds", rw_keys.as_secret_data())
    kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
        "victim", storages.s3_storage_spec(bucket, s3_server.endpoint, "victim-creds")))
    storages.wait_ready(kube_api, EXS, namespace, "victim", "True", "Validated", timeout=30)
    with pytest.raises(ApiException) as denied:  # the premise: no access to the Secret
        client.CoreV1Api(tenant).read_namespaced_secret("victim-creds", namespace)
    assert denied.value.status == 403

    kubeutil.create_object(tenant, EXS, namespace, storages.external_storage(
        "deputy", storages.s3_storage_spec(bucket, listener.url(), "victim-creds")))
    obj = _ready_false(tenant, namespace, "deputy", "EndpointNotBound")
    message = storages.condition(obj)["message"]
    assert f"spec.s3.endpoint ({listener.url()})" in message
    assert "'endpoint'" in message
    assert storages.condition(obj, "Stalled")["reason"] == "EndpointNotBound"
    check = _check_fails(tenant, namespace, "deputy")
    assert check["succeeded"] is False
    assert "not bound" in check["message"]
    assert listener.connections == 0
    events = client.CoreV1Api(tenant).list_namespaced_event(
        namespace, field_selector="involvedObject.name=deputy").items
    assert any(e.reason == "EndpointNotBound" for e in events)

    # Editing an existing, Ready storage the same way: the same refusal.
    client.CustomObjectsApi(tenant).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "victim",
        {"spec": {"s3": {"endpoint": listener.url()}}})
    _ready_false(tenant, namespace, "victim", "EndpointNotBound")
    assert listener.connections == 0

    # Keys with no binding at all (AWS keys) go to AWS only.
    unbound = {k: v for k, v in rw_keys.as_secret_data().items() if k != "endpoint"}
    kubeutil.secret(kube_api, namespace, "aws-creds", unbound)
    kubeutil.create_object(tenant, EXS, namespace, storages.external_storage(
        "deputy-aws", storages.s3_storage_spec(bucket, listener.url(), "aws-creds")))
    _ready_false(tenant, namespace, "deputy-aws", "EndpointNotBound")
    assert listener.connections == 0

    # The control: a Secret that binds the listener (written by someone who may write
    # Secrets) is sent there, so the zeros above are the binding's doing.
    kubeutil.secret(kube_api, namespace, "bound-creds",
                    {**unbound, "endpoint": listener.url() + "/"})
    kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
        "bound", storages.s3_storage_spec(bucket, listener.url(), "bound-creds")))
    obj = kubeutil.wait_object(
        kube_api, EXS, namespace, "bound",
        lambda o: storages.condition(o).get("status") == "False", 30, "a failed attempt")
    assert storages.condition(obj)["reason"] != "EndpointNotBound"
    assert listener.connections > 0


def _gcs_key(token_uri: str) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "victim",
            "private_key_id": "victim-key-id-0001", "private_key": pem,
            "client_email": "victim@victim.iam.gserviceaccount.com", "token_uri": token_uri}


@pytest.mark.parametrize("target", ["endpoint", "token_uri"])
def test_gcs_endpoint_or_token_uri_elsewhere_sends_nothing(
    operator: RunningOperator, kube_api: Any, namespace: str, tenant: Any,
    listener: CountingListener, credential_values: set[str], target: str,
) -> None:
    info = _gcs_key("https://oauth2.googleapis.com/token")
    credential_values.add(info["private_key"].splitlines()[1])
    if target == "token_uri":
        # A key file whose token_uri another person could not set, but a pasted key may
        # carry: the parser-differential spelling of a Google host.
        info["token_uri"] = f"http://127.0.0.1:{listener.port}\\@oauth2.googleapis.com/token"
    kubeutil.secret(kube_api, namespace, "victim-gcs", {"credentials.json": json.dumps(info)})
    block: dict[str, Any] = {"credentialsSecretRef": {"name": "victim-gcs"}}
    if target == "endpoint":
        block["endpoint"] = listener.url()
    kubeutil.create_object(tenant, EXS, namespace, storages.external_storage(
        "deputy", {"storageType": "gcs", "bucket": "victim-bucket", "gcs": block}))
    obj = _ready_false(tenant, namespace, "deputy", "EndpointNotBound")
    field = "spec.gcs.endpoint" if target == "endpoint" else "token_uri"
    assert field in storages.condition(obj)["message"]
    assert listener.connections == 0


@pytest.mark.parametrize("target", ["authorityHost", "endpoint"])
def test_azure_authority_or_endpoint_elsewhere_sends_nothing(
    operator: RunningOperator, kube_api: Any, namespace: str, tenant: Any,
    listener: CountingListener, credential_values: set[str], target: str,
) -> None:
    principal = {"clientId": "00000000-0000-0000-0000-00000000c1d0",
                 "clientSecret": "victim-client-secret-value-0123456789",
                 "tenantId": "00000000-0000-0000-0000-0000000071d0"}
    credential_values.add(principal["clientSecret"])
    kubeutil.secret(kube_api, namespace, "victim-sp", principal)
    block: dict[str, Any] = {"accountName": "victimaccount",
                             "credentialsSecretRef": {"name": "victim-sp"}}
    block[target] = listener.url("https") + ("/victimaccount" if target == "endpoint" else "")
    kubeutil.create_object(tenant, EXS, namespace, storages.external_storage(
        "deputy", {"storageType": "abs", "bucket": "victim-container", "abs": block}))
    obj = _ready_false(tenant, namespace, "deputy", "EndpointNotBound")
    assert f"spec.abs.{target}" in storages.condition(obj)["message"]
    assert listener.connections == 0


@pytest.fixture
def listener(counting_listener: CountingListener) -> CountingListener:
    return counting_listener
