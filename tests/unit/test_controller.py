"""The controller's glue against scripted API answers: races and failures that a real API
server produces only by chance (a watch event overtaking a GET, a status write refused).

The provider is a stand-in here on purpose: these tests are about which answer wins and
how often the operator tries again; the integration tests cover real buckets.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from callstorage import controller as controller_module
from callstorage.api.capabilities import Capabilities
from callstorage.controller import VALIDATE, WRITE, Controller
from callstorage.inventory import CachedSecret
from callstorage.settings import Settings

NS = "app"


def storage(generation: int = 1, rv: str = "10", ready: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "ExternalStorage",
        "metadata": {"name": "st", "namespace": NS, "generation": generation,
                     "resourceVersion": rv, "uid": "u1"},
        "spec": {"storageType": "s3", "bucket": "bucket-1", "accessMode": "ReadWrite",
                 "s3": {"region": "us-east-1", "credentialsSecretRef": {"name": "creds"}}},
    }
    if ready:  # validated before: a re-check keeps Ready until its own result
        body["status"] = {"observedGeneration": generation, "conditions": [
            {"type": "Ready", "status": "True", "reason": "Validated", "message": "ok",
             "observedGeneration": generation, "lastTransitionTime": "2026-11-27T00:00:00Z"}]}
    return body


def secret(rv: str, key_id: str) -> dict[str, Any]:
    import base64

    enc = {k: base64.b64encode(v.encode()).decode() for k, v in
           {"accessKeyId": key_id, "secretAccessKey": "s"}.items()}
    return {"metadata": {"name": "creds", "namespace": NS, "resourceVersion": rv},
            "data": enc}


class ScriptedKube:
    """Just the calls the controller makes, answered by the test."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.patches: list[Mapping[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.fail_patches = 0  # refuse this many status patches
        self.read_secret_result: CachedSecret | None = None
        self.read_secret_gate: asyncio.Event | None = None
        self.rv = 100

    async def patch_status(self, plural: str, namespace: str, name: str,
                           patch: Mapping[str, Any]) -> dict[str, Any] | None:
        if self.fail_patches > 0:
            self.fail_patches -= 1
            raise ApiException(status=422, reason="Unprocessable Entity")
        self.patches.append(copy.deepcopy(dict(patch)))
        obj = self.objects[name]
        status = dict(obj.get("status") or {})
        for k, v in patch.items():
            if v is None:
                status.pop(k, None)
            else:
                status[k] = v
        self.rv += 1
        obj = {**obj, "status": status,
               "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        self.objects[name] = obj
        return copy.deepcopy(obj)

    async def set_finalizers(self, *args: Any) -> bool:
        return True

    async def read_secret(self, namespace: str, name: str) -> CachedSecret | None:
        if self.read_secret_gate is not None:
            await self.read_secret_gate.wait()
        return self.read_secret_result

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str,
                         message: str) -> None:
        self.events.append((type_, reason))

    async def list_objects(self, plural: str, namespaces: list[str]) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        pass


class FakeClient:
    def object_url(self, key: str) -> str:
        return f"s3://bucket-1/{key}"

    def close(self) -> None:
        pass


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the access key id each validation used; succeed."""
    used: list[str] = []

    def build_client(spec: Any, inputs: Any, settings: Any) -> FakeClient:
        used.append(inputs.secret["accessKeyId"].decode())
        return FakeClient()

    monkeypatch.setattr(controller_module, "build_client", build_client)
    monkeypatch.setattr(controller_module, "validate_storage",
                        lambda client, spec: Capabilities(read=True))
    return used


def make(kube: ScriptedKube, **settings: Any) -> Controller:
    base: dict[str, Any] = {"namespace": "callstorage-system", "retry_base": 1.0,
                            "retry_max": 300.0, "metrics_port": 0, "health_port": 0}
    base.update(settings)
    return Controller(Settings(**base), kube, rand=lambda: 0.5)  # type: ignore[arg-type]


async def test_a_newer_secret_from_the_watch_beats_an_older_get_in_flight(
    provider: list[str],
) -> None:
    """Defect 1: the GET answers with version 5 after the watch delivered version 6."""
    kube = ScriptedKube()
    ctl = make(kube)
    kube.objects["st"] = storage()
    ctl.on_storage_event("ADDED", storage())
    kube.read_secret_gate = asyncio.Event()
    from callstorage.kube import decode_secret

    old = secret("5", "OLDKEY")
    kube.read_secret_result = decode_secret("5", old["data"])
    round_ = asyncio.create_task(ctl.reconcile_storage((NS, "st"), {VALIDATE}))
    await asyncio.sleep(0)  # the round is now waiting on its GET
    ctl.on_secret_event("MODIFIED", secret("6", "NEWKEY"))
    kube.read_secret_gate.set()
    await round_
    assert ctl.inv.secrets[(NS, "creds")].resource_version == "6"
    assert provider == ["NEWKEY"]
    assert kube.objects["st"]["status"]["observedSecretVersion"] == "6"


async def test_a_deleted_secret_is_not_brought_back_by_a_late_get(provider: list[str]) -> None:
    kube = ScriptedKube()
    ctl = make(kube)
    kube.objects["st"] = storage()
    ctl.on_storage_event("ADDED", storage())
    kube.read_secret_gate = asyncio.Event()
    from callstorage.kube import decode_secret

    kube.read_secret_result = decode_secret("5", secret("5", "OLDKEY")["data"])
    round_ = asyncio.create_task(ctl.reconcile_storage((NS, "st"), {VALIDATE}))
    await asyncio.sleep(0)
    ctl.on_secret_event("DELETED", secret("7", "OLDKEY"))
    kube.read_secret_gate.set()
    await round_
    assert (NS, "creds") not in ctl.inv.secrets
    assert provider == []
    ready = next(c for c in kube.objects["st"]["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "SecretNotFound"


async def test_an_older_watch_event_never_replaces_a_newer_object() -> None:
    kube = ScriptedKube()
    ctl = make(kube)
    ctl.on_storage_event("ADDED", storage(rv="20"))
    ctl.on_storage_event("MODIFIED", storage(rv="19"))
    assert ctl.inv.storages[(NS, "st")]["metadata"]["resourceVersion"] == "20"
    ctl.on_storage_event("DELETED", storage(rv="21"))
    ctl.on_storage_event("MODIFIED", storage(rv="20"))  # a patch answer after the delete
    assert (NS, "st") not in ctl.inv.storages
    ctl.on_storage_event("ADDED", storage(rv="30"))  # re-created later: accepted
    assert (NS, "st") in ctl.inv.storages


async def test_a_refused_status_write_backs_off_and_is_retried_without_revalidating(
    provider: list[str],
) -> None:
    """Defect 4: a failing round is retried with growing delays, and a validation whose
    status write failed is written on the retry instead of being redone."""
    kube = ScriptedKube()
    ctl = make(kube)
    kube.objects["st"] = storage(ready=True)
    ctl.on_storage_event("ADDED", storage(ready=True))
    ctl.on_secret_event("ADDED", secret("5", "KEY"))
    key = (NS, "st")
    kube.fail_patches = 10**6
    delays: list[float] = []
    for attempt in range(4):
        ctl.storages.forget(key)
        await ctl.storage_round(key, {VALIDATE} if attempt == 0 else {WRITE})
        due = ctl.storages.due_at(key)
        assert due is not None
        delays.append(due - ctl.storages._clock())
    assert len(delays) == 4
    assert all(b > a * 1.5 for a, b in itertools.pairwise(delays)), delays
    assert len(provider) == 1, "the validation ran again instead of only the write"
    kube.fail_patches = 0
    await ctl.reconcile_storage(key, {"write"})
    status = kube.objects["st"]["status"]
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"
    assert len(provider) == 1


async def test_an_operator_failure_is_shown_in_status(provider: list[str]) -> None:
    kube = ScriptedKube()
    ctl = make(kube)
    kube.objects["st"] = storage(ready=True)
    ctl.on_storage_event("ADDED", storage(ready=True))
    ctl.on_secret_event("ADDED", secret("5", "KEY"))
    kube.fail_patches = 1  # the result is refused; the report of that is not
    await ctl.storage_round((NS, "st"), {VALIDATE})
    (patch,) = kube.patches
    rec = next(c for c in patch["conditions"] if c["type"] == "Reconciling")
    assert rec["reason"] == "ReconcileError"
    assert "ApiException (HTTP 422)" in rec["message"]


async def test_an_unexpected_provider_exception_ends_in_a_failed_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 8: a RecursionError past the provider's own handling replaces Ready=True."""
    kube = ScriptedKube()
    ctl = make(kube)
    ready = storage(ready=True)
    kube.objects["st"] = ready
    ctl.on_storage_event("ADDED", ready)
    ctl.on_secret_event("ADDED", secret("5", "KEY"))

    def explode(*_: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(controller_module, "build_client", explode)
    await ctl.reconcile_storage((NS, "st"), {VALIDATE})
    cond = next(c for c in kube.objects["st"]["status"]["conditions"] if c["type"] == "Ready")
    assert (cond["status"], cond["reason"]) == ("False", "InternalError")
    assert "RecursionError" in cond["message"]
