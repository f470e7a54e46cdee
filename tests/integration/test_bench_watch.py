"""The benchmark driver's watch (``bench.kubehttp``) against the real API server: a
410 Gone is a relist, not the end of the watch (a churn run whose watch ended on one
waited its whole phase limit for events that could no longer come)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from bench.kubehttp import ApiError, KubeHTTP
from bench.run import EXS, storage_body
from bench.scenarios import LagTracker
from testbed.controlplane import ControlPlane
from waiting import until


async def test_a_watch_from_a_version_too_old_relists_and_goes_on(
    control_plane: ControlPlane, namespace: str,
) -> None:
    kube = KubeHTTP(control_plane.server, control_plane.ssl_context(), "bench-test")
    try:
        for name in ("s-00000", "s-00001"):
            await kube.create(namespace, EXS, storage_body(name, "bkt", "https://s3.test"))
        # version 1 is long gone from the API server's watch window: 410 Gone
        with pytest.raises(ApiError) as refused:
            await kube.watch(namespace, EXS, "1", lambda *_: None)
        assert refused.value.status == 410, refused.value

        lag = LagTracker()
        relisted: list[Sequence[dict[str, Any]]] = []
        events: list[tuple[str, str]] = []

        def on_relist(items: Sequence[dict[str, Any]]) -> None:
            relisted.append(items)
            lag.on_relist(items)

        def on_event(kind: str, obj: dict[str, Any]) -> None:
            events.append((kind, obj["metadata"]["name"]))
            lag.on_event(kind, obj)

        lag.latest["s-09999"] = {"metadata": {"name": "s-09999"}}  # vanished meanwhile
        lag.pending["s-09999"] = (1, time.perf_counter())
        task = asyncio.create_task(kube.watch(namespace, EXS, "1", on_event, on_relist))
        try:
            await until(lambda: bool(relisted))
            assert sorted(o["metadata"]["name"] for o in relisted[0]) == ["s-00000", "s-00001"]
            assert "s-09999" not in lag.latest
            assert "s-09999" not in lag.pending
            assert set(lag.latest) == {"s-00000", "s-00001"}
            await kube.create(namespace, EXS, storage_body("s-00002", "bkt", "https://s3.test"))
            await until(lambda: ("ADDED", "s-00002") in events)
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await kube.close()
