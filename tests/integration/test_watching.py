"""The operator's watches (``callstorage.watching``) against the real API server.

ConfigMaps stand in for the operator's kinds: the LIST/WATCH protocol is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from callstorage.apiserver import ApiServer, _from_kubeconfig
from callstorage.watching import Kind, Watch
from testbed.controlplane import ControlPlane
from waiting import until

CONFIGMAPS = Kind("ConfigMap", "/api/v1", "configmaps")


def _configmap(api: Any, ns: str, name: str, data: dict[str, str]) -> str:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)
    made = client.CoreV1Api(api).create_namespaced_config_map(ns, body)
    return str(made.metadata.resource_version)


async def test_a_watch_lists_then_streams_and_survives_a_failing_handler_and_big_objects(
    control_plane: ControlPlane, kube_api: Any, namespace: str,
) -> None:
    _configmap(kube_api, namespace, "before", {"k": "v"})
    seen: list[tuple[str | None, str]] = []

    def handler(kind: str | None, obj: Mapping[str, Any]) -> None:
        name = obj["metadata"]["name"]
        seen.append((kind, name))
        if name == "bad":
            raise ValueError("a handler bug")

    api = ApiServer(loader=lambda: _from_kubeconfig([control_plane.kubeconfig], False))
    task = asyncio.create_task(Watch(api, CONFIGMAPS, namespace, handler).run())
    try:
        await until(lambda: (None, "before") in seen)
        _configmap(kube_api, namespace, "bad", {"k": "v"})
        # one line of ~300 KiB: more than aiohttp's readline accepts
        _configmap(kube_api, namespace, "big", {"k": "x" * 300_000})
        _configmap(kube_api, namespace, "after", {"k": "v"})
        await until(lambda: ("ADDED", "after") in seen)
        assert ("ADDED", "bad") in seen
        assert ("ADDED", "big") in seen
        client.CoreV1Api(kube_api).delete_namespaced_config_map("after", namespace)
        await until(lambda: ("DELETED", "after") in seen)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.close()
