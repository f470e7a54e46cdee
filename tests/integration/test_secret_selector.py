"""``secretLabelSelector``: the operator's Secret watch (and its fallback reads) narrowed by
the API server; a Secret without the label is not seen, and the storage says so.

Against a control plane of its own with an audit log, so the test reads on the wire what
the operator asked for: every Secret request carries the selector.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import storages
from conftest import launch_operator
from paths import ROOT
from storages import EXS
from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.s3 import S3Server, readwrite_policy

pytestmark = pytest.mark.integration

SELECTOR = "callstorage.io/credentials=true"
OPERATOR_USER = "callstorage-operator"


def _label(api: Any, ns: str, name: str, value: str | None) -> None:
    client.CoreV1Api(api).patch_namespaced_secret(
        name, ns, {"metadata": {"labels": {"callstorage.io/credentials": value}}})


def _secret_requests(cp: ControlPlane) -> list[tuple[str, str]]:
    """(verb, query) of every request the operator made for Secrets."""
    assert cp.audit_log is not None
    seen = []
    for line in cp.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or \
                event.get("user", {}).get("username") != OPERATOR_USER or \
                (event.get("objectRef") or {}).get("resource") != "secrets":
            continue
        query = urllib.parse.urlsplit(event["requestURI"]).query
        seen.append((event["verb"], urllib.parse.unquote(query)))
    return seen


def test_unlabelled_secrets_are_not_seen(
    cluster: ControlPlane, s3_server: S3Server, tmp_path: Path, credential_values: set[str],
) -> None:
    api = cluster.api_client()
    kubeutil.apply_crds(api, ROOT / "crds")
    kubeutil.create_namespace(api, "callstorage-system")
    ns = "tenant"
    kubeutil.create_namespace(api, ns)
    bucket = "selector-bucket"
    s3_server.create_bucket(bucket)
    keys = s3_server.create_user("selector-user", readwrite_policy(bucket))
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    kubeutil.secret(api, ns, "creds", keys.as_secret_data())  # no label yet
    kubeutil.create_object(api, EXS, ns, storages.external_storage(
        "rec", storages.s3_storage_spec(bucket, s3_server.endpoint, "creds")))

    operator = launch_operator(cluster.user_kubeconfig(OPERATOR_USER), tmp_path / "log",
                               {"CALLSTORAGE_SECRET_LABEL_SELECTOR": SELECTOR},
                               "selector-operator")
    try:
        obj = storages.wait_ready(api, EXS, ns, "rec", "False", "SecretNotFound", timeout=30)
        message = storages.condition(obj)["message"]
        assert f"Secret {ns}/creds" in message
        assert f"not selected: this installation only reads Secrets labelled {SELECTOR}" \
            in message

        _label(api, ns, "creds", "true")  # the watch delivers it: validated without a poke
        storages.wait_ready(api, EXS, ns, "rec", "True", "Validated", timeout=30)

        _label(api, ns, "creds", None)  # leaves the selection: a deletion to the operator
        storages.wait_ready(api, EXS, ns, "rec", "False", "SecretNotFound", timeout=30)
    finally:
        operator.stop()
        api.close()

    requests = _secret_requests(cluster)
    assert any(verb == "watch" for verb, _ in requests), requests
    # every list, watch and read of Secrets was narrowed by the API server
    assert requests
    assert all(f"labelSelector={SELECTOR}" in query for _, query in requests), requests
    assert not [verb for verb, _ in requests if verb == "get"]
