"""The leak guard every test namespace goes through (``credential_leaks`` in conftest)
finds a credential wherever it may leak: anywhere in an object (spec, status, metadata),
an event, an operator log; and reports where, never what."""

from __future__ import annotations

import secrets
from typing import Any

from kubernetes import client

import storages
from conftest import OPERATOR_NAMESPACE, RunningOperator, credential_leaks
from testbed import kubeutil


def test_the_guard_finds_a_credential_in_status_events_and_logs(
    kube_api: Any, namespace: str, operator: RunningOperator,
) -> None:
    fake = f"fake-credential-{secrets.token_hex(8)}"  # registered with this test only
    where = [namespace, OPERATOR_NAMESPACE]
    assert credential_leaks(kube_api, where, {fake}, [operator]) == {}

    # In an annotation: a status written by hand would not stay (the operator restores
    # the status it owns, issue 24), and the guard reads the whole object either way.
    body = storages.external_storage("leaky", storages.s3_storage_spec(
        "leaky-bucket", "http://127.0.0.1:9", None), annotations={"note": f"oops {fake}"})
    kubeutil.create_object(kube_api, "externalstorages", namespace, body)
    client.CoreV1Api(kube_api).create_namespaced_event(namespace, {
        "metadata": {"generateName": "leaky."},
        "involvedObject": {"kind": "ExternalStorage", "namespace": namespace, "name": "leaky"},
        "reason": "Oops", "message": f"the key is {fake}", "type": "Warning"})

    leaks = credential_leaks(kube_api, where, {fake}, [operator])
    assert leaks == {f"externalstorages in {namespace}": 1, f"events in {namespace}": 1}
    assert all(fake not in place for place in leaks)  # where, never what
