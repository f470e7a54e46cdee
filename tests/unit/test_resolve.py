"""Storage resolution: the seed's order as a table, and ``resolve`` over a fake API server."""

from __future__ import annotations

import json
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

import callstorage
from callstorage import client as client_module
from callstorage.resolution import (
    CallTypeNotFound,
    Source,
    StorageChoice,
    StorageNotFound,
    StorageNotReady,
    choose_storage,
    describe_storage,
    is_platform_reference,
    resolve,
)
from callstorage.settings import Settings

APP = "app-1"
PLATFORM_NS = "callstorage-system"
PLATFORM = "platform-default"


def choice(ns: str, name: str, source: Source, requested: str | None) -> StorageChoice:
    return StorageChoice(ns, name, source, requested)


PLATFORM_DEFAULT = Source.PLATFORM_DEFAULT


@pytest.mark.parametrize(("call_type_storage", "call_storage", "expected"), [
    # nothing specified: the platform default
    (None, None, choice(PLATFORM_NS, PLATFORM, PLATFORM_DEFAULT, None)),
    ("", None, choice(PLATFORM_NS, PLATFORM, PLATFORM_DEFAULT, None)),
    (None, "", choice(PLATFORM_NS, PLATFORM, PLATFORM_DEFAULT, None)),
    # the call type decides
    ("my-s3", None, choice(APP, "my-s3", Source.CALL_TYPE, "my-s3")),
    ("my-s3", "", choice(APP, "my-s3", Source.CALL_TYPE, "my-s3")),
    ("stream-s3", None, choice(PLATFORM_NS, PLATFORM, PLATFORM_DEFAULT, "stream-s3")),
    # the call decides, whatever the call type says
    (None, "other", choice(APP, "other", Source.CALL, "other")),
    ("my-s3", "other", choice(APP, "other", Source.CALL, "other")),
    ("stream-s3", "other", choice(APP, "other", Source.CALL, "other")),
    ("my-s3", "stream-s3", choice(PLATFORM_NS, PLATFORM, PLATFORM_DEFAULT, "stream-s3")),
    (None, "stream-s3", choice(PLATFORM_NS, PLATFORM, PLATFORM_DEFAULT, "stream-s3")),
])
def test_resolution_order(call_type_storage: str | None, call_storage: str | None,
                          expected: StorageChoice) -> None:
    assert choose_storage(APP, call_type_storage, call_storage,
                          platform_namespace=PLATFORM_NS, platform_name=PLATFORM) == expected


def test_a_storage_named_like_the_platform_one_in_a_tenant_namespace_stays_the_tenants() -> None:
    got = choose_storage(APP, PLATFORM, None, platform_namespace=PLATFORM_NS,
                         platform_name=PLATFORM)
    assert (got.namespace, got.name, got.platform) == (APP, PLATFORM, False)


def test_agrees_with_the_call_type_status_the_operator_writes() -> None:
    from callstorage.reconcile.calltype import storage_target

    for setting in (None, "", "stream-s3", "my-s3"):
        got = choose_storage(APP, setting, None, platform_namespace=PLATFORM_NS,
                             platform_name=PLATFORM)
        assert ((got.namespace, got.name), str(got.source)) == \
            storage_target(APP, setting, PLATFORM_NS, PLATFORM)


@pytest.mark.parametrize(("name", "platform"), [
    (None, True), ("", True), ("stream-s3", True), ("my-s3", False), ("stream-s3x", False)])
def test_is_platform_reference(name: str | None, platform: bool) -> None:
    assert is_platform_reference(name) is platform


# --- describing the chosen storage ---------------------------------------------------------


def storage(name: str = "my-s3", namespace: str = APP, *, ready: str | None = "True",
            reason: str = "Validated", generation: int = 1, observed: int = 1,
            terminating: bool = False, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "generation": generation}
    if terminating:
        meta["deletionTimestamp"] = "2025-01-15T10:00:00Z"
        meta["finalizers"] = ["callstorage.io/in-use-protection"]
    status: dict[str, Any] = {"observedGeneration": observed}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": reason,
                                 "message": f"{reason} message", "observedGeneration": observed}]
    full_spec = {"storageType": "s3", "bucket": "my-bucket", "path": "directory_name/",
                 "s3": {"region": "us-east-1"}, **spec}
    return {"apiVersion": "callstorage.io/v1alpha1", "kind": "ExternalStorage",
            "metadata": meta, "spec": full_spec, "status": status}


CT_CHOICE = choice(APP, "my-s3", Source.CALL_TYPE, "my-s3")


def test_describe_a_ready_storage_with_effective_prefixes_from_its_spec() -> None:
    got = describe_storage(storage(prefixes={"audio": "recordings/audio"},
                                   accessMode="WriteOnly"), CT_CHOICE, "allhands")
    assert got.ready is True
    assert got.reason == "Validated"
    assert (got.namespace, got.name, got.source) == (APP, "my-s3", Source.CALL_TYPE)
    assert (got.storage_type, got.bucket, got.access_mode) == ("s3", "my-bucket", "WriteOnly")
    assert got.prefixes == {"audio": "recordings/audio", "video": "directory_name",
                            "transcript": "directory_name", "metadata": "directory_name"}
    assert got.terminating is False
    as_json = json.loads(json.dumps(got.to_dict()))
    assert as_json["source"] == "CallType"
    assert as_json["callType"] == "allhands"


def test_describe_a_failing_storage_keeps_its_reason() -> None:
    got = describe_storage(storage(ready="False", reason="AccessDenied"), CT_CHOICE)
    assert (got.ready, got.reason, got.message) == (False, "AccessDenied", "AccessDenied message")


def test_a_condition_for_an_older_generation_is_not_ready() -> None:
    got = describe_storage(storage(generation=3, observed=2), CT_CHOICE)
    assert got.ready is False
    assert got.reason == "Pending"
    assert "generation 3" in got.message


def test_a_storage_never_validated_is_pending() -> None:
    got = describe_storage(storage(ready=None), CT_CHOICE)
    assert (got.ready, got.reason) == (False, "Pending")


def test_a_terminating_storage_still_resolves_to_itself() -> None:
    got = describe_storage(storage(terminating=True), CT_CHOICE)
    assert got.name == "my-s3"
    assert got.terminating is True
    assert got.ready is True


def test_an_invalid_spec_falls_back_to_the_status_prefixes() -> None:
    obj = storage(bucket="Not_A_Bucket")
    obj["status"]["effectivePrefixes"] = {"audio": "old"}
    assert describe_storage(obj, CT_CHOICE).prefixes == {"audio": "old"}


# --- resolve() over a fake API server --------------------------------------------------------


class FakeCustomObjects:
    """Just the reads ``resolve`` makes, over a dict of objects."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = {}
    calls: list[tuple[str, ...]] = []

    def __init__(self, api_client: Any) -> None:
        pass

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                     plural: str, name: str, **_: Any) -> dict[str, Any]:
        self.calls.append(("get", namespace, plural, name))
        try:
            return self.objects[(namespace, plural, name)]
        except KeyError:
            raise ApiException(status=404, reason="Not Found") from None

    def list_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                      plural: str, label_selector: str = "",
                                      **_: Any) -> dict[str, Any]:
        self.calls.append(("list", namespace, plural, label_selector))
        key, _, value = label_selector.partition("=")
        items = [o for (ns, p, _n), o in self.objects.items() if ns == namespace and p == plural
                 and (o["metadata"].get("labels") or {}).get(key) == value]
        return {"items": items}


def call_type(name: str, external_storage: str | None = None,
              labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": APP}
    if labels:
        meta["labels"] = labels
    spec = {"externalStorage": external_storage} if external_storage else {}
    return {"apiVersion": "callstorage.io/v1alpha1", "kind": "CallType", "metadata": meta,
            "spec": spec}


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> type[FakeCustomObjects]:
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", FakeCustomObjects)
    FakeCustomObjects.objects = {
        (APP, "calltypes", "allhands"): call_type("allhands", "my-s3"),
        (APP, "calltypes", "default"): call_type("default"),
        (APP, "calltypes", "platform"): call_type("platform", "stream-s3"),
        (APP, "calltypes", "dangling"): call_type("dangling", "gone"),
        (APP, "calltypes", "audio-room"): call_type("audio-room", "other",
                                                    {"callstorage.io/call-type": "audio_room"}),
        (APP, "externalstorages", "my-s3"): storage("my-s3"),
        (APP, "externalstorages", "other"): storage("other", ready="False",
                                                    reason="BucketNotFound"),
        (PLATFORM_NS, "externalstorages", PLATFORM): storage(PLATFORM, PLATFORM_NS),
    }
    FakeCustomObjects.calls = []
    return FakeCustomObjects


SETTINGS = Settings(namespace=PLATFORM_NS, platform_storage=PLATFORM)


def run(call_type_name: str, call_storage: str | None = None, **kw: Any) -> Any:
    return resolve(APP, call_type_name, call_storage, api_client=object(),  # type: ignore[arg-type]
                   settings=SETTINGS, **kw)


@pytest.mark.usefixtures("fake_api")
@pytest.mark.parametrize(("ct", "call_storage", "where", "source"), [
    ("allhands", None, (APP, "my-s3"), Source.CALL_TYPE),
    ("allhands", "other", (APP, "other"), Source.CALL),
    ("allhands", "stream-s3", (PLATFORM_NS, PLATFORM), Source.PLATFORM_DEFAULT),
    ("default", None, (PLATFORM_NS, PLATFORM), Source.PLATFORM_DEFAULT),
    ("platform", None, (PLATFORM_NS, PLATFORM), Source.PLATFORM_DEFAULT),
    ("audio_room", None, (APP, "other"), Source.CALL_TYPE),
])
def test_resolve(ct: str, call_storage: str | None, where: tuple[str, str],
                 source: Source) -> None:
    got = run(ct, call_storage)
    assert ((got.namespace, got.name), got.source) == (where, source)


def test_a_valid_call_type_name_costs_one_read(fake_api: type[FakeCustomObjects]) -> None:
    run("allhands")
    assert fake_api.calls[0] == ("get", APP, "calltypes", "allhands")
    assert [c[0] for c in fake_api.calls] == ["get", "get"]


@pytest.mark.usefixtures("fake_api")
def test_unknown_call_type() -> None:
    with pytest.raises(CallTypeNotFound) as caught:
        run("nope")
    assert caught.value.reason == "CallTypeNotFound"
    assert "'nope'" in caught.value.message
    assert APP in caught.value.message


@pytest.mark.usefixtures("fake_api")
def test_a_missing_storage_is_an_error_never_a_fallback() -> None:
    with pytest.raises(StorageNotFound, match="named by CallType 'dangling'"):
        run("dangling")
    with pytest.raises(StorageNotFound, match="named for the call"):
        run("allhands", "missing")


def test_a_missing_platform_storage_says_how_to_fix_it(
        fake_api: type[FakeCustomObjects]) -> None:
    del fake_api.objects[(PLATFORM_NS, "externalstorages", PLATFORM)]
    with pytest.raises(StorageNotFound, match="platform storage"):
        run("default")


@pytest.mark.usefixtures("fake_api")
def test_not_ready_is_reported_and_only_raised_on_request() -> None:
    got = run("allhands", "other")
    assert (got.ready, got.reason) == (False, "BucketNotFound")
    with pytest.raises(StorageNotReady) as caught:
        run("allhands", "other", require_ready=True)
    assert caught.value.reason == "BucketNotFound"
    assert caught.value.storage.name == "other"


def test_a_terminating_storage_resolves_to_itself(fake_api: type[FakeCustomObjects]) -> None:
    fake_api.objects[(APP, "externalstorages", "my-s3")] = storage(terminating=True)
    got = run("allhands", require_ready=True)
    assert (got.name, got.terminating, got.platform) == ("my-s3", True, False)


@pytest.mark.usefixtures("fake_api")
def test_an_invalid_call_storage_name_is_a_usage_error() -> None:
    with pytest.raises(client_module.InvalidRequest):
        run("allhands", "Not/A/Name")


def test_the_package_exports_resolve_lazily_and_callably() -> None:
    import callstorage.resolution as module

    assert callable(callstorage.resolve)
    # the function, not a module: ``callstorage.resolve`` is no submodule any more
    assert callstorage.resolve is module.resolve
    assert callstorage.ResolvedStorage is module.ResolvedStorage
