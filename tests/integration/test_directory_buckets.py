"""Two tenants naming the same S3 directory bucket: each is validated with its own keys.

For a directory bucket (``*--x-s3``) botocore signs requests with session credentials it
gets from CreateSession and keeps per client, keyed by bucket name. Validations shared one
client per endpoint whatever the keys, so a second tenant naming the same bucket went out
with the first tenant's session and became Validated without its own keys ever being
used. Counted on the wire, at a stand-in for the zonal endpoint that checks every
signature and records whose keys (or whose session) signed each request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import storages
from callstorage.api import CHECK_ANNOTATION, GROUP, VERSION
from conftest import RunningOperator, leak_guarded_namespace
from storages import EXS
from testbed import kubeutil
from testbed.s3 import S3Keys
from testbed.s3express import S3ExpressStandIn

pytestmark = pytest.mark.integration

BUCKET = "media--use1-az4--x-s3"


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[S3ExpressStandIn]:
    server = S3ExpressStandIn(tmp_path, buckets={BUCKET})
    yield server
    server.stop()


@pytest.fixture
def other_namespace(kube_api: Any, namespace: str, credential_values: set[str],
                    running_operators: list[RunningOperator]) -> Iterator[str]:
    """A second tenant's namespace (with the same leak check as ``namespace``)."""
    with leak_guarded_namespace(kube_api, f"{namespace}-b", credential_values,
                                running_operators) as name:
        yield name


def _tenant_storage(api: Any, namespace: str, keys: S3Keys, url: str) -> None:
    """A WriteOnly storage of the directory bucket under ``namespace/``: its probe writes
    say on the wire which tenant they are for."""
    kubeutil.secret(api, namespace, "creds", keys.as_secret_data())
    kubeutil.create_object(api, EXS, namespace, storages.external_storage(
        "media", storages.s3_storage_spec(BUCKET, url, "creds", "WriteOnly", path=namespace)))


def _writes_for(stand_in: S3ExpressStandIn, namespace: str) -> list[Any]:
    return [s for s in stand_in.seen
            if s.operation == "PutObject" and s.path.startswith(f"/{BUCKET}/{namespace}/")]


def _new_user(stand_in: S3ExpressStandIn, credential_values: set[str]) -> S3Keys:
    keys = stand_in.user()
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    return keys


def test_each_tenant_signs_a_directory_bucket_with_its_own_session(
    operator: RunningOperator, kube_api: Any, namespace: str, other_namespace: str,
    stand_in: S3ExpressStandIn, credential_values: set[str],
) -> None:
    a, b = _new_user(stand_in, credential_values), _new_user(stand_in, credential_values)
    tenants = {namespace: a, other_namespace: b}
    for ns, keys in tenants.items():  # one after the other: A's session exists first
        _tenant_storage(kube_api, ns, keys, stand_in.url)
        storages.wait_ready(kube_api, EXS, ns, "media", "True", "Validated", timeout=30)
    # B's on-demand check object goes out with B's session too
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, other_namespace, EXS, "media",
        {"metadata": {"annotations": {CHECK_ANNOTATION: "now"}}})
    obj = kubeutil.wait_object(
        kube_api, EXS, other_namespace, "media",
        lambda o: ((o or {}).get("status", {}).get("lastCheck") or {}).get("requestedAt")
        == "now", 30, "the on-demand check")
    assert obj is not None
    assert obj["status"]["lastCheck"]["succeeded"] is True

    # Compared as counts and flags: key ids are credentials, kept out of test output.
    for ns, keys in tenants.items():
        writes = _writes_for(stand_in, ns)
        own = stand_in.sessions_of(keys.access_key_id)
        signed = {"writes": len(writes),
                  "as another tenant": sum(w.identity != keys.access_key_id for w in writes),
                  "not with its own session": sum(w.key_id not in own for w in writes),
                  "refused": sum(w.status != 200 for w in writes)}
        assert signed == {"writes": len(writes), "as another tenant": 0,
                          "not with its own session": 0, "refused": 0}, ns
        assert writes, ns
    asked = {s.key_id for s in stand_in.seen if s.operation == "CreateSession"}
    assert {"A": a.access_key_id in asked, "B": b.access_key_id in asked, "n": len(asked)} \
        == {"A": True, "B": True, "n": 2}  # each tenant asked for its own session


def test_a_tenant_without_access_does_not_borrow_another_session(
    operator: RunningOperator, kube_api: Any, namespace: str, other_namespace: str,
    stand_in: S3ExpressStandIn, credential_values: set[str],
) -> None:
    a, b = _new_user(stand_in, credential_values), _new_user(stand_in, credential_values)
    stand_in.denied.add(b.access_key_id)  # B's user may not use the bucket
    _tenant_storage(kube_api, namespace, a, stand_in.url)
    storages.wait_ready(kube_api, EXS, namespace, "media", "True", "Validated", timeout=30)
    _tenant_storage(kube_api, other_namespace, b, stand_in.url)
    obj = storages.wait_ready(kube_api, EXS, other_namespace, "media", "False",
                              "AccessDenied", timeout=30)
    assert storages.condition(obj, "Stalled")["status"] == "True"
    asked = [s.status for s in stand_in.seen
             if s.operation == "CreateSession" and s.key_id == b.access_key_id]
    assert asked
    assert set(asked) == {403}  # B asked with its own keys, and was refused
    assert len(_writes_for(stand_in, other_namespace)) == 0  # nothing went out as A
