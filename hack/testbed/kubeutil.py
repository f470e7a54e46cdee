"""Small helpers over the ``kubernetes`` client for tests, the demo and benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from callstorage.api import GROUP, VERSION
from callstorage.api.readiness import PENDING, readiness
from callstorage.storagespec import ExternalStorageSpec, external_storage_manifest
from testbed.procs import wait_for


def crd_files(directory: Path) -> list[Path]:
    """The CRD manifests of a directory (a kustomization.yaml beside them is skipped)."""
    return sorted(p for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")


def apply_crds(api: Any, directory: Path, timeout: float = 60) -> list[str]:
    """Create or replace every CRD in ``directory`` and wait until each is Established."""
    ext = client.ApiextensionsV1Api(api)
    names: list[str] = []
    for path in crd_files(directory):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            try:
                current = ext.read_custom_resource_definition(name)
                doc["metadata"]["resourceVersion"] = current.metadata.resource_version
                ext.replace_custom_resource_definition(name, doc)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                ext.create_custom_resource_definition(doc)
            names.append(name)

    def established(name: str) -> bool:
        crd = ext.read_custom_resource_definition(name)
        return any(c.type == "Established" and c.status == "True"
                   for c in (crd.status.conditions or []))
    for name in names:
        wait_for(lambda n=name: established(n), timeout, f"CRD {name} Established")  # type: ignore[misc]
    return names


def create_namespace(api: Any, name: str, exist_ok: bool = False) -> None:
    try:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as exc:
        if not (exist_ok and exc.status == 409):
            raise


def delete_namespace(api: Any, name: str) -> None:
    try:
        client.CoreV1Api(api).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def get_object(api: Any, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """A callstorage.io object as a dict, or None when it does not exist."""
    try:
        obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name)
        return obj
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def condition(obj: dict[str, Any] | None, type_: str = "Ready") -> dict[str, Any]:
    """The condition of that type ({} when absent)."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def wait_object(api: Any, plural: str, namespace: str, name: str,
                predicate: Callable[[dict[str, Any] | None], bool], timeout: float,
                what: str) -> dict[str, Any] | None:
    """Poll the object until ``predicate(obj)`` holds; return it. Fails with the last
    status seen, so a failing test says where the object got stuck."""
    last: list[dict[str, Any] | None] = [None]

    def check() -> bool:
        last[0] = get_object(api, plural, namespace, name)
        return predicate(last[0])
    try:
        wait_for(check, timeout, what, interval=0.2)
    except TimeoutError as exc:
        status = (last[0] or {}).get("status")
        raise AssertionError(f"{exc}; last status of {namespace}/{name}: {status}") from None
    return last[0]


def wait_ready(api: Any, plural: str, namespace: str, name: str, status: str = "True",
               reason: str | None = None, timeout: float = 30) -> dict[str, Any]:
    """Wait for Ready=<status> (and reason) with the current generation observed."""
    def ok(obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        state = readiness(obj)  # the operator's own rule, current generation only
        return state.status == status and (reason is None or state.reason == reason) \
            and state.reason != PENDING
    obj = wait_object(api, plural, namespace, name, ok, timeout,
                      f"{plural} {namespace}/{name} Ready={status} {reason or ''}".strip())
    assert obj is not None
    return obj


def secret(api: Any, namespace: str, name: str, data: dict[str, str],
           replace: bool = False) -> None:
    """Create (or replace) an Opaque Secret from string data."""
    core = client.CoreV1Api(api)
    body = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
    if replace:
        core.replace_namespaced_secret(name, namespace, body)
    else:
        core.create_namespaced_secret(namespace, body)


def create_object(api: Any, plural: str, namespace: str, body: dict[str, Any]) -> \
        dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body)
    return obj


def s3_storage_spec(bucket: str, endpoint: str, secret: str | None,
                    mode: str = "ReadWrite", **extra: Any) -> dict[str, Any]:
    """An S3 ExternalStorage spec for an emulator (path-style, us-east-1), in wire form;
    ``extra`` are further spec fields as the API spells them (``path``, ``prefixes``, ...)."""
    s3: dict[str, Any] = {"region": "us-east-1", "endpoint": endpoint, "forcePathStyle": True}
    if secret:
        s3["credentialsSecretRef"] = {"name": secret}
    spec = {"storageType": "s3", "bucket": bucket, "accessMode": mode, "s3": s3, **extra}
    return ExternalStorageSpec.model_validate(spec).to_dict()


def external_storage(name: str, spec: dict[str, Any],
                     annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An ExternalStorage manifest (the API's builder; the namespace is the request's)."""
    return external_storage_manifest(
        name, None, ExternalStorageSpec.model_validate(spec), annotations=annotations)
