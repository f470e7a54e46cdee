"""The Python client and ``callstorage.resolve`` against the real API server and operator.

The seed's three-step flow runs as the seed writes it (plus the emulator's endpoint):
create a storage with an emulator user's keys, check it (a new ``stream-*.md`` lands in
the bucket), point a call type at it; then resolution picks it, a call-level storage
overrides it, and ``stream-s3`` means the platform storage.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import callstorage
import storages
from callstorage.client import (
    AlreadyExists,
    ApiUnreachable,
    AzureRequest,
    CallStorageError,
    CallTypeNotFound,
    CheckFailed,
    CheckTimeout,
    Client,
    InvalidRequest,
    S3Request,
    StorageNotFound,
)
from callstorage.resolution import Source
from storages import EXS
from testbed import kubeutil
from testbed.procs import free_port
from testbed.s3 import S3Keys, S3Server, readwrite_policy

PLATFORM_NS = "callstorage-system"
PLATFORM = "platform-default"
WAIT = 15  # seconds for the operator to react


# --- requests: no cluster needed -----------------------------------------------------------


def test_request_reprs_never_show_credentials() -> None:
    s3 = S3Request(s3_region="us-east-1", s3_api_key="AKIAEXAMPLEKEY", s3_secret="shh-123")
    abs_ = AzureRequest(abs_account_name="acct", abs_account_key="key-456",
                        abs_client_secret="sp-789")
    text = repr(s3) + str(s3) + repr(abs_) + str(abs_) + repr([s3, abs_])
    for value in ("AKIAEXAMPLEKEY", "shh-123", "key-456", "sp-789"):
        assert value not in text
    assert "us-east-1" in text
    assert "acct" in text


@pytest.mark.parametrize(("mapping", "what"), [
    ({"bucket": "x"}, "unknown field 'bucket'"),
    ({"s3_api_key": "k"}, "missing required fields"),
])
def test_request_dicts_are_checked(mapping: dict[str, str], what: str) -> None:
    from callstorage.client import _from_mapping

    with pytest.raises(InvalidRequest, match=what):
        _from_mapping(S3Request, mapping, "aws_s3")


def test_request_dicts_accept_the_seeds_spellings() -> None:
    from callstorage.client import _from_mapping

    for mapping in ({"s3_region": "r", "s3_api_key": "k", "s3_secret": "s"},
                    {"s3Region": "r", "s3ApiKey": "k", "s3Secret": "s"},
                    {"S3Region": "r", "S3ApiKey": "k", "S3Secret": "s"}):
        assert _from_mapping(S3Request, mapping, "aws_s3") == S3Request("r", "k", "s")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"storage_type": "s3", "aws_s3": S3Request("us-east-1", s3_api_key="k")},
     "both s3_api_key and s3_secret"),
    ({"storage_type": "s3"}, "needs aws_s3"),
    ({"storage_type": "gcs", "gcs_credentials": "not json"}, "JSON of a service account"),
    ({"storage_type": "s3", "aws_s3": S3Request("us-east-1"), "gcs_credentials": "{}"},
     "does not take gcs_credentials"),
    ({"storage_type": "abs", "azure_blob": AzureRequest("acct", abs_account_key="k",
                                                        abs_client_id="c")}, "not both"),
    ({"storage_type": "abs", "azure_blob": AzureRequest("acct", abs_client_id="c")},
     "together"),
    ({"storage_type": "ftp"}, "s3, gcs or abs"),
    ({"storage_type": "s3", "aws_s3": S3Request("us-east-1"), "access_mode": "sometimes"},
     "ReadWrite or WriteOnly"),
])
def test_bad_requests_fail_before_anything_is_sent(kwargs: dict[str, Any],
                                                   message: str) -> None:
    # An ApiClient for a closed port: reaching it would be ApiUnreachable, not this.
    cs = Client("app", unreachable_api())
    with pytest.raises(InvalidRequest, match=message) as caught:
        cs.create_external_storage(name="x", bucket="my-bucket", **kwargs)
    assert "not json" not in str(caught.value)


def test_reserved_name_is_refused() -> None:
    cs = Client("app", unreachable_api())
    for call in (lambda: cs.create_external_storage(
                    name="stream-s3", storage_type="s3", bucket="b",
                    aws_s3=S3Request("us-east-1")),
                 lambda: cs.check_external_storage("stream-s3"),
                 lambda: cs.delete_external_storage("stream-s3")):
        with pytest.raises(InvalidRequest, match="reserved for the platform storage"):
            call()


def unreachable_api() -> Any:
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{free_port()}"
    cfg.retries = 0
    return client.ApiClient(cfg)


def test_unreachable_api_server_is_api_unreachable() -> None:
    with pytest.raises(ApiUnreachable, match="cannot reach the Kubernetes API server"):
        Client("app", unreachable_api()).list_external_storage()


# --- against the API server ----------------------------------------------------------------


@pytest.fixture
def cs(kube_api: Any, namespace: str) -> Client:
    return Client(namespace, kube_api)


def new_user(s3_server: S3Server, bucket: str, credential_values: set[str],
             policy: dict[str, Any] | None = None) -> S3Keys:
    keys = s3_server.create_user(f"u-{secrets.token_hex(4)}", policy or readwrite_policy(bucket))
    credential_values.update({keys.access_key_id, keys.secret_access_key})
    return keys


@pytest.fixture
def keys(s3_server: S3Server, bucket: str, credential_values: set[str]) -> S3Keys:
    return new_user(s3_server, bucket, credential_values)


def s3_request(s3_server: S3Server, keys: S3Keys | None) -> S3Request:
    return S3Request(
        s3_region="us-east-1",
        s3_api_key=keys.access_key_id if keys else None,
        s3_secret=keys.secret_access_key if keys else None,
        s3_custom_endpoint_url=s3_server.endpoint,  # the emulator, not AWS
        s3_force_path_style=True,
    )


@pytest.fixture(scope="session")
def platform_storage(kube_api: Any, crds: list[str], s3_server: S3Server,
                     credential_values: set[str]) -> str:
    """The platform storage (what ``stream-s3`` means), created unless a test made it."""
    kubeutil.create_namespace(kube_api, PLATFORM_NS, exist_ok=True)
    bucket = "platform-recordings"
    try:
        s3_server.create_bucket(bucket)
    except Exception as exc:  # made by an earlier test of the run
        if "BucketAlready" not in type(exc).__name__ + str(exc):
            raise
    keys = new_user(s3_server, bucket, credential_values)
    with contextlib.suppress(AlreadyExists):
        Client(PLATFORM_NS, kube_api).create_external_storage(
            name=PLATFORM, storage_type="s3", bucket=bucket, aws_s3=s3_request(s3_server, keys))
    return PLATFORM


def secret_data(api: Any, namespace: str, name: str) -> dict[str, str]:
    secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def wait_gone(api: Any, namespace: str, name: str, timeout: float = WAIT) -> None:
    kubeutil.wait_object(api, EXS, namespace, name, lambda o: o is None, timeout,
                         f"ExternalStorage {namespace}/{name} deleted")


@pytest.mark.usefixtures("operator")
def test_the_seeds_three_step_flow(
    kube_api: Any, namespace: str, s3_server: S3Server, bucket: str, keys: S3Keys,
) -> None:
    cs = Client(namespace, kube_api)  # the seed's ``client.video``, one per application
    # 1. create a new storage with all the required parameters
    cs.create_external_storage(
        name="my-s3",
        storage_type="s3",
        bucket=bucket,
        path="directory_name/",
        aws_s3=S3Request(
            s3_region="us-east-1",
            s3_api_key=keys.access_key_id,
            s3_secret=keys.secret_access_key,
            s3_custom_endpoint_url=s3_server.endpoint,
            s3_force_path_style=True,
        ),
    )
    # 2. (Optional) check storage configuration for correctness
    before = set(s3_server.list_keys(bucket))
    response = cs.check_external_storage(name="my-s3")
    added = set(s3_server.list_keys(bucket)) - before
    assert len(added) == 1
    [key] = added
    assert key.startswith("directory_name/stream-")
    assert key.endswith(".md")
    assert response.object.endswith(key)
    # every check writes a new file
    second = cs.check_external_storage(name="my-s3")
    assert second.object != response.object
    assert len(set(s3_server.list_keys(bucket)) - before) == 2
    # 3. update the call type to use the new storage
    cs.update_call_type(name="allhands", external_storage="my-s3")

    storages.wait_ready(kube_api, EXS, namespace, "my-s3", "True", "Validated", timeout=WAIT)
    resolved = callstorage.resolve(namespace, "allhands", api_client=kube_api)
    assert (resolved.namespace, resolved.name, resolved.source) == \
        (namespace, "my-s3", Source.CALL_TYPE)
    assert (resolved.storage_type, resolved.bucket, resolved.access_mode) == \
        ("s3", bucket, "ReadWrite")
    assert resolved.prefixes == dict.fromkeys(("audio", "video", "transcript", "metadata"),
                                              "directory_name")
    assert resolved.ready is True
    assert resolved.terminating is False

    # a call-level storage wins over the call type's
    cs.create_external_storage(name="per-call", storage_type="s3", bucket=bucket,
                               path="calls", aws_s3=s3_request(s3_server, keys))
    per_call = callstorage.resolve(namespace, "allhands", "per-call", api_client=kube_api)
    assert (per_call.name, per_call.source) == ("per-call", Source.CALL)
    assert per_call.prefixes["video"] == "calls"

    # the CallType's status agrees
    kubeutil.wait_object(
        kube_api, "calltypes", namespace, "allhands",
        lambda o: storages.condition(o).get("reason") == "StorageReady", WAIT,
        "CallType allhands StorageReady")
    info = cs.get_call_type("allhands")
    assert info.external_storage == "my-s3"
    assert info.ready is True
    assert (info.resolved_storage or {}).get("name") == "my-s3"


def test_create_makes_an_owned_secret_and_lists_without_credentials(
    kube_api: Any, cs: Client, namespace: str, s3_server: S3Server, bucket: str, keys: S3Keys,
) -> None:
    created = cs.create_external_storage(
        name="my-s3", storage_type="s3", bucket=bucket, path="directory_name/",
        aws_s3=s3_request(s3_server, keys), access_mode="write_only",
        prefixes={"audio": "recordings/audio"})
    assert created.credentials_secret == "my-s3-credentials"
    assert created.access_mode == "WriteOnly"
    obj = kubeutil.get_object(kube_api, EXS, namespace, "my-s3")
    assert obj is not None
    assert obj["spec"]["s3"]["credentialsSecretRef"] == {"name": "my-s3-credentials"}
    secret = client.CoreV1Api(kube_api).read_namespaced_secret("my-s3-credentials", namespace)
    [owner] = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == \
        ("ExternalStorage", "my-s3", obj["metadata"]["uid"])
    assert secret.metadata.labels["callstorage.io/external-storage"] == "my-s3"
    assert secret_data(kube_api, namespace, "my-s3-credentials") == keys.as_secret_data()

    [listed] = cs.list_external_storage()
    text = json.dumps(listed.to_dict()) + repr(listed) + repr(cs.list_external_storage())
    assert keys.access_key_id not in text
    assert keys.secret_access_key not in text
    assert listed.name == "my-s3"
    assert listed.bucket == bucket
    assert listed.prefixes == {"audio": "recordings/audio"}


def test_create_errors_leave_nothing_behind(
    kube_api: Any, cs: Client, namespace: str, s3_server: S3Server, bucket: str, keys: S3Keys,
) -> None:
    # a spec the CRD refuses: refused before the Secret is written
    with pytest.raises(InvalidRequest, match="bucket") as caught:
        cs.create_external_storage(name="bad", storage_type="s3", bucket="Not_A_Bucket",
                                   aws_s3=s3_request(s3_server, keys))
    assert caught.value.reason == "InvalidSpec"
    assert keys.secret_access_key not in str(caught.value)
    core = client.CoreV1Api(kube_api)
    assert not [s.metadata.name for s in core.list_namespaced_secret(namespace).items
                if s.metadata.name.startswith("bad")]
    # a Secret of that name that someone else made is never overwritten
    kubeutil.secret(kube_api, namespace, "mine-credentials", {"hello": "world"})
    with pytest.raises(AlreadyExists, match="not made by callstorage"):
        cs.create_external_storage(name="mine", storage_type="s3", bucket=bucket,
                                   aws_s3=s3_request(s3_server, keys))
    assert secret_data(kube_api, namespace, "mine-credentials") == {"hello": "world"}
    assert kubeutil.get_object(kube_api, EXS, namespace, "mine") is None
    # the same name twice
    cs.create_external_storage(name="twice", storage_type="s3", bucket=bucket,
                               aws_s3=s3_request(s3_server, None))
    with pytest.raises(AlreadyExists, match="already exists"):
        cs.create_external_storage(name="twice", storage_type="s3", bucket=bucket,
                                   aws_s3=s3_request(s3_server, keys))


def test_update_changes_only_what_is_given_and_rotates_keys(
    kube_api: Any, cs: Client, namespace: str, s3_server: S3Server, bucket: str, keys: S3Keys,
    credential_values: set[str],
) -> None:
    cs.create_external_storage(name="upd", storage_type="s3", bucket=bucket, path="a",
                               aws_s3=s3_request(s3_server, keys),
                               prefixes={"audio": "x", "video": "y"})
    updated = cs.update_external_storage("upd", prefixes={"audio": "z"})
    assert updated.prefixes == {"audio": "z"}
    assert updated.path == "a"
    assert updated.bucket == bucket
    assert updated.credentials_secret == "upd-credentials"
    rotated = new_user(s3_server, bucket, credential_values)
    cs.update_external_storage("upd", aws_s3=s3_request(s3_server, rotated),
                               access_mode="WriteOnly")
    assert secret_data(kube_api, namespace, "upd-credentials") == rotated.as_secret_data()
    secret = client.CoreV1Api(kube_api).read_namespaced_secret("upd-credentials", namespace)
    assert secret.metadata.owner_references[0].name == "upd"
    assert cs.get_external_storage("upd").access_mode == "WriteOnly"
    # a new endpoint without new keys: the client binds its Secret's keys to it
    renamed = s3_server.endpoint.replace("127.0.0.1", "localhost")
    cs.update_external_storage("upd", aws_s3={"s3_region": "us-east-1",
                                              "s3_custom_endpoint_url": renamed})
    assert secret_data(kube_api, namespace, "upd-credentials") == \
        {**rotated.as_secret_data(), "endpoint": renamed}
    # a provider switch replaces the block and the Secret's keys
    gcs_key = json.dumps({"type": "service_account", "client_email": "sa@p.iam",
                          "private_key": "placeholder: the client stores it, nothing parses it"})
    switched = cs.update_external_storage("upd", storage_type="gcs", bucket="gcs-bucket",
                                          gcs_credentials=gcs_key)
    obj = kubeutil.get_object(kube_api, EXS, namespace, "upd")
    assert obj is not None
    assert "s3" not in obj["spec"]
    assert obj["spec"]["gcs"] == {"credentialsSecretRef": {"name": "upd-credentials"}}
    assert switched.storage_type == "gcs"
    assert list(secret_data(kube_api, namespace, "upd-credentials")) == ["credentials.json"]
    with pytest.raises(InvalidRequest, match="needs aws_s3"):
        cs.update_external_storage("upd", storage_type="s3")
    with pytest.raises(StorageNotFound):
        cs.update_external_storage("nope", bucket="x")


def test_call_types_create_update_and_platform_names(
    kube_api: Any, cs: Client, namespace: str, s3_server: S3Server, bucket: str,
) -> None:
    with pytest.raises(StorageNotFound):
        cs.update_call_type("allhands", external_storage="missing")
    with pytest.raises(CallTypeNotFound):
        cs.get_call_type("allhands")
    created = cs.update_call_type("allhands", external_storage="stream-s3")
    assert created.external_storage == "stream-s3"
    cleared = cs.update_call_type("allhands", external_storage=None)
    assert cleared.external_storage is None
    assert cs.update_call_type("allhands").external_storage is None  # omitted: unchanged
    # a platform call type name that is not an object name (seed 004: audio_room)
    cs.update_call_type("audio_room", external_storage="stream-s3")
    obj = kubeutil.get_object(kube_api, "calltypes", namespace, "audio-room")
    assert obj is not None
    assert obj["metadata"]["labels"]["callstorage.io/call-type"] == "audio_room"
    assert cs.get_call_type("audio_room").external_storage == "stream-s3"
    assert sorted(c.name for c in cs.list_call_types()) == ["allhands", "audio-room"]
    cs.delete_call_type("audio_room")
    with pytest.raises(CallTypeNotFound):
        cs.get_call_type("audio_room")


def test_stream_s3_resolves_to_the_platform_storage(
    kube_api: Any, cs: Client, namespace: str, platform_storage: str, s3_server: S3Server,
    bucket: str,
) -> None:
    cs.update_call_type("default")
    cs.update_call_type("explicit", external_storage="stream-s3")
    cs.create_external_storage(name="mine", storage_type="s3", bucket=bucket,
                               aws_s3=s3_request(s3_server, None))
    cs.update_call_type("own", external_storage="mine")
    for call_type, call_storage, requested in (("default", None, None),
                                               ("explicit", None, "stream-s3"),
                                               ("own", "stream-s3", "stream-s3")):
        got = callstorage.resolve(namespace, call_type, call_storage, api_client=kube_api)
        assert (got.namespace, got.name, got.source, got.requested) == \
            (PLATFORM_NS, platform_storage, Source.PLATFORM_DEFAULT, requested)
        assert got.platform is True
    # a tenant's own storage named like the platform one is still the tenant's
    with pytest.raises(StorageNotFound, match=namespace):
        callstorage.resolve(namespace, "own", PLATFORM, api_client=kube_api)
    with pytest.raises(CallTypeNotFound):
        callstorage.resolve(namespace, "nope", api_client=kube_api)


@pytest.mark.usefixtures("operator")
def test_a_failing_check_raises_with_the_operators_reason(
    kube_api: Any, cs: Client, namespace: str, s3_server: S3Server, bucket: str,
    credential_values: set[str],
) -> None:
    read_only = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:HeadBucket"],
         "Resource": f"arn:aws:s3:::{bucket}"}]}
    keys = new_user(s3_server, bucket, credential_values, read_only)
    cs.create_external_storage(name="ro", storage_type="s3", bucket=bucket, path="p",
                               aws_s3=s3_request(s3_server, keys))
    with pytest.raises(CheckFailed) as caught:
        cs.check_external_storage("ro", timeout=WAIT)
    assert caught.value.message
    assert keys.secret_access_key not in str(caught.value)
    assert keys.access_key_id not in str(caught.value)
    assert not s3_server.list_keys(bucket, "p/")
    with pytest.raises(StorageNotFound):
        cs.check_external_storage("nope")


def test_a_check_nobody_answers_times_out(
    cs: Client, s3_server: S3Server, bucket: str,
) -> None:
    cs.create_external_storage(name="lonely", storage_type="s3", bucket=bucket,
                               aws_s3=s3_request(s3_server, None))
    seen: list[float] = []
    with pytest.raises(CheckTimeout, match="within"):
        cs.check_external_storage("lonely", timeout=1e-6, progress=seen.append)


@pytest.mark.usefixtures("operator")
def test_deleting_a_referenced_storage_waits_and_resolution_never_falls_back(
    kube_api: Any, cs: Client, namespace: str, s3_server: S3Server, bucket: str, keys: S3Keys,
) -> None:
    cs.create_external_storage(name="kept", storage_type="s3", bucket=bucket,
                               aws_s3=s3_request(s3_server, keys))
    cs.update_call_type("allhands", external_storage="kept")
    kubeutil.wait_object(kube_api, EXS, namespace, "kept",
                         lambda o: "callstorage.io/in-use-protection" in
                         ((o or {}).get("metadata", {}).get("finalizers") or []),
                         WAIT, "in-use finalizer")
    still = cs.delete_external_storage("kept")
    assert still is not None
    assert still.terminating is True
    resolved = callstorage.resolve(namespace, "allhands", api_client=kube_api)
    assert (resolved.name, resolved.terminating, resolved.platform) == ("kept", True, False)
    # repointing the call type lets it go, and the Secret goes with it
    cs.update_call_type("allhands", external_storage="stream-s3")
    wait_gone(kube_api, namespace, "kept")

    def secret_gone(_: object) -> bool:
        try:
            client.CoreV1Api(kube_api).read_namespaced_secret("kept-credentials", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False
    # The garbage collector only watches a kind after its discovery resync (about 30 s
    # after the CRDs were installed, so early in a run), hence the longer wait.
    kubeutil.wait_object(kube_api, EXS, namespace, "kept", secret_gone, 90,
                         "credentials Secret garbage-collected")


@pytest.mark.usefixtures("operator")
def test_deleting_an_unreferenced_storage_is_immediate(
    kube_api: Any, cs: Client, namespace: str, s3_server: S3Server, bucket: str,
) -> None:
    cs.create_external_storage(name="free", storage_type="s3", bucket=bucket,
                               aws_s3=s3_request(s3_server, None))
    cs.delete_external_storage("free")
    wait_gone(kube_api, namespace, "free")
    with pytest.raises(StorageNotFound):
        cs.delete_external_storage("free")


def test_errors_carry_reason_and_message(cs: Client) -> None:
    with pytest.raises(CallStorageError) as caught:
        cs.get_external_storage("nope")
    assert caught.value.reason == "StorageNotFound"
    assert "'nope'" in caught.value.message
    assert str(caught.value).startswith("StorageNotFound: ")
