"""One table of ExternalStorage and CallType objects, valid and invalid.

The same rows run against the real API server (``tests/integration/test_admission.py``:
the CRD schema and CEL rules) and through the pydantic models
(``tests/unit/test_api_models.py``), so the two sources of validation cannot drift apart.
An invalid row names the field the problem is reported at and a substring of the message
both must produce; a valid row may list fields the API server must default.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP = "callstorage.io"
VERSION = "v1alpha1"
PLURALS = {"ExternalStorage": "externalstorages", "CallType": "calltypes"}

_DELETE = object()  # in a patch: remove this key


@dataclass(frozen=True)
class Case:
    """One object and what admission must say about it."""

    id: str
    kind: str
    spec: Mapping[str, Any] | None  # None: the object has no spec at all
    path: str | None = None  # field the problem is reported at (invalid rows)
    error: str | None = None  # substring of the message (invalid rows); None: valid
    name: str = "case"
    # Valid rows: fields (dotted path under spec -> value) expected after a read back.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # Unknown fields fail strict decoding (400) before the schema runs (422).
    status: int = 422

    @property
    def valid(self) -> bool:
        return self.error is None

    @property
    def plural(self) -> str:
        return PLURALS[self.kind]

    def manifest(self, namespace: str | None = None) -> dict[str, Any]:
        """The object as sent to the API server."""
        metadata: dict[str, Any] = {"name": self.name}
        if namespace is not None:
            metadata["namespace"] = namespace
        obj: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": self.kind,
            "metadata": metadata,
        }
        if self.spec is not None:
            obj["spec"] = copy.deepcopy(dict(self.spec))
        return obj


def patch(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` deep-merged with ``changes``; a ``_DELETE`` value removes the key."""
    result = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if value is _DELETE:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


S3: dict[str, Any] = {
    "storageType": "s3",
    "bucket": "recordings",
    "s3": {"region": "us-east-1", "credentialsSecretRef": {"name": "s3-credentials"}},
}
GCS: dict[str, Any] = {
    "storageType": "gcs",
    "bucket": "recordings",
    "gcs": {"credentialsSecretRef": {"name": "gcs-credentials"}},
}
ABS: dict[str, Any] = {
    "storageType": "abs",
    "bucket": "recordings",
    "abs": {"accountName": "myaccount", "credentialsSecretRef": {"name": "abs-credentials"}},
}


def exs(id: str, spec: Mapping[str, Any] | None, path: str | None = None,
        error: str | None = None, **kwargs: Any) -> Case:
    return Case(id, "ExternalStorage", spec, path, error, **kwargs)


def ct(id: str, spec: Mapping[str, Any] | None, path: str | None = None,
       error: str | None = None, **kwargs: Any) -> Case:
    return Case(id, "CallType", spec, path, error, **kwargs)


def s3(changes: Mapping[str, Any]) -> dict[str, Any]:
    return patch(S3, changes)


def gcs(changes: Mapping[str, Any]) -> dict[str, Any]:
    return patch(GCS, changes)


def abs_(changes: Mapping[str, Any]) -> dict[str, Any]:
    return patch(ABS, changes)


def bucket(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    return patch(spec, {"bucket": name})


PROVIDER_MISMATCH = "keep only the block that matches storageType"
DOT_SEGMENT = "must not contain '.' or '..' segments"
EMPTY_SEGMENT = "must not contain empty segments (//)"
BACKSLASH = "must not contain backslashes"
CONTROL = "must not contain control characters"
URL = "must be an http:// or https:// URL without user info, query or fragment"
NAMESPACE_REF = "Forbidden: Secrets are read from this object's own namespace only"
SECRET_NAME = "must be a Secret name"
DURATION = "must be a duration such as 30s, 15m, 1h or 1h30m"
TOO_LONG = "Too long"
GCS_LENGTH = "GCS bucket names must be 3-63 characters long, or up to 222 if they contain dots"
GCS_PART = "each dot-separated part of a GCS bucket name must be 1-63 characters long"
GCS_CHARS = "GCS bucket names may contain only lowercase letters"
S3_CHARS = "S3 bucket names may contain only lowercase letters"
ABS_CHARS = "Azure container names may contain only lowercase letters"

INVALID: list[Case] = [
    # --- the object as a whole
    exs("no-spec", None, "spec", "Required value"),
    exs("reserved-name", S3, "metadata.name", "stream-s3 is reserved for the platform storage",
        name="stream-s3"),
    exs("no-storage-type", patch(S3, {"storageType": _DELETE}), "spec.storageType",
        "Required value"),
    exs("no-bucket", patch(S3, {"bucket": _DELETE}), "spec.bucket", "Required value"),
    exs("unknown-storage-type", s3({"storageType": "nfs"}), "spec.storageType",
        'Unsupported value: "nfs"'),
    exs("bucket-not-a-string", s3({"bucket": 42}), "spec.bucket", "must be of type string"),
    exs("unknown-access-mode", s3({"accessMode": "ReadOnly"}), "spec.accessMode",
        'Unsupported value: "ReadOnly"'),
    exs("suspend-not-a-bool", s3({"suspend": "yes"}), "spec.suspend",
        "must be of type boolean"),
    exs("unknown-spec-field", s3({"region": "us-east-1"}), "spec.region", "unknown field",
        status=400),
    exs("unknown-s3-field", s3({"s3": {"regoin": "eu-west-1"}}), "spec.s3.regoin",
        "unknown field", status=400),
    # --- exactly the provider block matching storageType
    exs("s3-without-block", patch(S3, {"s3": _DELETE}), "spec.s3",
        "must be set when storageType is s3"),
    exs("gcs-without-block", patch(GCS, {"gcs": _DELETE}), "spec.gcs",
        "must be set when storageType is gcs"),
    exs("abs-without-block", patch(ABS, {"abs": _DELETE}), "spec.abs",
        "must be set when storageType is abs"),
    exs("s3-with-gcs-block", s3({"gcs": GCS["gcs"]}), "spec.gcs",
        f"must not be set when storageType is s3; {PROVIDER_MISMATCH}"),
    exs("gcs-with-s3-block", gcs({"s3": S3["s3"]}), "spec.s3",
        f"must not be set when storageType is gcs; {PROVIDER_MISMATCH}"),
    exs("abs-with-s3-block", abs_({"s3": S3["s3"]}), "spec.s3",
        f"must not be set when storageType is abs; {PROVIDER_MISMATCH}"),
    exs("s3-with-abs-block", s3({"abs": ABS["abs"]}), "spec.abs",
        f"must not be set when storageType is s3; {PROVIDER_MISMATCH}"),
    # --- required provider fields
    exs("s3-no-region", s3({"s3": {"region": _DELETE}}), "spec.s3.region", "Required value"),
    exs("s3-bad-region", s3({"s3": {"region": "US_East_1"}}), "spec.s3.region",
        "must be a region name such as us-east-1"),
    exs("gcs-no-credentials", gcs({"gcs": {"credentialsSecretRef": _DELETE}}),
        "spec.gcs.credentialsSecretRef", "Required value"),
    exs("abs-no-credentials", abs_({"abs": {"credentialsSecretRef": _DELETE}}),
        "spec.abs.credentialsSecretRef", "Required value"),
    exs("abs-no-account", abs_({"abs": {"accountName": _DELETE}}), "spec.abs.accountName",
        "Required value"),
    exs("abs-bad-account", abs_({"abs": {"accountName": "My_Account"}}),
        "spec.abs.accountName", "must be a storage account name, 3-24 lowercase letters"),
    # --- S3 bucket names
    exs("s3-bucket-short", bucket(S3, "ab"), "spec.bucket",
        "S3 bucket names must be 3-63 characters long"),
    exs("s3-bucket-long", bucket(S3, "b" * 64), "spec.bucket",
        "S3 bucket names must be 3-63 characters long"),
    exs("s3-bucket-uppercase", bucket(S3, "MyRecordings"), "spec.bucket", S3_CHARS),
    exs("s3-bucket-underscore", bucket(S3, "my_recordings"), "spec.bucket", S3_CHARS),
    exs("s3-bucket-trailing-hyphen", bucket(S3, "recordings-"), "spec.bucket", S3_CHARS),
    exs("s3-bucket-double-dot", bucket(S3, "my..recordings"), "spec.bucket",
        "S3 bucket names must not contain two adjacent dots"),
    exs("s3-bucket-ip", bucket(S3, "192.168.5.4"), "spec.bucket",
        "S3 bucket names must not be formatted as an IP address"),
    exs("s3-bucket-xn", bucket(S3, "xn--recordings"), "spec.bucket",
        "S3 bucket names must not start with xn--"),
    exs("s3-bucket-s3alias", bucket(S3, "recordings-s3alias"), "spec.bucket",
        "S3 bucket names must not end with -s3alias"),
    # --- GCS bucket names
    exs("gcs-bucket-goog", bucket(GCS, "goog-recordings"), "spec.bucket",
        "GCS bucket names must not start with goog or contain google"),
    exs("gcs-bucket-google", bucket(GCS, "my-google-recordings"), "spec.bucket",
        "GCS bucket names must not start with goog or contain google"),
    exs("gcs-bucket-long", bucket(GCS, "g" * 64), "spec.bucket", GCS_LENGTH),
    # Dotted names up to 222 are fine for GCS, which is also the schema's maxLength.
    exs("gcs-bucket-long-dotted", bucket(GCS, ".".join(["a" * 55] * 4)), "spec.bucket",
        TOO_LONG),
    exs("gcs-bucket-long-part", bucket(GCS, "a" * 64 + ".example.com"), "spec.bucket",
        GCS_PART),
    exs("gcs-bucket-empty-part", bucket(GCS, "my..recordings"), "spec.bucket", GCS_PART),
    exs("gcs-bucket-leading-hyphen", bucket(GCS, "-recordings"), "spec.bucket", GCS_CHARS),
    exs("gcs-bucket-uppercase", bucket(GCS, "Recordings"), "spec.bucket", GCS_CHARS),
    exs("gcs-bucket-ip", bucket(GCS, "10.0.0.1"), "spec.bucket",
        "GCS bucket names must not be formatted as an IP address"),
    # --- Azure container names
    exs("abs-container-short", bucket(ABS, "ab"), "spec.bucket",
        "Azure container names must be 3-63 characters long"),
    exs("abs-container-double-hyphen", bucket(ABS, "call--recordings"), "spec.bucket",
        "Azure container names must not contain consecutive hyphens"),
    exs("abs-container-underscore", bucket(ABS, "call_recordings"), "spec.bucket", ABS_CHARS),
    exs("abs-container-dot", bucket(ABS, "call.recordings"), "spec.bucket", ABS_CHARS),
    exs("abs-container-leading-hyphen", bucket(ABS, "-recordings"), "spec.bucket", ABS_CHARS),
    # --- path
    exs("path-dotdot", s3({"path": "recordings/../secrets"}), "spec.path", DOT_SEGMENT),
    exs("path-dotdot-leading", s3({"path": "/../recordings"}), "spec.path", DOT_SEGMENT),
    exs("path-dot", s3({"path": "recordings/./audio"}), "spec.path", DOT_SEGMENT),
    exs("path-empty-segment", s3({"path": "recordings//audio"}), "spec.path", EMPTY_SEGMENT),
    exs("path-backslash", s3({"path": "recordings\\audio"}), "spec.path", BACKSLASH),
    exs("path-control", s3({"path": "recordings/\naudio"}), "spec.path", CONTROL),
    exs("path-del", s3({"path": "recordings\x7f"}), "spec.path", CONTROL),
    exs("path-too-long", s3({"path": "p" * 513}), "spec.path", TOO_LONG),
    # --- prefixes
    exs("prefixes-unknown-key", s3({"prefixes": {"thumbnails": "thumbs"}}), "spec.prefixes",
        "allowed keys are audio, video, transcript and metadata"),
    exs("prefixes-dotdot", s3({"prefixes": {"audio": "audio/../video"}}),
        "spec.prefixes.audio", DOT_SEGMENT),
    exs("prefixes-empty-segment", s3({"prefixes": {"video": "a//b"}}), "spec.prefixes.video",
        EMPTY_SEGMENT),
    exs("prefixes-backslash", s3({"prefixes": {"metadata": "meta\\data"}}),
        "spec.prefixes.metadata", BACKSLASH),
    exs("prefixes-control", s3({"prefixes": {"transcript": "trans\tcripts"}}),
        "spec.prefixes.transcript", CONTROL),
    exs("prefixes-too-long", s3({"prefixes": {"audio": "a" * 513}}), "spec.prefixes.audio",
        TOO_LONG),
    # --- validationInterval
    exs("interval-words", s3({"validationInterval": "1 hour"}), "spec.validationInterval",
        DURATION),
    exs("interval-days", s3({"validationInterval": "7d"}), "spec.validationInterval", DURATION),
    exs("interval-negative", s3({"validationInterval": "-1h"}), "spec.validationInterval",
        DURATION),
    exs("interval-no-unit", s3({"validationInterval": "3600"}), "spec.validationInterval",
        DURATION),
    exs("interval-too-short", s3({"validationInterval": "10s"}), "spec.validationInterval",
        "must be at least 30s, or 0 to turn periodic validation off"),
    exs("interval-too-short-ms", s3({"validationInterval": "29999ms"}),
        "spec.validationInterval", "must be at least 30s"),
    # --- endpoints
    exs("s3-endpoint-ftp", s3({"s3": {"endpoint": "ftp://minio.internal:9000"}}),
        "spec.s3.endpoint", URL),
    exs("s3-endpoint-no-scheme", s3({"s3": {"endpoint": "minio.internal:9000"}}),
        "spec.s3.endpoint", URL),
    exs("s3-endpoint-userinfo", s3({"s3": {"endpoint": "https://admin:hunter2@minio:9000"}}),
        "spec.s3.endpoint", URL),
    exs("s3-endpoint-bad-port", s3({"s3": {"endpoint": "https://minio:port"}}),
        "spec.s3.endpoint", URL),
    exs("gcs-endpoint-query", gcs({"gcs": {"endpoint": "https://storage.example.com/?a=1"}}),
        "spec.gcs.endpoint", URL),
    exs("abs-endpoint-fragment", abs_({"abs": {"endpoint": "https://blob.example.com/#x"}}),
        "spec.abs.endpoint", URL),
    exs("abs-authority-no-scheme", abs_({"abs": {"authorityHost": "login.microsoftonline.us"}}),
        "spec.abs.authorityHost", URL),
    # --- Secret references: same namespace only
    exs("s3-secret-namespace",
        s3({"s3": {"credentialsSecretRef": {"name": "creds", "namespace": "other-app"}}}),
        "spec.s3.credentialsSecretRef.namespace", NAMESPACE_REF),
    exs("gcs-secret-namespace",
        gcs({"gcs": {"credentialsSecretRef": {"name": "creds", "namespace": "other-app"}}}),
        "spec.gcs.credentialsSecretRef.namespace", NAMESPACE_REF),
    exs("abs-secret-namespace",
        abs_({"abs": {"credentialsSecretRef": {"name": "creds", "namespace": "other-app"}}}),
        "spec.abs.credentialsSecretRef.namespace", NAMESPACE_REF),
    exs("ca-secret-namespace",
        s3({"tls": {"caSecretRef": {"name": "ca", "namespace": "cert-manager"}}}),
        "spec.tls.caSecretRef.namespace", NAMESPACE_REF),
    exs("secret-bad-name", s3({"s3": {"credentialsSecretRef": {"name": "My_Secret"}}}),
        "spec.s3.credentialsSecretRef.name", SECRET_NAME),
    exs("secret-no-name", s3({"s3": {"credentialsSecretRef": {"name": _DELETE}}}),
        "spec.s3.credentialsSecretRef.name", "Required value"),
    exs("ca-bad-key", s3({"tls": {"caSecretRef": {"name": "ca", "key": "ca crt"}}}),
        "spec.tls.caSecretRef.key", "must be a Secret key"),
    exs("tls-no-ca", s3({"tls": {}}), "spec.tls.caSecretRef", "Required value"),
    # --- CallType
    ct("calltype-bad-reference", {"externalStorage": "My_Storage"}, "spec.externalStorage",
       "must be the name of an ExternalStorage in this namespace"),
    ct("calltype-empty-reference", {"externalStorage": ""}, "spec.externalStorage",
       "must be the name of an ExternalStorage in this namespace"),
    ct("calltype-long-reference", {"externalStorage": "s" * 254}, "spec.externalStorage",
       TOO_LONG),
    ct("calltype-reference-not-a-string", {"externalStorage": 7}, "spec.externalStorage",
       "must be of type string"),
    ct("calltype-unknown-field", {"storage": "my-s3"}, "spec.storage", "unknown field",
       status=400),
]

VALID: list[Case] = [
    exs("s3-minimal", S3, defaults={
        "accessMode": "ReadWrite", "validationInterval": "1h", "suspend": False,
        "s3.forcePathStyle": False}),
    exs("s3-compatible", s3({
        "bucket": "call.recordings.example",
        "s3": {"endpoint": "https://minio.storage.svc:9000", "forcePathStyle": True},
        "tls": {"caSecretRef": {"name": "minio-ca"}},
    }), defaults={"tls.caSecretRef.key": "ca.crt", "s3.forcePathStyle": True}),
    exs("s3-ambient-credentials", s3({"s3": {"credentialsSecretRef": _DELETE}})),
    exs("s3-ipv6-endpoint", s3({"s3": {"endpoint": "http://[::1]:9000"}})),
    exs("s3-directory-bucket", bucket(S3, "recordings--usw2-az1--x-s3")),
    exs("s3-write-only-prefixes", s3({
        "accessMode": "WriteOnly",
        "path": "/recordings/meetstream/",
        "prefixes": {"audio": "recordings/audio/", "video": "/recordings/video",
                     "transcript": "", "metadata": "recordings/.meta/data"},
    }), defaults={"accessMode": "WriteOnly"}),
    exs("path-root", s3({"path": "/"})),
    exs("path-dots-in-names", s3({"path": "a/.../b.c/..d"})),
    exs("path-unicode", s3({"path": "enregistrements/réunions"})),
    exs("path-max-length", s3({"path": "p" * 512})),
    exs("interval-off", s3({"validationInterval": "0"})),
    exs("interval-zero-seconds", s3({"validationInterval": "0s"})),
    exs("interval-minimum", s3({"validationInterval": "30s"})),
    exs("interval-fraction", s3({"validationInterval": "0.5m"})),
    exs("interval-compound", s3({"validationInterval": "1h30m"})),
    exs("suspended", s3({"suspend": True}), defaults={"suspend": True}),
    exs("gcs-minimal", GCS),
    exs("gcs-dotted-long", bucket(GCS, ".".join(["a" * 60] * 3))),
    exs("gcs-underscore", bucket(GCS, "call_recordings")),
    exs("gcs-emulator", gcs({"gcs": {"endpoint": "http://127.0.0.1:4443"}})),
    exs("abs-account-key", ABS),
    exs("abs-sovereign", abs_({"abs": {
        "endpoint": "https://myaccount.blob.core.usgovcloudapi.net",
        "authorityHost": "https://login.microsoftonline.us"}})),
    exs("abs-azurite", abs_({"abs": {"endpoint": "http://127.0.0.1:10000/devstoreaccount1"}})),
    exs("name-like-reserved", S3, name="stream-s3-archive"),
    ct("calltype-platform-implicit", {}),
    ct("calltype-no-spec", None),
    ct("calltype-platform-explicit", {"externalStorage": "stream-s3"}),
    ct("calltype-reference", {"externalStorage": "my-s3"}),
]

CASES: list[Case] = INVALID + VALID


def spec_field(spec: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``a.b.c`` under ``spec``; KeyError if absent."""
    value: Any = spec
    for part in dotted.split("."):
        value = value[part]
    return value
