"""The pydantic models of callstorage.io/v1alpha1 against the CRD they mirror.

The admission table in tests/cases/admission.py runs here through the models, and in
tests/integration/test_admission.py through a real API server; both must agree per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from callstorage import api, storagespec
from callstorage.api import (
    CallTypeSpec,
    InvalidSpecError,
    KeyedSecretRef,
    Prefixes,
    SecretRef,
    TLSSpec,
    call_type_manifest,
    durations,
    names,
    parse_call_type,
    validate_name,
)
from callstorage.storagespec import (
    ABSSpec,
    ExternalStorageSpec,
    GCSSpec,
    S3Spec,
    external_storage_manifest,
    parse_external_storage,
)
from cases.admission import CASES, INVALID, VALID, Case, spec_field

CRDS = Path(__file__).resolve().parents[2] / "crds"


def load_schema(file: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / file).read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def parse(case: Case) -> Any:
    obj = case.manifest("tests")
    if case.kind == "ExternalStorage":
        return parse_external_storage(obj)
    return parse_call_type(obj)


def test_table_is_big_enough() -> None:
    assert len(INVALID) >= 45
    assert len({case.id for case in CASES}) == len(CASES), "row ids must be unique"


@pytest.mark.parametrize("case", VALID, ids=lambda case: case.id)
def test_valid_rows_parse(case: Case) -> None:
    spec = parse(case)
    wire = spec.to_dict()
    for dotted, value in case.defaults.items():
        assert spec_field(wire, dotted) == value, dotted


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case.id)
def test_invalid_rows_are_rejected_with_the_crd_message(case: Case) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse(case)
    assert case.path is not None
    assert case.error is not None
    lines = caught.value.problems
    assert any(case.path in line and case.error in line for line in lines), lines
    assert str(caught.value) == "\n".join(lines)


def test_error_lines_name_field_then_problem() -> None:
    obj = {"metadata": {"name": "stream-s3"}, "spec": {
        "storageType": "s3", "bucket": "Bad..Bucket", "s3": {"region": "us-east-1"},
        "gcs": {"credentialsSecretRef": {"name": "x"}}}}
    with pytest.raises(InvalidSpecError) as caught:
        parse_external_storage(obj)
    assert caught.value.problems == [
        "metadata.name: stream-s3 is reserved for the platform storage; "
        "choose another name",
        "spec.gcs: Forbidden: must not be set when storageType is s3; keep only the block "
        "that matches storageType",
        "spec.bucket: S3 bucket names may contain only lowercase letters, digits, dots and "
        "hyphens, and must start and end with a letter or digit",
        "spec.bucket: S3 bucket names must not contain two adjacent dots",
    ]
    assert "\n" not in caught.value.summary()
    assert isinstance(caught.value, ValueError)


def test_constants() -> None:
    assert api.GROUP == "callstorage.io"
    assert api.VERSION == "v1alpha1"
    assert api.EXTERNALSTORAGE_PLURAL == "externalstorages"
    assert api.CALLTYPE_PLURAL == "calltypes"
    assert api.RESERVED_STORAGE_NAME == "stream-s3"
    assert api.CHECK_ANNOTATION == "callstorage.io/check-requested-at"
    assert api.IN_USE_FINALIZER == "callstorage.io/in-use-protection"
    assert api.CATEGORIES == ("audio", "video", "transcript", "metadata")


def test_crd_names_match_constants() -> None:
    for file, plural, short in (("externalstorages.yaml", api.EXTERNALSTORAGE_PLURAL, "exs"),
                                ("calltypes.yaml", api.CALLTYPE_PLURAL, "ct")):
        crd = yaml.safe_load((CRDS / file).read_text())
        assert crd["spec"]["group"] == api.GROUP
        assert crd["spec"]["names"]["plural"] == plural
        assert crd["spec"]["names"]["shortNames"] == [short]
        assert crd["spec"]["names"]["categories"] == ["callstorage"]
        assert [v["name"] for v in crd["spec"]["versions"]] == [api.VERSION]


def _defaults(schema: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if "default" in prop:
            found[prefix + name] = prop["default"]
        found.update(_defaults(prop, f"{prefix}{name}."))
    return found


def test_model_defaults_match_crd_defaults() -> None:
    crd_defaults = _defaults(load_schema("externalstorages.yaml")["properties"]["spec"])
    assert crd_defaults == {
        "accessMode": "ReadWrite", "validationInterval": "1h", "suspend": False,
        "s3.forcePathStyle": False, "tls.caSecretRef.key": "ca.crt",
    }
    spec = ExternalStorageSpec(
        storage_type="s3", bucket="recordings",
        s3=S3Spec(region="us-east-1"),
        tls=TLSSpec(ca_secret_ref=KeyedSecretRef(name="ca")),
    ).to_dict()
    for dotted, value in crd_defaults.items():
        assert spec_field(spec, dotted) == value, dotted


def _schema_fields(schema: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    found = {}
    for name, prop in schema.get("properties", {}).items():
        found[f"{path}.{name}"] = prop
        found.update(_schema_fields(prop, f"{path}.{name}"))
    if isinstance(schema.get("items"), dict):
        found.update(_schema_fields(schema["items"], path))
    return found


@pytest.mark.parametrize("file", ["externalstorages.yaml", "calltypes.yaml"])
def test_every_crd_field_has_a_description(file: str) -> None:
    schema = load_schema(file)
    fields = _schema_fields(schema, "")
    missing = [path for path, prop in fields.items()
               if path != ".metadata" and not prop.get("description", "").strip()]
    assert not missing


def test_model_fields_mirror_the_spec_schema() -> None:
    spec = load_schema("externalstorages.yaml")["properties"]["spec"]["properties"]
    aliases = {f.alias for f in ExternalStorageSpec.model_fields.values()}
    assert aliases == set(spec)
    for block, model in (("s3", S3Spec), ("gcs", GCSSpec), ("abs", ABSSpec), ("tls", TLSSpec)):
        assert {f.alias for f in model.model_fields.values()} == set(spec[block]["properties"])
    # The Secret refs declare ``namespace`` only so that setting it is refused.
    ref = spec["s3"]["properties"]["credentialsSecretRef"]["properties"]
    assert {f.alias for f in SecretRef.model_fields.values()} == set(ref) - {"namespace"}
    ca = spec["tls"]["properties"]["caSecretRef"]["properties"]
    assert {f.alias for f in KeyedSecretRef.model_fields.values()} == set(ca) - {"namespace"}
    assert tuple(Prefixes.model_fields) == api.CATEGORIES
    calltype = load_schema("calltypes.yaml")["properties"]["spec"]["properties"]
    assert {f.alias for f in CallTypeSpec.model_fields.values()} == set(calltype)


def _rules(schema: dict[str, Any]) -> list[str]:
    rules = [rule["rule"] for rule in schema.get("x-kubernetes-validations", [])]
    for prop in schema.get("properties", {}).values():
        rules += _rules(prop)
    if isinstance(schema.get("additionalProperties"), dict):
        rules += _rules(schema["additionalProperties"])
    return rules


def test_crd_uses_the_same_patterns_as_the_models() -> None:
    rules = _rules(load_schema("externalstorages.yaml"))
    assert rules.count(f"self.matches(r'{names.HTTP_URL_PATTERN}')") == 4
    assert f"self.matches(r'{durations.DURATION_PATTERN}')" in rules


def test_enums_match_crd() -> None:
    spec = load_schema("externalstorages.yaml")["properties"]["spec"]["properties"]
    assert spec["storageType"]["enum"] == [t.value for t in storagespec.StorageType]
    assert spec["accessMode"]["enum"] == [m.value for m in api.AccessMode]


def test_helpers_of_a_parsed_spec() -> None:
    spec = parse_external_storage({"metadata": {"name": "s"}, "spec": {
        "storageType": "abs", "bucket": "recordings", "validationInterval": "1h30m",
        "abs": {"accountName": "acct", "credentialsSecretRef": {"name": "abs-creds"}},
        "tls": {"caSecretRef": {"name": "private-ca", "key": "bundle.pem"}}}})
    assert isinstance(spec.provider, ABSSpec)
    assert spec.credentials_secret_ref == SecretRef(name="abs-creds")
    assert spec.secret_names() == {"abs-creds", "private-ca"}
    assert spec.interval_seconds == 5400
    assert spec.access_mode == "ReadWrite"


def test_ambient_s3_references_no_secret() -> None:
    spec = ExternalStorageSpec(storage_type="s3", bucket="recordings",
                               s3=S3Spec(region="eu-west-1"), validation_interval="0")
    assert spec.credentials_secret_ref is None
    assert spec.secret_names() == set()
    assert spec.interval_seconds == 0


def test_models_build_by_field_name_and_dump_camel_case() -> None:
    spec = ExternalStorageSpec(
        storage_type="gcs", bucket="recordings", access_mode="WriteOnly",
        prefixes=Prefixes(audio="a"),
        gcs=GCSSpec(credentials_secret_ref=SecretRef(name="g"), endpoint="http://127.0.0.1:1"))
    wire = spec.to_dict()
    assert wire["storageType"] == "gcs"
    assert wire["gcs"] == {"credentialsSecretRef": {"name": "g"}, "endpoint": "http://127.0.0.1:1"}
    assert wire["prefixes"] == {"audio": "a"}
    assert ExternalStorageSpec.model_validate(wire) == spec


def test_direct_construction_enforces_cross_field_rules() -> None:
    with pytest.raises(ValidationError, match="must be set when storageType is s3"):
        ExternalStorageSpec(storage_type="s3", bucket="recordings")


def test_models_are_strict_about_json_types() -> None:
    with pytest.raises(InvalidSpecError, match="must be of type boolean"):
        parse_external_storage({"spec": {**_S3, "s3": {"region": "x", "forcePathStyle": "true"}}})


_S3: dict[str, Any] = {"storageType": "s3", "bucket": "recordings",
                       "s3": {"region": "us-east-1"}}


def test_validate_name() -> None:
    validate_name("stream-s3-archive")
    with pytest.raises(InvalidSpecError, match="reserved"):
        validate_name("stream-s3")


def test_call_type_spec() -> None:
    assert parse_call_type({"metadata": {"name": "default"}}).uses_platform_storage
    assert CallTypeSpec(external_storage="stream-s3").uses_platform_storage
    assert not CallTypeSpec(external_storage="my-s3").uses_platform_storage


def test_manifests() -> None:
    spec = ExternalStorageSpec.model_validate(_S3)
    obj = external_storage_manifest("recordings", "app-1", spec)
    assert obj["apiVersion"] == "callstorage.io/v1alpha1"
    assert obj["kind"] == "ExternalStorage"
    assert parse_external_storage(obj) == spec
    with pytest.raises(InvalidSpecError):
        external_storage_manifest("stream-s3", "app-1", spec)
    room = call_type_manifest("audio_room", "app-1", CallTypeSpec(external_storage="my-s3"))
    assert room["metadata"] == {"name": "audio-room", "namespace": "app-1",
                                "labels": {api.CALL_TYPE_LABEL: "audio_room"}}
    assert room["spec"] == {"externalStorage": "my-s3"}
    plain = call_type_manifest("livestream", "app-1", CallTypeSpec())
    assert plain["metadata"] == {"name": "livestream", "namespace": "app-1"}
    assert plain["spec"] == {}


def test_missing_spec() -> None:
    with pytest.raises(InvalidSpecError, match=r"^spec: Required value$"):
        parse_external_storage({"metadata": {"name": "x"}})


def test_parse_accepts_read_only_mappings() -> None:
    """kopf hands handlers mapping views, not dicts; strict models must still take them."""
    from types import MappingProxyType

    spec = MappingProxyType({**_S3, "s3": MappingProxyType({"region": "us-east-1"}),
                             "prefixes": MappingProxyType({"audio": "a"})})
    parsed = parse_external_storage(MappingProxyType({"spec": spec}))
    assert parsed.prefixes == Prefixes(audio="a")
    ct = parse_call_type(MappingProxyType({"spec": MappingProxyType({"externalStorage": "x"})}))
    assert ct.external_storage == "x"
