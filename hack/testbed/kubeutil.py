"""Small helpers over the ``kubernetes`` client for tests, the demo and benchmarks.

They talk to the API server only; what our objects look like and when they are Ready is
the tests' business (``tests/storages.py``) and the API's (``callstorage.api``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from callstorage.api import GROUP, VERSION
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
