"""manifests/samples: complete, valid for the models, and consistent with each other.

tests/integration/test_admission.py applies them to a real API server; this checks what
the API server cannot: that every reference resolves and every provider is shown.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from callstorage.api import (
    CALL_TYPE_LABEL,
    RESERVED_STORAGE_NAME,
    call_type_object_name,
    parse_call_type,
)
from callstorage.storagespec import parse_external_storage
from callstorage.storagetypes import PROVIDERS
from callstorage.storagetypes.base import AUTHORITY_HOST_KEY, ENDPOINT_KEY, TOKEN_URI_KEY

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
DEMO_NAMESPACE = "callstorage-demo"
PLATFORM_NAMESPACE = "callstorage-system"
BUILT_IN_CALL_TYPES = {"default", "livestream", "audio_room", "development"}


def load() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((SAMPLES / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"]
            for doc in yaml.safe_load_all((SAMPLES / name).read_text()) if doc]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in load() if doc["kind"] == kind]


def test_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load((SAMPLES / "kustomization.yaml").read_text())
    on_disk = {p.name for p in SAMPLES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(on_disk)


def test_one_object_per_file() -> None:
    for path in SAMPLES.glob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert len([d for d in yaml.safe_load_all(path.read_text()) if d]) == 1, path.name


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(SAMPLES)], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert len([d for d in yaml.safe_load_all(out) if d]) == len(load())


def test_namespaces() -> None:
    assert [d["metadata"]["name"] for d in of_kind("Namespace")] == [DEMO_NAMESPACE]
    for doc in load():
        if doc["kind"] == "Namespace":
            continue
        expected = PLATFORM_NAMESPACE if doc["metadata"]["name"].startswith("platform-") \
            else DEMO_NAMESPACE
        assert doc["metadata"]["namespace"] == expected, doc["metadata"]["name"]


def test_storages_parse_and_cover_every_provider_and_mode() -> None:
    shapes = set()
    for doc in of_kind("ExternalStorage"):
        spec = parse_external_storage(doc)
        if doc["metadata"]["namespace"] == DEMO_NAMESPACE:
            ref = spec.credentials_secret_ref
            auth = "sp" if spec.abs and ref and "principal" in ref.name else "key"
            shapes.add((spec.storage_type, spec.access_mode, auth))
    assert {("s3", "ReadWrite", "key"), ("s3", "WriteOnly", "key"), ("gcs", "ReadWrite", "key"),
            ("abs", "ReadWrite", "key"), ("abs", "WriteOnly", "sp")} <= shapes


BINDING_KEYS = {ENDPOINT_KEY, AUTHORITY_HOST_KEY, TOKEN_URI_KEY}
SECRET_KEYS = {
    "s3": [{"accessKeyId", "secretAccessKey"}],
    "gcs": [{"credentials.json"}],
    "abs": [{"accountKey"}, {"clientId", "clientSecret", "tenantId"}],
}


def test_every_referenced_secret_is_a_sample_with_the_right_keys() -> None:
    secrets = {(d["metadata"]["namespace"], d["metadata"]["name"]): d
               for d in of_kind("Secret")}
    for doc in of_kind("ExternalStorage"):
        spec = parse_external_storage(doc)
        namespace = doc["metadata"]["namespace"]
        for name in spec.secret_names():
            assert (namespace, name) in secrets, f"{namespace}/{name} has no sample"
        ref = spec.credentials_secret_ref
        assert ref is not None
        data = secrets[(namespace, ref.name)]["stringData"]
        keys = set(data) - BINDING_KEYS
        assert keys in SECRET_KEYS[spec.storage_type], (ref.name, keys)
        # the Secret binds every custom endpoint its storage names (else EndpointNotBound)
        raw = {k: str(v).encode() for k, v in data.items()}
        assert PROVIDERS[spec.storage_type].unbound(spec.provider, raw, ref.name) is None


def test_secrets_use_string_data_with_marked_placeholders() -> None:
    for doc in of_kind("Secret"):
        assert "data" not in doc
        values = doc["stringData"].values()
        assert any("REPLACE" in value for value in values), doc["metadata"]["name"]


def test_call_types_cover_the_built_in_types_and_resolve() -> None:
    storages = {d["metadata"]["name"] for d in of_kind("ExternalStorage")
                if d["metadata"]["namespace"] == DEMO_NAMESPACE}
    seen = set()
    for doc in of_kind("CallType"):
        metadata = doc["metadata"]
        call_type = (metadata.get("labels") or {}).get(CALL_TYPE_LABEL, metadata["name"])
        assert metadata["name"] == call_type_object_name(call_type)
        seen.add(call_type)
        spec = parse_call_type(doc)
        assert spec.external_storage in storages | {RESERVED_STORAGE_NAME, None}
    assert seen == BUILT_IN_CALL_TYPES


def test_platform_storage_sample() -> None:
    [platform] = [d for d in of_kind("ExternalStorage")
                  if d["metadata"]["namespace"] == PLATFORM_NAMESPACE]
    assert platform["metadata"]["name"] == "platform-default"  # the settings' default
