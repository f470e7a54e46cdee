"""``validate_storage`` and ``run_check`` decide what to write where; a recording client
stands in for a provider (no SDK involved at all)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from callstorage.providers import BUILDERS, probe_key, run_check, validate_storage
from callstorage.providers.base import Capabilities, ProviderError, Reason
from callstorage.storagespec import ExternalStorageSpec
from callstorage.storagetypes import PROVIDERS


class RecordingClient:
    def __init__(self, fail_on: str | None = None) -> None:
        self.heads = 0
        self.puts: list[tuple[str, bytes, str]] = []
        self.fail_on = fail_on

    def head_bucket(self) -> None:
        self.heads += 1

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        if self.fail_on and key.startswith(self.fail_on):
            raise ProviderError(Reason.ACCESS_DENIED, f"PutObject on b/{key} returned 403")
        self.puts.append((key, body, content_type))

    def object_url(self, key: str) -> str:
        return f"s3://b/{key}"

    def close(self) -> None:
        pass


def spec(**kw: Any) -> ExternalStorageSpec:
    return ExternalStorageSpec.model_validate({
        "storageType": "s3", "bucket": "my-bucket",
        "s3": {"region": "us-east-1", "credentialsSecretRef": {"name": "c"}}, **kw})


def test_read_write_is_a_head_bucket() -> None:
    client = RecordingClient()
    assert validate_storage(client, spec()) == Capabilities(list=True)
    assert client.heads == 1
    assert client.puts == []


def test_write_only_probes_each_distinct_prefix_once() -> None:
    client = RecordingClient()
    s = spec(accessMode="WriteOnly", path="/meta/",
             prefixes={"audio": "rec/audio/", "video": "rec/video", "transcript": "meta"})
    assert validate_storage(client, s) == Capabilities(write=True)
    assert client.heads == 0
    keys = [k for k, _, _ in client.puts]
    assert [k.rsplit("/", 1)[0] for k in keys] == ["meta", "rec/audio", "rec/video"]
    assert all(re.fullmatch(r"[a-z/]+/\.write_probe_callstorage", k) for k in keys)
    assert all(len(body) < 100 for _, body, _ in client.puts)


def test_write_only_at_the_bucket_root() -> None:
    client = RecordingClient()
    validate_storage(client, spec(accessMode="WriteOnly"))
    [(key, _, _)] = client.puts
    assert key == ".write_probe_callstorage"


def test_write_only_stops_at_the_first_refused_prefix() -> None:
    client = RecordingClient(fail_on="rec/video")
    s = spec(accessMode="WriteOnly", prefixes={"audio": "rec/audio", "video": "rec/video"})
    with pytest.raises(ProviderError) as info:
        validate_storage(client, s)
    assert info.value.reason is Reason.ACCESS_DENIED


def test_probe_keys_are_the_same_each_time_so_probes_never_pile_up() -> None:
    """Issue 11 item 8: a new probe name per validation left one object per prefix per
    validation, forever; the same key is overwritten instead."""
    assert probe_key("a") == probe_key("a") == "a/.write_probe_callstorage"
    client = RecordingClient()
    s = spec(accessMode="WriteOnly", prefixes={"audio": "rec/audio"})
    validate_storage(client, s)
    validate_storage(client, s)
    keys = [k for k, _, _ in client.puts]
    assert len(keys) == 2 * len(set(keys)), "the second validation wrote new objects"


@pytest.mark.parametrize(("path", "prefix"), [(None, ""), ("/directory_name/", "directory_name/"),
                                              ("a/b", "a/b/")])
def test_run_check_key(path: str | None, prefix: str) -> None:
    client = RecordingClient()
    s = spec(path=path) if path is not None else spec()
    key = run_check(client, s, "stream-")
    assert re.fullmatch(re.escape(prefix) + r"stream-[0-9a-f-]{36}\.md", key)
    [(put_key, body, content_type)] = client.puts
    assert put_key == key
    assert content_type.startswith("text/markdown")
    assert f"s3://b/{key}".encode() in body
    assert run_check(client, s, "stream-") != key
    # a named request: the same object each time it runs (a retry after a crash)
    named = run_check(client, s, "stream-", "0f8fad5b-d9cb-469f-a165-70867728950e")
    assert named == f"{prefix}stream-0f8fad5b-d9cb-469f-a165-70867728950e.md"
    assert run_check(client, s, "stream-", "0f8fad5b-d9cb-469f-a165-70867728950e") == named


def test_registry_covers_every_storage_type() -> None:
    # every storage type the CRD accepts has a client builder (tests/unit/test_storagetypes
    # holds the registry itself to the CRD's enum)
    assert set(BUILDERS) == set(PROVIDERS)
