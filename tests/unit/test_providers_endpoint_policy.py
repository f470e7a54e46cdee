"""The endpoint allow/deny decision (SSRF guard), without a network."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from callstorage.providers import endpoint_policy
from callstorage.providers.base import ProviderError, Reason
from callstorage.providers.endpoint_policy import Rules, check_url, decide
from callstorage.settings import DEFAULT_DENIED_ENDPOINTS

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


def test_denied_name_is_not_even_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _no_dns)
    with pytest.raises(ProviderError) as info:
        check_url("http://metadata.google.internal/computeMetadata", "spec.gcs.endpoint",
                  [], DEFAULT_DENIED_ENDPOINTS)
    assert info.value.reason is Reason.ENDPOINT_NOT_ALLOWED
    assert info.value.message.startswith("spec.gcs.endpoint: ")


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data",
                                 "http://[fe80::1]:8080", "http://2852039166/",
                                 "http://0xa9.0xfe.0xa9.0xfe/"])
def test_numeric_spellings_of_metadata_are_refused(url: str) -> None:
    with pytest.raises(ProviderError) as info:
        check_url(url, "spec.s3.endpoint", [], DEFAULT_DENIED_ENDPOINTS)
    assert info.value.reason is Reason.ENDPOINT_NOT_ALLOWED


def test_loopback_is_allowed_by_default() -> None:
    check_url("http://127.0.0.1:9000", "spec.s3.endpoint", [], DEFAULT_DENIED_ENDPOINTS)


@pytest.mark.parametrize("url", ["ftp://host/x", "http://", "https://host:99999/"])
def test_malformed_urls_are_invalid_spec(url: str) -> None:
    with pytest.raises(ProviderError) as info:
        check_url(url, "spec.s3.endpoint", [], [])
    assert info.value.reason is Reason.INVALID_SPEC


def test_unknown_host_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(ProviderError) as info:
        check_url("https://nope.example/", "spec.s3.endpoint", [], [])
    assert info.value.reason is Reason.ENDPOINT_UNREACHABLE
    assert info.value.message == "cannot resolve host nope.example: no such host"


def test_a_hanging_resolver_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(*_: Any, **__: Any) -> Any:
        time.sleep(3)
        raise socket.gaierror(socket.EAI_AGAIN, "late")

    monkeypatch.setattr(endpoint_policy.socket, "getaddrinfo", hang)
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        check_url("https://slow.example/", "spec.s3.endpoint", [], [], timeout=0.3)
    assert info.value.reason is Reason.TIMEOUT
    assert time.monotonic() - started < 2
