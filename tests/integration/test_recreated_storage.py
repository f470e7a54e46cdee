"""A storage deleted and created again under its name while the operator still validates
the first one (GitOps tools delete and re-create): the new object shows only its own
result (issue 24, item 3). Every version of the new object's status is watched on the
real API server, so a result that lands for a moment is seen too; the status write itself
is checked to land on its own object or nowhere.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client, watch

import storages
from callstorage.api import GROUP, VERSION
from callstorage.apiserver import ApiServer, _from_kubeconfig
from callstorage.kube import Kube, ObjectGone
from callstorage.storagetypes.base import ENDPOINT_KEY
from storages import EXS
from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.procs import wait_for
from testbed.s3 import S3Keys, S3Server
from testbed.tcpproxy import KillableProxy

pytestmark = pytest.mark.usefixtures("operator")
# Every answer of the bucket comes this late: the first object's validation is still in
# flight when it is deleted and created again (below the operator's 3 s read timeout of
# the tests, so the slow answer is a success, not a Timeout).
ANSWER_DELAY = 2.0


def ready_states(api: Any, namespace: str, name: str, uid: str, since: str,
                 within: float) -> list[tuple[str, str]]:
    """(status, reason) of Ready in every version of object ``uid`` from ``since`` on,
    until it shows a final Ready (True, or False for a reason of its own) or ``within``
    seconds pass."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + within
    custom = client.CustomObjectsApi(api)
    stream = watch.Watch()
    while time.monotonic() < deadline:
        for event in stream.stream(
                custom.list_namespaced_custom_object, GROUP, VERSION, namespace, EXS,
                field_selector=f"metadata.name={name}", resource_version=since,
                timeout_seconds=max(1, int(deadline - time.monotonic()))):
            obj = event["object"]
            since = obj["metadata"]["resourceVersion"]
            if obj["metadata"]["uid"] != uid:
                continue
            ready = storages.condition(obj)
            if not ready:
                continue
            seen.append((ready["status"], ready["reason"]))
            if ready["status"] == "True" or ready["status"] == "False":
                stream.stop()
                return seen
    return seen


def test_a_storage_recreated_while_validated_gets_its_own_result_only(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, rw_keys: S3Keys,
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    upstream = int(s3_server.endpoint.rsplit(":", 1)[1])
    with KillableProxy(upstream) as proxy:
        kubeutil.secret(kube_api, namespace, "creds",
                        {**rw_keys.as_secret_data(), ENDPOINT_KEY: proxy.endpoint})
        proxy.response_delay = ANSWER_DELAY
        kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
            "st", storages.s3_storage_spec(bucket, proxy.endpoint, "creds")))
        wait_for(lambda: proxy.upstream_bytes > 0, 20,
                 "the first object's validation request reaching the bucket")
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, EXS, "st")
        wait_for(lambda: kubeutil.get_object(kube_api, EXS, namespace, "st") is None, 10,
                 "the first object gone")
        # same name, a bucket these keys cannot use: its own result is Ready=False
        second = kubeutil.create_object(kube_api, EXS, namespace, storages.external_storage(
            "st", storages.s3_storage_spec(f"missing-{namespace}", proxy.endpoint, "creds")))
        seen = ready_states(kube_api, namespace, "st", second["metadata"]["uid"],
                            second["metadata"]["resourceVersion"], within=45)
    assert ("True", "Validated") not in seen, \
        f"the re-created storage showed the first object's result: {seen}"
    assert seen, "no Ready condition within 45 s"
    assert seen[-1][0] == "False", f"no result of its own within 45 s: {seen}"
    obj = kubeutil.get_object(kube_api, EXS, namespace, "st")
    assert obj is not None
    assert obj["metadata"]["uid"] == second["metadata"]["uid"]
    assert storages.condition(obj)["status"] == "False"


async def test_a_status_write_lands_on_its_object_or_nowhere(
    control_plane: ControlPlane, kube_api: Any, namespace: str,
) -> None:
    """``Kube.write_status`` names the object's uid: written to a successor of the same
    name, it fails as ``ObjectGone`` and leaves the successor's status alone (a merge
    patch naming ``metadata.uid`` would not: the status subresource ignores it)."""
    custom = client.CustomObjectsApi(kube_api)
    spec = storages.s3_storage_spec("bucket-one", "http://127.0.0.1:1", "creds")
    first = kubeutil.create_object(kube_api, EXS, namespace,
                                   storages.external_storage("st", spec))
    kube = Kube(ApiServer(loader=lambda: _from_kubeconfig([control_plane.kubeconfig], False)))
    try:
        written = await kube.write_status(EXS, namespace, "st", first["metadata"]["uid"],
                                          {"observedGeneration": 1})
        assert written["status"] == {"observedGeneration": 1}
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, EXS, "st")
        with pytest.raises(ObjectGone):  # nothing under the name
            await kube.write_status(EXS, namespace, "st", first["metadata"]["uid"],
                                    {"observedGeneration": 2})
        second = kubeutil.create_object(kube_api, EXS, namespace,
                                        storages.external_storage("st", spec))
        with pytest.raises(ObjectGone) as gone:  # another object under the name
            await kube.write_status(EXS, namespace, "st", first["metadata"]["uid"],
                                    {"observedGeneration": 3, "usedByCount": 99})
        assert gone.value.uid == first["metadata"]["uid"]
        now = kubeutil.get_object(kube_api, EXS, namespace, "st")
        assert now is not None
        assert now["metadata"]["uid"] == second["metadata"]["uid"]
        # (the test run's operator writes the second one's own status meanwhile)
        assert (now.get("status") or {}).get("usedByCount") != 99
        assert (now.get("status") or {}).get("observedGeneration") != 3
    finally:
        await kube.aclose()
