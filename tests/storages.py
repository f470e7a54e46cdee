"""What the tests know about our objects: building ExternalStorages and CallTypes, and
waiting until the operator says they are Ready (by the API's own rule,
``callstorage.api.readiness``). The test bed (``testbed.kubeutil``) only talks to the API
server; what an ExternalStorage looks like and when it is Ready lives here.
"""

from __future__ import annotations

from typing import Any

from callstorage.api import CALLTYPE_PLURAL, EXTERNALSTORAGE_PLURAL
from callstorage.api.readiness import PENDING, readiness
from callstorage.storagespec import ExternalStorageSpec, external_storage_manifest
from testbed import kubeutil
from testbed.s3 import S3Server, readwrite_policy

#: the plurals our objects are served under (``kubeutil.get_object(api, EXS, ...)``)
EXS, CT = EXTERNALSTORAGE_PLURAL, CALLTYPE_PLURAL


def condition(obj: dict[str, Any] | None, type_: str = "Ready") -> dict[str, Any]:
    """The condition of that type ({} when absent)."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def wait_ready(api: Any, plural: str, namespace: str, name: str, status: str = "True",
               reason: str | None = None, timeout: float = 30) -> dict[str, Any]:
    """Wait for Ready=<status> (and reason) with the current generation observed."""
    def ok(obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        state = readiness(obj)  # the operator's own rule, current generation only
        return state.status == status and (reason is None or state.reason == reason) \
            and state.reason != PENDING
    obj = kubeutil.wait_object(api, plural, namespace, name, ok, timeout,
                               f"{plural} {namespace}/{name} Ready={status} {reason or ''}"
                               .strip())
    assert obj is not None
    return obj


def s3_storage_spec(bucket: str, endpoint: str, secret: str | None,
                    mode: str = "ReadWrite", **extra: Any) -> dict[str, Any]:
    """An S3 ExternalStorage spec for an emulator (path-style, us-east-1), in wire form;
    ``extra`` are further spec fields as the API spells them (``path``, ``prefixes``, ...)."""
    s3: dict[str, Any] = {"region": "us-east-1", "endpoint": endpoint, "forcePathStyle": True}
    if secret:
        s3["credentialsSecretRef"] = {"name": secret}
    spec = {"storageType": "s3", "bucket": bucket, "accessMode": mode, "s3": s3, **extra}
    return ExternalStorageSpec.model_validate(spec).to_dict()


def external_storage(name: str, spec: dict[str, Any],
                     annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An ExternalStorage manifest (the API's builder; the namespace is the request's)."""
    return external_storage_manifest(
        name, None, ExternalStorageSpec.model_validate(spec), annotations=annotations)


def create_storage(api: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """Create an ExternalStorage with ``spec`` exactly as given (no client-side
    validation: the API server's schema and CEL rules are what a test may want to see)."""
    kubeutil.create_object(api, EXS, namespace, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "ExternalStorage",
        "metadata": {"name": name}, "spec": spec})


def s3_storage(api: Any, s3: S3Server, namespace: str, name: str,
               endpoint: str | None = None, path: str = "calls/", **spec: Any) -> str:
    """A ReadWrite S3 storage with a bucket and keys of its own, its Secret
    ``<name>-creds`` binding the keys to ``endpoint`` (the emulator's unless given, e.g.
    a proxy in front of it); ``spec``: further spec fields. Returns the bucket."""
    bucket = f"{namespace}-{name}"[:60]
    s3.create_bucket(bucket)
    keys = s3.create_user(f"u-{bucket}", readwrite_policy(bucket))
    kubeutil.secret(api, namespace, f"{name}-creds",
                    {**keys.as_secret_data(), "endpoint": endpoint or s3.endpoint})
    kubeutil.create_object(api, EXS, namespace, external_storage(
        name, s3_storage_spec(bucket, endpoint or s3.endpoint, f"{name}-creds", path=path,
                                      **spec)))
    return bucket


def call_type(api: Any, namespace: str, name: str, storage: str | None) -> None:
    """A CallType naming ``storage`` (None: no spec.externalStorage, the default)."""
    kubeutil.create_object(api, CT, namespace, {
        "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
        "metadata": {"name": name},
        "spec": {"externalStorage": storage} if storage is not None else {}})
