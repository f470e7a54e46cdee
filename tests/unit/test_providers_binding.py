"""Credentials go only where their Secret says: the origin rule and each provider's
destinations, without a cluster (the confused-deputy test on the wire is in
tests/integration/test_credential_binding.py)."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from callstorage.providers import build_client
from callstorage.providers.base import ProviderError, ProviderInputs, Reason
from callstorage.settings import Settings
from callstorage.storagespec import parse_external_storage
from callstorage.storagetypes.base import Origin, origin_of


@pytest.mark.parametrize(("url", "origin"), [
    ("https://S3.Example.COM.", Origin("https", "s3.example.com", 443)),
    ("http://127.0.0.1:9000/path", Origin("http", "127.0.0.1", 9000)),
    ("http://[::1]:80", Origin("http", "::1", 80)),
    ("http://[0:0::1]", Origin("http", "::1", 80)),
    ("https://minio.internal:443", Origin("https", "minio.internal", 443)),
])
def test_origin_normalises_scheme_host_and_port(url: str, origin: Origin) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize("url", [
    "http://169.254.169.254\\@oauth2.googleapis.com/token",  # the parser differential
    "https://user@oauth2.googleapis.com/token",
    "https://oauth2.googleapis.com /token",
    "ftp://example.com",
    "https://",
    "https://example.com:99999",
    "https://exa%6dple.com",
    "//example.com",
])
def test_origin_refuses_urls_parsers_may_read_differently(url: str) -> None:
    assert origin_of(url) is None


def _spec(storage_type: str, block: dict[str, Any]) -> Any:
    return parse_external_storage({"spec": {"storageType": storage_type,
                                            "bucket": "recordings", storage_type: block}})


def _refusal(spec: Any, secret: dict[str, str] | None, **settings: Any) -> ProviderError:
    inputs = ProviderInputs(secret=None if secret is None else
                            {k: v.encode() for k, v in secret.items()}, namespace="tenant")
    with pytest.raises(ProviderError) as info:
        build_client(spec, inputs, Settings(**settings))
    return info.value


S3_KEYS = {"accessKeyId": "test-key-id-1", "secretAccessKey": "s3cr3t-value-never-shown"}
S3_BLOCK = {"region": "us-east-1", "endpoint": "http://127.0.0.1:9",
            "credentialsSecretRef": {"name": "creds"}}


@pytest.mark.parametrize("bound", [None, "http://127.0.0.2:9", "https://127.0.0.1:9",
                                   "http://127.0.0.1:10", "not a url"])
def test_an_s3_endpoint_the_secret_does_not_name_is_refused(bound: str | None) -> None:
    secret = dict(S3_KEYS, **({"endpoint": bound} if bound else {}))
    error = _refusal(_spec("s3", S3_BLOCK), secret)
    assert error.reason is Reason.ENDPOINT_NOT_BOUND
    assert error.stalled
    assert "spec.s3.endpoint (http://127.0.0.1:9)" in error.message
    assert "'endpoint'" in error.message
    assert S3_KEYS["secretAccessKey"] not in error.message


def test_a_bound_s3_endpoint_passes_the_binding_check(no_network: None) -> None:
    # Spelled differently (case, default path, trailing slash), same origin: bound.
    secret = dict(S3_KEYS, endpoint="HTTP://127.0.0.1:9/")
    spec = _spec("s3", S3_BLOCK)
    client = build_client(spec, ProviderInputs(
        secret={k: v.encode() for k, v in secret.items()}, namespace="tenant"),
        Settings(endpoint_denylist=[]))
    client.close()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("no connection expected")
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_aws_public_endpoints_need_no_binding() -> None:
    from callstorage.storagetypes.s3 import S3_PUBLIC

    for url in ("https://s3.amazonaws.com", "https://s3.eu-west-1.amazonaws.com",
                "https://s3-fips.us-gov-west-1.amazonaws.com",
                "https://s3.dualstack.us-east-1.amazonaws.com",
                "https://s3.cn-north-1.amazonaws.com.cn"):
        origin = origin_of(url)
        assert origin is not None, url
        assert S3_PUBLIC(origin), url
    for url in ("http://s3.amazonaws.com", "https://s3.amazonaws.com:8443",
                "https://evil.execute-api.us-east-1.amazonaws.com",
                "https://s3.amazonaws.com.evil.example"):
        origin = origin_of(url)
        assert origin is None or not S3_PUBLIC(origin), url


@functools.cache
def _throwaway_pem() -> str:
    """A key made for this run: no key material is ever committed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _gcs_key(token_uri: str, private_key: str | None = None) -> str:
    return json.dumps({"type": "service_account", "client_email": "a@b.iam.gserviceaccount.com",
                       "private_key": private_key or _throwaway_pem(), "private_key_id": "k1",
                       "token_uri": token_uri})


@pytest.mark.parametrize("token_uri", [
    "http://127.0.0.1:9/token",
    "http://169.254.169.254\\@oauth2.googleapis.com/token",
    "https://oauth2.googleapis.com.evil.example/token",
])
def test_a_gcs_token_uri_must_be_googles_or_bound(token_uri: str) -> None:
    error = _refusal(_spec("gcs", {"credentialsSecretRef": {"name": "creds"}}),
                     {"credentials.json": _gcs_key(token_uri)})
    assert error.reason is Reason.ENDPOINT_NOT_BOUND
    assert "token_uri" in error.message


def test_a_gcs_endpoint_is_bound_by_the_secret() -> None:
    spec = _spec("gcs", {"endpoint": "http://127.0.0.1:9",
                         "credentialsSecretRef": {"name": "creds"}})
    key = _gcs_key("https://oauth2.googleapis.com/token")
    assert _refusal(spec, {"credentials.json": key}).reason is Reason.ENDPOINT_NOT_BOUND
    # Bound (the emulator serves its token endpoint on the same origin): the binding
    # passes and what fails next is the broken key itself.
    broken = _gcs_key("http://127.0.0.1:9/token", private_key="not a key")
    bound = _refusal(spec, {"credentials.json": broken,
                            "endpoint": "http://127.0.0.1:9"})
    assert bound.reason is Reason.INVALID_CREDENTIALS


SP = {"clientId": "c", "clientSecret": "sp-secret-never-shown", "tenantId": "t"}


def test_an_azure_authority_host_must_be_bound_for_a_service_principal() -> None:
    spec = _spec("abs", {"accountName": "acct", "authorityHost": "https://127.0.0.1:9",
                         "credentialsSecretRef": {"name": "creds"}})
    error = _refusal(spec, SP)
    assert error.reason is Reason.ENDPOINT_NOT_BOUND
    assert "spec.abs.authorityHost" in error.message
    assert "'authorityHost'" in error.message
    assert SP["clientSecret"] not in error.message
    # an account key never goes to the authority: no binding needed for it
    build_client(spec, ProviderInputs(secret={"accountKey": b"bm90LWEta2V5"}),
                 Settings()).close()


def test_an_azure_endpoint_must_be_bound() -> None:
    spec = _spec("abs", {"accountName": "acct", "endpoint": "http://127.0.0.1:9/acct",
                         "credentialsSecretRef": {"name": "creds"}})
    assert _refusal(spec, {"accountKey": "bm90LWEta2V5"}).reason is Reason.ENDPOINT_NOT_BOUND
    public = _spec("abs", {"accountName": "acct",
                           "endpoint": "https://acct.blob.core.windows.net",
                           "credentialsSecretRef": {"name": "creds"}})
    from callstorage.storagetypes import PROVIDERS

    # Azure's own blob service needs no binding (checked without a name lookup)
    assert PROVIDERS["abs"].unbound(public.provider, {"accountKey": b"a2V5"}, "s") is None


AMBIENT = {"region": "us-east-1"}


def test_ambient_credentials_only_in_the_named_namespaces() -> None:
    spec = _spec("s3", AMBIENT)
    error = _refusal(spec, None, allow_ambient_credentials=True, namespace="callstorage-system")
    assert error.reason is Reason.AMBIENT_CREDENTIALS_DISABLED
    assert "namespace tenant" in error.message
    assert "callstorage-system" in error.message


def test_ambient_credentials_never_go_to_a_custom_endpoint() -> None:
    spec = _spec("s3", {"region": "us-east-1", "endpoint": "http://127.0.0.1:9"})
    error = _refusal(spec, None, allow_ambient_credentials=True,
                     ambient_credentials_namespaces=["tenant"])
    assert error.reason is Reason.ENDPOINT_NOT_BOUND
    assert "ambient" in error.message


def test_the_client_writes_the_binding_into_the_secret() -> None:
    from callstorage.storagetypes import PROVIDERS

    _, s3 = PROVIDERS["s3"].from_request({"s3_region": "us-east-1", "s3_api_key": "k",
                                          "s3_secret": "s",
                                          "s3_custom_endpoint_url": "http://minio:9000"})
    assert s3 is not None
    assert s3["endpoint"] == "http://minio:9000"
    _, gcs = PROVIDERS["gcs"].from_request(_gcs_key("https://oauth2.googleapis.com/token"))
    assert gcs is not None
    assert "endpoint" not in gcs
    _, abs_ = PROVIDERS["abs"].from_request({"abs_account_name": "acct",
                                             "abs_account_key": "a2V5",
                                             "abs_endpoint": "http://127.0.0.1:1/acct"})
    assert abs_ is not None
    assert abs_["endpoint"] == "http://127.0.0.1:1/acct"


def test_a_secret_may_bind_several_endpoints() -> None:
    from callstorage.storagetypes import PROVIDERS

    spec = _spec("s3", S3_BLOCK)
    for bound in ("http://127.0.0.1:9", "http://minio:9000, http://127.0.0.1:9/",
                  "http://minio:9000\nhttp://127.0.0.1:9"):
        secret = {k: v.encode() for k, v in dict(S3_KEYS, endpoint=bound).items()}
        assert PROVIDERS["s3"].unbound(spec.provider, secret, "s") is None, bound
    secret = {k: v.encode() for k, v in dict(S3_KEYS, endpoint="http://a:1,http://b:2").items()}
    problem = PROVIDERS["s3"].unbound(spec.provider, secret, "s")
    assert problem is not None
    assert "'endpoint' names http://a:1, http://b:2" in problem
