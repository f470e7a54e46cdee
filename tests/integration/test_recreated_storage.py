"""A storage deleted and created again under its name while the operator still validates
the first one (GitOps tools delete and re-create): the new object shows only its own
result (issue 24, item 3). Every version of the new object's status is watched on the
real API server, so a result that lands for a moment is seen too.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client, watch

from callstorage.api import GROUP, VERSION
from callstorage.storagetypes.base import ENDPOINT_KEY
from testbed import kubeutil
from testbed.procs import wait_for
from testbed.s3 import S3Keys, S3Server
from testbed.tcpproxy import KillableProxy

EXS = "externalstorages"
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
            ready = kubeutil.condition(obj)
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
        kubeutil.create_object(kube_api, EXS, namespace, kubeutil.external_storage(
            "st", kubeutil.s3_storage_spec(bucket, proxy.endpoint, "creds")))
        wait_for(lambda: proxy.upstream_bytes > 0, 20,
                 "the first object's validation request reaching the bucket")
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, EXS, "st")
        wait_for(lambda: kubeutil.get_object(kube_api, EXS, namespace, "st") is None, 10,
                 "the first object gone")
        # same name, a bucket these keys cannot use: its own result is Ready=False
        second = kubeutil.create_object(kube_api, EXS, namespace, kubeutil.external_storage(
            "st", kubeutil.s3_storage_spec(f"missing-{namespace}", proxy.endpoint, "creds")))
        seen = ready_states(kube_api, namespace, "st", second["metadata"]["uid"],
                            second["metadata"]["resourceVersion"], within=45)
    assert ("True", "Validated") not in seen, \
        f"the re-created storage showed the first object's result: {seen}"
    assert seen, "no Ready condition within 45 s"
    assert seen[-1][0] == "False", f"no result of its own within 45 s: {seen}"
    obj = kubeutil.get_object(kube_api, EXS, namespace, "st")
    assert obj is not None
    assert obj["metadata"]["uid"] == second["metadata"]["uid"]
    assert kubeutil.condition(obj)["status"] == "False"
