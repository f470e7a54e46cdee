"""Pure parts of the providers: error-code tables, network-failure classification,
Secret parsing and redaction."""

from __future__ import annotations

import socket
import ssl

import pytest

from callstorage.api.reasons import POLICY, is_retried, is_stalled
from callstorage.providers import azure, gcs, s3
from callstorage.providers.base import ErrorRule, ProviderError, ProviderInputs, Reason
from callstorage.providers.credentials import REDACTED, SecretKeys, redact
from callstorage.providers.transport import CABundle, classify

# The classification, per provider: (status, code) -> reason; whether each reason is
# retried or needs a person is the reason's policy (callstorage.api.reasons.POLICY).
S3_CASES = [
    ("SignatureDoesNotMatch", 403, Reason.INVALID_CREDENTIALS),
    ("InvalidAccessKeyId", 403, Reason.INVALID_CREDENTIALS),
    ("ExpiredToken", 400, Reason.INVALID_CREDENTIALS),
    ("InvalidToken", 400, Reason.INVALID_CREDENTIALS),
    ("AccessDenied", 403, Reason.ACCESS_DENIED),
    ("403", 403, Reason.ACCESS_DENIED),  # HEAD: no body, only the status
    ("AllAccessDisabled", 403, Reason.ACCESS_DENIED),
    ("NoSuchBucket", 404, Reason.BUCKET_NOT_FOUND),
    ("404", 404, Reason.BUCKET_NOT_FOUND),
    ("PermanentRedirect", 301, Reason.INVALID_SPEC),  # wrong region
    ("301", 301, Reason.INVALID_SPEC),
    ("AuthorizationHeaderMalformed", 400, Reason.INVALID_SPEC),
    ("InvalidBucketName", 400, Reason.INVALID_SPEC),
    ("401", 401, Reason.INVALID_CREDENTIALS),
    # transient answers are retried, never a permanent InvalidSpec
    ("InternalError", 500, Reason.SERVICE_ERROR),
    ("SlowDown", 503, Reason.SERVICE_ERROR),
    ("RequestTimeout", 400, Reason.SERVICE_ERROR),
    ("408", 408, Reason.SERVICE_ERROR),
    ("OperationAborted", 409, Reason.SERVICE_ERROR),
    ("PreconditionFailed", 412, Reason.SERVICE_ERROR),
    ("412", 412, Reason.SERVICE_ERROR),
    ("TooManyRequests", 429, Reason.SERVICE_ERROR),
    ("SomethingNew", 400, Reason.SERVICE_ERROR),  # unknown: retried
    ("SomethingNew", 418, Reason.SERVICE_ERROR),
]


@pytest.mark.parametrize(("code", "status", "reason"), S3_CASES)
def test_s3_codes(code: str, status: int, reason: Reason) -> None:
    assert s3.reason_for_code(code, status) is reason


GCS_CASES = [
    (401, "", Reason.INVALID_CREDENTIALS), (403, "forbidden", Reason.ACCESS_DENIED),
    (404, "notFound", Reason.BUCKET_NOT_FOUND), (400, "invalid", Reason.INVALID_SPEC),
    (400, "", Reason.SERVICE_ERROR), (408, "", Reason.SERVICE_ERROR),
    (409, "conflict", Reason.SERVICE_ERROR), (412, "conditionNotMet", Reason.SERVICE_ERROR),
    (429, "rateLimitExceeded", Reason.SERVICE_ERROR), (500, "", Reason.SERVICE_ERROR),
    (503, "backendError", Reason.SERVICE_ERROR),
]


@pytest.mark.parametrize(("status", "code", "reason"), GCS_CASES)
def test_gcs_statuses(status: int, code: str, reason: Reason) -> None:
    assert gcs.reason_for_status(status, code) is reason


AZURE_CASES = [
    (403, "AuthenticationFailed", "Server failed to authenticate the request.",
     Reason.INVALID_CREDENTIALS),
    # Azurite's code for a bad SharedKey signature, with Azure's wording
    (403, "AuthorizationFailure", "Server failed to authenticate the request. Make sure",
     Reason.INVALID_CREDENTIALS),
    # the same code from a firewall rule: the key is fine, access is not
    (403, "AuthorizationFailure", "This request is not authorized to perform this "
     "operation.", Reason.ACCESS_DENIED),
    (403, "AuthorizationPermissionMismatch", "This request is not authorized",
     Reason.ACCESS_DENIED),
    (401, "InvalidAuthenticationInfo", "Lifetime validation failed",
     Reason.INVALID_CREDENTIALS),
    (404, "ContainerNotFound", "The specified container does not exist.",
     Reason.BUCKET_NOT_FOUND),
    (400, "InvalidResourceName", "The specifed resource name contains invalid characters.",
     Reason.INVALID_SPEC),
    (503, "ServerBusy", "busy", Reason.SERVICE_ERROR),
    (500, "OperationTimedOut", "timed out", Reason.SERVICE_ERROR),
    (409, "ContainerBeingDeleted", "being deleted", Reason.SERVICE_ERROR),
    (412, "ConditionNotMet", "condition not met", Reason.SERVICE_ERROR),
    (408, "", "timeout", Reason.SERVICE_ERROR),
    (429, "", "throttled", Reason.SERVICE_ERROR),
    (400, "SomethingNew", "?", Reason.SERVICE_ERROR),
]


@pytest.mark.parametrize(("status", "code", "message", "reason"), AZURE_CASES)
def test_azure_errors(status: int, code: str, message: str, reason: Reason) -> None:
    assert azure.reason_for_error(status, code, message) is reason


@pytest.mark.parametrize("table", [s3.PROVIDER.error_table, gcs.PROVIDER.error_table,
                                   azure.PROVIDER.error_table], ids=["s3", "gcs", "abs"])
def test_every_table_row_is_exercised_by_a_case(table: tuple[ErrorRule, ...]) -> None:
    """Each row of each provider's table is hit by at least one case above, so a row
    cannot change without a test noticing."""
    cases = {id(s3.PROVIDER.error_table): [(st, c) for c, st, _ in S3_CASES],
             id(gcs.PROVIDER.error_table): [(st, c) for st, c, _ in GCS_CASES],
             id(azure.PROVIDER.error_table): [(st, c) for st, c, _, _ in AZURE_CASES],
             }[id(table)]
    for row in table:
        assert any((row.status is None or row.status == st) and
                   (not row.codes or c in row.codes) for st, c in cases), row


def test_only_spec_defects_are_permanent_and_the_policy_covers_every_reason() -> None:
    assert set(POLICY) == set(Reason)
    assert {r for r in Reason if not is_retried(r)} == {Reason.INVALID_SPEC}
    stalled = {r for r in Reason if is_stalled(r)}
    assert stalled == {Reason.INVALID_SPEC, Reason.SECRET_NOT_FOUND, Reason.SECRET_KEY_MISSING,
                       Reason.AMBIENT_CREDENTIALS_DISABLED, Reason.INVALID_CREDENTIALS,
                       Reason.ACCESS_DENIED, Reason.BUCKET_NOT_FOUND,
                       Reason.ENDPOINT_NOT_ALLOWED, Reason.ENDPOINT_NOT_BOUND,
                       Reason.CA_BUNDLE_TOO_LARGE}


def test_a_host_name_that_does_not_exist_needs_a_person_a_refused_port_does_not() -> None:
    from callstorage.providers.transport import network_error

    nxdomain = network_error("HeadBucket", _wrapped(
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        ConnectionError("x")), 1, 1, str)
    assert nxdomain.reason is Reason.ENDPOINT_UNREACHABLE
    assert nxdomain.stalled
    again = network_error("HeadBucket", _wrapped(
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        ConnectionError("x")), 1, 1, str)
    assert again.reason is Reason.ENDPOINT_UNREACHABLE
    assert not again.stalled
    refused = network_error("HeadBucket", _wrapped(ConnectionRefusedError(111, "refused"),
                                                   ConnectionError("x")), 1, 1, str)
    assert not refused.stalled


def _wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "reason", "words"),
    [
        (_wrapped(ConnectionRefusedError(111, "Connection refused"), RuntimeError("x")),
         Reason.ENDPOINT_UNREACHABLE, "refused"),
        (_wrapped(socket.gaierror(-2, "Name or service not known"), RuntimeError("x")),
         Reason.ENDPOINT_UNREACHABLE, "not found"),
        (_wrapped(TimeoutError("timed out"), RuntimeError("x")), Reason.TIMEOUT, "read"),
        (_wrapped(TimeoutError("_ssl.c:989: The handshake operation timed out"),
                  RuntimeError("x")), Reason.TIMEOUT, "TLS handshake"),
        (_wrapped(ssl.SSLCertVerificationError(1, "certificate verify failed"),
                  RuntimeError("x")), Reason.ENDPOINT_UNREACHABLE, "caSecretRef"),
        (_wrapped(ConnectionResetError(104, "reset"), RuntimeError("x")),
         Reason.ENDPOINT_UNREACHABLE, "reset"),
        (RuntimeError("x", ConnectionRefusedError(111, "refused")),  # kept in args
         Reason.ENDPOINT_UNREACHABLE, "refused"),
    ],
)
def test_classify(exc: BaseException, reason: Reason, words: str) -> None:
    result = classify(exc, 1, 2)
    assert result is not None
    assert result[0] is reason
    assert words in result[1]


def test_classify_leaves_other_errors_alone() -> None:
    assert classify(ValueError("bad"), 1, 2) is None


def test_classify_names_the_connect_timeout() -> None:
    class ConnectTimeoutError(Exception):
        pass

    result = classify(ConnectTimeoutError("x"), 3, 9)
    assert result == (Reason.TIMEOUT, "no connection within the connect timeout (3s)")


def test_secret_keys() -> None:
    keys = SecretKeys(ProviderInputs({"a": b" value\n", "b": b"", "c": b"\xff"}), "Secret s")
    assert keys.require("a") == "value"
    assert keys.optional("b") is None
    assert not keys.present("b")
    with pytest.raises(ProviderError, match="key 'b' of Secret s is empty") as info:
        keys.require("b")
    assert info.value.reason is Reason.SECRET_KEY_MISSING
    with pytest.raises(ProviderError, match="key 'z' of Secret s is missing"):
        keys.require("z")
    with pytest.raises(ProviderError, match="not UTF-8") as info:
        keys.require("c")
    assert info.value.reason is Reason.INVALID_CREDENTIALS
    assert "value" not in repr(keys)


def test_redact() -> None:
    pem = "-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\nEEEEFFFF\n-----END KEY-----\n"
    text = "key AKIAEXAMPLE failed near AAAABBBBCCCCDDDD; secret s3cr3t-value; id ab"
    out = redact(text, ["AKIAEXAMPLE", pem, "s3cr3t-value", "ab"])
    for leaked in ("AKIAEXAMPLE", "AAAABBBB", "s3cr3t"):
        assert leaked not in out
    assert out.count(REDACTED) == 3
    assert out.endswith("id ab")  # too short to redact without mangling words


def test_ca_bundle_rejects_garbage_and_cleans_up() -> None:
    with pytest.raises(ProviderError) as info:
        CABundle(b"not a certificate")
    assert info.value.reason is Reason.INVALID_SPEC
    bundle = CABundle(None)
    assert bundle.verify is True
    bundle.close()
