"""A pin is input, not authority: through the public API against the real API server and
moto (IAM enforced), a forged or edited pin gets no URL and nothing reaches the bucket
(moto's own request log says so), a pin serves only the namespace it was made for, and
two tenants' calls with the same id on the shared platform storage never share a key."""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from test_media import Backend, make_storage, set_call_type

import storages
from callstorage.client import InvalidRequest
from callstorage.media import (
    Artifact,
    InvalidPin,
    PinKeyUnavailable,
    PinNotForCaller,
    StoredLocation,
    presigned_url,
    upload_artifacts,
)
from callstorage.pins import PIN_KEY_ENTRY, PIN_KEY_SECRET, load_pin_key
from callstorage.settings import Settings
from conftest import OPERATOR_NAMESPACE
from storages import EXS
from testbed import kubeutil
from testbed.s3 import S3Server, readwrite_policy

MAX_WEEK = 7 * 24 * 3600  # the longest URL presigned_url signs
pytestmark = pytest.mark.usefixtures("operator")


@dataclass
class Platform:
    """A platform storage of its own (in the operator's namespace) and the settings that
    name it, so these tests share nothing with others; its keys may also read ``other``."""

    name: str
    bucket: str
    other: str
    settings: Settings


@pytest.fixture
def platform(kube_api: Any, namespace: str, s3_server: S3Server,
             credential_values: set[str]) -> Iterator[Platform]:
    name = f"pf-{secrets.token_hex(3)}"
    bucket, other = f"pf-{secrets.token_hex(4)}", f"other-{secrets.token_hex(4)}"
    for b in (bucket, other):
        s3_server.create_bucket(b)
    statements = [s for b in (bucket, other) for s in readwrite_policy(b)["Statement"]]
    keys = s3_server.create_user(f"u-{name}", {"Version": "2012-10-17",
                                               "Statement": statements})
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    kubeutil.secret(kube_api, OPERATOR_NAMESPACE, f"{name}-creds",
                    {**keys.as_secret_data(), "endpoint": s3_server.endpoint})
    kubeutil.create_object(kube_api, EXS, OPERATOR_NAMESPACE, storages.external_storage(
        name, storages.s3_storage_spec(bucket, s3_server.endpoint, f"{name}-creds",
                                       path="calls")))
    storages.wait_ready(kube_api, EXS, OPERATOR_NAMESPACE, name, "True", "Validated",
                        timeout=20)
    yield Platform(name, bucket, other,
                   Settings(namespace=OPERATOR_NAMESPACE, platform_storage=name))
    client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
        "callstorage.io", "v1alpha1", OPERATOR_NAMESPACE, EXS, name)
    client.CoreV1Api(kube_api).delete_namespaced_secret(f"{name}-creds", OPERATOR_NAMESPACE)


@pytest.fixture
def second_namespace(kube_api: Any, namespace: str) -> Iterator[str]:
    name = f"{namespace}-b"
    kubeutil.create_namespace(kube_api, name)
    yield name
    kubeutil.delete_namespace(kube_api, name)


def requests_for(s3_server: S3Server, bucket: str) -> list[str]:
    """The requests moto logged for ``bucket`` (path-style: ``GET /bucket/key ...``)."""
    return [line for line in s3_server.log_path.read_text(errors="replace").splitlines()
            if f" /{bucket}" in line]


def pin_key_forms(kube_api: Any) -> set[str]:
    """The platform's pin key as the Secret holds it (base64) and as hex."""
    secret = client.CoreV1Api(kube_api).read_namespaced_secret(PIN_KEY_SECRET,
                                                               OPERATOR_NAMESPACE)
    encoded = secret.data[PIN_KEY_ENTRY]
    return {encoded, base64.b64decode(encoded).hex()}


def test_a_forged_or_edited_pin_gets_no_url_and_nothing_reaches_the_bucket(
    kube_api: Any, namespace: str, s3_server: S3Server, platform: Platform,
    credential_values: set[str],
) -> None:
    set_call_type(kube_api, namespace, "allhands", "stream-s3")
    genuine = upload_artifacts(namespace, "allhands", "c1", {"audio.wav": b"mine"},
                               api_client=kube_api, settings=platform.settings)
    keys = pin_key_forms(kube_api)
    credential_values.update(keys)  # the leak guard looks for it everywhere
    assert not any(k in genuine.to_json() for k in keys)
    url = presigned_url(genuine.to_json(), "audio.wav", namespace=namespace,
                        api_client=kube_api, settings=platform.settings)
    assert Backend("s3", s3_server, set()).fetch(url).content == b"mine"
    # another bucket the platform's keys may read, holding someone else's media
    s3_server.client().put_object(Bucket=platform.other, Key="x/secret.wav", Body=b"theirs")
    seen = len(requests_for(s3_server, platform.other))
    assert seen > 0  # the log records requests to that bucket

    pin = genuine.to_dict()
    audio = pin["objects"][0]
    forgeries = {
        # the report: the platform storage, another bucket and key, no uid
        "other bucket, key and no uid": pin | {
            "bucket": platform.other, "storage": pin["storage"] | {"uid": ""},
            "objects": [audio | {"key": "x/secret.wav"}]},
        "edited bucket": pin | {"bucket": platform.other},
        "edited key": pin | {"objects": [audio | {"key": "calls/other-ns/c1_audio.wav"}]},
        "edited namespace": pin | {"namespace": "other-ns"},
        "unsealed": {k: v for k, v in pin.items() if k != "seal"},
    }
    for what, forged in forgeries.items():
        with pytest.raises(InvalidPin) as caught:
            presigned_url(forged, "audio.wav", MAX_WEEK, namespace=namespace,
                          api_client=kube_api, settings=platform.settings)
        assert caught.value.reason in ("PinTampered", "InvalidLocation"), what
    assert len(requests_for(s3_server, platform.other)) == seen


def test_a_pin_serves_only_the_namespace_it_was_made_for(
    kube_api: Any, namespace: str, second_namespace: str, s3_server: S3Server,
    platform: Platform, credential_values: set[str],
) -> None:
    backend = Backend("s3", s3_server, credential_values)
    own_bucket = backend.new_bucket()
    make_storage(kube_api, namespace, backend, "own", own_bucket)
    set_call_type(kube_api, namespace, "own", "own")
    set_call_type(kube_api, namespace, "shared", "stream-s3")
    own = upload_artifacts(namespace, "own", "c1", {"audio.wav": b"own"},
                           api_client=kube_api, settings=platform.settings)
    shared = upload_artifacts(namespace, "shared", "c2", {"audio.wav": b"shared"},
                              api_client=kube_api, settings=platform.settings)
    before = {b: len(requests_for(s3_server, b)) for b in (own_bucket, platform.bucket)}
    for location in (own, shared):
        with pytest.raises(PinNotForCaller, match=f"made for namespace '{namespace}'"):
            presigned_url(location.to_json(), "audio.wav", namespace=second_namespace,
                          api_client=kube_api, settings=platform.settings)
    assert {b: len(requests_for(s3_server, b)) for b in before} == before
    for location, data in ((own, b"own"), (shared, b"shared")):
        url = presigned_url(location.to_json(), "audio.wav", namespace=namespace,
                            api_client=kube_api, settings=platform.settings)
        assert backend.fetch(url).content == data


def test_two_tenants_same_call_id_on_the_platform_storage_never_share_a_key(
    kube_api: Any, namespace: str, second_namespace: str, s3_server: S3Server,
    platform: Platform,
) -> None:
    written = {}
    for ns in (namespace, second_namespace):
        set_call_type(kube_api, ns, "allhands", "stream-s3")
        data = os.urandom(1000)
        written[ns] = (upload_artifacts(ns, "allhands", "same-id", {"audio.wav": data},
                                        api_client=kube_api, settings=platform.settings),
                       data)
    assert sorted(s3_server.list_keys(platform.bucket)) == sorted(
        f"calls/{ns}/same-id_{file}" for ns in written
        for file in ("audio.wav", "manifest.json"))
    backend = Backend("s3", s3_server, set())
    for ns, (location, data) in written.items():
        assert location.object("audio.wav").key == f"calls/{ns}/same-id_audio.wav"
        pinned = StoredLocation.from_json(location.to_json())
        url = presigned_url(pinned, "audio.wav", namespace=ns, api_client=kube_api,
                            settings=platform.settings)
        assert backend.fetch(url).content == data


def test_bad_call_ids_are_refused_before_anything_is_sent(
    kube_api: Any, namespace: str, s3_server: S3Server, credential_values: set[str],
) -> None:
    backend = Backend("s3", s3_server, credential_values)
    bucket = backend.new_bucket()
    make_storage(kube_api, namespace, backend, "media", bucket)
    set_call_type(kube_api, namespace, "allhands", "media")
    before = len(requests_for(s3_server, bucket))
    for call_id in ("abc_meeting", "a" * 129, "abc\u202egpj.exe", "abc\x85"):
        with pytest.raises(InvalidRequest, match="call id"):
            upload_artifacts(namespace, "allhands", call_id,
                             [Artifact("recording.mp4", source=b"x", category="video")],
                             api_client=kube_api)
    assert len(requests_for(s3_server, bucket)) == before
    assert s3_server.list_keys(bucket) == []


def test_the_pin_key_lives_in_a_secret_that_rotates(kube_api: Any, namespace: str) -> None:
    # this test's namespace plays the operator's, so the real key is left alone
    settings = Settings(namespace=namespace)
    with pytest.raises(PinKeyUnavailable) as caught:
        load_pin_key(kube_api, settings)
    assert caught.value.reason == "PinKeyMissing"
    first = load_pin_key(kube_api, settings, create=True)  # what the first upload does
    assert len(first.current) >= 32
    assert load_pin_key(kube_api, settings) == first
    sealed = _sealable().sealed(first)
    # rotation: the old key moves to `previous`, a new one becomes `key`
    new = os.urandom(32)
    client.CoreV1Api(kube_api).patch_namespaced_secret(PIN_KEY_SECRET, namespace, {"data": {
        "key": base64.b64encode(new).decode(),
        "previous": base64.b64encode(first.current).decode()}})
    rotated = load_pin_key(kube_api, settings)
    assert rotated.current == new
    sealed.check_seal(rotated)  # still accepted
    assert sealed.sealed(rotated).seal != sealed.seal
    client.CoreV1Api(kube_api).patch_namespaced_secret(PIN_KEY_SECRET, namespace, {
        "data": {"previous": None}})
    with pytest.raises(InvalidPin, match="seal does not match"):
        sealed.check_seal(load_pin_key(kube_api, settings))


def _sealable() -> StoredLocation:
    return StoredLocation(
        call_id="c", call_type="t", namespace="a", storage_namespace="a", storage_name="s",
        storage_uid="u", source="CallType", provider="s3", endpoint=None, account=None,
        bucket="b", access_mode="ReadWrite", uploaded_at="2026-01-01T00:00:00Z",
        manifest_key="c_manifest.json")


def test_cli_url_refuses_an_edited_pin_and_another_namespace(
    kube_api: Any, namespace: str, second_namespace: str, s3_server: S3Server,
    credential_values: set[str], control_plane: Any, tmp_path: Path,
) -> None:
    from callstorage.cli import main

    backend = Backend("s3", s3_server, credential_values)
    bucket = backend.new_bucket()
    make_storage(kube_api, namespace, backend, "media", bucket)
    set_call_type(kube_api, namespace, "allhands", "media")
    pin = upload_artifacts(namespace, "allhands", "x1", {"audio.wav": b"a"},
                           api_client=kube_api).to_dict()
    (tmp_path / "pin.json").write_text(json.dumps(pin))
    (tmp_path / "edited.json").write_text(json.dumps(pin | {"bucket": "elsewhere"}))
    kc = ["--kubeconfig", str(control_plane.kubeconfig), "url"]
    for args, code, reason in (
        (["-n", namespace, str(tmp_path / "pin.json")], 0, None),
        (["-n", namespace, str(tmp_path / "edited.json")], 2, "(PinTampered)"),
        (["-n", second_namespace, str(tmp_path / "pin.json")], 1, "(PinNotForCaller)"),
    ):
        out, err = io.StringIO(), io.StringIO()
        assert main([*kc, *args, "audio.wav"], out=out, err=err) == code, err.getvalue()
        if reason is None:
            assert backend.fetch(out.getvalue().strip()).content == b"a"
        else:
            assert out.getvalue() == ""
            assert reason in err.getvalue()


def test_a_tenant_without_the_pin_key_gets_a_clear_error_and_no_url(
    kube_api: Any, namespace: str, s3_server: S3Server, credential_values: set[str],
    control_plane: Any,
) -> None:
    """A tenant may read everything of its own namespace, Secrets included, but nothing of
    the operator's: it can neither seal nor verify a pin, so it gets no URL."""
    backend = Backend("s3", s3_server, credential_values)
    bucket = backend.new_bucket()
    make_storage(kube_api, namespace, backend, "media", bucket)
    set_call_type(kube_api, namespace, "allhands", "media")
    pin = upload_artifacts(namespace, "allhands", "c1", {"audio.wav": b"a"},
                           api_client=kube_api)
    user = f"tenant-{namespace}"
    rbac = client.RbacAuthorizationV1Api(kube_api)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "tenant-admin"},
        "rules": [{"apiGroups": ["callstorage.io"], "verbs": ["get", "list"],
                   "resources": ["externalstorages", "calltypes"]},
                  {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "tenant-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "tenant-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": user}]})
    tenant = control_plane.api_client(control_plane.user_kubeconfig(user, group="tenants"))
    try:
        for attempt in (
            lambda: presigned_url(pin, "audio.wav", namespace=namespace, api_client=tenant),
            lambda: upload_artifacts(namespace, "allhands", "c2", {"audio.wav": b"b"},
                                     api_client=tenant),
        ):
            with pytest.raises(PinKeyUnavailable, match="needs get on it"):
                attempt()
    finally:
        tenant.close()
    assert s3_server.list_keys(bucket) == ["c1_audio.wav", "c1_manifest.json"]
