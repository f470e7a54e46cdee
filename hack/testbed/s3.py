"""An S3 endpoint that checks credentials for real: moto in server mode with IAM enforced.

moto verifies SigV4 signatures against the secrets of the IAM users it created and
evaluates their IAM policies, but only once its "no auth" allowance is used up
(``INITIAL_NO_AUTH_ACTION_COUNT``). We start it with an allowance of exactly the three IAM
calls that create the admin user, so every request after that, ours included, is signed
and authorised. It runs through ``testbed.moto_s3``, which makes a missing bucket answer
404 NoSuchBucket (as S3 does) rather than moto's 403 for callers without rights on it.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config

from callstorage.storagetypes.base import ENDPOINT_KEY
from callstorage.storagetypes.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from testbed.procs import Server, free_port, http_ok, wait_for

# CreateUser, PutUserPolicy, CreateAccessKey for the admin: the only unsigned calls.
_BOOTSTRAP_ACTIONS = 3
_ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class S3Keys:
    """An IAM user's access key pair."""

    access_key_id: str
    secret_access_key: str
    #: the endpoint the keys belong to (their Secret binds them to it), if not AWS's
    endpoint: str | None = None

    def __repr__(self) -> str:  # keep secrets out of pytest's assertion output
        return f"S3Keys(access_key_id={self.access_key_id!r}, secret_access_key='***')"

    def as_secret_data(self) -> dict[str, str]:
        """The keys as an ExternalStorage credentials Secret holds them, bound to the
        endpoint they belong to."""
        data = {ACCESS_KEY_ID: self.access_key_id, SECRET_ACCESS_KEY: self.secret_access_key}
        if self.endpoint:
            data[ENDPOINT_KEY] = self.endpoint
        return data


def readwrite_policy(bucket: str) -> dict[str, Any]:
    """Read, write and list ``bucket``."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
        ],
    }


def put_only_policy(bucket: str, prefixes: list[str]) -> dict[str, Any]:
    """Only ``s3:PutObject`` under each of ``prefixes`` (``recordings`` -> ``recordings/*``)."""
    resources = [f"arn:aws:s3:::{bucket}/{p.strip('/')}/*" if p.strip("/") else
                 f"arn:aws:s3:::{bucket}/*" for p in prefixes]
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": resources}],
    }


# What moto checks instead of (or beside) AWS's action for the same request. AWS authorises
# HeadBucket with s3:ListBucket; moto asks for s3:HeadBucket. AWS authorises
# CreateMultipartUpload, UploadPart and CompleteMultipartUpload with s3:PutObject; moto
# 5.2.6 asks for actions named after those calls (5.2.1 to 5.2.5 asked for s3:PutObject).
_MOTO_ALIASES: dict[str, tuple[str, ...]] = {
    "s3:listbucket": ("s3:HeadBucket",),
    "s3:putobject": ("s3:CreateMultipartUpload", "s3:UploadPart", "s3:CompleteMultipartUpload"),
}


def as_moto_policy(policy_document: dict[str, Any]) -> dict[str, Any]:
    """``policy_document`` with AWS's action names translated where moto differs.

    Every statement (Allow and Deny alike) whose ``Action`` covers an AWS action in
    ``_MOTO_ALIASES`` (by name or by wildcard, case-insensitively, as IAM matches) also
    names moto's action for the same request, so an AWS policy means in moto what it means
    in AWS. ``NotAction`` statements are left as written.
    """
    doc = copy.deepcopy(policy_document)
    statements = doc.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action")
        listed = [actions] if isinstance(actions, str) else list(actions or [])
        patterns = [a.lower() for a in listed]
        extra = [alias for aws, aliases in _MOTO_ALIASES.items()
                 if any(fnmatch.fnmatchcase(aws, p) for p in patterns)
                 for alias in aliases if alias.lower() not in patterns]
        if extra:
            statement["Action"] = [*listed, *dict.fromkeys(extra)]
    return doc


class S3Server:
    """A moto server on 127.0.0.1 with IAM enforced; use ``S3Server.start(log_dir)``."""

    def __init__(self, server: Server, endpoint: str, region: str, admin: S3Keys) -> None:
        self._server = server
        self.endpoint = endpoint
        self.region = region
        self.admin = admin

    @classmethod
    def start(cls, log_dir: Path, region: str = "us-east-1", timeout: float = 30.0,
              host: str = "127.0.0.1") -> S3Server:
        """Start moto on ``host`` (a real node's Pods reach it on the node link's address)."""
        port = free_port()
        endpoint = f"http://{host}:{port}"
        server = Server(
            "moto-s3",
            [sys.executable, "-m", "testbed.moto_s3", "-H", host, "-p", str(port)],
            log_dir,
            env={"INITIAL_NO_AUTH_ACTION_COUNT": str(_BOOTSTRAP_ACTIONS),
                 "PYTHONPATH": _pythonpath()},
        )
        try:
            # /moto-api/ is moto's own control API: it does not use up the no-auth allowance.
            wait_for(lambda: http_ok(f"{endpoint}/moto-api/data.json"), timeout,
                     "moto server", alive=server)
            iam = _client("iam", endpoint, region, S3Keys("bootstrap", "bootstrap"))
            iam.create_user(UserName="admin")
            iam.put_user_policy(UserName="admin", PolicyName="admin",
                                PolicyDocument=json.dumps(_ALLOW_ALL))
            key = iam.create_access_key(UserName="admin")["AccessKey"]
        except BaseException:
            server.stop()
            raise
        return cls(server, endpoint, region, S3Keys(key["AccessKeyId"], key["SecretAccessKey"]))

    @property
    def log_path(self) -> Path:
        return self._server.log_path

    def client(self, service: str = "s3", keys: S3Keys | None = None) -> Any:
        """A boto3 client for ``service`` signed with ``keys`` (default: the admin)."""
        return _client(service, self.endpoint, self.region, keys or self.admin)

    def create_bucket(self, name: str) -> None:
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client().create_bucket(**kwargs)

    def create_user(self, name: str, policy_document: dict[str, Any]) -> S3Keys:
        """An IAM user with ``policy_document`` as its only (inline) policy, and its keys."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy",
                            PolicyDocument=json.dumps(as_moto_policy(policy_document)))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return S3Keys(key["AccessKeyId"], key["SecretAccessKey"], self.endpoint)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        keys: list[str] = []
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix)
        for page in pages:
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> S3Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _pythonpath() -> str:
    """PYTHONPATH for the child, so ``-m testbed.moto_s3`` imports from this checkout."""
    here = str(Path(__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH")
    return f"{here}{os.pathsep}{rest}" if rest else here


def _client(service: str, endpoint: str, region: str, keys: S3Keys) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
        config=Config(connect_timeout=5, read_timeout=30, retries={"total_max_attempts": 2},
                      s3={"addressing_style": "path"}),
    )
