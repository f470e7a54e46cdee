"""The storage-type registry: one descriptor per provider, held against the CRD, and the
layering that keeps cloud SDKs out of everything that does not build a client."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from callstorage import storagespec
from callstorage.providers import BUILDERS
from callstorage.reconcile import plan
from callstorage.storagespec import ExternalStorageSpecFields
from callstorage.storagetypes import PROVIDERS
from paths import ROOT

PACKAGE = ROOT / "operator" / "callstorage"
SDKS = ("boto3", "botocore", "google.cloud", "google.api_core", "azure")


def _spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / "externalstorages.yaml").read_text())
    spec: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["spec"]
    return spec


def test_registry_is_the_crds_storage_type_enum_in_order() -> None:
    assert _spec_schema()["properties"]["storageType"]["enum"] == list(PROVIDERS)
    assert [t.value for t in storagespec.StorageType] == list(PROVIDERS)


def test_every_provider_block_of_the_crd_is_a_registered_storage_type() -> None:
    spec = _spec_schema()
    common = {f.alias for f in ExternalStorageSpecFields.model_fields.values()}
    blocks = set(spec["properties"]) - common
    assert blocks == set(PROVIDERS)
    for name, provider in PROVIDERS.items():
        schema = spec["properties"][name]["properties"]
        assert {f.alias for f in provider.spec_model.model_fields.values()} == set(schema)
        assert set(provider.secret_ref_fields) <= set(schema), name
        # the CRD's "exactly the matching block" rules name every registered block
        rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
        assert f"self.storageType != '{name}' || has(self.{name})" in rules
        assert f"self.storageType == '{name}' || !has(self.{name})" in rules


def test_consumers_loop_over_the_registry() -> None:
    assert set(BUILDERS) == set(PROVIDERS)
    assert set(storagespec.ExternalStorageSpec.model_fields) >= set(PROVIDERS)
    for name, provider in PROVIDERS.items():
        assert provider.name == name
        assert provider.client_module.startswith("callstorage.")
        obj = {"metadata": {"namespace": "app"}, "spec": {
            name: {field: {"name": f"{name}-{field}"} for field in provider.secret_ref_fields}}}
        assert plan.secret_refs(obj) == {
            ("app", f"{name}-{field}") for field in provider.secret_ref_fields}


def _imports(path: Path, *, import_time_only: bool) -> set[str]:
    """Modules ``path`` imports; with ``import_time_only``, only those its import runs
    (not inside functions, not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    if import_time_only:
        nodes: list[ast.AST] = []
        todo: list[ast.stmt] = list(tree.body)
        while todo:
            node = todo.pop()
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            nodes.append(node)
            if isinstance(node, ast.If | ast.Try | ast.ClassDef | ast.With):
                todo += [n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)]
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", ["api", "reconcile"])
def test_pure_layers_import_neither_providers_nor_sdks(package: str) -> None:
    for path in sorted((PACKAGE / package).glob("*.py")):
        bad = {m for m in _imports(path, import_time_only=False)
               if m.startswith("callstorage.providers") or m.startswith(SDKS)}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_storage_types_load_no_client_code_when_imported() -> None:
    # A storage type's client is imported when the first client is built, never before.
    for path in sorted((PACKAGE / "storagetypes").glob("*.py")):
        bad = {m for m in _imports(path, import_time_only=True)
               if m.startswith("callstorage.providers") or m.startswith(SDKS)}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)} at import time"


@pytest.mark.parametrize("module", [
    "callstorage.api", "callstorage.reconcile", "callstorage.reconcile.externalstorage",
    "callstorage.reconcile.calltype", "callstorage.storagetypes", "callstorage.policy",
    "callstorage.providers"])
def test_importing_loads_no_cloud_sdk(module: str) -> None:
    # -X importtime lists every module a fresh interpreter loads, on stderr.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, timeout=120, check=True,
        env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"})
    loaded = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
              if line.startswith("import time:")}
    assert module in loaded or module.split(".")[0] in loaded
    sdk = sorted(m for m in loaded if m == "google" or m.startswith(SDKS))
    assert sdk == []


def test_building_a_client_loads_only_its_own_sdk() -> None:
    code = ("import sys\n"
            "from callstorage.providers import build_client\n"
            "from callstorage.storagespec import parse_external_storage\n"
            "from callstorage.providers.base import ProviderInputs\n"
            "from callstorage.settings import Settings\n"
            "spec = parse_external_storage({'spec': {'storageType': 's3', 'bucket': 'rec',"
            " 's3': {'region': 'us-east-1', 'credentialsSecretRef': {'name': 'c'}}}})\n"
            "build_client(spec, ProviderInputs({'accessKeyId': b'AKIAEXAMPLE0000',"
            " 'secretAccessKey': b'x' * 40}), Settings()).close()\n"
            "print(sorted({m.split('.')[0] for m in sys.modules"
            " if m.startswith(('boto3', 'azure', 'google.cloud'))}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True,
                            env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "['boto3']"


def _minimal_spec(name: str) -> dict[str, Any]:
    return {"storageType": name, "bucket": "recordings",
            name: dict(PROVIDERS[name].example_block)}


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_each_example_block_is_valid_and_names_its_secrets(name: str) -> None:
    from callstorage.storagespec import parse_external_storage

    spec = parse_external_storage({"spec": _minimal_spec(name)})
    assert isinstance(spec.provider, PROVIDERS[name].spec_model)
    assert PROVIDERS[name].secret_names(dict(PROVIDERS[name].example_block))


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_a_client_asks_for_the_secret_keys_its_descriptor_names(name: str) -> None:
    from callstorage.providers import build_client
    from callstorage.providers.base import ProviderError, ProviderInputs, Reason
    from callstorage.settings import Settings
    from callstorage.storagespec import parse_external_storage

    spec = parse_external_storage({"spec": _minimal_spec(name)})
    with pytest.raises(ProviderError) as info:
        build_client(spec, ProviderInputs(secret={}), Settings())
    assert info.value.reason is Reason.SECRET_KEY_MISSING
    named = [key for key in PROVIDERS[name].secret_keys if repr(key) in info.value.message]
    assert named, info.value.message


@pytest.mark.parametrize(("name", "block", "endpoint", "account", "url"), [
    ("s3", {"region": "eu-west-1"}, None, None, "s3://rec/a/b.wav"),
    ("s3", {"region": "eu-west-1", "endpoint": "http://127.0.0.1:9000/"},
     "http://127.0.0.1:9000", None, "s3://rec/a/b.wav"),
    ("gcs", {}, None, None, "gs://rec/a/b.wav"),
    ("abs", {"accountName": "acct1"}, "https://acct1.blob.core.windows.net", "acct1",
     "https://acct1.blob.core.windows.net/rec/a/b.wav"),
    ("abs", {"accountName": "acct1", "endpoint": "http://127.0.0.1:10000/acct1"},
     "http://127.0.0.1:10000/acct1", "acct1", "http://127.0.0.1:10000/acct1/rec/a/b.wav"),
])
def test_the_descriptor_says_where_a_block_sends_and_names_its_objects(
        name: str, block: dict[str, Any], endpoint: str | None, account: str | None,
        url: str) -> None:
    provider = PROVIDERS[name]
    parsed = provider.spec_model.model_validate(
        {**block, "credentialsSecretRef": {"name": "c"}})
    assert provider.endpoint_url(parsed) == endpoint
    assert provider.account(parsed) == account
    assert provider.object_url("rec", "a/b.wav", endpoint=endpoint, account=account) == url


def test_media_client_and_cli_never_name_a_provider() -> None:
    """They ask the descriptor (URLs, accounts, error tables), so a new provider is one
    module and one registry line (docs: STYLE.md, external-secrets)."""
    root = Path(__file__).resolve().parents[2] / "operator" / "callstorage"
    files = [root / "media.py", root / "media_errors.py", root / "pins.py",
             root / "resolution.py", *sorted((root / "client").glob("*.py")),
             *sorted((root / "cli").glob("*.py"))]
    named = [f"{path.relative_to(root)}:{node.lineno}"
             for path in files for node in ast.walk(ast.parse(path.read_text()))
             if (isinstance(node, ast.Constant) and node.value in PROVIDERS)
             or (isinstance(node, ast.Name)
                 and node.id in {p.spec_model.__name__ for p in PROVIDERS.values()})]
    assert named == []
