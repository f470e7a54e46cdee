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

from callstorage import secretcache
from callstorage.api.capabilities import Capabilities
from callstorage.controller import Controller
from callstorage.engine import intake as intake_module
from callstorage.engine import validating as validating_module
from callstorage.engine.queueing import VALIDATE, WRITE
from callstorage.inventory import CachedSecret
from callstorage.kube import ObjectGone
from callstorage.settings import Settings
from waiting import until

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
        self.calls: list[str] = []  # every API call, by name
        self.call_types: dict[str, dict[str, Any]] = {}
        self.finalizer_writes: list[list[str]] = []
        self.conflicts = 0  # answer this many finalizer writes with 409
        self.terminating: set[str] = set()  # namespaces being deleted
        self.secret_versions: dict[str, str] = {}  # Secrets of NS: name -> resourceVersion

    async def write_status(self, plural: str, namespace: str, name: str, uid: str,
                           status: Mapping[str, Any]) -> dict[str, Any] | None:
        self.calls.append(f"write_status {plural}")
        if self.fail_patches > 0:
            self.fail_patches -= 1
            raise ApiException(status=422, reason="Unprocessable Entity")
        store = self.objects if plural == "externalstorages" else self.call_types
        if name not in store or (uid and store[name]["metadata"].get("uid") not in (None, uid)):
            raise ObjectGone(plural, namespace, name, uid)  # as the real test operation
        self.patches.append(copy.deepcopy(dict(status)))
        self.rv += 1
        obj = store[name]
        obj = {**obj, "status": copy.deepcopy(dict(status)),
               "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        store[name] = obj
        return copy.deepcopy(obj)

    async def set_finalizers(self, namespace: str, name: str, finalizers: list[str],
                             rv: str) -> bool:
        self.calls.append("set_finalizers")
        if name not in self.objects:
            raise ObjectGone("externalstorages", namespace, name)
        if self.conflicts > 0:
            self.conflicts -= 1
            return False
        self.finalizer_writes.append(list(finalizers))
        self.rv += 1
        obj = self.objects[name]
        self.objects[name] = {**obj, "metadata": {
            **obj["metadata"], "finalizers": list(finalizers), "resourceVersion": str(self.rv)}}
        return True

    async def read_secret(self, namespace: str, name: str) -> CachedSecret | None:
        self.calls.append(f"read_secret {name}")
        if self.read_secret_gate is not None:
            await self.read_secret_gate.wait()
        return self.read_secret_result

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str,
                         message: str) -> bool:
        self.events.append((type_, reason))
        return True

    async def namespace_terminating(self, namespace: str) -> bool:
        self.calls.append(f"namespace_terminating {namespace}")
        return namespace in self.terminating

    async def list_snapshot(self, plural: str, namespaces: list[str]) -> \
            tuple[list[dict[str, Any]], str | None]:
        self.calls.append(f"list {plural}")
        store = self.objects if plural == "externalstorages" else self.call_types
        return [copy.deepcopy(o) for o in store.values()], str(self.rv)

    async def list_secret_versions(self, namespace: str, label_selector: str = "") -> \
            tuple[dict[str, str], str | None]:
        self.calls.append(f"list secrets {namespace}")
        return (dict(self.secret_versions) if namespace == NS else {}), str(self.rv)

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

    monkeypatch.setattr(validating_module, "build_client", build_client)
    monkeypatch.setattr(validating_module, "validate_storage",
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


async def test_storages_sharing_a_secret_and_bucket_share_one_get_and_one_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 14: N storages of one platform bucket (a path each) and one Secret: one GET of
    the Secret and one validation request in flight answer them all."""
    import threading

    from callstorage.kube import decode_secret

    release, calls = threading.Event(), []

    def validate(client: FakeClient, spec: Any) -> Capabilities:
        calls.append(spec.path)
        release.wait(10)
        return Capabilities(list=True)

    monkeypatch.setattr(validating_module, "build_client", lambda *_: FakeClient())
    monkeypatch.setattr(validating_module, "validate_storage", validate)
    kube = ScriptedKube()
    ctl = make(kube)
    kube.read_secret_gate = asyncio.Event()
    kube.read_secret_result = decode_secret("5", secret("5", "KEY")["data"])
    rounds = []
    for i in range(4):
        body = storage()
        body["metadata"] = {**body["metadata"], "name": f"t{i}", "uid": f"u{i}"}
        body["spec"] = {**body["spec"], "path": f"tenant-{i}"}
        kube.objects[f"t{i}"] = body
        ctl.on_storage_event("ADDED", copy.deepcopy(body))
        rounds.append(asyncio.create_task(ctl.reconcile_storage((NS, f"t{i}"), {VALIDATE})))
    for _ in range(50):
        await asyncio.sleep(0)
    kube.read_secret_gate.set()
    for _ in range(100):  # the first request is in flight, the others wait for its answer
        await asyncio.sleep(0.01)
        if calls and len(ctl.validator.flights) == 1 and \
                ctl.queues.fair.busy(("namespace", NS)) == 4:
            break
    release.set()
    await asyncio.gather(*rounds)
    assert kube.calls.count("read_secret creds") == 1
    assert len(calls) == 1, calls
    for i in range(4):
        st = kube.objects[f"t{i}"]["status"]
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "Validated")
        assert st["observedSecretVersion"] == "5"
        assert st["effectivePrefixes"]["video"] == f"tenant-{i}"
    assert not ctl.validator.flights


async def test_a_secret_seen_on_the_watch_before_its_storage_needs_no_get(
    provider: list[str],
) -> None:
    """Issue 14 (`distinct`: a GET per storage, 3 requests per object): a small Secret the
    watch delivered shortly before a storage refers to it is used as delivered."""
    kube = ScriptedKube()
    ctl = make(kube)
    ctl.on_secret_event("ADDED", secret("5", "SEEN"))  # no storage refers to it yet
    kube.objects["st"] = storage()
    ctl.on_storage_event("ADDED", storage())
    await ctl.reconcile_storage((NS, "st"), {VALIDATE})
    assert "read_secret creds" not in kube.calls
    assert provider == ["SEEN"]
    assert kube.objects["st"]["status"]["observedSecretVersion"] == "5"
    assert ctl.inv.secrets[(NS, "creds")].resource_version == "5"  # referenced from now on


@pytest.mark.parametrize("case", ["deleted", "large", "expired", "resynced"])
async def test_a_recent_secret_copy_is_never_used_once_deleted_large_old_or_resynced(
    provider: list[str], monkeypatch: pytest.MonkeyPatch, case: str,
) -> None:
    from callstorage.kube import decode_secret

    kube = ScriptedKube()
    ctl = make(kube)
    seen = secret("5", "SEEN")
    if case == "large":
        seen["data"]["padding"] = "A" * (secretcache.RECENT_SECRET_BYTES + 4)
    if case == "expired":
        monkeypatch.setattr(ctl.secrets.recent, "ttl", -1.0)
    ctl.on_secret_event("ADDED", seen)
    if case == "deleted":
        ctl.on_secret_event("DELETED", secret("6", "SEEN"))
    if case == "resynced":
        await ctl.resync()
    kube.read_secret_result = None if case == "deleted" else \
        decode_secret("7", secret("7", "READ")["data"])
    kube.objects["st"] = storage()
    ctl.on_storage_event("ADDED", storage())
    await ctl.reconcile_storage((NS, "st"), {VALIDATE})
    assert "read_secret creds" in kube.calls
    assert provider == ([] if case == "deleted" else ["READ"])


async def test_at_most_recent_secrets_copies_are_held_the_oldest_go_first(
    provider: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from callstorage.kube import decode_secret

    monkeypatch.setattr(secretcache, "RECENT_SECRETS", 3)
    kube = ScriptedKube()
    ctl = make(kube)
    for name in ("creds", "b", "c", "d"):  # "creds" is the oldest: dropped for "d"
        ctl.on_secret_event("ADDED", {**secret("5", "SEEN"), "metadata": {
            "name": name, "namespace": NS, "resourceVersion": "5"}})
    assert len(ctl.secrets.recent) == 3
    kube.read_secret_result = decode_secret("7", secret("7", "READ")["data"])
    kube.objects["st"] = storage()
    ctl.on_storage_event("ADDED", storage())
    await ctl.reconcile_storage((NS, "st"), {VALIDATE})
    assert "read_secret creds" in kube.calls
    assert provider == ["READ"]


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

    monkeypatch.setattr(validating_module, "build_client", explode)
    await ctl.reconcile_storage((NS, "st"), {VALIDATE})
    cond = next(c for c in kube.objects["st"]["status"]["conditions"] if c["type"] == "Ready")
    assert (cond["status"], cond["reason"]) == ("False", "InternalError")
    assert "RecursionError" in cond["message"]


# --- item 1 of issue 11: relists prune, a 404 on write means gone --------------------------

def call_type(name: str = "ct-2", rv: str = "11", target: str = "st") -> dict[str, Any]:
    return {"apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
            "metadata": {"name": name, "namespace": NS, "generation": 1,
                         "resourceVersion": rv, "uid": f"u-{name}"},
            "spec": {"externalStorage": target}}


def in_use(body: dict[str, Any]) -> dict[str, Any]:
    from callstorage.api import IN_USE_FINALIZER

    return {**body, "metadata": {**body["metadata"], "finalizers": [IN_USE_FINALIZER]}}


async def drain(ctl: Controller, key: tuple[str, str] = (NS, "st")) -> None:
    """Run every round of ``key`` that is due now (what a worker would do)."""
    for _ in range(10):
        due = ctl.storages.due_at(key)
        if due is None or due > ctl.storages._clock():
            return
        k, reasons = await ctl.storages.get()
        try:
            await ctl.storage_round(k, reasons)
        finally:
            ctl.storages.done(k)


async def test_a_resync_forgets_a_call_type_deleted_while_the_watch_was_away(
    provider: list[str],
) -> None:
    """The ghost of issue 11 item 1: ct-2 was deleted between an API server restart and
    the watch's relist, which replays live objects only. The resync's LIST finds it gone:
    the storage loses its in-use finalizer and ``usedBy`` forgets ct-2."""
    from callstorage.api import IN_USE_FINALIZER

    kube = ScriptedKube()
    ctl = make(kube)
    body = in_use(storage(ready=True))
    kube.objects["st"] = body
    ctl.on_storage_event("ADDED", body)
    ctl.on_call_type_event("ADDED", call_type())
    assert ctl.used_by((NS, "st")) == ("ct-2",)
    kube.rv = 50  # the LIST is newer than everything held; ct-2 is not in it
    await ctl.resync()
    assert (NS, "ct-2") not in ctl.inv.call_types
    assert ctl.used_by((NS, "st")) == ()
    ctl.storages.forget((NS, "st"))
    ctl.storages.add((NS, "st"), "refs")
    await drain(ctl)
    assert IN_USE_FINALIZER not in kube.objects["st"]["metadata"].get("finalizers", [])
    assert kube.objects["st"]["status"]["usedBy"] == []
    assert provider == [], "pruning a reference must not validate the storage"


def test_vanished_keeps_what_is_newer_than_the_list() -> None:
    from callstorage.inventory import vanished

    held = {(NS, "old"): {"metadata": {"resourceVersion": "10"}},
            (NS, "new"): {"metadata": {"resourceVersion": "30"}},
            (NS, "here"): {"metadata": {"resourceVersion": "5"}}}
    assert vanished(held, [(NS, "here")], "20") == [(NS, "old")]
    assert vanished(held, [(NS, "here")], None) == [(NS, "new"), (NS, "old")]


async def test_a_404_on_a_finalizer_write_forgets_the_storage_and_never_retries(
    provider: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 2: set_finalizers treated 404 like 409 and retried every second, with a full
    validation riding along. No DELETED event follows within GONE_GRACE: the watch may
    have lost it, and others with it, so a resync is asked for."""
    monkeypatch.setattr(intake_module, "GONE_GRACE", 0.05)
    kube = ScriptedKube()
    ctl = make(kube)
    ctl.on_storage_event("ADDED", storage(ready=True))  # never in kube.objects: gone
    ctl.on_call_type_event("ADDED", call_type())
    key = (NS, "st")
    ctl.storages.forget(key)
    before = ctl.resync_schedule.due_at
    await ctl.storage_round(key, {"refs", VALIDATE})
    assert kube.calls == ["set_finalizers"]
    assert key not in ctl.inv.storages
    assert ctl.storages.due_at(key) is None, "a write to a gone object was queued again"
    assert len(ctl.storage_state) == 0
    assert provider == []
    await until(lambda: ctl.resync_schedule.due_at < before)  # a 404 the watch never confirmed


async def test_a_404_whose_deleted_event_follows_asks_for_no_resync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under churn a storage is often deleted after its last event and before our status
    write; its DELETED event comes moments later. That hid nothing: no resync LIST (the
    old code asked for one on every such 404: 3 full LISTs in 60 s of the churn bench)."""
    monkeypatch.setattr(intake_module, "GONE_GRACE", 0.2, raising=False)
    kube = ScriptedKube()
    ctl = make(kube)
    other = storage(ready=True)
    other["metadata"] = {**other["metadata"], "name": "other", "uid": "u2"}
    ctl.on_storage_event("ADDED", storage(ready=True))
    ctl.on_storage_event("ADDED", other)
    before = ctl.resync_schedule.due_at
    ctl.intake.forget_gone(ObjectGone("externalstorages", NS, "st"))
    ctl.intake.forget_gone(ObjectGone("externalstorages", NS, "other"))
    ctl.on_storage_event("DELETED", storage(ready=True, rv="12"))
    ctl.on_storage_event("ADDED", {**other, "metadata": {  # re-created, so deleted first
        **other["metadata"], "uid": "u3", "resourceVersion": "13"}})
    await asyncio.sleep(0.4)  # past the grace: a timer left running would have fired
    assert ctl.resync_schedule.due_at == before
    assert ctl.intake.unseen_deletions == {}


async def test_a_404_on_the_status_write_of_a_storage_being_deleted_asks_for_no_resync(
    provider: list[str],
) -> None:
    """Its deletion was known (deletionTimestamp, the last finalizer gone): the 404 is
    the expected end and hid no other deletion, so no resync LIST."""
    kube = ScriptedKube()
    ctl = make(kube)
    body = storage(ready=True)
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    ctl.on_storage_event("MODIFIED", body)  # never in kube.objects: gone by the write
    key = (NS, "st")
    ctl.storages.forget(key)
    before = ctl.resync_schedule.due_at
    await ctl.storage_round(key, {"refs"})
    assert "write_status externalstorages" in kube.calls
    assert key not in ctl.inv.storages
    assert ctl.storages.due_at(key) is None
    assert ctl.resync_schedule.due_at == before, "a 404 after a known deletion asked for a resync"


async def test_a_404_after_the_deleted_event_asks_for_no_resync() -> None:
    kube = ScriptedKube()
    ctl = make(kube)
    ctl.on_storage_event("ADDED", storage(ready=True))
    ctl.on_storage_event("DELETED", storage(ready=True, rv="12"))  # while a round ran
    before = ctl.resync_schedule.due_at
    ctl.intake.forget_gone(ObjectGone("externalstorages", NS, "st"))
    assert ctl.resync_schedule.due_at == before


async def test_a_404_on_a_status_write_forgets_the_call_type() -> None:
    kube = ScriptedKube()
    ctl = make(kube)
    ctl.on_call_type_event("ADDED", call_type())  # not in kube.call_types: gone
    ctl.call_types.forget((NS, "ct-2"))
    ctl.call_types.add((NS, "ct-2"), "reconcile")
    worker = asyncio.create_task(ctl.call_type_rounds.worker())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if (NS, "ct-2") not in ctl.inv.call_types:
            break
    worker.cancel()
    assert (NS, "ct-2") not in ctl.inv.call_types
    assert ctl.call_types.due_at((NS, "ct-2")) is None
    assert kube.calls == ["write_status calltypes"]


async def test_a_relist_forgets_what_vanished_in_its_own_scope_and_asks_for_no_resync(
) -> None:
    """Issue 24 item 5: a watch that relisted (410 Gone) hands over the keys it listed;
    what we hold in that watch's scope and the list lacks is forgotten then and there,
    without the full resync (a LIST of every kind in every namespace) a relist cost
    before. Objects of other namespaces, and one newer than the list, are kept."""
    kube = ScriptedKube()
    ctl = make(kube)
    await ctl.start()
    try:
        first = ctl.resync_schedule.due_at
        body = storage(ready=True)
        kube.objects["st"] = body
        ctl.on_storage_event(None, body)  # the relist's replay
        ctl.on_call_type_event(None, call_type("ct-2"))
        ctl.on_call_type_event(None, call_type("ct-new", rv="60"))
        other = {**call_type("ct-9"), "metadata": {**call_type("ct-9")["metadata"],
                                                   "namespace": "elsewhere"}}
        ctl.on_call_type_event(None, other)
        assert ctl.used_by((NS, "st")) == ("ct-2", "ct-new")
        ctl.on_relisted("calltype", NS, set(), "50")
        assert (NS, "ct-2") not in ctl.inv.call_types
        assert ctl.used_by((NS, "st")) == ("ct-new",)  # its round prunes usedBy
        assert ("elsewhere", "ct-9") in ctl.inv.call_types  # another watch's scope
        ctl.on_relisted("storage", None, {(NS, "st")}, "50")
        assert (NS, "st") in ctl.inv.storages
        assert ctl.resync_schedule.due_at == first, "a relist is no resync"
    finally:
        await ctl.stop()


async def test_a_relist_of_secrets_forgets_a_deleted_cached_one_and_a_recent_copy(
    provider: list[str],
) -> None:
    """A Secret deleted while its watch was away (410 Gone, relist): the cached copy a
    storage validated with goes, and the storage reports SecretNotFound; a recent copy
    of an unreferenced Secret goes too, so a storage applied later reads it afresh."""
    kube = ScriptedKube()
    ctl = make(kube)
    body = storage(ready=True)
    kube.objects["st"] = body
    ctl.on_storage_event("ADDED", body)
    ctl.on_secret_event("ADDED", secret("5", "KEY"))
    spare = {**secret("6", "SPARE"), "metadata": {"name": "spare", "namespace": NS,
                                                  "resourceVersion": "6"}}
    ctl.on_secret_event("ADDED", spare)  # no storage refers to it: a recent copy
    assert ctl.secrets.recent.get((NS, "spare")) is not None
    ctl.storages.forget((NS, "st"))
    ctl.on_relisted("secret", NS, set(), "50")
    assert (NS, "creds") not in ctl.inv.secrets
    assert ctl.secrets.recent.get((NS, "spare")) is None
    await drain(ctl)
    assert _ready(kube.objects["st"]["status"])["reason"] == "SecretNotFound"
    assert provider == []
    assert not [c for c in kube.calls if c.startswith("list")], "no resync LIST"


# --- item 4: status and finalizers the operator owns are restored ---------------------------

def _ready(status: Mapping[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


async def test_a_status_overwritten_by_someone_else_is_restored_without_revalidating(
    provider: list[str],
) -> None:
    kube = ScriptedKube()
    ctl = make(kube)
    body = storage()
    kube.objects["st"] = body
    ctl.on_storage_event("ADDED", body)
    ctl.on_secret_event("ADDED", secret("5", "KEY"))
    ctl.storages.add((NS, "st"), VALIDATE)
    await drain(ctl)
    assert _ready(kube.objects["st"]["status"])["status"] == "True"
    good = copy.deepcopy(kube.objects["st"]["status"])
    assert len(provider) == 1
    # kubectl patch --subresource=status: a foreign usedBy and a fake reason
    tampered = copy.deepcopy(kube.objects["st"])
    tampered["status"]["usedBy"] = ["ghost"]
    _ready(tampered["status"])["reason"] = "Faked"
    tampered["status"]["extra"] = "x"
    kube.rv += 1
    tampered["metadata"]["resourceVersion"] = str(kube.rv)
    kube.objects["st"] = tampered
    ctl.on_storage_event("MODIFIED", tampered)
    await drain(ctl)
    assert kube.objects["st"]["status"] == good
    assert len(provider) == 1, "restoring status must not validate again"
    assert kube.events.count(("Normal", "Validated")) == 0, "a first success posts none"


async def test_a_stripped_in_use_finalizer_is_put_back() -> None:
    from callstorage.api import IN_USE_FINALIZER

    kube = ScriptedKube()
    ctl = make(kube)
    body = in_use(storage(ready=True))
    kube.objects["st"] = body
    ctl.on_storage_event("ADDED", body)
    ctl.on_call_type_event("ADDED", call_type())
    await drain(ctl)
    stripped = copy.deepcopy(kube.objects["st"])
    stripped["metadata"]["finalizers"] = []
    kube.rv += 1
    stripped["metadata"]["resourceVersion"] = str(kube.rv)
    kube.objects["st"] = stripped
    ctl.on_storage_event("MODIFIED", stripped)
    assert ctl.storages.due_at((NS, "st")) is not None, "the change was ignored"
    await drain(ctl)
    assert kube.objects["st"]["metadata"]["finalizers"] == [IN_USE_FINALIZER]


async def test_a_call_types_overwritten_resolved_storage_is_restored() -> None:
    kube = ScriptedKube()
    ctl = make(kube)
    ct = call_type()
    kube.call_types["ct-2"] = ct
    ctl.on_call_type_event("ADDED", ct)
    await ctl.reconcile_call_type((NS, "ct-2"))
    good = copy.deepcopy(kube.call_types["ct-2"]["status"])
    assert good["resolvedStorage"]["name"] == "st"
    evil = copy.deepcopy(kube.call_types["ct-2"])
    evil["status"]["resolvedStorage"] = {"name": "evil", "namespace": NS}
    kube.rv += 1
    evil["metadata"]["resourceVersion"] = str(kube.rv)
    kube.call_types["ct-2"] = evil
    ctl.call_types.forget((NS, "ct-2"))
    ctl.on_call_type_event("MODIFIED", evil)
    assert ctl.call_types.due_at((NS, "ct-2")) is not None, "the change was ignored"
    await ctl.reconcile_call_type((NS, "ct-2"))
    assert kube.call_types["ct-2"]["status"] == good


# --- item 6: fairness ------------------------------------------------------------------------

async def test_twenty_storages_on_a_hanging_endpoint_leave_workers_for_other_tenants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11 item 6: 20 storages on one hanging endpoint took all 16 workers and another
    tenant's new storage waited 20.6 s. Now that endpoint holds at most W - W/4 = 12 (its
    share of 4 and what it may borrow while the last 4 stay free). Each storage has its
    own bucket: identical ones would share one request in flight."""
    import threading
    import time

    release = threading.Event()
    lock = threading.Lock()
    running = {"now": 0, "most": 0}

    class Hanging(FakeClient):
        def __init__(self, hangs: bool) -> None:
            self.hangs = hangs

    def build_client(spec: Any, inputs: Any, settings: Any) -> FakeClient:
        return Hanging(bool(spec.s3 and spec.s3.endpoint and "hang" in spec.s3.endpoint))

    def validate(client: Hanging, spec: Any) -> Capabilities:
        if client.hangs:
            with lock:
                running["now"] += 1
                running["most"] = max(running["most"], running["now"])
            release.wait(30)
            with lock:
                running["now"] -= 1
        return Capabilities(read=True)

    monkeypatch.setattr(validating_module, "build_client", build_client)
    monkeypatch.setattr(validating_module, "validate_storage", validate)
    kube = ScriptedKube()
    for i in range(20):
        body = storage()
        body["metadata"] = {**body["metadata"], "name": f"hang-{i}", "namespace": "a"}
        body["spec"] = {**body["spec"], "bucket": f"hang-{i}", "s3": {
            **body["spec"]["s3"], "endpoint": "http://hang.example:9000"}}
        kube.objects[f"hang-{i}"] = body
    from callstorage.kube import decode_secret

    kube.read_secret_result = decode_secret("5", secret("5", "KEY")["data"])
    ctl = make(kube)  # 16 workers
    try:
        await ctl.start()
        for _ in range(100):  # the hanging endpoint has taken what it may
            await asyncio.sleep(0.01)
            if running["now"] == 12:
                break
        fresh = storage()
        fresh["metadata"] = {**fresh["metadata"], "name": "fresh", "namespace": "b"}
        kube.objects["fresh"] = fresh
        started = time.monotonic()
        ctl.on_storage_event("ADDED", fresh)
        while time.monotonic() - started < 5:
            status = kube.objects["fresh"].get("status") or {}
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in status.get("conditions") or []):
                break
            await asyncio.sleep(0.01)
        waited = time.monotonic() - started
        assert waited < 1.0, f"the other tenant's storage waited {waited:.1f}s"
        assert running["most"] == 12
        assert ctl.queues.fair.parked() == 8
        release.set()
        for _ in range(300):  # the parked ones run after all
            await asyncio.sleep(0.01)
            if all(_ready(kube.objects[f"hang-{i}"].get("status") or {"conditions": [
                    {"type": "Ready", "status": "?"}]})["status"] == "True"
                   for i in range(20)):
                break
        assert ctl.queues.fair.parked() == 0
        assert running["most"] == 12
    finally:
        release.set()
        await ctl.stop()


# --- item 8: checks exactly once -------------------------------------------------------------

async def test_a_check_run_again_after_a_crash_uploads_the_same_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11 item 8: a crash between the upload and the status write made the restarted
    operator upload a second object for the same request."""
    from callstorage.api import CHECK_ANNOTATION
    from callstorage.engine.queueing import CHECK
    from callstorage.kube import decode_secret

    puts: list[str] = []

    class Recording(FakeClient):
        def put_object(self, key: str, body: bytes, content_type: str) -> None:
            puts.append(key)

    monkeypatch.setattr(validating_module, "build_client", lambda *_: Recording())
    kube = ScriptedKube()
    kube.read_secret_result = decode_secret("5", secret("5", "KEY")["data"])
    body = storage(ready=True)
    body["metadata"]["annotations"] = {CHECK_ANNOTATION: "1764200000"}
    kube.objects["st"] = body
    key = (NS, "st")
    first = make(kube)
    first.on_storage_event("ADDED", body)
    kube.fail_patches = 1  # uploaded; then the status write fails and the operator dies
    await first.storage_round(key, {CHECK})
    assert len(puts) == 1
    assert "lastCheck" not in kube.objects["st"]["status"]
    second = make(kube)  # the restarted operator finds the request unanswered
    second.on_storage_event("ADDED", kube.objects["st"])
    await second.reconcile_storage(key, {CHECK})
    assert len(puts) == 2
    assert puts[0] == puts[1], "the same request made a second object"
    assert kube.objects["st"]["status"]["lastCheck"]["object"] == f"s3://bucket-1/{puts[0]}"
    # a new request is a new object
    again = copy.deepcopy(kube.objects["st"])
    again["metadata"]["annotations"] = {CHECK_ANNOTATION: "1764200999"}
    kube.rv += 1
    again["metadata"]["resourceVersion"] = str(kube.rv)
    kube.objects["st"] = again
    second.on_storage_event("MODIFIED", again)
    await second.reconcile_storage(key, {CHECK})
    assert len(set(puts)) == 2


# --- item 9: namespace teardown --------------------------------------------------------------

@pytest.mark.parametrize("terminating", [True, False])
async def test_a_secret_deleted_with_its_namespace_validates_nothing_and_posts_nothing(
    provider: list[str], terminating: bool,
) -> None:
    """Issue 11 item 9: deleting a namespace deleted its Secrets first, and the storages
    were re-validated on the way out (SecretNotFound, Warning events refused with 403).
    In a live namespace a deleted Secret still turns the storage SecretNotFound."""
    kube = ScriptedKube()
    if terminating:
        kube.terminating.add(NS)
    ctl = make(kube)
    body = storage(ready=True)
    kube.objects["st"] = body
    ctl.on_storage_event("ADDED", body)
    ctl.on_secret_event("ADDED", secret("5", "KEY"))
    ctl.storages.forget((NS, "st"))
    ctl.on_secret_event("DELETED", secret("6", "KEY"))
    await drain(ctl)
    ready = _ready(kube.objects["st"]["status"])
    if terminating:
        assert ready["reason"] == "Validated"
        assert kube.events == []
    else:
        assert ready["reason"] == "SecretNotFound"
        assert kube.events == [("Warning", "SecretNotFound")]
    assert provider == []
    # asked for the round and, in a live namespace, again before posting the Warning
    assert kube.calls.count(f"namespace_terminating {NS}") == (1 if terminating else 2)


async def test_call_type_warnings_are_not_posted_into_a_terminating_namespace() -> None:
    kube = ScriptedKube()
    kube.terminating.add(NS)
    ctl = make(kube)
    old = call_type()
    old["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"  # past the grace period
    kube.call_types["ct-2"] = old
    ctl.on_call_type_event("ADDED", old)
    await ctl.reconcile_call_type((NS, "ct-2"))  # its storage is gone: Stalled
    stalled = [c for c in kube.call_types["ct-2"]["status"]["conditions"]
               if c["type"] == "Stalled"]
    assert stalled, "the status still tells the truth"
    assert kube.events == []


async def test_a_second_writer_fighting_over_status_is_answered_with_backoff(
    provider: list[str],
) -> None:
    """Restoring must not become a write loop when someone keeps overwriting (two
    operators during a botched rollout): the first restore is immediate, later ones
    back off exponentially."""
    kube = ScriptedKube()
    ctl = make(kube)
    body = storage(ready=True)
    kube.objects["st"] = body
    ctl.on_storage_event("ADDED", body)
    await drain(ctl)
    key = (NS, "st")
    delays = []
    for _ in range(5):
        tampered = copy.deepcopy(kube.objects["st"])
        tampered["status"]["usedBy"] = ["other-operator"]
        kube.rv += 1
        tampered["metadata"]["resourceVersion"] = str(kube.rv)
        kube.objects["st"] = tampered
        ctl.storages.forget(key)
        ctl.on_storage_event("MODIFIED", tampered)
        due = ctl.storages.due_at(key)
        assert due is not None
        delays.append(due - ctl.storages._clock())
        ctl.storages.forget(key)  # run the restore now, whenever it was due
        await ctl.storage_round(key, {"refs"})
        assert kube.objects["st"]["status"]["usedBy"] == []
    assert delays[0] <= 0.01
    assert all(b > a for a, b in itertools.pairwise(delays)), delays
    assert provider == []


async def test_a_resync_feeds_a_change_the_watch_missed_and_keeps_newer_objects(
    provider: list[str],
) -> None:
    """The LIST goes through the normal event path: a spec change the watch missed is
    seen (and validated); an object held at a newer version than the LIST is kept."""
    kube = ScriptedKube()
    ctl = make(kube)
    body = storage(ready=True)
    ctl.on_storage_event("ADDED", body)
    ctl.on_call_type_event("ADDED", call_type(rv="90"))  # newer than the LIST below
    changed = copy.deepcopy(body)
    changed["metadata"].update(generation=2, resourceVersion="50")
    changed["spec"]["bucket"] = "bucket-2"
    kube.objects["st"] = changed
    kube.rv = 60
    await ctl.resync()
    assert ctl.inv.storages[(NS, "st")]["spec"]["bucket"] == "bucket-2"
    assert (NS, "ct-2") in ctl.inv.call_types, "a CallType newer than the LIST was dropped"
    assert ctl.storages.due_at((NS, "st")) is not None


# --- a Secret deleted or changed while the watch was away ---------------------------------

async def test_a_resync_notices_a_secret_deleted_while_the_watch_was_away(
    provider: list[str],
) -> None:
    """Issue 11: a Secret deleted during a watch gap stayed cached (the relist replays live
    objects only), so its storage went on validating with the deleted credentials. The
    resync's metadata LIST of the storage's namespace finds it gone."""
    kube = ScriptedKube()
    ctl = make(kube)
    body = storage(ready=True)
    kube.objects["st"] = body
    ctl.on_storage_event("ADDED", body)
    ctl.on_secret_event("ADDED", secret("5", "KEY"))
    ctl.storages.forget((NS, "st"))
    kube.rv = 50  # the LIST is newer than the cached Secret, which is not in it
    await ctl.resync()
    assert (NS, "creds") not in ctl.inv.secrets
    assert kube.calls.count(f"list secrets {NS}") == 1
    await drain(ctl)
    assert _ready(kube.objects["st"]["status"])["reason"] == "SecretNotFound"
    assert provider == []


async def test_a_resync_keeps_a_secret_newer_than_its_list_and_rereads_a_changed_one(
    provider: list[str],
) -> None:
    kube = ScriptedKube()
    ctl = make(kube)
    body = storage(ready=True)
    body["status"]["observedSecretVersion"] = "60"
    kube.objects["st"] = body
    ctl.on_storage_event("ADDED", body)
    ctl.on_secret_event("ADDED", secret("60", "KEY"))  # the watch overtook the LIST
    ctl.storages.forget((NS, "st"))
    kube.rv = 50
    await ctl.resync()
    assert ctl.inv.secrets[(NS, "creds")].resource_version == "60"
    assert ctl.storages.due_at((NS, "st")) is None, "nothing to do"

    kube.rv, kube.secret_versions = 80, {"creds": "70"}  # a rotation the watch missed
    from callstorage.kube import decode_secret

    kube.read_secret_result = decode_secret("70", secret("70", "NEWKEY")["data"])
    await ctl.resync()
    assert (NS, "creds") not in ctl.inv.secrets
    await drain(ctl)
    assert provider == ["NEWKEY"]
    assert kube.objects["st"]["status"]["observedSecretVersion"] == "70"


# --- issue 24 item 3: a name outlives its objects ---------------------------------------------

def another(body: dict[str, Any], uid: str, rv: str, bucket: str) -> dict[str, Any]:
    """``body`` deleted and created again under its name: a new uid, another bucket."""
    return {**body, "metadata": {**body["metadata"], "uid": uid, "resourceVersion": rv},
            "spec": {**body["spec"], "bucket": bucket}}


async def test_a_result_is_never_written_on_a_storage_created_again_under_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first object's validation is in flight when it is deleted and created again
    with another bucket: the old round's result is dropped, the new object validated."""
    import threading

    from callstorage.api.reasons import Reason
    from callstorage.providers.base import ProviderError

    release, asked = threading.Event(), []

    def validate(client: FakeClient, spec: Any) -> Capabilities:
        asked.append(spec.bucket)
        if spec.bucket != "bucket-1":
            raise ProviderError(Reason.BUCKET_NOT_FOUND, f"no bucket {spec.bucket}")
        release.wait(10)
        return Capabilities(read=True)

    monkeypatch.setattr(validating_module, "build_client", lambda *_: FakeClient())
    monkeypatch.setattr(validating_module, "validate_storage", validate)
    from callstorage.kube import decode_secret

    kube = ScriptedKube()
    ctl = make(kube)
    ctl.on_secret_event("ADDED", secret("5", "KEY"))
    kube.read_secret_result = decode_secret("5", secret("5", "KEY")["data"])
    first, key = storage(), (NS, "st")
    kube.objects["st"] = first
    ctl.on_storage_event("ADDED", first)
    round_ = asyncio.create_task(ctl.storage_round(key, {VALIDATE}))
    await until(lambda: asked == ["bucket-1"], 5, "the first validation in flight")
    del kube.objects["st"]
    ctl.on_storage_event("DELETED", {**first, "metadata": {**first["metadata"],
                                                           "resourceVersion": "30"}})
    second = another(first, "u2", "31", "bucket-2")
    kube.objects["st"] = copy.deepcopy(second)
    ctl.on_storage_event("ADDED", second)
    release.set()
    await round_
    assert "status" not in kube.objects["st"], "the first object's result was written"
    assert ctl.storages.due_at(key) is not None, "the new object was not queued"
    await drain(ctl)
    status = kube.objects["st"]["status"]
    assert (_ready(status)["status"], _ready(status)["reason"]) == ("False", "BucketNotFound")
    assert asked == ["bucket-1", "bucket-2"]


async def test_news_of_the_old_object_leave_its_successor_alone(provider: list[str]) -> None:
    """A late deletion, a 404 or a refused write about the first object under a name do
    not forget the second; a relist that shows only the second drops the first's state."""
    kube = ScriptedKube()
    ctl = make(kube)
    ctl.on_secret_event("ADDED", secret("5", "KEY"))
    first, key = storage(), (NS, "st")
    kube.objects["st"] = first
    ctl.on_storage_event("ADDED", first)
    await ctl.storage_round(key, {VALIDATE})
    assert ctl.storage_state.get(key, "u1") is not None
    base = kube.rv
    second = another(kube.objects["st"], "u2", str(base + 10), "bucket-2")
    kube.objects["st"] = second
    ctl.on_storage_event("MODIFIED", second)  # a relist: the deletion was not seen
    assert ctl.storage_state.get(key, "u1") is None, "the first object's state was kept"
    ctl.on_storage_event("DELETED", {**first, "metadata": {
        **first["metadata"], "resourceVersion": str(base + 5)}})
    ctl.intake.forget_gone(ObjectGone("externalstorages", NS, "st", "u1"))
    assert ctl.inv.storages[key]["metadata"]["uid"] == "u2"
    stale = {**first, "metadata": {**first["metadata"], "resourceVersion": str(base + 3)}}
    ctl.on_storage_event("MODIFIED", stale)  # a copy of the first, answered late
    assert ctl.inv.storages[key]["metadata"]["uid"] == "u2"


# --- issue 24 item 9: bookkeeping stays flat under churn ---------------------------------------

async def test_bookkeeping_returns_to_its_baseline_after_churn(provider: list[str]) -> None:
    """Storages, CallTypes and Secrets created, validated, failed, overwritten and deleted;
    the cluster's other Secrets come and go; namespaces are torn down. Nothing is kept
    per object once it is gone, deletions are remembered only for the operator's own
    objects and only for a while, and teardown answers expire."""
    kube = ScriptedKube()
    ctl = make(kube)
    now = [1000.0]
    ctl.inv.versions._tombstones._clock = lambda: now[0]
    ctl.events.terminating._clock = lambda: now[0]
    baseline = ctl.bookkeeping()
    assert set(baseline.values()) == {0}
    for i in range(40):
        name, creds = f"st-{i}", f"creds-{i}"
        body = storage()
        body["metadata"] = {**body["metadata"], "name": name, "uid": f"u-{i}"}
        body["spec"]["s3"] = {**body["spec"]["s3"], "credentialsSecretRef": {"name": creds}}
        ctl.on_secret_event("ADDED", {**secret("5", "K"), "metadata": {
            "name": creds, "namespace": NS, "resourceVersion": "5"}})
        kube.objects[name] = body
        ctl.on_storage_event("ADDED", body)
        ctl.on_call_type_event("ADDED", call_type(f"ct-{i}", target=name))
        kube.call_types[f"ct-{i}"] = call_type(f"ct-{i}", target=name)
        await ctl.storage_round((NS, name), {VALIDATE})
        await ctl.reconcile_call_type((NS, f"ct-{i}"))
        kube.fail_patches = 1  # a failed round: counted, its result kept unwritten
        await ctl.storage_round((NS, name), {VALIDATE})
        tampered = copy.deepcopy(kube.objects[name])
        tampered["status"]["usedBy"] = ["ghost"]
        tampered["metadata"]["resourceVersion"] = str(kube.rv + 1)
        ctl.on_storage_event("MODIFIED", tampered)  # a restore counted
        kube.terminating.add(f"gone-{i}")
        await ctl.events.namespace_terminating(f"gone-{i}")
        await ctl.events.namespace_terminating(f"live-{i}")
    assert ctl.bookkeeping()["storage_state"] == 40
    for i in range(500):  # the rest of the cluster's Secrets
        other = {**secret("7", "X"), "metadata": {"name": f"other-{i}", "namespace": NS,
                                                  "resourceVersion": str(2000 + i)}}
        ctl.on_secret_event("ADDED", other)
        ctl.on_secret_event("DELETED", other)
    for i in range(40):
        ct = call_type(f"ct-{i}", rv="3000", target=f"st-{i}")
        ctl.on_call_type_event("DELETED", ct)
        body = kube.objects.pop(f"st-{i}")
        ctl.on_storage_event("DELETED", {**body, "metadata": {**body["metadata"],
                                                              "resourceVersion": "3001"}})
        ctl.on_secret_event("DELETED", {**secret("8", "K"), "metadata": {
            "name": f"creds-{i}", "namespace": NS, "resourceVersion": "3002"}})
    after = ctl.bookkeeping()
    # forgotten heap entries wait for their time, a bounded few (WorkQueue._compact)
    assert after["storage_queue"] <= 64, after
    assert after["call_type_queue"] <= 64, after
    left = {k: v for k, v in after.items() if v and k not in (
        "tombstones", "terminating", "storage_queue", "call_type_queue")}
    assert left == {}, f"kept for objects that are gone: {left}"
    assert after["tombstones"] == 80, "deletions remembered beyond the operator's objects"
    assert after["terminating"] == 40, "live namespaces remembered"
    now[0] += 601  # past TOMBSTONE_SECONDS and TERMINATING_TTL
    ctl.on_secret_event("DELETED", {**secret("9", "K"), "metadata": {
        "name": "creds-0", "namespace": NS, "resourceVersion": "4000"}})
    ctl.inv.versions.bury("storage", (NS, "x"), "4001")  # any write drops the expired
    ctl.events.terminating.set("gone-x", True)
    assert ctl.bookkeeping()["tombstones"] == 1
    assert ctl.bookkeeping()["terminating"] == 1
