"""Admission against a real API server: the CRD schema and CEL rules, and the samples.

Every row of tests/cases/admission.py is sent to kube-apiserver with strict field
validation (what kubectl does by default) and parsed by the pydantic models; both must
accept or both must reject, with the row's message. The samples are applied with
``kubectl apply`` exactly as a user would, only moved into the test's namespace.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from callstorage.api import InvalidSpecError, parse_call_type
from callstorage.storagespec import parse_external_storage
from cases.admission import CASES, GROUP, VERSION, Case, spec_field
from paths import ROOT

pytestmark = pytest.mark.integration

SAMPLES = ROOT / "manifests" / "samples"


def model_problems(case: Case) -> list[str] | None:
    """The models' verdict on a row: None when accepted, else the problem lines."""
    obj = case.manifest("tests")
    try:
        if case.kind == "ExternalStorage":
            parse_external_storage(obj)
        else:
            parse_call_type(obj)
    except InvalidSpecError as error:
        return error.problems
    return None


def server_problems(error: ApiException) -> list[str]:
    """``<field>: <message>`` per cause of a rejection (or its message when it has none)."""
    status = json.loads(error.body)
    causes = (status.get("details") or {}).get("causes") or []
    if not causes:
        return [status["message"]]
    # Map values are reported as spec.prefixes[audio] by CEL but spec.prefixes.audio by
    # the schema (maxLength); the models always use the dotted form.
    return [re.sub(r"\[(\w+)\]", r".\1", f"{c.get('field')}: {c.get('message')}")
            for c in causes]


def mentions(lines: list[str], case: Case) -> bool:
    assert case.path is not None
    assert case.error is not None
    return any(case.path in line and case.error in line for line in lines)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_api_server_and_models_agree(case: Case, kube_api: Any, namespace: str) -> None:
    objects = client.CustomObjectsApi(kube_api)
    rejection: ApiException | None = None
    try:
        objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, case.plural, case.manifest(namespace),
            field_validation="Strict")
    except ApiException as error:
        if error.status not in (400, 422):
            raise
        rejection = error
    from_models = model_problems(case)

    if case.valid:
        assert rejection is None, server_problems(rejection)
        assert from_models is None, from_models
        stored = objects.get_namespaced_custom_object(
            GROUP, VERSION, namespace, case.plural, case.name)
        for dotted, value in case.defaults.items():
            assert spec_field(stored["spec"], dotted) == value, dotted
        return

    assert rejection is not None, f"the API server accepted {case.id}"
    assert rejection.status == case.status
    from_server = server_problems(rejection)
    assert mentions(from_server, case), from_server
    assert from_models is not None, f"the models accepted {case.id}"
    assert mentions(from_models, case), from_models


def test_server_side_defaults(kube_api: Any, namespace: str) -> None:
    objects = client.CustomObjectsApi(kube_api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ExternalStorage",
        "metadata": {"name": "defaults"},
        "spec": {"storageType": "s3", "bucket": "recordings", "s3": {"region": "us-east-1"},
                 "tls": {"caSecretRef": {"name": "ca"}}},
    }
    stored = objects.create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                     "externalstorages", body)
    assert stored["spec"] == {
        "storageType": "s3", "bucket": "recordings", "accessMode": "ReadWrite",
        "validationInterval": "1h", "suspend": False,
        "s3": {"region": "us-east-1", "forcePathStyle": False},
        "tls": {"caSecretRef": {"name": "ca", "key": "ca.crt"}},
    }
    calltype = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "calltypes",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CallType", "metadata": {"name": "x"}})
    assert calltype["spec"] == {}


def test_secret_ref_namespace_is_refused_by_kubectl_apply(kubectl: Any, namespace: str) -> None:
    """What a user sees when trying to read another tenant's Secret."""
    manifest = yaml.safe_dump({
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ExternalStorage",
        "metadata": {"name": "cross-namespace", "namespace": namespace},
        "spec": {"storageType": "s3", "bucket": "recordings", "s3": {
            "region": "us-east-1",
            "credentialsSecretRef": {"name": "creds", "namespace": "other-app"}}},
    })
    result = kubectl("apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert "spec.s3.credentialsSecretRef.namespace: Forbidden: Secrets are read from this " \
        "object's own namespace only" in result.stderr


def test_unknown_prefix_key_is_refused_even_without_strict_validation(
    kube_api: Any, namespace: str
) -> None:
    """A typo in a category must not be pruned silently (Helm does not ask for Strict)."""
    objects = client.CustomObjectsApi(kube_api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ExternalStorage",
        "metadata": {"name": "typo"},
        "spec": {"storageType": "s3", "bucket": "recordings", "s3": {"region": "us-east-1"},
                 "prefixes": {"trancript": "transcripts"}},
    }
    with pytest.raises(ApiException) as caught:
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "externalstorages",
                                                body, field_validation="Ignore")
    assert caught.value.status == 422
    assert "allowed keys are audio, video, transcript and metadata" in \
        json.loads(caught.value.body)["message"]


FULL_STATUS: dict[str, Any] = {
    "observedGeneration": 3,
    "conditions": [{
        "type": "Ready", "status": "False", "reason": "AccessDenied",
        "message": "HeadBucket on recordings returned 403", "observedGeneration": 3,
        "lastTransitionTime": "2025-03-01T12:00:00Z"}, {
        "type": "Stalled", "status": "True", "reason": "AccessDenied",
        "message": "HeadBucket on recordings returned 403", "observedGeneration": 3,
        "lastTransitionTime": "2025-03-01T12:00:00Z"}],
    "configuredAt": "2025-03-01T11:00:00Z",
    "lastValidatedAt": "2025-03-01T11:30:00Z",
    "nextValidationAt": "2025-03-01T12:01:00Z",
    "effectivePrefixes": {"audio": "recordings/audio", "video": "recordings/video",
                          "transcript": "base", "metadata": ""},
    "lastCheck": {"requestedAt": "2025-03-01T11:59:00Z", "completedAt": "2025-03-01T11:59:02Z",
                  "object": "base/stream-4f1c.md", "succeeded": True, "message": "uploaded"},
    "capabilities": {"write": True, "read": False, "list": False},
    "observedSecretVersion": "12345",
    "usedBy": ["allhands", "default"],
    "usedByCount": 2,
    "validatedSpecHash": "0123456789abcdef",
    "consecutiveFailures": 2,
}


def test_status_schema_keeps_everything_the_operator_writes(
    kube_api: Any, namespace: str
) -> None:
    objects = client.CustomObjectsApi(kube_api)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "externalstorages", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ExternalStorage",
        "metadata": {"name": "status"},
        "spec": {"storageType": "s3", "bucket": "recordings", "s3": {"region": "us-east-1"}}})
    stored = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "externalstorages", "status", {"status": FULL_STATUS})
    assert stored["status"] == FULL_STATUS  # nothing pruned

    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "calltypes", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CallType", "metadata": {"name": "ct"},
        "spec": {"externalStorage": "status"}})
    ct_status = {
        "observedGeneration": 1,
        "resolvedStorage": {
            "name": "status", "namespace": namespace, "source": "CallType",
            "storageType": "s3", "bucket": "recordings", "accessMode": "ReadWrite",
            "effectivePrefixes": FULL_STATUS["effectivePrefixes"]},
        "conditions": [{"type": "Ready", "status": "False", "reason": "StorageNotReady",
                        "message": "not ready", "observedGeneration": 1,
                        "lastTransitionTime": "2025-03-01T12:00:00Z"}],
    }
    stored = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "calltypes", "ct", {"status": ct_status})
    assert stored["status"] == ct_status


def test_status_schema_rejects_a_malformed_condition(kube_api: Any, namespace: str) -> None:
    objects = client.CustomObjectsApi(kube_api)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "calltypes", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CallType", "metadata": {"name": "ct"}})
    bad = {"conditions": [{"type": "Ready", "status": "Yes", "reason": "X", "message": "",
                           "lastTransitionTime": "2025-03-01T12:00:00Z"}]}
    with pytest.raises(ApiException) as caught:
        objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "calltypes", "ct", {"status": bad})
    assert caught.value.status == 422
    assert 'Unsupported value: "Yes"' in json.loads(caught.value.body)["message"]


# --- samples -------------------------------------------------------------------------


def sample_files() -> list[Path]:
    kustomization = yaml.safe_load((SAMPLES / "kustomization.yaml").read_text())
    return [SAMPLES / name for name in kustomization["resources"]]


def in_namespace(path: Path, namespace: str) -> str:
    """The sample's documents moved into ``namespace`` (the Namespace object dropped)."""
    docs = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc["kind"] == "Namespace":
            continue
        doc["metadata"]["namespace"] = namespace
        docs.append(doc)
    return yaml.safe_dump_all(docs)


def test_every_sample_applies(kubectl: Any, namespace: str) -> None:
    applied: list[tuple[str, str]] = []
    # Order as kustomize would: Secrets before the storages that reference them.
    order = {"Secret": 0, "ExternalStorage": 1, "CallType": 2}
    files = sorted(sample_files(), key=lambda p: min(
        (order.get(d["kind"], -1) for d in yaml.safe_load_all(p.read_text()) if d),
        default=-1))
    for path in files:
        manifest = in_namespace(path, namespace)
        if not manifest.strip():
            continue
        result = kubectl("apply", "-f", "-", input=manifest, check=False)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
        for doc in yaml.safe_load_all(manifest):
            applied.append((doc["kind"], doc["metadata"]["name"]))
    kinds = {kind for kind, _ in applied}
    assert kinds == {"Secret", "ExternalStorage", "CallType"}
    listed = kubectl("get", "exs,ct,secrets", "-n", namespace, "-o", "name").stdout.split()
    for kind, name in applied:
        resource = {"ExternalStorage": "externalstorage.callstorage.io",
                    "CallType": "calltype.callstorage.io", "Secret": "secret"}[kind]
        assert f"{resource}/{name}" in listed



# --- random values: the CEL rules and the Python rules must agree on every one ---------

def _server_accepts(kube_api: Any, namespace: str, spec: dict[str, Any]) -> bool:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ExternalStorage",
            "metadata": {"name": "random"}, "spec": spec}
    try:
        client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "externalstorages", body, dry_run="All",
            field_validation="Strict")
    except ApiException as error:
        if error.status != 422:
            raise
        return False
    return True


def _models_accept(spec: dict[str, Any]) -> bool:
    try:
        parse_external_storage({"metadata": {"name": "random"}, "spec": spec})
    except InvalidSpecError:
        return False
    return True


_RANDOM = settings(max_examples=150, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])
_BUCKET_ALPHABET = st.sampled_from([*"ab0-._Agxn", "goog", "google", "xn--", "-s3alias"])
_PATH_ALPHABET = st.sampled_from(list("a./\\é \x01\x7f\x85-_"))
_DURATION_ALPHABET = st.sampled_from(list("0123.59smh -du"))


@_RANDOM
@given(storage_type=st.sampled_from(["s3", "gcs", "abs"]),
       bucket=st.lists(_BUCKET_ALPHABET, min_size=1, max_size=30).map("".join))
def test_bucket_rules_agree(kube_api: Any, namespace: str, storage_type: str,
                            bucket: str) -> None:
    spec = {"s3": S3_BASE, "gcs": GCS_BASE, "abs": ABS_BASE}[storage_type] | {"bucket": bucket}
    assert _server_accepts(kube_api, namespace, spec) == _models_accept(spec), bucket


@_RANDOM
@given(path=st.text(_PATH_ALPHABET, max_size=12))
def test_path_rules_agree(kube_api: Any, namespace: str, path: str) -> None:
    spec = S3_BASE | {"path": path, "prefixes": {"audio": path}}
    assert _server_accepts(kube_api, namespace, spec) == _models_accept(spec), repr(path)


@_RANDOM
@given(interval=st.text(_DURATION_ALPHABET, min_size=1, max_size=10))
def test_duration_rules_agree(kube_api: Any, namespace: str, interval: str) -> None:
    spec = S3_BASE | {"validationInterval": interval}
    assert _server_accepts(kube_api, namespace, spec) == _models_accept(spec), interval


S3_BASE: dict[str, Any] = {"storageType": "s3", "bucket": "recordings",
                           "s3": {"region": "us-east-1"}}
GCS_BASE: dict[str, Any] = {"storageType": "gcs", "bucket": "recordings",
                            "gcs": {"credentialsSecretRef": {"name": "g"}}}
ABS_BASE: dict[str, Any] = {"storageType": "abs", "bucket": "recordings",
                            "abs": {"accountName": "acct", "credentialsSecretRef": {"name": "a"}}}
