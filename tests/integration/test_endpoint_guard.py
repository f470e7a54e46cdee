"""Credentials go only where the policy allows: attacks on the endpoint policy, on the wire.

Each attack points a storage (through the operator, or through the providers in-process)
at a listener on ``DENIED_HOST``, a loopback address the tests' policy denies
(``testbed.endpoints``), and asserts that the listener saw **zero** connections, besides
the reason in status. Redirects come from an allowed server (on 127.0.0.1) whose every
answer is a 302/307 to the denied listener, with a body that must never be published;
error bodies likewise.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import storages
from callstorage.providers import build_client, validate_storage
from callstorage.providers.base import ProviderError, ProviderInputs, Reason
from callstorage.settings import Settings
from callstorage.storagespec import ExternalStorageSpec
from storage_fixtures import CountingListener
from storages import EXS
from testbed import kubeutil
from testbed.azurite import AzuriteServer
from testbed.endpoints import DENIED_HOST, TEST_DENYLIST
from testbed.gcs import GCSServer
from testbed.localhttp import LocalHTTPServer, Request, Response
from testbed.s3 import S3Server
from testbed.tlscerts import ThrowawayCA

ACCOUNT = "callstorage1"
pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def denied() -> Iterator[CountingListener]:
    listener = CountingListener(DENIED_HOST)
    yield listener
    listener.stop()


@pytest.fixture(scope="module")
def ca() -> ThrowawayCA:
    return ThrowawayCA("callstorage endpoint-guard test CA")


@pytest.fixture
def marker(credential_values: set[str]) -> str:
    """Text a hostile server sends; registered with the leak guard, so the namespace
    fixture also fails the test if it shows up in any status, event or operator log."""
    value = f"INTERNAL-SERVICE-BODY: db_password={secrets.token_hex(8)}"
    credential_values.add(value)
    return value


def serve(app: Callable[[Request], Response], tmp_path: Path, name: str,
          tls: ThrowawayCA | None = None) -> LocalHTTPServer:
    return LocalHTTPServer(name, app, tmp_path / name,
                           tls=tls.issue() if tls is not None else None)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[LocalHTTPServer]]:
    started: list[LocalHTTPServer] = []
    yield started
    for server in started:
        server.stop()


def settled(api: Any, ns: str, name: str, reason: str) -> tuple[str, str]:
    """Wait for Ready=False with ``reason``; the message and every event of ``ns``."""
    obj = storages.wait_ready(api, EXS, ns, name, "False", reason, timeout=30)
    events = client.CoreV1Api(api).list_namespaced_event(ns).items
    return (str(storages.condition(obj)["message"]),
            "\n".join(f"{e.reason} {e.message}" for e in events))


# --- what each provider's storage needs, for an endpoint (and token/authority) URL ---------

def s3_storage(api: Any, ns: str, s3: S3Server, bucket_: str, endpoint: str,
               mode: str = "ReadWrite") -> None:
    keys = s3.create_user(f"u-{ns}-{secrets.token_hex(2)}", {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    # The Secret binds the endpoint: its owner sent the keys there, the guard still refuses.
    kubeutil.secret(api, ns, "creds", {**keys.as_secret_data(), "endpoint": endpoint})
    storages.create_storage(api, ns, "st",
                            storages.s3_storage_spec(bucket_, endpoint, "creds", mode=mode))


def gcs_storage(api: Any, ns: str, gcs: GCSServer, endpoint: str,
                token_uri: str | None = None, mode: str = "ReadWrite") -> None:
    bucket_ = f"g-{secrets.token_hex(4)}"
    gcs.create_bucket(bucket_)
    info = gcs.create_service_account(f"sa-{secrets.token_hex(3)}")
    gcs.grant(bucket_, str(info["client_email"]), "admin")
    if token_uri is not None:
        info["token_uri"] = token_uri
    kubeutil.secret(api, ns, "creds", {"credentials.json": json.dumps(info),
                                       "endpoint": endpoint, "tokenUri": info["token_uri"]})
    storages.create_storage(api, ns, "st", {
        "storageType": "gcs", "bucket": bucket_, "accessMode": mode,
        "gcs": {"endpoint": endpoint, "credentialsSecretRef": {"name": "creds"}}})


def abs_storage(api: Any, ns: str, azurite: AzuriteServer, endpoint: str,
                ca_pem: bytes, authority: str | None = None, mode: str = "ReadWrite"
                ) -> None:
    if authority is None:
        kubeutil.secret(api, ns, "creds", {"accountKey": azurite.key_for(ACCOUNT),
                                           "endpoint": endpoint})
    else:
        kubeutil.secret(api, ns, "creds", {
            **azurite.create_service_principal().as_secret_data(),
            "endpoint": endpoint, "authorityHost": authority})
    kubeutil.secret(api, ns, "ca", {"ca.crt": ca_pem.decode()})
    block: dict[str, Any] = {"accountName": ACCOUNT, "endpoint": endpoint,
                             "credentialsSecretRef": {"name": "creds"}}
    if authority is not None:
        block["authorityHost"] = authority
    storages.create_storage(api, ns, "st", {
        "storageType": "abs", "bucket": "cont", "accessMode": mode,
        "abs": block, "tls": {"caSecretRef": {"name": "ca", "key": "ca.crt"}}})


# --- 1. a storage URL on a denied address: never connected -------------------------------

DIRECT = ["s3-endpoint", "gcs-endpoint", "gcs-token_uri", "gcs-backslash-token_uri",
          "abs-endpoint", "abs-authority", "s3-ipv4-mapped-ipv6"]


@pytest.mark.parametrize("case", DIRECT)
def test_a_denied_address_is_never_connected(
    case: str, request: pytest.FixtureRequest, kube_api: Any, namespace: str,
    denied: CountingListener,
) -> None:
    """The endpoint, GCS's token_uri and Azure's authority, each on the denied listener;
    the backslash token_uri is one urlsplit reads as Google's host while urllib3 connects
    to the address before the backslash; ``[::ffff:127.0.0.2]`` is the denied address
    spelled as IPv4-mapped IPv6 (a form Linux connects to)."""
    if case.startswith("s3"):
        s3: S3Server = request.getfixturevalue("s3_server")
        endpoint = (f"http://[::ffff:{DENIED_HOST}]:{denied.port}" if "mapped" in case
                    else denied.url())
        s3_storage(kube_api, namespace, s3, "bkt", endpoint)
    elif case.startswith("gcs"):
        gcs: GCSServer = request.getfixturevalue("gcs_server")
        if case == "gcs-endpoint":
            gcs_storage(kube_api, namespace, gcs, denied.url())
        elif case == "gcs-token_uri":
            gcs_storage(kube_api, namespace, gcs, gcs.endpoint, denied.url(path="/token"))
        else:
            gcs_storage(kube_api, namespace, gcs, gcs.endpoint,
                        f"http://{DENIED_HOST}:{denied.port}\\@oauth2.googleapis.com/token")
    else:
        azurite: AzuriteServer = request.getfixturevalue("azurite")
        if case == "abs-endpoint":
            abs_storage(kube_api, namespace, azurite, denied.url("https", f"/{ACCOUNT}"),
                        azurite.ca_pem)
        else:
            abs_storage(kube_api, namespace, azurite, azurite.endpoint_for(ACCOUNT, oauth=True),
                        azurite.ca_pem, authority=denied.url("https"))
    # The backslash URL never matches a binding (nothing in a Secret can bind it), so it
    # stops one step earlier; every other case is bound and refused by the guard.
    reason = "EndpointNotBound" if "backslash" in case else "EndpointNotAllowed"
    message, _ = settled(kube_api, namespace, "st", reason)
    assert DENIED_HOST in message or "backslash" in message
    assert denied.connections == 0


# --- 2. redirects to a denied address: never followed -------------------------------------

REDIRECTS = [("s3-endpoint", 307), ("s3-endpoint", 302), ("gcs-endpoint", 302),
             ("gcs-token_uri", 307), ("abs-endpoint", 307), ("abs-authority", 302)]


@pytest.mark.parametrize(("case", "status"), REDIRECTS)
def test_a_redirect_to_a_denied_address_is_not_followed(
    case: str, status: int, request: pytest.FixtureRequest, kube_api: Any, namespace: str,
    denied: CountingListener, marker: str, ca: ThrowawayCA, tmp_path: Path,
    servers: list[LocalHTTPServer],
) -> None:
    """An allowed server answers every request with ``status`` to the denied listener
    (and a body that must not be published): the storage fails naming the status, the
    denied listener sees nothing."""
    seen: list[str] = []

    def redirect(req: Request) -> Response:
        seen.append(f"{req.method} {req.path}")
        return Response(status, marker.encode(), {"Location": denied.url(path=req.raw_path),
                                                  "Content-Type": "text/plain"})

    tls = ca if case.startswith("abs") else None
    server = serve(redirect, tmp_path, "redirector", tls)
    servers.append(server)
    if case.startswith("s3"):
        s3_storage(kube_api, namespace, request.getfixturevalue("s3_server"), "bkt",
                   server.url)
    elif case == "gcs-endpoint":
        gcs_storage(kube_api, namespace, request.getfixturevalue("gcs_server"), server.url)
    elif case == "gcs-token_uri":
        gcs: GCSServer = request.getfixturevalue("gcs_server")
        gcs_storage(kube_api, namespace, gcs, gcs.endpoint, f"{server.url}/token")
    else:
        azurite: AzuriteServer = request.getfixturevalue("azurite")
        if case == "abs-endpoint":
            abs_storage(kube_api, namespace, azurite, f"{server.url}/{ACCOUNT}", ca.cert_pem)
        else:  # the authority is ours; the blob endpoint is never reached
            abs_storage(kube_api, namespace, azurite, f"{server.url}/{ACCOUNT}", ca.cert_pem,
                        authority=server.url)
    message, events = settled(kube_api, namespace, "st", "ServiceError")
    assert seen, "the redirecting server was never asked"
    assert str(status) in message
    assert "redirect" in message or case.startswith("s3")
    assert "INTERNAL-SERVICE-BODY" not in message + events
    assert denied.connections == 0


# --- 3. a server's error body never reaches status, events or logs ------------------------

BODIES = {
    "s3": (500, "application/xml", "<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
           "{m}</Code><Message>{m}</Message></Error>"),
    "gcs": (404, "text/plain", "{m}"),
    "abs": (500, "application/xml", "<?xml version='1.0' encoding='utf-8'?><Error><Code>"
            "InternalError</Code><Message>{m}</Message></Error>"),
}


@pytest.mark.parametrize("provider", sorted(BODIES))
def test_a_remote_error_body_never_reaches_status_or_events(
    provider: str, request: pytest.FixtureRequest, kube_api: Any, namespace: str,
    marker: str, ca: ThrowawayCA, tmp_path: Path, servers: list[LocalHTTPServer],
) -> None:
    """The issue's case: an endpoint answering an error whose body (and, for S3, the
    <Code> element) carries a secret; WriteOnly, so the request is a PUT with a body."""
    status, content_type, template = BODIES[provider]

    def failing(req: Request) -> Response:
        return Response(status, template.format(m=marker).encode(),
                        {"Content-Type": content_type})

    server = serve(failing, tmp_path, "failing", ca if provider == "abs" else None)
    servers.append(server)
    if provider == "s3":
        s3_storage(kube_api, namespace, request.getfixturevalue("s3_server"), "bkt",
                   server.url, mode="WriteOnly")
        reason = "ServiceError"
    elif provider == "gcs":
        gcs_storage(kube_api, namespace, request.getfixturevalue("gcs_server"), server.url,
                    mode="WriteOnly")
        reason = "BucketNotFound"
    else:
        abs_storage(kube_api, namespace, request.getfixturevalue("azurite"),
                    f"{server.url}/{ACCOUNT}", ca.cert_pem, mode="WriteOnly")
        reason = "ServiceError"
    message, events = settled(kube_api, namespace, "st", reason)
    assert str(status) in message
    assert "INTERNAL-SERVICE-BODY" not in message + events
    assert "db_password" not in message + events


# --- 4. DNS rebinding: the name is resolved once per connection, and that is connected -----

def test_dns_rebinding_cannot_reach_a_denied_address(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``rebind-host`` answers the emulator's address the first time and the denied
    address after: a check that resolved separately from the connect would pass and then
    connect to the denied address. The denied listener shares the emulator's port."""
    bucket_ = f"rb-{secrets.token_hex(4)}"
    s3_server.create_bucket(bucket_)
    keys = s3_server.create_user(f"rb-{secrets.token_hex(3)}", {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    port = int(s3_server.endpoint.rsplit(":", 1)[1])
    denied = CountingListener(DENIED_HOST, port)
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"])

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind-host":
            return real(next(answers, DENIED_HOST), *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    spec = ExternalStorageSpec.model_validate(storages.s3_storage_spec(
        bucket_, f"http://rebind-host:{port}", "creds"))
    data = {**keys.as_secret_data(), "endpoint": f"http://rebind-host:{port}"}
    inputs = ProviderInputs(secret={k: v.encode() for k, v in data.items()})
    settings = Settings(connect_timeout=2, read_timeout=3, max_attempts=1,
                        endpoint_denylist=TEST_DENYLIST)
    try:
        first = build_client(spec, inputs, settings)
        try:
            validate_storage(first, spec)  # the first answer, allowed, is what is connected
        finally:
            first.close()
        # a new client (another cache entry) asks again: the denied answer is refused
        later = build_client(spec, inputs, settings.model_copy(update={"read_timeout": 4}))
        try:
            with pytest.raises(ProviderError) as info:
                validate_storage(later, spec)
        finally:
            later.close()
    finally:
        denied.stop()
    assert info.value.reason is Reason.ENDPOINT_NOT_ALLOWED
    assert denied.connections == 0
