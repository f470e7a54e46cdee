"""The endpoint allow/deny decision of the connect-time guard (SSRF), without a network."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import time
from typing import Any

import pytest

from callstorage.providers import build_client, endpoint_policy, validate_storage
from callstorage.providers.base import ProviderError, ProviderInputs, Reason
from callstorage.providers.endpoint_policy import (
    ConnectionDenied,
    Policy,
    Rules,
    decide,
    embedded_ipv4,
    validate_url,
)
from callstorage.settings import DEFAULT_DENIED_ENDPOINTS, Settings
from callstorage.storagespec import ExternalStorageSpec
from storages import s3_storage_spec

DENY = Rules.parse(DEFAULT_DENIED_ENDPOINTS)
NO_RULES = Rules.parse([])


@pytest.mark.parametrize(
    ("host", "addresses", "allow", "refused"),
    [
        ("s3.example.com", ["52.216.1.1"], [], False),
        ("169.254.169.254", ["169.254.169.254"], [], True),
        ("evil.example.com", ["169.254.169.254"], [], True),  # a name pointing at metadata
        ("evil.example.com", ["52.1.1.1", "169.254.169.254"], [], True),  # any address
        ("x", ["::ffff:169.254.169.254"], [], True),  # IPv4-mapped IPv6
        ("x", ["fe80::1%eth0"], [], True),  # link-local v6 with a zone id
        ("x", ["fd00:ec2::254"], [], True),  # AWS IMDS over IPv6
        ("metadata.google.internal", ["10.0.0.1"], [], True),  # denied by name
        ("METADATA.Google.Internal.", ["10.0.0.1"], [], True),  # case, trailing dot
        ("minio.internal", ["10.1.2.3"], ["10.0.0.0/8"], False),
        ("minio.internal", ["192.168.1.2"], ["10.0.0.0/8"], True),
        ("minio.internal", ["10.1.2.3", "192.168.1.2"], ["10.0.0.0/8"], True),
        ("minio.internal", ["192.168.1.2"], ["minio.internal"], False),
        ("a.storage.example.com", ["192.168.1.2"], ["*.storage.example.com"], False),
        ("storage.example.com.evil.io", ["1.2.3.4"], ["*.storage.example.com"], True),
        ("minio.internal", ["169.254.1.1"], ["minio.internal"], True),  # deny wins
    ],
)
def test_decide(host: str, addresses: list[str], allow: list[str], refused: bool) -> None:
    problem = decide(host, addresses, Rules.parse(allow), DENY)
    assert (problem is not None) is refused, problem


def test_rules_parse_kinds() -> None:
    rules = Rules.parse(["10.0.0.0/8", "1.2.3.4", "Host.Example.", "*.corp.example", " ", ""])
    assert [str(n) for n in rules.networks] == ["10.0.0.0/8", "1.2.3.4/32"]
    assert rules.hosts == frozenset({"host.example"})
    assert rules.suffixes == (".corp.example",)
    assert not Rules.parse([" "])


def _no_dns(*_: Any, **__: Any) -> Any:
    raise AssertionError("resolved a name that the deny list already refuses")


def policy(allow: list[str] | None = None, deny: list[str] | None = None,
           timeout: float = 1.0) -> Policy:
    return Policy.of(allow or [], DEFAULT_DENIED_ENDPOINTS if deny is None else deny,
                     timeout)


def test_denied_name_is_not_even_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint_policy.socket, "getaddrinfo", _no_dns)
    with pytest.raises(ConnectionDenied) as info:
        policy().check("metadata.google.internal", 80)
    assert "deny list" in str(info.value)


@pytest.mark.parametrize("host", ["169.254.169.254", "fe80::1", "2852039166",
                                  "0xa9.0xfe.0xa9.0xfe", "127.0.0.1", "0.0.0.0",  # noqa: S104
                                  "::1",
                                  "::", "localhost"])
def test_numeric_spellings_and_loopback_are_refused(host: str) -> None:
    with pytest.raises(ConnectionDenied):
        policy().check(host, 80)


def test_default_keyword_expands_in_settings() -> None:
    settings = Settings(endpoint_denylist=["default", "10.0.0.0/8"])
    assert settings.endpoint_denylist == [*DEFAULT_DENIED_ENDPOINTS, "10.0.0.0/8"]
    assert Settings(endpoint_denylist="default").endpoint_denylist == list(
        DEFAULT_DENIED_ENDPOINTS)


def test_private_ranges_are_allowed_by_default_and_can_be_denied() -> None:
    assert decide("minio", ["10.1.2.3"], NO_RULES, DENY) is None
    assert decide("minio", ["fd12::1"], NO_RULES, DENY) is None
    denied = Rules.parse([*DEFAULT_DENIED_ENDPOINTS, "10.0.0.0/8"])
    assert decide("minio", ["10.1.2.3"], NO_RULES, denied) is not None


@pytest.mark.parametrize("url", ["ftp://host/x", "http://", "https://host:99999/",
                                 "http://[::1"])
def test_malformed_urls_are_invalid_spec(url: str) -> None:
    with pytest.raises(ProviderError) as info:
        validate_url(url, "spec.s3.endpoint")
    assert info.value.reason is Reason.INVALID_SPEC


def test_unknown_host_raises_the_resolvers_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(endpoint_policy.socket, "getaddrinfo", fail)
    with pytest.raises(socket.gaierror):
        policy(deny=[]).check("nope.example", 443)


def test_a_hanging_resolver_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(*_: Any, **__: Any) -> Any:
        time.sleep(3)
        raise socket.gaierror(socket.EAI_AGAIN, "late")

    monkeypatch.setattr(endpoint_policy.socket, "getaddrinfo", hang)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        policy(deny=[], timeout=0.3).check("slow.example", 443)
    assert time.monotonic() - started < 2


# --- IPv6 forms that embed an IPv4 address: each reaches 169.254.169.254 -----------------

EMBEDDED_METADATA = [
    "::ffff:169.254.169.254",  # IPv4-mapped ::ffff:0:0/96
    "::ffff:0:a9fe:a9fe",  # IPv4-translated ::ffff:0:0:0/96
    "::a9fe:a9fe",  # IPv4-compatible ::/96
    "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix 64:ff9b::/96
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 64:ff9b:1::/48 with a /96 prefix
    "64:ff9b:1:a9fe:a9:fe00::",  # ... with a /48 prefix (RFC 6052: skips bits 64..71)
    "64:ff9b:1:a9:fe:a9fe::",  # ... with a /56 prefix
    "64:ff9b:1:0:a9:fea9:fe00:0",  # ... with a /64 prefix
    "2002:a9fe:a9fe::",  # 6to4 2002::/16
    "2002:a9fe:a9fe:1234::1",
    "2001:0:a9fe:a9fe::",  # Teredo 2001::/32, server address
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client address (obfuscated)
    "fe99::5efe:a9fe:a9fe".replace("fe99", "2001:db8"),  # ISATAP interface id
    "2001:db8::200:5efe:a9fe:a9fe",
]


@pytest.mark.parametrize("address", EMBEDDED_METADATA)
def test_ipv6_embedding_a_denied_ipv4_is_refused(address: str) -> None:
    problem = decide("x.example", [address], NO_RULES, DENY)
    assert problem is not None, address
    assert "169.254.0.0/16" in problem
    assert decide("x.example", [address], NO_RULES, NO_RULES) is None


@pytest.mark.parametrize("address", ["::ffff:127.0.0.1", "64:ff9b::7f00:1",
                                     "2002:7f00:1::", "::ffff:0:0.0.0.0"])
def test_ipv6_embedding_loopback_or_unspecified_is_refused(address: str) -> None:
    assert decide("x.example", [address], NO_RULES, DENY) is not None


@pytest.mark.parametrize("address", ["2600:1f18::1", "64:ff9b::808:808", "2002:808:808::1",
                                     "2001:db8::1", "::ffff:10.0.0.1"])
def test_ipv6_embedding_an_allowed_ipv4_is_allowed(address: str) -> None:
    assert decide("x.example", [address], NO_RULES, DENY) is None


def test_teredo_client_is_deobfuscated() -> None:
    ip = ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:5601:5601")
    assert set(embedded_ipv4(ip)) == {ipaddress.IPv4Address("65.54.227.120"),
                                      ipaddress.IPv4Address("169.254.169.254")}


# --- cloud metadata services: refused as literals, behind a name, and as a storage endpoint

# Every metadata address the default list covers; the IPv6 ones are /128 entries of their
# own, the IPv4 link-local ones fall in 169.254.0.0/16.
METADATA_ADDRESSES = [
    "169.254.169.254",  # AWS, GCP, Azure, Oracle, OpenStack, ... instance metadata
    "169.254.170.23",  # EKS Pod Identity agent
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "fd00:ec2::23",  # EKS Pod Identity agent over IPv6
    "fd20:ce::254",  # GCE metadata over IPv6
    "fd00:c1::a9fe:a9fe",  # Oracle Cloud metadata over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",  # Oracle Cloud
    "168.63.129.16",  # Azure WireServer
]


@pytest.mark.parametrize("address", METADATA_ADDRESSES)
def test_cloud_metadata_addresses_are_refused(address: str) -> None:
    with pytest.raises(ConnectionDenied):
        policy().check(address, 80)
    behind_a_name = dataclasses.replace(policy(), resolve=lambda *_: [address])
    with pytest.raises(ConnectionDenied) as info:
        behind_a_name.check("innocent.example", 443)
    assert f"resolves to {address}" in info.value.problem
    assert decide("innocent.example", [address], NO_RULES, NO_RULES) is None  # the list's doing


@pytest.mark.parametrize("address", ["fd20:ce::254", "fd00:ec2::23", "fd00:c1::a9fe:a9fe"])
def test_a_storage_endpoint_at_a_metadata_address_is_never_connected(
        address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An S3 storage whose Secret binds an endpoint at the address: the operator's own
    client (the guard of every provider) refuses it before a socket connects."""
    connects: list[object] = []

    def record(self: socket.socket, where: object) -> None:
        connects.append(where)
        raise OSError("the test refuses every connection")

    monkeypatch.setattr(socket.socket, "connect", record)
    monkeypatch.setattr(socket.socket, "connect_ex", record)
    endpoint = f"http://[{address}]:80"
    spec = ExternalStorageSpec.model_validate(s3_storage_spec("bkt", endpoint, "creds"))
    inputs = ProviderInputs(secret={"accessKeyId": b"AKIAEXAMPLE",
                                    "secretAccessKey": b"not-a-secret",
                                    "endpoint": endpoint.encode()})
    storage = build_client(spec, inputs, Settings(
        max_attempts=1, endpoint_denylist=list(DEFAULT_DENIED_ENDPOINTS)))
    try:
        with pytest.raises(ProviderError) as info:
            validate_storage(storage, spec)
    finally:
        storage.close()
    assert info.value.reason is Reason.ENDPOINT_NOT_ALLOWED
    assert address in str(info.value)
    assert connects == []
