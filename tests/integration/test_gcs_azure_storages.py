"""GCS and Azure ExternalStorages through the operator, against emulators that verify
credentials (RS256 service-account tokens; Azure SharedKey and Entra ID tokens over TLS
with a private CA given in ``spec.tls.caSecretRef``)."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

import storages
from callstorage.api import CHECK_ANNOTATION
from storages import EXS
from testbed import kubeutil
from testbed.azurite import AzuriteServer
from testbed.gcs import GCSServer

ACCOUNT = "callstorage1"
pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def gcs_bucket(gcs_server: GCSServer) -> str:
    name = f"gcs-{secrets.token_hex(4)}"
    gcs_server.create_bucket(name)
    return name


def gcs_credentials(gcs: GCSServer, bucket: str, role: str,
                    credential_values: set[str]) -> dict[str, str]:
    info = gcs.create_service_account(f"sa-{secrets.token_hex(3)}")
    gcs.grant(bucket, str(info["client_email"]), role)
    credential_values.add(str(info["private_key"]).splitlines()[1])
    # bound to the emulator, which also serves the key's token_uri
    return {"credentials.json": json.dumps(info), "endpoint": gcs.endpoint}


def gcs_spec(bucket: str, endpoint: str, **kw: Any) -> dict[str, Any]:
    return {"storageType": "gcs", "bucket": bucket,
            "gcs": {"endpoint": endpoint, "credentialsSecretRef": {"name": "creds"}}, **kw}


def test_gcs_ready_then_rotated_to_a_wrong_key(
    kube_api: Any, namespace: str, gcs_server: GCSServer, gcs_bucket: str,
    credential_values: set[str],
) -> None:
    good = gcs_credentials(gcs_server, gcs_bucket, "admin", credential_values)
    kubeutil.secret(kube_api, namespace, "creds", good)
    storages.create_storage(kube_api, namespace, "gcs", gcs_spec(gcs_bucket, gcs_server.endpoint))
    storages.wait_ready(kube_api, EXS, namespace, "gcs", "True", "Validated", timeout=10)
    # same account, a key it does not have: the token endpoint refuses the JWT
    info = json.loads(good["credentials.json"])
    other = gcs_server.create_service_account(f"x-{secrets.token_hex(3)}")
    info["private_key"] = other["private_key"]
    credential_values.add(str(other["private_key"]).splitlines()[1])
    kubeutil.secret(kube_api, namespace, "creds", {**good, "credentials.json": json.dumps(info)},
                    replace=True)
    storages.wait_ready(kube_api, EXS, namespace, "gcs", "False", "InvalidCredentials",
                        timeout=10)


def test_gcs_write_only_object_creator(
    kube_api: Any, namespace: str, gcs_server: GCSServer, gcs_bucket: str,
    credential_values: set[str],
) -> None:
    creds = gcs_credentials(gcs_server, gcs_bucket, "objectCreator", credential_values)
    kubeutil.secret(kube_api, namespace, "creds", creds)
    storages.create_storage(kube_api, namespace, "wo", gcs_spec(
        gcs_bucket, gcs_server.endpoint, accessMode="WriteOnly", path="calls",
        prefixes={"audio": "audio"}))
    storages.wait_ready(kube_api, EXS, namespace, "wo", "True", "Validated", timeout=10)
    names = gcs_server.list_objects(gcs_bucket)
    assert any(n.startswith("calls/.write_probe_") for n in names)
    assert any(n.startswith("audio/.write_probe_") for n in names)
    storages.create_storage(kube_api, namespace, "rw", gcs_spec(gcs_bucket, gcs_server.endpoint))
    storages.wait_ready(kube_api, EXS, namespace, "rw", "False", "AccessDenied")


@pytest.fixture
def container(azurite: AzuriteServer) -> str:
    name = f"c-{secrets.token_hex(4)}"
    azurite.create_container(ACCOUNT, name)
    return name


def abs_spec(container: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    block = {"accountName": ACCOUNT, "endpoint": endpoint,
             "credentialsSecretRef": {"name": "creds"}, **extra}
    return {"storageType": "abs", "bucket": container, "abs": block,
            "tls": {"caSecretRef": {"name": "ca", "key": "ca.crt"}}}


def test_azure_account_key_with_private_ca_and_check(
    kube_api: Any, namespace: str, azurite: AzuriteServer, container: str,
    credential_values: set[str],
) -> None:
    key = azurite.key_for(ACCOUNT)
    credential_values.add(key)
    kubeutil.secret(kube_api, namespace, "creds", azurite.secret_data(ACCOUNT))
    kubeutil.secret(kube_api, namespace, "ca", {"ca.crt": azurite.ca_pem.decode()})
    storages.create_storage(kube_api, namespace, "abs",
                            abs_spec(container, azurite.endpoint_for(ACCOUNT)))
    storages.wait_ready(kube_api, EXS, namespace, "abs", "True", "Validated", timeout=10)
    from kubernetes import client

    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS, "abs",
        {"metadata": {"annotations": {CHECK_ANNOTATION: "1"}}})
    obj = kubeutil.wait_object(
        kube_api, EXS, namespace, "abs",
        lambda o: ((o or {}).get("status", {}).get("lastCheck") or {}).get("requestedAt")
        == "1", 10, "the check")
    assert obj is not None
    assert obj["status"]["lastCheck"]["succeeded"] is True
    assert any(b.startswith("stream-") for b in azurite.list_blobs(ACCOUNT, container))


def test_azure_wrong_key_and_missing_ca_key(
    kube_api: Any, namespace: str, azurite: AzuriteServer, container: str,
) -> None:
    kubeutil.secret(kube_api, namespace, "creds", {**azurite.secret_data(ACCOUNT),
                                                   "accountKey": "d3Jvbmcta2V5LXZhbHVl"})
    kubeutil.secret(kube_api, namespace, "ca", {"ca.crt": azurite.ca_pem.decode()})
    storages.create_storage(kube_api, namespace, "bad",
                            abs_spec(container, azurite.endpoint_for(ACCOUNT)))
    storages.wait_ready(kube_api, EXS, namespace, "bad", "False", "InvalidCredentials")
    kubeutil.secret(kube_api, namespace, "ca", {"other.crt": "x"}, replace=True)
    storages.wait_ready(kube_api, EXS, namespace, "bad", "False", "SecretKeyMissing",
                        timeout=10)


def test_azure_service_principal(
    kube_api: Any, namespace: str, azurite: AzuriteServer, container: str,
    credential_values: set[str],
) -> None:
    sp = azurite.create_service_principal()
    credential_values.add(sp.client_secret)
    kubeutil.secret(kube_api, namespace, "creds", sp.as_secret_data())
    kubeutil.secret(kube_api, namespace, "ca", {"ca.crt": azurite.ca_pem.decode()})
    storages.create_storage(kube_api, namespace, "sp", abs_spec(
        container, azurite.endpoint_for(ACCOUNT, oauth=True),
        authorityHost=azurite.entra.authority))
    storages.wait_ready(kube_api, EXS, namespace, "sp", "True", "Validated", timeout=15)
