"""Providers against the real emulators: every reason a tenant can meet, per provider.

Through the operator's own entry points (``build_client`` + ``validate_storage`` /
``run_check``), with no SDK mocked. Every ProviderError is also checked for leaks: its
message and repr must not contain any value of the Secret it was built from.

Each Secret here binds the endpoints its spec names (``bound``), as its owner would:
these tests are about the providers; whether an unbound endpoint is refused is
tests/unit/test_providers_binding.py and tests/integration/test_credential_binding.py.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from callstorage.providers import build_client, deadline, run_check, validate_storage
from callstorage.providers.base import Capabilities, ProviderError, ProviderInputs, Reason
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec
from storage_fixtures import TricklingListener
from testbed.azurite import AzuriteServer
from testbed.gcs import GCSServer
from testbed.procs import wait_for
from testbed.s3 import S3Keys, S3Server, put_only_policy, readwrite_policy

pytestmark = pytest.mark.integration

CONNECT, READ = 1.0, 1.5
SETTINGS = Settings(connect_timeout=CONNECT, read_timeout=READ, max_attempts=1)
PREFIXES = {"audio": "rec/audio", "video": "rec/video", "transcript": "text"}
# path "meta" + PREFIXES: metadata falls back to path, so four distinct prefixes
DISTINCT = ["meta", "rec/audio", "rec/video", "text"]


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def spec_of(storage_type: str, bucket: str, block: dict[str, Any], *, mode: str = "ReadWrite",
            path: str | None = None, prefixes: dict[str, str] | None = None
            ) -> ExternalStorageSpec:
    data: dict[str, Any] = {"storageType": storage_type, "bucket": bucket,
                            "accessMode": mode, storage_type: block}
    if path is not None:
        data["path"] = path
    if prefixes is not None:
        data["prefixes"] = prefixes
    return ExternalStorageSpec.model_validate(data)


def inputs_of(data: Mapping[str, str] | None, ca: bytes | None = None) -> ProviderInputs:
    secret = None if data is None else {k: v.encode() for k, v in data.items()}
    return ProviderInputs(secret=secret, ca_bundle=ca)


def secret_values(data: Mapping[str, str]) -> list[str]:
    # the binding keys name endpoints, which messages may quote; the rest is secret
    values = [v for k, v in data.items()
              if v and k not in ("endpoint", "authorityHost", "tokenUri")]
    for v in list(values):
        try:  # a credentials.json: its private parts count on their own too
            info = json.loads(v)
        except ValueError:
            continue
        values += [info["private_key"], info["private_key_id"]]
        values += [line for line in info["private_key"].splitlines() if len(line) > 20]
    return values


def expect(reason: Reason, fn: Callable[[], object], data: Mapping[str, str] | None
           ) -> ProviderError:
    """Run ``fn``; it must raise ProviderError(reason), leaking nothing of ``data``."""
    with pytest.raises(ProviderError) as info:
        fn()
    error = info.value
    assert error.reason is reason, f"expected {reason}, got {error}"
    assert error.message.strip()
    for value in secret_values(data or {}):
        for text in (str(error), repr(error), error.message, str(error.args)):
            assert value not in text, f"credential leaked into: {text}"
    return error


def bound(spec: ExternalStorageSpec, inputs: ProviderInputs) -> ProviderInputs:
    """``inputs`` with a Secret that names every endpoint ``spec`` (and its key file's
    token_uri) sends the credentials to."""
    if inputs.secret is None:
        return inputs
    data = dict(inputs.secret)
    block = spec.provider
    for field, key in (("endpoint", "endpoint"), ("authority_host", "authorityHost")):
        value = getattr(block, field, None)
        if value:
            data[key] = value.encode()
    try:
        token_uri = json.loads(data["credentials.json"])["token_uri"]
        data["tokenUri"] = token_uri.encode()
    except (KeyError, ValueError, TypeError):
        pass
    return ProviderInputs(secret=data, ca_bundle=inputs.ca_bundle)


def build(spec: ExternalStorageSpec, inputs: ProviderInputs, settings: Settings = SETTINGS
          ) -> Any:
    return build_client(spec, bound(spec, inputs), settings)


def validate(spec: ExternalStorageSpec, inputs: ProviderInputs,
             settings: Settings = SETTINGS) -> Capabilities:
    client = build(spec, inputs, settings)
    try:
        return validate_storage(client, spec)
    finally:
        client.close()


def check(spec: ExternalStorageSpec, inputs: ProviderInputs) -> str:
    client = build(spec, inputs)
    try:
        return run_check(client, spec, "stream-")
    finally:
        client.close()


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything opens a TCP connection."""
    real = socket.socket

    class Guarded(real):  # type: ignore[misc,valid-type]
        def connect(self, address: Any) -> None:
            raise AssertionError(f"unexpected connection to {address}")

        def connect_ex(self, address: Any) -> int:
            raise AssertionError(f"unexpected connection to {address}")

    monkeypatch.setattr(socket, "socket", Guarded)


# --- S3 -------------------------------------------------------------------------------------

@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    name = _name("b")
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def s3_rw(s3_server: S3Server, s3_bucket: str) -> dict[str, str]:
    return s3_server.create_user(_name("rw"), readwrite_policy(s3_bucket)).as_secret_data()


def s3_spec(bucket: str, endpoint: str | None, **kw: Any) -> ExternalStorageSpec:
    block: dict[str, Any] = {"region": "us-east-1", "forcePathStyle": True,
                             "credentialsSecretRef": {"name": "creds"}}
    if endpoint is not None:
        block["endpoint"] = endpoint
    return spec_of("s3", bucket, block, **kw)


def test_s3_valid_credentials(s3_server: S3Server, s3_bucket: str, s3_rw: dict[str, str]
                              ) -> None:
    spec = s3_spec(s3_bucket, s3_server.endpoint, path="/directory_name/")
    assert validate(spec, inputs_of(s3_rw)) == Capabilities(list=True)
    key = check(spec, inputs_of(s3_rw))
    assert key.startswith("directory_name/stream-")
    assert key.endswith(".md")
    assert s3_server.list_keys(s3_bucket) == [key]
    assert check(spec, inputs_of(s3_rw)) != key  # a new file every time


def test_s3_wrong_secret(s3_server: S3Server, s3_bucket: str, s3_rw: dict[str, str]) -> None:
    bad = {**s3_rw, "secretAccessKey": "wrong" + s3_rw["secretAccessKey"][5:]}
    error = expect(Reason.INVALID_CREDENTIALS,
                   lambda: validate(s3_spec(s3_bucket, s3_server.endpoint), inputs_of(bad)),
                   bad)
    assert "SignatureDoesNotMatch" in error.message
    assert s3_rw["accessKeyId"] not in error.message  # the key id counts as a credential


def test_s3_validations_sharing_a_client_each_sign_with_their_own_keys(
    s3_server: S3Server, s3_bucket: str, s3_rw: dict[str, str],
) -> None:
    """Validations of one endpoint share a client (one build for N distinct Secrets);
    run at once on many threads, each still signs with its own keys: the good ones
    pass, the wrong and the unknown ones fail, every time."""
    from concurrent.futures import ThreadPoolExecutor

    from callstorage.providers import s3

    spec = s3_spec(s3_bucket, s3_server.endpoint)
    bad = {**s3_rw, "secretAccessKey": "wrong" + s3_rw["secretAccessKey"][5:]}
    unknown = S3Keys("AKIA" + secrets.token_hex(8).upper(),
                     secrets.token_urlsafe(30)).as_secret_data()
    other = s3_server.create_user(_name("rw"), readwrite_policy(s3_bucket)).as_secret_data()
    cases = [s3_rw, bad, unknown, other] * 12

    def outcome(data: dict[str, str]) -> str:
        try:
            validate(spec, inputs_of(data))
            return "ok"
        except ProviderError as exc:
            return str(exc.reason)

    builds = s3._CLIENTS.builds
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(outcome, cases))
    assert results == ["ok", "InvalidCredentials", "InvalidCredentials", "ok"] * 12
    assert s3._CLIENTS.builds - builds <= 1


def test_s3_unknown_access_key(s3_server: S3Server, s3_bucket: str) -> None:
    bad = S3Keys("AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)).as_secret_data()
    error = expect(Reason.INVALID_CREDENTIALS,
                   lambda: validate(s3_spec(s3_bucket, s3_server.endpoint), inputs_of(bad)),
                   bad)
    assert "InvalidAccessKeyId" in error.message


def test_s3_missing_bucket(s3_server: S3Server, s3_rw: dict[str, str]) -> None:
    missing = _name("missing")
    error = expect(Reason.BUCKET_NOT_FOUND,
                   lambda: validate(s3_spec(missing, s3_server.endpoint), inputs_of(s3_rw)),
                   s3_rw)
    assert error.message == f"HeadBucket on {missing} returned 404: the bucket does not exist"


def test_s3_write_only_probes_each_distinct_prefix(s3_server: S3Server, s3_bucket: str
                                                   ) -> None:
    keys = s3_server.create_user(_name("wo"), put_only_policy(s3_bucket, DISTINCT))
    data = keys.as_secret_data()
    spec = s3_spec(s3_bucket, s3_server.endpoint, mode="WriteOnly", path="meta",
                   prefixes=PREFIXES)
    assert validate(spec, inputs_of(data)) == Capabilities(write=True)
    probes = s3_server.list_keys(s3_bucket)
    assert sorted(k.rsplit("/", 1)[0] for k in probes) == DISTINCT
    assert all(k.rsplit("/", 1)[1].startswith(".write_probe_") for k in probes)

    rw_spec = s3_spec(s3_bucket, s3_server.endpoint, path="meta")
    error = expect(Reason.ACCESS_DENIED, lambda: validate(rw_spec, inputs_of(data)), data)
    assert error.message.startswith(f"HeadBucket on {s3_bucket} returned 403 AccessDenied")


def test_s3_write_only_outside_the_policy_is_denied(s3_server: S3Server, s3_bucket: str
                                                    ) -> None:
    data = s3_server.create_user(_name("wo"), put_only_policy(s3_bucket, ["rec/audio"])
                                 ).as_secret_data()
    spec = s3_spec(s3_bucket, s3_server.endpoint, mode="WriteOnly", path="meta",
                   prefixes=PREFIXES)
    error = expect(Reason.ACCESS_DENIED, lambda: validate(spec, inputs_of(data)), data)
    assert "PutObject" in error.message


def test_s3_retries_are_bounded(s3_bucket: str, s3_rw: dict[str, str], hanging_port: int
                                ) -> None:
    settings = Settings(connect_timeout=CONNECT, read_timeout=READ, max_attempts=2)
    spec = s3_spec(s3_bucket, f"http://127.0.0.1:{hanging_port}")
    started = time.monotonic()
    expect(Reason.TIMEOUT, lambda: validate(spec, inputs_of(s3_rw), settings), s3_rw)
    assert time.monotonic() - started < 2 * (CONNECT + READ) + 3


def test_s3_metadata_endpoint_is_refused_without_connecting(
        s3_rw: dict[str, str], no_connections: None) -> None:
    for endpoint in ("http://169.254.169.254", "http://169.254.169.254:80/latest",
                     "http://2852039166", "http://[::ffff:169.254.169.254]"):
        expect(Reason.ENDPOINT_NOT_ALLOWED,
               lambda e=endpoint: validate(s3_spec("bkt", e), inputs_of(s3_rw)), s3_rw)


def test_s3_allowlist(s3_server: S3Server, s3_bucket: str, s3_rw: dict[str, str]) -> None:
    only_elsewhere = Settings(connect_timeout=CONNECT, read_timeout=READ,
                              endpoint_allowlist=["10.0.0.0/8", "*.example.com"])
    expect(Reason.ENDPOINT_NOT_ALLOWED,
           lambda: validate(s3_spec(s3_bucket, s3_server.endpoint), inputs_of(s3_rw),
                            only_elsewhere), s3_rw)
    loopback = Settings(connect_timeout=CONNECT, read_timeout=READ,
                        endpoint_allowlist=["127.0.0.0/8"])
    spec = s3_spec(s3_bucket, s3_server.endpoint)
    assert validate(spec, inputs_of(s3_rw), loopback) == Capabilities(list=True)


@pytest.mark.parametrize("missing", ["accessKeyId", "secretAccessKey"])
def test_s3_missing_secret_key(s3_rw: dict[str, str], missing: str) -> None:
    data = {k: v for k, v in s3_rw.items() if k != missing}
    error = expect(Reason.SECRET_KEY_MISSING,
                   lambda: build(s3_spec("bkt", None), inputs_of(data), SETTINGS), data)
    assert repr(missing) in error.message
    blank = {**s3_rw, missing: "  \n"}
    error = expect(Reason.SECRET_KEY_MISSING,
                   lambda: build(s3_spec("bkt", None), inputs_of(blank), SETTINGS),
                   s3_rw)
    assert "is empty" in error.message


def test_s3_ambient_credentials_need_the_setting() -> None:
    expect(Reason.AMBIENT_CREDENTIALS_DISABLED,
           lambda: build(s3_spec("bkt", None), inputs_of(None), SETTINGS), None)


def test_s3_surrounding_whitespace_in_keys_is_ignored(
        s3_server: S3Server, s3_bucket: str, s3_rw: dict[str, str]) -> None:
    padded = {k: f"{v}\n" for k, v in s3_rw.items()}
    assert validate(s3_spec(s3_bucket, s3_server.endpoint), inputs_of(padded)).list


# --- GCS ------------------------------------------------------------------------------------

@pytest.fixture
def gcs_bucket(gcs_server: GCSServer) -> str:
    name = _name("b")
    gcs_server.create_bucket(name)
    return name


def gcs_account(gcs: GCSServer, bucket: str, role: str) -> dict[str, str]:
    info = gcs.create_service_account(_name("sa"))
    gcs.grant(bucket, str(info["client_email"]), role)
    return {"credentials.json": json.dumps(info)}


def gcs_spec(bucket: str, endpoint: str, **kw: Any) -> ExternalStorageSpec:
    return spec_of("gcs", bucket, {"endpoint": endpoint,
                                   "credentialsSecretRef": {"name": "creds"}}, **kw)


def test_gcs_valid_credentials(gcs_server: GCSServer, gcs_bucket: str) -> None:
    data = gcs_account(gcs_server, gcs_bucket, "admin")
    spec = gcs_spec(gcs_bucket, gcs_server.endpoint, path="calls")
    assert validate(spec, inputs_of(data)) == Capabilities(list=True)
    key = check(spec, inputs_of(data))
    assert gcs_server.list_objects(gcs_bucket) == [key]
    assert gcs_server.read_object(gcs_bucket, key).startswith(b"# External storage check")


def test_gcs_wrong_key(gcs_server: GCSServer, gcs_bucket: str) -> None:
    data = gcs_account(gcs_server, gcs_bucket, "admin")
    info = json.loads(data["credentials.json"])
    info["private_key"] = gcs_server.create_service_account(_name("x"))["private_key"]
    bad = {"credentials.json": json.dumps(info)}
    error = expect(Reason.INVALID_CREDENTIALS,
                   lambda: validate(gcs_spec(gcs_bucket, gcs_server.endpoint), inputs_of(bad)),
                   bad)
    # the status and OAuth code; the endpoint's error_description is never published
    assert error.message.endswith("(HTTP 400 invalid_grant)")
    assert "Invalid JWT Signature" not in error.message


def test_gcs_deleted_account(gcs_server: GCSServer, gcs_bucket: str) -> None:
    data = gcs_account(gcs_server, gcs_bucket, "admin")
    gcs_server.delete_service_account(json.loads(data["credentials.json"])["client_email"])
    expect(Reason.INVALID_CREDENTIALS,
           lambda: validate(gcs_spec(gcs_bucket, gcs_server.endpoint), inputs_of(data)), data)


def test_gcs_missing_bucket(gcs_server: GCSServer, gcs_bucket: str) -> None:
    data = gcs_account(gcs_server, gcs_bucket, "admin")
    expect(Reason.BUCKET_NOT_FOUND,
           lambda: validate(gcs_spec(_name("missing"), gcs_server.endpoint), inputs_of(data)),
           data)


def test_gcs_write_only_probes_each_distinct_prefix(gcs_server: GCSServer, gcs_bucket: str
                                                    ) -> None:
    data = gcs_account(gcs_server, gcs_bucket, "objectCreator")
    spec = gcs_spec(gcs_bucket, gcs_server.endpoint, mode="WriteOnly", path="meta",
                    prefixes=PREFIXES)
    assert validate(spec, inputs_of(data)) == Capabilities(write=True)
    probes = gcs_server.list_objects(gcs_bucket)
    assert sorted(k.rsplit("/", 1)[0] for k in probes) == DISTINCT
    assert all(k.rsplit("/", 1)[1].startswith(".write_probe_") for k in probes)

    rw_spec = gcs_spec(gcs_bucket, gcs_server.endpoint)
    error = expect(Reason.ACCESS_DENIED, lambda: validate(rw_spec, inputs_of(data)), data)
    assert error.message == f"bucket get on {gcs_bucket} returned 403 Forbidden (forbidden)"


def test_gcs_write_only_without_a_grant_is_denied(gcs_server: GCSServer, gcs_bucket: str
                                                  ) -> None:
    other = _name("b")
    gcs_server.create_bucket(other)
    data = gcs_account(gcs_server, other, "objectCreator")  # a grant on another bucket
    spec = gcs_spec(gcs_bucket, gcs_server.endpoint, mode="WriteOnly", path="rec")
    error = expect(Reason.ACCESS_DENIED, lambda: validate(spec, inputs_of(data)), data)
    assert error.message.startswith(f"object insert on {gcs_bucket}/rec/.write_probe_")
    assert error.message.endswith("returned 403 Forbidden")
    # the server's message (it says which permission is missing) is never published
    assert "storage.objects.create" not in error.message


def test_gcs_token_endpoint_down(gcs_server: GCSServer, gcs_bucket: str, closed_port: int
                                 ) -> None:
    info = json.loads(gcs_account(gcs_server, gcs_bucket, "admin")["credentials.json"])
    info["token_uri"] = f"http://127.0.0.1:{closed_port}/token"
    data = {"credentials.json": json.dumps(info)}
    error = expect(Reason.ENDPOINT_UNREACHABLE,
                   lambda: validate(gcs_spec(gcs_bucket, gcs_server.endpoint), inputs_of(data)),
                   data)
    assert "token request" in error.message


def test_gcs_metadata_endpoint_is_refused(gcs_server: GCSServer, gcs_bucket: str) -> None:
    data = gcs_account(gcs_server, gcs_bucket, "admin")  # its token endpoint is allowed
    expect(Reason.ENDPOINT_NOT_ALLOWED,
           lambda: validate(gcs_spec(gcs_bucket, "http://169.254.169.254"), inputs_of(data)),
           data)


def test_gcs_metadata_token_uri_is_refused_without_connecting(
        gcs_server: GCSServer, gcs_bucket: str, no_connections: None) -> None:
    data = gcs_account(gcs_server, gcs_bucket, "admin")
    info = json.loads(data["credentials.json"])  # a key whose token_uri is the metadata IP
    info["token_uri"] = "http://169.254.169.254/computeMetadata/v1/token"
    bad = {"credentials.json": json.dumps(info)}
    error = expect(Reason.ENDPOINT_NOT_ALLOWED,
                   lambda: validate(gcs_spec(gcs_bucket, gcs_server.endpoint), inputs_of(bad)),
                   bad)
    assert "token request" in error.message
    assert "169.254.169.254" in error.message


def test_gcs_missing_or_broken_secret_key() -> None:
    spec = gcs_spec("bkt", "http://127.0.0.1:1")
    error = expect(Reason.SECRET_KEY_MISSING,
                   lambda: build(spec, inputs_of({"other": "x"}), SETTINGS), None)
    assert "'credentials.json'" in error.message
    garbage = {"credentials.json": "{not json"}
    expect(Reason.INVALID_CREDENTIALS,
           lambda: build(spec, inputs_of(garbage), SETTINGS), garbage)


# --- Azure ----------------------------------------------------------------------------------

ACCOUNT = "callstorage1"


@pytest.fixture
def container(azurite: AzuriteServer) -> str:
    name = _name("c")
    azurite.create_container(ACCOUNT, name)
    return name


def abs_spec(container: str, endpoint: str, authority: str | None = None, **kw: Any
             ) -> ExternalStorageSpec:
    block: dict[str, Any] = {"accountName": ACCOUNT, "endpoint": endpoint,
                             "credentialsSecretRef": {"name": "creds"}}
    if authority is not None:
        block["authorityHost"] = authority
    return spec_of("abs", container, block, **kw)


@pytest.fixture
def abs_key(azurite: AzuriteServer) -> dict[str, str]:
    return {"accountKey": azurite.key_for(ACCOUNT)}


def test_abs_valid_account_key(azurite: AzuriteServer, container: str,
                               abs_key: dict[str, str]) -> None:
    spec = abs_spec(container, azurite.endpoint_for(ACCOUNT), path="calls/")
    inputs = inputs_of(abs_key, azurite.ca_pem)
    assert validate(spec, inputs) == Capabilities(list=True)
    key = check(spec, inputs)
    assert azurite.list_blobs(ACCOUNT, container) == [key]
    assert key.startswith("calls/stream-")


def test_abs_write_only_probes_each_distinct_prefix(
        azurite: AzuriteServer, container: str, abs_key: dict[str, str]) -> None:
    # Azurite has no role assignments, so this proves the probes, not a write-only grant.
    spec = abs_spec(container, azurite.endpoint_for(ACCOUNT), mode="WriteOnly", path="meta",
                    prefixes=PREFIXES)
    assert validate(spec, inputs_of(abs_key, azurite.ca_pem)) == Capabilities(write=True)
    probes = azurite.list_blobs(ACCOUNT, container)
    assert sorted(k.rsplit("/", 1)[0] for k in probes) == DISTINCT


def test_abs_wrong_account_key(azurite: AzuriteServer, container: str) -> None:
    bad = {"accountKey": azurite.key_for("callstorage2")}
    error = expect(Reason.INVALID_CREDENTIALS,
                   lambda: validate(abs_spec(container, azurite.endpoint_for(ACCOUNT)),
                                    inputs_of(bad, azurite.ca_pem)), bad)
    assert "403" in error.message


def test_abs_account_key_not_base64(azurite: AzuriteServer, container: str) -> None:
    bad = {"accountKey": "not base64 at all!"}
    expect(Reason.INVALID_CREDENTIALS,
           lambda: build(abs_spec(container, azurite.endpoint_for(ACCOUNT)),
                                inputs_of(bad, azurite.ca_pem), SETTINGS), bad)


def test_abs_missing_container(azurite: AzuriteServer, abs_key: dict[str, str]) -> None:
    error = expect(Reason.BUCKET_NOT_FOUND,
                   lambda: validate(abs_spec(_name("missing"), azurite.endpoint_for(ACCOUNT)),
                                    inputs_of(abs_key, azurite.ca_pem)), abs_key)
    assert "ContainerNotFound" in error.message


def test_abs_untrusted_certificate(azurite: AzuriteServer, container: str,
                                   abs_key: dict[str, str]) -> None:
    error = expect(Reason.ENDPOINT_UNREACHABLE,
                   lambda: validate(abs_spec(container, azurite.endpoint_for(ACCOUNT)),
                                    inputs_of(abs_key)), abs_key)
    assert "caSecretRef" in error.message


def test_abs_metadata_endpoint_is_refused_without_connecting(
        abs_key: dict[str, str], no_connections: None) -> None:
    expect(Reason.ENDPOINT_NOT_ALLOWED,
           lambda: validate(abs_spec("cont", "http://169.254.169.254/acct"),
                            inputs_of(abs_key)), abs_key)


def test_abs_missing_secret_keys() -> None:
    spec = abs_spec("cont", "https://127.0.0.1:1/a")
    error = expect(Reason.SECRET_KEY_MISSING,
                   lambda: build(spec, inputs_of({}), SETTINGS), None)
    assert "'accountKey'" in error.message
    partial = {"clientId": "a-client-id-value", "clientSecret": "a-client-secret"}
    error = expect(Reason.SECRET_KEY_MISSING,
                   lambda: build(spec, inputs_of(partial), SETTINGS), partial)
    assert "'tenantId'" in error.message


@pytest.fixture
def service_principal(azurite: AzuriteServer) -> Iterator[dict[str, str]]:
    sp = azurite.create_service_principal()
    yield sp.as_secret_data()
    azurite.entra.revoke(sp)


def test_abs_service_principal(azurite: AzuriteServer, container: str,
                               service_principal: dict[str, str]) -> None:
    spec = abs_spec(container, azurite.endpoint_for(ACCOUNT, oauth=True),
                    authority=azurite.entra.authority)
    inputs = inputs_of(service_principal, azurite.ca_pem)
    assert validate(spec, inputs) == Capabilities(list=True)
    key = check(spec, inputs)
    assert key in azurite.list_blobs(ACCOUNT, container, oauth=True)


def test_abs_service_principal_wrong_secret(azurite: AzuriteServer, container: str,
                                            service_principal: dict[str, str]) -> None:
    bad = {**service_principal, "clientSecret": "not-the-secret"}
    spec = abs_spec(container, azurite.endpoint_for(ACCOUNT, oauth=True),
                    authority=azurite.entra.authority)
    started = time.monotonic()
    error = expect(Reason.INVALID_CREDENTIALS,
                   lambda: validate(spec, inputs_of(bad, azurite.ca_pem)), bad)
    assert "AADSTS7000215" in error.message
    assert time.monotonic() - started < 5  # not retried with the storage SDK's backoff


def test_abs_service_principal_needs_an_https_authority(
        container: str, service_principal: dict[str, str]) -> None:
    spec = abs_spec(container, "https://127.0.0.1:1/a", authority="http://127.0.0.1:1")
    expect(Reason.INVALID_SPEC,
           lambda: build(spec, inputs_of(service_principal), SETTINGS),
           service_principal)


def test_abs_service_principal_authority_on_metadata_ip(
        container: str, service_principal: dict[str, str], no_connections: None) -> None:
    spec = abs_spec(container, "https://127.0.0.1:1/a", authority="https://169.254.169.254")
    error = expect(Reason.ENDPOINT_NOT_ALLOWED,
                   lambda: validate(spec, inputs_of(service_principal)), service_principal)
    assert "token request" in error.message


# --- every provider -------------------------------------------------------------------------

SpecAt = Callable[[int], ExternalStorageSpec]


@pytest.fixture(params=["s3", "gcs", "abs"])
def network_target(request: pytest.FixtureRequest) -> tuple[SpecAt, dict[str, str]]:
    """A storage type's spec pointed at a local port, and valid credentials for it."""
    if request.param == "s3":
        bucket: str = request.getfixturevalue("s3_bucket")
        return (lambda port: s3_spec(bucket, f"http://127.0.0.1:{port}"),
                request.getfixturevalue("s3_rw"))
    if request.param == "gcs":
        server: GCSServer = request.getfixturevalue("gcs_server")
        gcs_bucket: str = request.getfixturevalue("gcs_bucket")
        return (lambda port: gcs_spec(gcs_bucket, f"http://127.0.0.1:{port}"),
                gcs_account(server, gcs_bucket, "admin"))
    container: str = request.getfixturevalue("container")
    return (lambda port: abs_spec(container, f"https://127.0.0.1:{port}/{ACCOUNT}"),
            request.getfixturevalue("abs_key"))


def test_endpoint_down(network_target: tuple[SpecAt, dict[str, str]], closed_port: int
                       ) -> None:
    spec_at, data = network_target
    error = expect(Reason.ENDPOINT_UNREACHABLE,
                   lambda: validate(spec_at(closed_port), inputs_of(data)), data)
    assert "refused" in error.message


def test_hanging_endpoint_times_out(network_target: tuple[SpecAt, dict[str, str]],
                                    hanging_port: int) -> None:
    spec_at, data = network_target
    spec = spec_at(hanging_port)
    started = time.monotonic()
    expect(Reason.TIMEOUT, lambda: validate(spec, inputs_of(data)), data)
    assert time.monotonic() - started < CONNECT + READ + 2


def test_trickling_endpoint_ends_at_the_total_deadline(
        network_target: tuple[SpecAt, dict[str, str]]) -> None:
    """An endpoint that sends one byte every 0.5 s (an HTTP header, or a TLS handshake
    record, that never ends) is never timed out per read: the call's total deadline ends
    it, every connection it opened closed on the wire within a second of it (so the
    thread is free), as Timeout."""
    spec_at, data = network_target
    tls = spec_at(1).storage_type == "abs"  # Azure: https, stuck in the handshake
    seconds = 2.0
    settings = Settings(connect_timeout=CONNECT, read_timeout=READ, max_attempts=2)
    listener = TricklingListener(TricklingListener.TLS if tls else TricklingListener.HTTP)
    try:
        spec = spec_at(listener.port)
        started = time.monotonic()
        with deadline.bounded(started + seconds, seconds):
            error = expect(Reason.TIMEOUT,
                           lambda: validate(spec, inputs_of(data), settings), data)
        took = time.monotonic() - started
        assert seconds <= took < seconds + 1, took
        assert "total deadline of 2s" in error.message
        lifetimes = [(closed or time.monotonic()) - started
                     for _, closed in listener.connections()]
        assert lifetimes, "the endpoint saw no connection"
        assert max(lifetimes) < seconds + 1, lifetimes
    finally:
        listener.close()


def test_gcs_trickling_token_endpoint_ends_at_the_total_deadline(
        gcs_server: GCSServer, gcs_bucket: str) -> None:
    """The token request is bounded alike, and its cut-short answer is not taken for a
    refused key (InvalidCredentials would stall the storage): Timeout, retried."""
    seconds = 2.0
    listener = TricklingListener()
    try:
        info = json.loads(gcs_account(gcs_server, gcs_bucket, "admin")["credentials.json"])
        info["token_uri"] = f"{listener.url()}/token"
        data = {"credentials.json": json.dumps(info)}
        spec = gcs_spec(gcs_bucket, gcs_server.endpoint)
        started = time.monotonic()
        with deadline.bounded(started + seconds, seconds):
            error = expect(Reason.TIMEOUT, lambda: validate(spec, inputs_of(data)), data)
        assert time.monotonic() - started < seconds + 1
        assert not error.stalled
        assert listener.connections()
        # closed on the wire within a second of the deadline
        wait_for(lambda: listener.open_connections() == 0,
                 started + seconds + 1 - time.monotonic(), "the connections to close")
    finally:
        listener.close()


def test_gcs_and_azure_clients_are_kept_between_validations(
    gcs_server: GCSServer, gcs_bucket: str, azurite: AzuriteServer, container: str,
) -> None:
    """Like S3's: N validations with one Secret build one SDK client (a GCS client keeps
    its token: one token request, not N); other credentials build their own."""
    from callstorage.providers import azure, gcs

    azure._CLIENTS.clear()  # earlier tests used the same account key
    data = gcs_account(gcs_server, gcs_bucket, "admin")
    spec = gcs_spec(gcs_bucket, gcs_server.endpoint)
    builds = gcs._CLIENTS.builds
    for _ in range(3):
        assert validate(spec, inputs_of(data)) == Capabilities(list=True)
    assert gcs._CLIENTS.builds == builds + 1
    other = gcs_account(gcs_server, gcs_bucket, "admin")
    assert validate(spec, inputs_of(other)) == Capabilities(list=True)
    assert gcs._CLIENTS.builds == builds + 2

    aspec = abs_spec(container, azurite.endpoint_for(ACCOUNT))
    builds = azure._CLIENTS.builds
    for _ in range(3):
        assert validate(aspec, inputs_of({"accountKey": azurite.key_for(ACCOUNT)},
                                         azurite.ca_pem)) == Capabilities(list=True)
    assert azure._CLIENTS.builds == builds + 1
    # another key is another client, and fails as before
    wrong = {"accountKey": azurite.key_for("callstorage2")}
    expect(Reason.INVALID_CREDENTIALS,
           lambda: validate(aspec, inputs_of(wrong, azurite.ca_pem)), wrong)
    assert azure._CLIENTS.builds == builds + 2


def test_gcs_deleted_account_after_a_cached_validation(gcs_server: GCSServer,
                                                       gcs_bucket: str) -> None:
    data = gcs_account(gcs_server, gcs_bucket, "admin")
    spec = gcs_spec(gcs_bucket, gcs_server.endpoint)
    assert validate(spec, inputs_of(data)) == Capabilities(list=True)
    gcs_server.delete_service_account(json.loads(data["credentials.json"])["client_email"])
    expect(Reason.INVALID_CREDENTIALS, lambda: validate(spec, inputs_of(data)), data)
