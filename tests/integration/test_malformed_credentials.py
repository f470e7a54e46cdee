"""A Secret holding a malformed credential, through the real operator and API server.

The storage reads InvalidCredentials naming the Secret key, is Stalled (not Reconciling),
has no next attempt scheduled (it waits for the Secret), and is validated again as soon
as the Secret is fixed. Before, an S3 key id with a newline read EndpointUnreachable and a
GCS EC key EndpointUnreachable too: transient, retried forever, advice about the network.
The table over every provider and malformation is tests/unit/test_credential_parsing.py.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import storages
from storages import EXS
from testbed import kubeutil
from testbed.gcs import GCSServer
from testbed.s3 import S3Keys, S3Server

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("operator")]



def _stalled_waiting_for_the_secret(api: Any, namespace: str, key: str) -> dict[str, Any]:
    obj = storages.wait_ready(api, EXS, namespace, "media", "False", "InvalidCredentials",
                              timeout=30)
    ready = storages.condition(obj)
    assert f"key {key!r} of Secret creds" in ready["message"]
    assert storages.condition(obj, "Stalled")["status"] == "True"
    assert not storages.condition(obj, "Reconciling")  # nothing that may pass by itself
    assert "nextValidationAt" not in obj["status"]  # no retry: it waits for the Secret
    return obj


def test_s3_key_id_with_a_newline(kube_api: Any, namespace: str, s3_server: S3Server,
                                  bucket: str, rw_keys: S3Keys) -> None:
    good = rw_keys.as_secret_data()
    broken = {**good, "accessKeyId": good["accessKeyId"][:8] + "\n" + good["accessKeyId"][8:]}
    kubeutil.secret(kube_api, namespace, "creds", broken)
    kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
        "media", storages.s3_storage_spec(bucket, s3_server.endpoint, "creds")))
    obj = _stalled_waiting_for_the_secret(kube_api, namespace, "accessKeyId")
    assert obj["status"]["consecutiveFailures"] == 1

    kubeutil.secret(kube_api, namespace, "creds", good, replace=True)  # the fix
    storages.wait_ready(kube_api, EXS, namespace, "media", "True", "Validated", timeout=30)


def test_gcs_ec_key(kube_api: Any, namespace: str, gcs_server: GCSServer,
                    credential_values: set[str]) -> None:
    bucket = f"gcs-{secrets.token_hex(4)}"
    gcs_server.create_bucket(bucket)
    info = gcs_server.create_service_account(f"sa-{secrets.token_hex(3)}")
    gcs_server.grant(bucket, str(info["client_email"]), "admin")
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    credential_values.update({ec_key.splitlines()[1], str(info["private_key"]).splitlines()[1]})
    kubeutil.secret(kube_api, namespace, "creds", {
        "credentials.json": json.dumps({**info, "private_key": ec_key}),
        "endpoint": gcs_server.endpoint})
    kubeutil.create_object(kube_api, EXS, namespace, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "ExternalStorage",
        "metadata": {"name": "media"},
        "spec": {"storageType": "gcs", "bucket": bucket,
                 "gcs": {"endpoint": gcs_server.endpoint,
                         "credentialsSecretRef": {"name": "creds"}}}})
    _stalled_waiting_for_the_secret(kube_api, namespace, "credentials.json")

    kubeutil.secret(kube_api, namespace, "creds", {
        "credentials.json": json.dumps(info), "endpoint": gcs_server.endpoint}, replace=True)
    storages.wait_ready(kube_api, EXS, namespace, "media", "True", "Validated", timeout=30)
