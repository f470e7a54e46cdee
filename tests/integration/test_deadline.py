"""One tenant cannot stall validation for everyone (issue 24, item 2).

Tenant A's storages all point at an endpoint their Secret binds, which answers every
connection with one byte every 0.5 s for ever: no SDK read timeout ever fires. There are
more of them than provider threads. Tenant B's storage, on the S3 emulator, must still
go Ready in its usual time, and every connection the operator opened to A's endpoint must
close (as seen on the wire) within a second of its call's total deadline
(``CALLSTORAGE_PROVIDER_DEADLINE``): no provider thread outlives its deadline.

The operator runs against a control plane of its own, so no other operator (with the
default 60 s deadline) validates these storages.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import storages
from conftest import OPERATOR_NAMESPACE, launch_operator
from paths import ROOT
from storage_fixtures import TricklingListener
from storages import EXS
from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.procs import wait_for
from testbed.s3 import S3Server, readwrite_policy

pytestmark = pytest.mark.integration

WORKERS = 4  # A's endpoint host may borrow 3 of them; the 4th is kept for the others
DEADLINE = 3.0
STUCK = 6  # more of tenant A's storages than provider threads
USUAL = 10.0  # seconds a fresh storage on the emulator takes to go Ready, at most


def _ready(api: Any, namespace: str) -> dict[str, tuple[str, str]]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "callstorage.io", "v1alpha1", namespace, EXS)["items"]
    return {o["metadata"]["name"]: (storages.condition(o).get("status", ""),
                                    storages.condition(o).get("reason", ""))
            for o in items}


def test_a_trickling_endpoint_of_one_tenant_does_not_stall_another(
    cluster: ControlPlane, s3_server: S3Server, trickling_listener: TricklingListener,
    tmp_path: Path, credential_values: set[str],
) -> None:
    api = cluster.api_client()
    kubeutil.apply_crds(api, ROOT / "crds")
    kubeutil.create_namespace(api, OPERATOR_NAMESPACE)
    tenant_a, tenant_b = "tenant-a", "tenant-b"
    kubeutil.create_namespace(api, tenant_a)
    kubeutil.create_namespace(api, tenant_b)
    drip = trickling_listener.url()
    # A's Secret binds the trickling endpoint (any public host passes the policy)
    kubeutil.secret(api, tenant_a, "creds", {
        "accessKeyId": "AKIATRICKLE", "secretAccessKey": "trickle", "endpoint": drip})
    for i in range(STUCK):  # distinct buckets: no two share one request in flight
        kubeutil.create_object(api, EXS, tenant_a, storages.external_storage(
            f"drip-{i}", storages.s3_storage_spec(f"drip-{i}", drip, "creds")))

    operator = launch_operator(cluster.kubeconfig, tmp_path / "log", {
        "CALLSTORAGE_MAX_CONCURRENT_VALIDATIONS": str(WORKERS),
        "CALLSTORAGE_PROVIDER_DEADLINE": str(DEADLINE),
        "CALLSTORAGE_LOG_LEVEL": "INFO",
    }, "deadline-operator")
    try:
        # every one of A's storages has had its turn (and timed out) at least once: the
        # provider pool has been through rounds of A's calls, more than it has threads
        def all_timed_out() -> bool:
            states = _ready(api, tenant_a)
            return len(states) == STUCK and all(
                s == ("False", "Timeout") for s in states.values())
        wait_for(all_timed_out, 120, "every trickling storage to read Timeout",
                 alive=operator.server)

        bucket = "tenant-b-recordings"
        s3_server.create_bucket(bucket)
        keys = s3_server.create_user("tenant-b-user", readwrite_policy(bucket))
        credential_values.update({keys.access_key_id, keys.secret_access_key})
        kubeutil.secret(api, tenant_b, "creds",
                        {**keys.as_secret_data(), "endpoint": s3_server.endpoint})
        started = time.monotonic()
        kubeutil.create_object(api, EXS, tenant_b, storages.external_storage(
            "recordings", storages.s3_storage_spec(bucket, s3_server.endpoint, "creds")))
        storages.wait_ready(api, EXS, tenant_b, "recordings", "True", "Validated",
                            timeout=USUAL)
        print(f"\ntenant B's storage Ready in {time.monotonic() - started:.1f}s "
              f"(bound {USUAL:g}s) beside {STUCK} trickling storages of tenant A")

        # on the wire: each connection to A's endpoint closed within a second of its
        # call's deadline (a call's deadline runs from before it connects); A is retried
        wait_for(lambda: len(trickling_listener.connections()) >= 3 * STUCK, 60,
                 "tenant A's storages to be retried", alive=operator.server)
        now = time.monotonic()
        lifetimes = [(closed or now) - accepted
                     for accepted, closed in trickling_listener.connections()]
        assert max(lifetimes) < DEADLINE + 1, sorted(lifetimes)[-5:]
        stuck = kubeutil.get_object(api, EXS, tenant_a, "drip-0")
        ready = storages.condition(stuck)
        assert ready["reason"] == "Timeout"
        assert f"total deadline of {DEADLINE:g}s" in ready["message"]
        assert storages.condition(stuck, "Reconciling").get("status") == "True"  # retried
    finally:
        operator.stop()
        api.close()
