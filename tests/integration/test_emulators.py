"""The storage emulators check credentials for real (issue 2's bar), through the plain SDKs.

Each one rejects a wrong credential with a 401/403-class error and accepts the right one;
the S3 one also enforces a prefix-scoped, write-only IAM policy.
"""

from __future__ import annotations

import copy
import secrets

import pytest
import requests
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientSecretCredential
from botocore.exceptions import ClientError
from google.api_core import exceptions as gexc
from google.auth.exceptions import RefreshError
from google.cloud import storage
from google.oauth2 import service_account

from testbed.azurite import AzuriteServer
from testbed.gcs import GCSServer
from testbed.s3 import S3Keys, S3Server, put_only_policy, readwrite_policy

pytestmark = pytest.mark.integration


def _unknown_key_id() -> str:
    """A well-formed access key id that no user has (made fresh for every run)."""
    return "AKIA" + secrets.token_hex(8).upper()


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


# --- S3 (moto, IAM enforced) ---------------------------------------------------------------

def _code(exc: ClientError) -> tuple[int, str]:
    return (exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"])


def test_s3_accepts_right_keys_and_rejects_a_wrong_secret(s3_server: S3Server) -> None:
    bucket = _name("emu")
    s3_server.create_bucket(bucket)
    keys = s3_server.create_user(_name("rw"), readwrite_policy(bucket))
    good = s3_server.client(keys=keys)
    good.head_bucket(Bucket=bucket)
    good.put_object(Bucket=bucket, Key="a.txt", Body=b"x")
    assert s3_server.list_keys(bucket) == ["a.txt"]

    wrong = s3_server.client(keys=S3Keys(keys.access_key_id, "not-the-secret"))
    with pytest.raises(ClientError) as info:
        wrong.put_object(Bucket=bucket, Key="b.txt", Body=b"x")
    assert _code(info.value) == (403, "SignatureDoesNotMatch")

    unknown = s3_server.client(keys=S3Keys(_unknown_key_id(), secrets.token_urlsafe(30)))
    with pytest.raises(ClientError) as info:
        unknown.put_object(Bucket=bucket, Key="b.txt", Body=b"x")
    assert _code(info.value) == (403, "InvalidAccessKeyId")
    assert s3_server.list_keys(bucket) == ["a.txt"]


def test_s3_put_only_user_is_confined_to_its_prefix(s3_server: S3Server) -> None:
    bucket = _name("emu")
    s3_server.create_bucket(bucket)
    keys = s3_server.create_user(_name("wo"), put_only_policy(bucket, ["recordings/"]))
    client = s3_server.client(keys=keys)

    client.put_object(Bucket=bucket, Key="recordings/call_audio.wav", Body=b"x")
    assert s3_server.list_keys(bucket) == ["recordings/call_audio.wav"]

    with pytest.raises(ClientError) as info:
        client.head_bucket(Bucket=bucket)
    assert _code(info.value)[0] == 403
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=bucket, Key="elsewhere/x.wav", Body=b"x")
    assert _code(info.value) == (403, "AccessDenied")
    with pytest.raises(ClientError) as info:
        client.get_object(Bucket=bucket, Key="recordings/call_audio.wav")
    assert _code(info.value) == (403, "AccessDenied")


def test_s3_put_only_user_may_run_a_multipart_upload_as_on_aws(s3_server: S3Server) -> None:
    """AWS authorises CreateMultipartUpload, UploadPart and CompleteMultipartUpload with
    s3:PutObject. moto 5.2.6 checks call-named actions instead; the test bed's policy
    translation (``as_moto_policy``) keeps the AWS meaning. If a moto upgrade changes what it
    checks again, this fails by name instead of the media tests failing on a 403."""
    bucket = _name("emu")
    s3_server.create_bucket(bucket)
    keys = s3_server.create_user(_name("wo"), put_only_policy(bucket, ["recordings/"]))
    client = s3_server.client(keys=keys)
    key = "recordings/call_recording.mp4"
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1,
                              Body=b"media")
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3_server.list_keys(bucket) == [key]
    with pytest.raises(ClientError) as info:  # still confined to its prefix
        client.create_multipart_upload(Bucket=bucket, Key="elsewhere/x.mp4")
    assert _code(info.value) == (403, "AccessDenied")


def test_s3_missing_bucket_is_404_even_without_rights_on_it(s3_server: S3Server) -> None:
    """As in S3: authenticate, then look the bucket up, then authorise."""
    bucket = _name("emu")
    s3_server.create_bucket(bucket)
    keys = s3_server.create_user(_name("rw"), readwrite_policy(bucket))
    client = s3_server.client(keys=keys)
    missing = _name("missing")
    with pytest.raises(ClientError) as info:
        client.head_bucket(Bucket=missing)
    assert _code(info.value)[0] == 404
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=missing, Key="x", Body=b"x")
    assert _code(info.value) == (404, "NoSuchBucket")
    wrong = s3_server.client(keys=S3Keys(keys.access_key_id, "not-the-secret"))
    with pytest.raises(ClientError) as info:
        wrong.put_object(Bucket=missing, Key="x", Body=b"x")
    assert _code(info.value) == (403, "SignatureDoesNotMatch")
    other = _name("emu")  # an existing bucket the user has no rights on: still 403
    s3_server.create_bucket(other)
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=other, Key="x", Body=b"x")
    assert _code(info.value) == (403, "AccessDenied")


def test_s3_admin_itself_is_checked(s3_server: S3Server) -> None:
    """Enforcement is on from start-up: even the bootstrap identity needs its real secret."""
    wrong_admin = s3_server.client(keys=S3Keys(s3_server.admin.access_key_id, "nope"))
    with pytest.raises(ClientError) as info:
        wrong_admin.list_buckets()
    assert _code(info.value) == (403, "SignatureDoesNotMatch")


# --- Azure (Azurite, SharedKey; Entra-style tokens) ----------------------------------------

def test_azurite_accepts_the_account_key_and_rejects_another(azurite: AzuriteServer) -> None:
    container = _name("emu")
    azurite.create_container("callstorage1", container)
    with azurite.service_client("callstorage1") as good:
        good.get_container_client(container).upload_blob("a/b.txt", b"x")
    assert azurite.list_blobs("callstorage1", container) == ["a/b.txt"]

    wrong = AzureNamedKeyCredential("callstorage1", azurite.key_for("callstorage2"))
    with azurite.service_client("callstorage1", wrong) as bad, \
            pytest.raises(HttpResponseError) as info:
        bad.get_container_client(container).get_container_properties()
    assert info.value.status_code == 403
    assert info.value.error_code == "AuthorizationFailure"


def test_azurite_service_principal_secret_is_checked(azurite: AzuriteServer) -> None:
    container = _name("emu")
    azurite.create_container("callstorage1", container)
    sp = azurite.create_service_principal()

    def credential(secret: str) -> ClientSecretCredential:
        return ClientSecretCredential(
            sp.tenant_id, sp.client_id, secret, authority=azurite.entra.authority,
            disable_instance_discovery=True, connection_verify=str(azurite.ca_path),
            retry_total=0)

    with azurite.service_client("callstorage1", credential(sp.client_secret),
                                oauth=True) as good:
        good.get_container_client(container).get_container_properties()

    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential("wrong-secret").get_token("https://storage.azure.com/.default")


def test_azurite_rejects_a_token_it_cannot_accept(azurite: AzuriteServer) -> None:
    """Azurite (``--oauth basic``) checks a bearer token's issuer, audience and lifetime."""
    container = _name("emu")
    azurite.create_container("callstorage1", container)
    url = f"{azurite.endpoint_for('callstorage1', oauth=True)}/{container}?restype=container"
    headers = {"x-ms-version": "2021-08-06", "Authorization": "Bearer not-a-jwt"}
    resp = requests.get(url, headers=headers, verify=str(azurite.ca_path), timeout=10)
    assert resp.status_code in (401, 403)


# --- GCS (our JSON-API endpoint with a real JWT-checking token endpoint) -------------------

def _gcs_client(gcs: GCSServer, info: dict[str, object]) -> storage.Client:
    creds = service_account.Credentials.from_service_account_info(info)
    return storage.Client(project="p", credentials=creds,
                          client_options={"api_endpoint": gcs.endpoint})


def test_gcs_accepts_the_key_and_rejects_a_wrong_one(gcs_server: GCSServer) -> None:
    bucket = _name("emu")
    gcs_server.create_bucket(bucket)
    info = gcs_server.create_service_account(_name("sa"))
    gcs_server.grant(bucket, str(info["client_email"]), "admin")
    good = _gcs_client(gcs_server, info)
    assert good.get_bucket(bucket).name == bucket
    good.bucket(bucket).blob("a/b.txt").upload_from_string(b"x")
    assert gcs_server.list_objects(bucket) == ["a/b.txt"]

    forged = copy.deepcopy(info)  # the right identity, signed with someone else's key
    forged["private_key"] = gcs_server.create_service_account(_name("other"))["private_key"]
    with pytest.raises(RefreshError, match="Invalid JWT Signature"):
        _gcs_client(gcs_server, forged).get_bucket(bucket)


def test_gcs_rejects_missing_or_unknown_tokens(gcs_server: GCSServer) -> None:
    bucket = _name("emu")
    gcs_server.create_bucket(bucket)
    url = f"{gcs_server.endpoint}/storage/v1/b/{bucket}"
    assert requests.get(url, timeout=10).status_code == 401
    resp = requests.get(url, headers={"Authorization": "Bearer ya29.made-up"}, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["message"] == "Invalid Credentials"


def test_gcs_object_creator_may_only_create(gcs_server: GCSServer) -> None:
    bucket = _name("emu")
    gcs_server.create_bucket(bucket)
    info = gcs_server.create_service_account(_name("creator"))
    gcs_server.grant(bucket, str(info["client_email"]), "objectCreator")
    client = _gcs_client(gcs_server, info)
    client.bucket(bucket).blob("recordings/x.wav").upload_from_string(b"x")
    assert gcs_server.list_objects(bucket) == ["recordings/x.wav"]
    with pytest.raises(gexc.Forbidden):
        client.get_bucket(bucket)
    with pytest.raises(gexc.Forbidden):
        list(client.list_blobs(bucket))
    other = _name("emu")  # no grant at all on another bucket
    gcs_server.create_bucket(other)
    with pytest.raises(gexc.Forbidden):
        client.bucket(other).blob("x").upload_from_string(b"x")
