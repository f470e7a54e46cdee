"""``kubectl explain`` is the manual: every field of both kinds must explain itself.

Also checks the columns ``kubectl get`` prints, with and without a status.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import storages
from testbed import kubeutil
from testbed.s3 import S3Keys, S3Server

pytestmark = pytest.mark.integration

CRDS = Path(__file__).resolve().parents[2] / "crds"
EXPLAIN_TIMEOUT = 60.0


def schema_fields(file: str) -> Iterator[tuple[str, str]]:
    """(dotted path from the kind, description) of every field under spec and status."""
    crd = yaml.safe_load((CRDS / file).read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
        for name, prop in schema.get("properties", {}).items():
            yield f"{path}.{name}", prop.get("description", "")
            yield from walk(prop, f"{path}.{name}")
        if isinstance(schema.get("items"), dict):
            yield from walk(schema["items"], path)

    for top in ("spec", "status"):
        yield top, root["properties"][top]["description"]
        yield from walk(root["properties"][top], top)


FIELDS = [("exs", path, text) for path, text in schema_fields("externalstorages.yaml")] + \
         [("ct", path, text) for path, text in schema_fields("calltypes.yaml")]


def explain(kubectl: Any, target: str) -> str:
    """``kubectl explain`` output, waiting (bounded) for the CRD's OpenAPI to be published."""
    deadline = time.monotonic() + EXPLAIN_TIMEOUT
    while True:
        result = kubectl("explain", target, check=False)
        if result.returncode == 0:
            return str(result.stdout)
        if time.monotonic() > deadline:
            raise AssertionError(f"kubectl explain {target}: {result.stderr}")
        time.sleep(0.5)  # discovery or OpenAPI not refreshed yet: poll until it is


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("short", "path", "description"), FIELDS,
                         ids=[f"{s}.{p}" for s, p, _ in FIELDS])
def test_every_field_is_explained(
    kubectl: Any, crds: list[str], short: str, path: str, description: str
) -> None:
    assert description.strip(), f"{short}.{path} has no description in the CRD"
    out = explain(kubectl, f"{short}.{path}")
    assert "DESCRIPTION:" in out
    explained = words(out.split("DESCRIPTION:", 1)[1])
    assert explained, f"kubectl explain {short}.{path} printed no description"
    # kubectl re-wraps the text; compare it without line breaks.
    assert words(description) in explained


def test_spec_lists_every_provider_block(kubectl: Any, crds: list[str]) -> None:
    out = explain(kubectl, "exs.spec")
    for name in ("storageType", "bucket", "path", "accessMode", "prefixes", "s3", "gcs", "abs",
                 "tls", "validationInterval", "suspend"):
        assert re.search(rf"^\s+{name}\s+<", out, re.MULTILINE), name


def header(kubectl: Any, resource: str, namespace: str) -> list[str]:
    lines = kubectl("get", resource, "-n", namespace).stdout.splitlines()
    assert lines, f"kubectl get {resource} printed nothing"
    return re.split(r"\s{2,}", lines[0].strip())


def rows(kubectl: Any, resource: str, namespace: str) -> list[list[str]]:
    lines = kubectl("get", resource, "-n", namespace).stdout.splitlines()[1:]
    return [re.split(r"\s{2,}", line.strip()) for line in lines]


EXS = """
apiVersion: callstorage.io/v1alpha1
kind: ExternalStorage
metadata: {name: recordings}
spec:
  storageType: s3
  bucket: call-recordings
  accessMode: WriteOnly
  s3: {region: us-east-1}
"""
CT = """
apiVersion: callstorage.io/v1alpha1
kind: CallType
metadata: {name: default}
spec: {externalStorage: recordings}
"""


@pytest.mark.usefixtures("operator")
def test_printer_columns(kubectl: Any, namespace: str, kube_api: Any, s3_server: S3Server,
                         bucket: str, rw_keys: S3Keys) -> None:
    """The columns show the status the operator itself writes for a storage it
    validated against the emulator (no hand-written status to race it)."""
    kubeutil.secret(kube_api, namespace, "creds", rw_keys.as_secret_data())
    kubeutil.create_object(kube_api, "externalstorages", namespace, storages.external_storage(
        "recordings", storages.s3_storage_spec(bucket, s3_server.endpoint, "creds",
                                               "WriteOnly")))
    kubectl("apply", "-n", namespace, "-f", "-", input=CT)
    assert header(kubectl, "exs", namespace) == [
        "NAME", "TYPE", "BUCKET", "MODE", "READY", "REASON", "LAST VALIDATED", "AGE"]
    assert header(kubectl, "ct", namespace) == [
        "NAME", "STORAGE", "SOURCE", "READY", "REASON", "AGE"]
    storages.wait_ready(kube_api, "externalstorages", namespace, "recordings", "True")
    storages.wait_ready(kube_api, "calltypes", namespace, "default", "True")
    [exs_row] = rows(kubectl, "exs", namespace)
    assert exs_row[:6] == ["recordings", "s3", bucket, "WriteOnly", "True", "Validated"]
    assert re.fullmatch(r"\d+[smhdy].*", exs_row[6]), exs_row  # a relative date
    [ct_row] = rows(kubectl, "ct", namespace)
    assert ct_row[:5] == ["default", "recordings", "CallType", "True", "StorageReady"]


def test_category_and_short_names(kubectl: Any, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=EXS)
    kubectl("apply", "-n", namespace, "-f", "-", input=CT)
    names = kubectl("get", "callstorage", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(names) == ["calltype.callstorage.io/default",
                             "externalstorage.callstorage.io/recordings"]
