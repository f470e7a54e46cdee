"""Pure parts of the providers: error-code tables, network-failure classification,
Secret parsing and redaction."""

from __future__ import annotations

import socket
import ssl

import pytest

from callstorage.providers import azure, gcs, s3
from callstorage.providers.base import ProviderError, ProviderInputs, Reason
from callstorage.providers.credentials import REDACTED, SecretKeys, redact
from callstorage.providers.transport import CABundle, classify


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
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
        ("InternalError", 500, Reason.ENDPOINT_UNREACHABLE),
        ("SlowDown", 503, Reason.ENDPOINT_UNREACHABLE),
    ],
)
def test_s3_codes(code: str, status: int, reason: Reason) -> None:
    assert s3.reason_for_code(code, status) is reason


@pytest.mark.parametrize(
    ("status", "reason"),
    [(401, Reason.INVALID_CREDENTIALS), (403, Reason.ACCESS_DENIED),
     (404, Reason.BUCKET_NOT_FOUND), (400, Reason.INVALID_SPEC),
     (429, Reason.ENDPOINT_UNREACHABLE), (500, Reason.ENDPOINT_UNREACHABLE),
     (503, Reason.ENDPOINT_UNREACHABLE)],
)
def test_gcs_statuses(status: int, reason: Reason) -> None:
    assert gcs.reason_for_status(status) is reason


@pytest.mark.parametrize(
    ("status", "code", "message", "reason"),
    [
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
        (503, "ServerBusy", "busy", Reason.ENDPOINT_UNREACHABLE),
    ],
)
def test_azure_errors(status: int, code: str, message: str, reason: Reason) -> None:
    assert azure.reason_for_error(status, code, message) is reason


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
