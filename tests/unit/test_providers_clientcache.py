"""The SDK client cache: one build per key, leases, LRU eviction that never closes a client
still in use; and the S3 provider sharing clients only when every input matches."""

from __future__ import annotations

from collections.abc import Callable

import botocore.exceptions
import pytest

from callstorage.providers import s3
from callstorage.providers.base import ProviderError, ProviderInputs, Reason
from callstorage.providers.clientcache import ClientCache, Closer, digest
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec


def builder(closed: list[str], name: str) -> Callable[[], tuple[str, Closer]]:
    return lambda: (name, lambda: closed.append(name))


def test_one_build_per_key_and_release_is_idempotent() -> None:
    cache: ClientCache[str] = ClientCache(size=2)
    closed: list[str] = []
    a, release_a = cache.lease("k", builder(closed, "a"))
    b, release_b = cache.lease("k", builder(closed, "b"))
    assert (a, b) == ("a", "a")
    assert cache.builds == 1
    release_a()
    release_a()
    release_b()
    assert closed == []


def test_eviction_closes_idle_clients_and_defers_leased_ones() -> None:
    cache: ClientCache[str] = ClientCache(size=1)
    closed: list[str] = []
    _, release_a = cache.lease("a", builder(closed, "a"))
    cache.lease("b", builder(closed, "b"))[1]()  # evicts a, which is still leased
    assert closed == []
    release_a()
    assert closed == ["a"]
    cache.lease("c", builder(closed, "c"))[1]()  # evicts b, idle: closed at once
    assert closed == ["a", "b"]
    assert len(cache) == 1
    cache.clear()
    assert closed == ["a", "b", "c"]


def test_digest_separates_parts_and_hides_values() -> None:
    assert digest("ab", "c") != digest("a", "bc")
    assert digest(None) != digest("")
    assert "secret" not in digest("secret")


def _spec(endpoint: str) -> ExternalStorageSpec:
    return ExternalStorageSpec.model_validate({
        "storageType": "s3", "bucket": "bucket",
        "s3": {"region": "us-east-1", "endpoint": endpoint, "forcePathStyle": True,
               "credentialsSecretRef": {"name": "creds"}}})


def test_s3_clients_are_shared_only_for_identical_inputs() -> None:
    """Validation clients are shared by endpoint whatever the keys, each validation
    signing with its own keys; upload clients are shared only with the same keys."""
    settings = Settings(endpoint_allowlist=[], endpoint_denylist=[])
    keys = ProviderInputs(secret={"accessKeyId": b"AKIAONE", "secretAccessKey": b"s1"})
    rotated = ProviderInputs(secret={"accessKeyId": b"AKIAONE", "secretAccessKey": b"s2"})
    spec = _spec("http://127.0.0.1:9")
    first, second = s3.build(spec, keys, settings), s3.build(spec, keys, settings)
    assert first._client is second._client
    other_secret = s3.build(spec, rotated, settings)
    other_endpoint = s3.build(_spec("http://127.0.0.1:10"), keys, settings)
    assert other_secret._client is first._client
    assert other_endpoint._client is not first._client
    assert other_secret._signing is not None
    assert other_secret._signing.secret_key == "s2"
    assert first._signing is not None
    assert first._signing.secret_key == "s1"
    media = s3.build_media(spec, keys, settings, 4)
    media_rotated = s3.build_media(spec, rotated, settings, 4)
    assert media._client is not media_rotated._client
    assert media_rotated._client._request_signer._credentials.secret_key == "s2"
    for client in (first, second, other_secret, other_endpoint, media, media_rotated):
        client.close()


def test_a_shared_s3_client_signs_with_nothing_outside_a_validation() -> None:
    """Fail closed: a request on a shared client without its validation's keys set on
    the thread is refused before anything is sent, never signed with other keys."""
    settings = Settings(endpoint_allowlist=[], endpoint_denylist=[])
    keys = ProviderInputs(secret={"accessKeyId": b"AKIAONE", "secretAccessKey": b"s1"})
    client = s3.build(_spec("http://127.0.0.1:9"), keys, settings)
    try:
        with pytest.raises(botocore.exceptions.NoCredentialsError):
            client._client.head_bucket(Bucket="bucket")
    finally:
        client.close()


def _directory_spec(endpoint: str) -> ExternalStorageSpec:
    return ExternalStorageSpec.model_validate({
        "storageType": "s3", "bucket": "media--use1-az4--x-s3",
        "s3": {"region": "us-east-1", "endpoint": endpoint,
               "credentialsSecretRef": {"name": "creds"}}})


def test_directory_bucket_clients_are_shared_only_by_identical_keys() -> None:
    """botocore signs a directory bucket's requests with a CreateSession session it keeps
    per client and bucket name: such a client is never shared by other keys."""
    settings = Settings(endpoint_allowlist=[], endpoint_denylist=[])
    one = ProviderInputs(secret={"accessKeyId": b"AKIAONE", "secretAccessKey": b"s1"})
    same = ProviderInputs(secret={"accessKeyId": b"AKIAONE", "secretAccessKey": b"s1"})
    two = ProviderInputs(secret={"accessKeyId": b"AKIATWO", "secretAccessKey": b"s2"})
    spec = _directory_spec("http://127.0.0.1:9")
    clients = [s3.build(spec, inputs, settings) for inputs in (one, same, two)]
    try:
        assert clients[0]._client is clients[1]._client
        assert clients[2]._client is not clients[0]._client
        assert clients[2]._client._request_signer._credentials.access_key == "AKIATWO"
        assert all(c._signing is None for c in clients)  # the client's own keys
    finally:
        for c in clients:
            c.close()


def test_a_shared_s3_client_refuses_session_auth() -> None:
    """Fail closed: should a bucket that needs session authentication ever reach a client
    shared by credentials, the request is refused before anything is sent."""
    settings = Settings(endpoint_allowlist=[], endpoint_denylist=[])
    keys = ProviderInputs(secret={"accessKeyId": b"AKIAONE", "secretAccessKey": b"s1"})
    shared = s3.build(_spec("http://127.0.0.1:9"), keys, settings)
    shared.bucket = "media--use1-az4--x-s3"  # as if the name check had missed it
    try:
        with pytest.raises(ProviderError) as info:
            shared.head_bucket()
        assert info.value.reason is Reason.INTERNAL_ERROR
        assert "nothing was sent" in info.value.message
    finally:
        shared.close()
