"""The pin's seal and who may use a pin (callstorage.pins), without a cluster: every edit
of a sealed pin is refused, old pins get a clear error, the key never shows."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from callstorage.media import (
    InvalidPin,
    PinKey,
    PinKeyUnavailable,
    PinNotForCaller,
    StoredLocation,
    StoredObject,
)
from callstorage.pins import repin

KEY = PinKey(b"k" * 32)
OTHER_KEY = PinKey(b"o" * 32)


def pin(**kw: Any) -> StoredLocation:
    values: dict[str, Any] = dict(
        call_id="abc", call_type="allhands", namespace="app", storage_namespace="app",
        storage_name="my-s3", storage_uid="u-1", source="CallType", provider="s3",
        endpoint=None, account=None, bucket="b", access_mode="ReadWrite",
        uploaded_at="2026-01-01T00:00:00Z", manifest_key="abc_manifest.json",
        objects=(StoredObject("audio.wav", "audio", "a/abc_audio.wav", 3, "AAAAAA==",
                              "audio/wav"),))
    values.update(kw)
    return StoredLocation(**values).sealed(KEY)


def test_a_sealed_pin_survives_json_and_verifies() -> None:
    sealed = pin()
    assert sealed.seal
    again = StoredLocation.from_json(sealed.to_json())
    assert again == sealed
    again.check_seal(KEY)
    assert json.loads(sealed.to_json())["version"] == 2


EDITS: dict[str, Any] = {
    "bucket": lambda d: d | {"bucket": "victim-bucket"},
    "object key": lambda d: d | {"objects": [d["objects"][0] | {"key": "other/x.wav"}]},
    "storage uid": lambda d: d | {"storage": d["storage"] | {"uid": "u-2"}},
    "namespace": lambda d: d | {"namespace": "other-app"},
    "storage": lambda d: d | {"storage": d["storage"] | {"name": "platform-default",
                                                         "namespace": "callstorage-system"}},
    "source": lambda d: d | {"storage": d["storage"] | {"source": "PlatformDefault"}},
    "endpoint": lambda d: d | {"endpoint": "https://evil.example"},
    "provider": lambda d: d | {"provider": "gcs"},
    "no seal": lambda d: {k: v for k, v in d.items() if k != "seal"},
    "another pin's seal": lambda d: d | {"seal": pin(call_id="other").seal},
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_an_edited_pin_is_refused(edit: Any) -> None:
    data = edit(pin().to_dict())
    with pytest.raises(InvalidPin) as caught:
        StoredLocation.from_dict(data).check_seal(KEY)
    assert caught.value.reason == "PinTampered"
    assert "edited" in caught.value.message


def test_a_pin_with_an_empty_storage_uid_is_not_a_pin() -> None:
    data = pin().to_dict()
    data["storage"]["uid"] = ""
    with pytest.raises(InvalidPin, match="no storage uid"):
        StoredLocation.from_dict(data)


def test_a_hand_built_pin_is_refused() -> None:
    unsealed = replace(pin(), seal="")
    with pytest.raises(InvalidPin, match="not produced by upload_artifacts"):
        unsealed.check_seal(KEY)


def test_another_key_refuses_and_the_previous_key_still_verifies() -> None:
    sealed = pin()
    with pytest.raises(InvalidPin):
        sealed.check_seal(OTHER_KEY)
    sealed.check_seal(PinKey(OTHER_KEY.current, previous=(KEY.current,)))
    resealed = sealed.sealed(OTHER_KEY)
    resealed.check_seal(OTHER_KEY)
    with pytest.raises(InvalidPin):
        resealed.check_seal(KEY)


def test_a_format_1_pin_gets_a_clear_error_and_can_be_resealed() -> None:
    old = pin().to_dict()
    old["version"] = 1
    del old["seal"]
    with pytest.raises(InvalidPin) as caught:
        StoredLocation.from_dict(old)
    assert caught.value.reason == "PinOutdated"
    assert "upload the call again" in caught.value.message
    resealed = repin(json.dumps(old), KEY)
    resealed.check_seal(KEY)
    assert resealed == pin()


def test_a_pin_is_signed_only_for_the_namespace_it_was_made_for() -> None:
    pin().check_caller("app")
    with pytest.raises(PinNotForCaller, match="made for namespace 'app'"):
        pin().check_caller("other-app")
    # the platform storage serves every namespace, each its own pins only
    platform = pin(storage_namespace="callstorage-system", storage_name="platform-default",
                   source="PlatformDefault")
    platform.check_caller("app")
    with pytest.raises(PinNotForCaller):
        platform.check_caller("callstorage-system")
    # a tenant storage of another namespace is never usable, whatever the pin says
    with pytest.raises(PinNotForCaller):
        pin(storage_namespace="other-app").check_caller("app")


def test_the_key_never_shows() -> None:
    secret = b"s3cr3t-pin-key-material-32-bytes!"
    key = PinKey(secret)
    sealed = pin().sealed(key)
    assert secret.decode() not in repr(key) + sealed.to_json() + repr(sealed)
    with pytest.raises(PinKeyUnavailable, match="at least 32"):
        PinKey(b"short")


@pytest.mark.parametrize("edit", [
    lambda d: d | {"objects": [d["objects"][0] | {"size": "3"}]},
    lambda d: d | {"objects": [d["objects"][0] | {"size": 3.0}]},
    lambda d: d | {"bucket": ["b"]},
    lambda d: d | {"endpoint": 1},
    lambda d: d | {"objects": {"0": d["objects"][0]}},
], ids=["size as text", "size as float", "bucket as list", "endpoint as number",
        "objects as map"])
def test_a_pin_whose_values_change_type_is_not_a_pin(edit: Any) -> None:
    """The seal covers what was received: no value is coerced into another type."""
    with pytest.raises(InvalidPin) as caught:
        StoredLocation.from_dict(edit(pin().to_dict()))
    assert caught.value.reason == "InvalidLocation"
