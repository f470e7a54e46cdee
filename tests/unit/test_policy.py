"""Least-privilege grants per provider (MeetStream section 1), checked as data.

The S3 policy is also tried for real against the IAM-enforcing emulator in
``tests/integration/test_cli.py``.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from callstorage import policy

PREFIXES = {"audio": "recordings/audio", "video": "recordings/video",
            "transcript": "transcripts", "metadata": "transcripts"}


def statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in document["Statement"]}


def s3_allows(document: dict[str, Any], action: str, resource: str) -> bool:
    """A small IAM evaluator: Allow statements with wildcard resources, no Deny."""
    return any(
        action in s["Action"] and any(fnmatch.fnmatchcase(resource, r) for r in s["Resource"])
        for s in document["Statement"] if s["Effect"] == "Allow")


@pytest.mark.parametrize(("given", "kept"), [
    (["a", "a", "b"], ["a", "b"]),
    (["/a/", "a"], ["a"]),
    (["recordings", "recordings/audio", "recordingsx"], ["recordings", "recordingsx"]),
    (["", "a", "b/c"], [""]),
    ([], []),
])
def test_distinct_prefixes(given: list[str], kept: list[str]) -> None:
    assert policy.distinct_prefixes(given) == kept


def test_s3_write_only_is_put_object_under_each_distinct_prefix() -> None:
    doc = policy.s3_policy("rec", PREFIXES.values(), "WriteOnly", path="transcripts")
    assert doc["Version"] == "2012-10-17"
    assert list(statements(doc)) == ["CallstorageWriteMedia"]
    write = statements(doc)["CallstorageWriteMedia"]
    assert write["Action"] == ["s3:PutObject"]
    assert write["Resource"] == ["arn:aws:s3:::rec/recordings/audio/*",
                                 "arn:aws:s3:::rec/recordings/video/*",
                                 "arn:aws:s3:::rec/transcripts/*"]
    assert s3_allows(doc, "s3:PutObject", "arn:aws:s3:::rec/recordings/audio/a_audio.wav")
    assert not s3_allows(doc, "s3:PutObject", "arn:aws:s3:::rec/other/a_audio.wav")
    assert not s3_allows(doc, "s3:PutObject", "arn:aws:s3:::rec/recordings/a.wav")
    assert not s3_allows(doc, "s3:GetObject", "arn:aws:s3:::rec/transcripts/a.json")


def test_s3_check_object_gets_its_own_narrow_grant_when_no_prefix_covers_path() -> None:
    prefixes = {"audio": "a", "video": "v", "transcript": "t", "metadata": "m"}
    doc = policy.s3_policy("rec", prefixes.values(), "WriteOnly", path="/checks/")
    assert "arn:aws:s3:::rec/checks/stream-*" in statements(doc)["CallstorageWriteMedia"][
        "Resource"]
    assert s3_allows(doc, "s3:PutObject", "arn:aws:s3:::rec/checks/stream-1234.md")
    assert not s3_allows(doc, "s3:PutObject", "arn:aws:s3:::rec/checks/other.md")


def test_s3_read_write_adds_get_object_and_list_bucket_for_head_bucket() -> None:
    doc = policy.s3_policy("rec", ["meetstream"], "ReadWrite", path="meetstream")
    by_sid = statements(doc)
    assert by_sid["CallstorageWriteMedia"]["Resource"] == ["arn:aws:s3:::rec/meetstream/*"]
    assert by_sid["CallstorageReadMedia"] == {
        "Sid": "CallstorageReadMedia", "Effect": "Allow", "Action": ["s3:GetObject"],
        "Resource": ["arn:aws:s3:::rec/meetstream/*"]}
    assert by_sid["CallstorageHeadBucket"]["Action"] == ["s3:ListBucket"]
    assert by_sid["CallstorageHeadBucket"]["Resource"] == ["arn:aws:s3:::rec"]
    assert "s3:DeleteObject" not in json.dumps(doc)


def test_s3_bucket_root_prefix() -> None:
    doc = policy.s3_policy("rec", ["", "a"], "WriteOnly", path=None)
    assert statements(doc)["CallstorageWriteMedia"]["Resource"] == ["arn:aws:s3:::rec/*"]


@pytest.mark.parametrize(("region", "partition"), [
    ("us-east-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"),
    (None, "aws")])
def test_s3_arn_partition_follows_the_region(region: str | None, partition: str) -> None:
    doc = policy.s3_policy("rec", ["p"], "WriteOnly", region=region)
    assert doc["Statement"][0]["Resource"][0].startswith(f"arn:{partition}:s3:::rec/")


def test_gcs_write_only_is_object_creator_limited_to_the_prefixes() -> None:
    doc = policy.gcs_policy("rec", PREFIXES.values(), "WriteOnly", path="transcripts",
                            member="serviceAccount:sa@p.iam.gserviceaccount.com")
    assert doc["version"] == 3
    [binding] = doc["bindings"]
    assert binding["role"] == "roles/storage.objectCreator"
    assert binding["members"] == ["serviceAccount:sa@p.iam.gserviceaccount.com"]
    expression = binding["condition"]["expression"]
    for prefix in ("recordings/audio/", "recordings/video/", "transcripts/"):
        assert f'resource.name.startsWith("projects/_/buckets/rec/objects/{prefix}")' \
            in expression
    assert expression.count("startsWith") == 3


def test_gcs_read_write_adds_viewer_and_bucket_reader() -> None:
    doc = policy.gcs_policy("rec", ["media"], "ReadWrite", path="media")
    roles = [b["role"] for b in doc["bindings"]]
    assert roles == ["roles/storage.objectCreator", "roles/storage.objectViewer",
                     "roles/storage.legacyBucketReader"]
    assert "condition" not in doc["bindings"][2]  # bucket metadata is not under a prefix
    assert doc["bindings"][0]["members"] == [policy.GCS_MEMBER_PLACEHOLDER]
    assert "objectAdmin" not in json.dumps(doc)


def test_gcs_bucket_root_needs_no_condition() -> None:
    doc = policy.gcs_policy("rec", [""], "WriteOnly")
    assert "condition" not in doc["bindings"][0]


def test_azure_write_only_is_a_custom_write_role_on_the_container() -> None:
    doc = policy.azure_role("acct", "rec", ["recordings"], "WriteOnly", path="recordings")
    role = doc["roleDefinition"]
    assert role["IsCustom"] is True
    blobs = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
    assert role["DataActions"] == [f"{blobs}/write", f"{blobs}/add/action"]
    assert role["Actions"] == []
    scope = role["AssignableScopes"][0]
    assert scope.endswith("/storageAccounts/acct/blobServices/default/containers/rec")
    assignment = doc["roleAssignment"]
    assert assignment["role"] == role["Name"]
    assert assignment["scope"] == scope
    assert assignment["conditionVersion"] == "2.0"
    assert f"@Resource[{blobs}:path] StringStartsWith 'recordings/'" in assignment["condition"]
    assert "read" not in json.dumps(role["DataActions"])


def test_azure_read_write_is_blob_data_contributor_with_prefix_conditions() -> None:
    doc = policy.azure_role("acct", "rec", ["a", "b"], "ReadWrite", path="a")
    assert "roleDefinition" not in doc
    assignment = doc["roleAssignment"]
    assert assignment["role"] == "Storage Blob Data Contributor"
    assert "StringStartsWith 'a/'" in assignment["condition"]
    assert "StringStartsWith 'b/'" in assignment["condition"]
    assert "Blob.List" in assignment["condition"]


def test_azure_bucket_root_has_no_condition() -> None:
    doc = policy.azure_role("acct", "rec", [""], "ReadWrite")
    assert "condition" not in doc["roleAssignment"]


@pytest.mark.parametrize(("storage_type", "kind"), [
    ("s3", "AWS IAM identity policy"), ("gcs", "GCS bucket IAM bindings"),
    ("abs", "Azure role assignment")])
def test_least_privilege_policy_dispatches_on_storage_type(storage_type: str, kind: str) -> None:
    result = policy.least_privilege_policy(
        storage_type, "rec", "WriteOnly", PREFIXES, path="transcripts", account_name="acct")
    assert result.storage_type == storage_type
    assert result.kind == kind
    assert result.notes
    assert json.loads(result.to_json()) == result.document


def test_least_privilege_policy_uses_the_member() -> None:
    result = policy.least_privilege_policy("abs", "rec", "ReadWrite", ["x"],
                                           account_name="acct", member="0000-1111")
    assert result.document["roleAssignment"]["assignee"] == "0000-1111"


@pytest.mark.parametrize(("args", "message"), [
    (("ftp", "rec", "ReadWrite", ["a"]), "unknown storage type"),
    (("s3", "rec", "read_write", ["a"]), "unknown access mode"),
    (("abs", "rec", "ReadWrite", ["a"]), "account name"),
])
def test_least_privilege_policy_refuses_bad_input(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy.least_privilege_policy(*args)


def test_write_only_policies_tell_how_probes_stay_bounded() -> None:
    """Issue 11 item 8: one overwritten probe per prefix, and for a versioned S3 bucket a
    lifecycle rule for the old versions of exactly those keys."""
    import json as _json

    from callstorage.policy import least_privilege_policy

    policy = least_privilege_policy("s3", "b", "WriteOnly", {"audio": "rec/audio/"})
    assert "rec/audio/.write_probe_callstorage" in policy.notes[0]
    rules = _json.loads(policy.notes[1].split(": ", 1)[1])["Rules"]
    assert [r["Filter"]["Prefix"] for r in rules] == ["rec/audio/.write_probe_callstorage"]
    assert rules[0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    read_write = least_privilege_policy("s3", "b", "ReadWrite", {"audio": "rec/audio/"})
    assert not any("probe" in n for n in read_write.notes)
