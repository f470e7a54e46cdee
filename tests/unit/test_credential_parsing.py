"""Malformed credentials, all three providers: InvalidCredentials naming the Secret key.

A value that cannot be a credential at all (a key id with a newline, an EC key where
Google wants RSA, a project_id that is a list) used to fail later, in the SDK: as a
"network" error (EndpointUnreachable: transient, retried forever, advice about the
network) or as InvalidSpec (the spec is fine). Each is refused while the Secret is read,
before any connection: reason InvalidCredentials, a message naming the Secret key (never
its value), Stalled, and not retried until the Secret changes. Every endpoint below is a
closed local port, so a case that got past the parsing would read EndpointUnreachable.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from callstorage.api.conditions import RECONCILING, STALLED, get_condition
from callstorage.providers import build_client, validate_storage
from callstorage.providers.base import ProviderError, ProviderInputs, Reason
from callstorage.reconcile import externalstorage as es
from callstorage.reconcile.schedule import next_delay
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec

CLOSED = "http://127.0.0.1:9"  # nothing listens: getting this far is EndpointUnreachable
CLOSED_TLS = "https://127.0.0.1:9"  # a service principal's token goes over https only
SETTINGS = Settings(endpoint_allowlist=[], endpoint_denylist=[], connect_timeout=1,
                    read_timeout=1, max_attempts=1)
SECRET = "creds"

SPECS: dict[str, dict[str, Any]] = {
    "s3": {"region": "us-east-1", "endpoint": CLOSED, "forcePathStyle": True},
    "gcs": {"endpoint": CLOSED},
    "abs": {"accountName": "devstoreaccount1", "endpoint": CLOSED},
    "abs-sp": {"accountName": "devstoreaccount1", "endpoint": CLOSED_TLS,
               "authorityHost": CLOSED_TLS},
}


def _spec(kind: str) -> ExternalStorageSpec:
    storage_type = kind.split("-")[0]
    block = {**SPECS[kind], "credentialsSecretRef": {"name": SECRET}}
    return ExternalStorageSpec.model_validate(
        {"storageType": storage_type, "bucket": "media", storage_type: block})


def _pem(key: Any) -> str:
    return str(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode())


@cache
def _keys() -> dict[str, str]:
    return {"rsa": _pem(rsa.generate_private_key(65537, 2048)),
            "ec": _pem(ec.generate_private_key(ec.SECP256R1())),
            "dsa": _pem(dsa.generate_private_key(2048))}


def _gcs(**fields: Any) -> dict[str, bytes]:
    """A service-account key file with ``fields`` changed (None: removed)."""
    info: dict[str, Any] = {
        "type": "service_account", "project_id": "p", "private_key_id": "k1",
        "private_key": _keys()["rsa"], "client_email": "sa@p.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": CLOSED + "/token"}
    for name, value in fields.items():
        info.pop(name) if value is None else info.__setitem__(name, value)
    return _gcs_raw(json.dumps(info))


def _gcs_raw(text: str) -> dict[str, bytes]:
    return {"credentials.json": text.encode(), "endpoint": CLOSED.encode(),
            "tokenUri": (CLOSED + "/token").encode()}


def _s3(**values: str | bytes) -> dict[str, bytes]:
    data: dict[str, str | bytes] = {"accessKeyId": "AKIAEXAMPLE",
                                    "secretAccessKey": "wJalrXUtnFEMIK7MDENG", **values}
    return {k: v if isinstance(v, bytes) else v.encode()
            for k, v in {**data, "endpoint": CLOSED}.items()}


ACCOUNT_KEY = base64.b64encode(b"k" * 64).decode()


def _abs(**values: str) -> dict[str, bytes]:
    return {k: v.encode() for k, v in {**values, "endpoint": CLOSED}.items()}


def _sp(**values: str) -> dict[str, bytes]:
    base = {"clientId": "00000000-0000-0000-0000-000000000001",
            "clientSecret": "a~secret.value_1", "tenantId": "00000000-0000-0000-0000-0000000000aa"}
    return {k: v.encode() for k, v in {**base, **values, "endpoint": CLOSED_TLS,
                                        "authorityHost": CLOSED_TLS}.items()}


# (case, storage type, Secret data (built lazily: keys are generated once), Secret key
# the message must name, a fragment of the Secret value the message must not contain)
Case = tuple[str, str, Callable[[], dict[str, bytes]], str, str]
CASES: list[Case] = [
    ("s3 key id with a newline", "s3", lambda: _s3(accessKeyId="AKIA\nINJECTED"),
     "accessKeyId", "INJECTED"),
    ("s3 key id with a control character", "s3", lambda: _s3(accessKeyId="AKIA\x07BELL"),
     "accessKeyId", "BELL"),
    ("s3 key id not ASCII", "s3", lambda: _s3(accessKeyId="AKIAÉTÉ"), "accessKeyId", "TÉ"),
    ("s3 secret with a newline", "s3", lambda: _s3(secretAccessKey="wJalr\nXUtnF"),
     "secretAccessKey", "XUtnF"),
    ("s3 secret with a tab", "s3", lambda: _s3(secretAccessKey="wJalr\tXUtnF"),
     "secretAccessKey", "XUtnF"),
    ("s3 secret not UTF-8", "s3", lambda: _s3(secretAccessKey=b"\xff\xfeQZVXW"),
     "secretAccessKey", "QZVXW"),
    ("s3 session token with a newline", "s3",
     lambda: _s3(sessionToken="FwoGZXIv\nYXdzEB"), "sessionToken", "YXdzEB"),
    ("gcs not JSON", "gcs", lambda: _gcs_raw("not json {"), "credentials.json", "json {"),
    ("gcs JSON but a list", "gcs", lambda: _gcs_raw("[1, 2]"), "credentials.json", "[1"),
    ("gcs not a service account", "gcs", lambda: _gcs(type="authorized_user"),
     "credentials.json", "authorized_user"),
    ("gcs EC key", "gcs", lambda: _gcs(private_key=_keys()["ec"]), "credentials.json",
     "PRIVATE KEY"),
    ("gcs DSA key", "gcs", lambda: _gcs(private_key=_keys()["dsa"]), "credentials.json",
     "PRIVATE KEY"),
    ("gcs private key not PEM", "gcs", lambda: _gcs(private_key="MIIEvQIBADANBg"),
     "credentials.json", "MIIEvQIBADANBg"),
    ("gcs private key missing", "gcs", lambda: _gcs(private_key=None), "credentials.json",
     "sa@p"),
    ("gcs project_id a list", "gcs", lambda: _gcs(project_id=["p1", "p2"]),
     "credentials.json", "p1"),
    ("gcs universe_domain a number", "gcs", lambda: _gcs(universe_domain=42),
     "credentials.json", "42"),
    ("gcs client_email a number", "gcs", lambda: _gcs(client_email=12345),
     "credentials.json", "12345"),
    ("gcs client_email with a newline", "gcs",
     lambda: _gcs(client_email="sa@p.iam\nEVIL"), "credentials.json", "EVIL"),
    ("gcs private_key_id an object", "gcs", lambda: _gcs(private_key_id={"id": "k9"}),
     "credentials.json", "k9"),
    ("abs account key not base64", "abs", lambda: _abs(accountKey="not base64 at all!"),
     "accountKey", "at all"),
    ("abs account key with a newline", "abs",
     lambda: _abs(accountKey=ACCOUNT_KEY[:20] + "\n" + ACCOUNT_KEY[20:]), "accountKey",
     ACCOUNT_KEY[20:40]),
    ("abs connection string as account key", "abs", lambda: _abs(
        accountKey=f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={ACCOUNT_KEY};"
                   "EndpointSuffix=core.windows.net"), "accountKey", ACCOUNT_KEY[:20]),
    ("abs connection string garbage", "abs", lambda: _abs(accountKey=";;==;garbage;;"),
     "accountKey", "garbage"),
    ("abs client secret with a newline", "abs-sp",
     lambda: _sp(clientSecret="a~secret\nvalue_1"), "clientSecret", "value_1"),
    ("abs client id not ASCII", "abs-sp", lambda: _sp(clientId="çlient-ïd"), "clientId",
     "ïd"),
    ("abs tenant id with a space", "abs-sp", lambda: _sp(tenantId="contoso onmicrosoft"),
     "tenantId", "onmicrosoft"),
]


def _outcome(kind: str, data: dict[str, bytes]) -> ProviderError:
    """What a validation of the storage with this Secret ends in (build, then validate)."""
    spec = _spec(kind)

    def validate() -> None:
        client = build_client(spec, ProviderInputs(secret=data, namespace="t"), SETTINGS)
        try:
            validate_storage(client, spec)
        finally:
            client.close()
    with pytest.raises(ProviderError) as info:
        validate()
    return info.value


@pytest.mark.parametrize(("kind", "make", "key", "fragment"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_credentials_are_invalid_credentials(
        kind: str, make: Callable[[], dict[str, bytes]], key: str, fragment: str) -> None:
    error = _outcome(kind, make())
    assert error.reason is Reason.INVALID_CREDENTIALS, f"{error.reason}: {error.message}"
    assert error.stalled
    assert getattr(error, "retry", None) is False  # waits for the Secret to change
    assert f"key {key!r} of Secret {SECRET}" in error.message
    assert fragment not in error.message

    # What the operator makes of it: Ready=False and Stalled with that reason, no
    # Reconciling, and no next attempt until the Secret (or the spec) changes.
    validation = es.Validation(error.reason, error.message, stalled=error.stalled,
                               retry=error.retry)
    assert next_delay(validation.reason, 3600.0, 1, 5.0, 300.0, lambda: 0.5,
                      validation.retried) is None
    status = es.desired_status(None, es.Observed(
        generation=1, now=dt.datetime.now(dt.UTC), effective_prefixes={},
        validation=validation, consecutive_failures=1))
    stalled = get_condition(status["conditions"], STALLED)
    assert stalled is not None
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidCredentials")
    assert get_condition(status["conditions"], RECONCILING) is None


def test_a_refused_credential_is_still_retried() -> None:
    """Only a credential that cannot parse waits for the Secret: one the provider refused
    (a key not yet active, a clock skew) is retried with backoff, as before."""
    refused = ProviderError(Reason.INVALID_CREDENTIALS, "HeadBucket returned 403 "
                            "InvalidAccessKeyId")
    validation = es.Validation(refused.reason, refused.message, retry=refused.retry)
    assert validation.retried
    assert next_delay(validation.reason, 3600.0, 1, 5.0, 300.0, lambda: 0.5,
                      validation.retried) == 3.75


@pytest.mark.parametrize(("storage_type", "data", "key"), [
    ("s3", {"accessKeyId": b"", "secretAccessKey": b"s", "endpoint": CLOSED.encode()},
     "accessKeyId"),
    ("s3", {"accessKeyId": b"AKIA", "secretAccessKey": b" \n", "endpoint": CLOSED.encode()},
     "secretAccessKey"),
    ("gcs", {"credentials.json": b"", "endpoint": CLOSED.encode()}, "credentials.json"),
    ("abs", {"accountKey": b"", "endpoint": CLOSED.encode()}, "accountKey"),
])
def test_an_empty_credential_is_a_missing_key(storage_type: str, data: dict[str, bytes],
                                               key: str) -> None:
    """Empty (or blank) is the documented SecretKeyMissing, naming the key: Stalled too."""
    error = _outcome(storage_type, data)
    assert (error.reason, error.stalled) == (Reason.SECRET_KEY_MISSING, True)
    assert repr(key) in error.message


def test_a_well_formed_key_gets_past_the_parsing() -> None:
    """The control: the same Secrets, well formed, reach the (closed) endpoint."""
    for kind, data in (("s3", _s3()), ("gcs", _gcs()),
                               ("abs", _abs(accountKey=ACCOUNT_KEY)), ("abs-sp", _sp())):
        error = _outcome(kind, data)
        assert error.reason in (Reason.ENDPOINT_UNREACHABLE, Reason.TIMEOUT), error.message
