"""CA bundles on disk: one file per distinct bundle, shared, removed with its last client;
and a cap on their size with its own reason. (The operator-level measurement of 100
storages is tests/integration/test_ca_files.py.)"""

from __future__ import annotations

import os

import pytest

from callstorage.providers import build_client, s3
from callstorage.providers.base import ProviderError, ProviderInputs, Reason
from callstorage.providers.transport import CABundle, ca_store
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec
from testbed.tlscerts import ThrowawayCA


def pem_files() -> list[str]:
    directory = ca_store().directory
    if directory is None or not os.path.isdir(directory):
        return []
    return sorted(f for f in os.listdir(directory) if f.endswith(".pem"))


def test_one_file_per_distinct_bundle_removed_with_its_last_user() -> None:
    a, b = ThrowawayCA("a").cert_pem, ThrowawayCA("b").cert_pem
    before = set(pem_files())
    first, second, other = CABundle(a), CABundle(a), CABundle(b)
    assert first.path == second.path != other.path
    assert len(set(pem_files()) - before) == 2
    assert stat_mode(ca_store().directory) == 0o700  # private: nobody else reads or swaps
    first.close()
    assert second.path is not None
    assert os.path.exists(second.path)  # still used by the second client
    path = second.path
    second.close()
    second.close()  # idempotent: never releases another client's reference
    assert not os.path.exists(path)
    assert other.path is not None
    assert os.path.exists(other.path)
    other.close()
    assert set(pem_files()) == before


def stat_mode(path: str | None) -> int:
    assert path is not None
    return os.stat(path).st_mode & 0o777


SPEC = ExternalStorageSpec.model_validate({
    "storageType": "s3", "bucket": "recordings",
    "tls": {"caSecretRef": {"name": "ca", "key": "ca.crt"}},
    "s3": {"region": "us-east-1", "endpoint": "https://127.0.0.1:9",
           "credentialsSecretRef": {"name": "creds"}}})
KEYS = {"accessKeyId": b"AKIAEXAMPLE0001", "secretAccessKey": b"secret-value-0001",
        "endpoint": b"https://127.0.0.1:9"}


def test_cached_s3_clients_hold_their_ca_file_until_evicted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3, "_CLIENTS", s3.ClientCache(size=3))
    settings = Settings(endpoint_denylist=[])
    before = set(pem_files())
    for i in range(10):  # ten distinct CAs, three cached clients
        build_client(SPEC, ProviderInputs(KEYS, ThrowawayCA(f"ca-{i}").cert_pem), settings).close()
        assert len(set(pem_files()) - before) <= 3
    assert len(set(pem_files()) - before) == 3
    s3._CLIENTS.clear()
    assert set(pem_files()) == before


def test_a_bundle_over_the_cap_is_refused_before_anything_is_written() -> None:
    settings = Settings(endpoint_denylist=[], max_ca_bundle_bytes=4096)
    big = b"".join(ThrowawayCA(f"ca-{i}").cert_pem for i in range(10))
    assert len(big) > 4096
    before = set(pem_files())
    with pytest.raises(ProviderError) as info:
        build_client(SPEC, ProviderInputs(KEYS, big), settings)
    assert info.value.reason is Reason.CA_BUNDLE_TOO_LARGE
    assert info.value.stalled
    assert f"{len(big)} bytes" in info.value.message
    assert "4096" in info.value.message
    assert set(pem_files()) == before
