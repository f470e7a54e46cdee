"""A Python client that speaks the seed SDK's language over the Kubernetes API.

Code written against Stream's examples ports with few changes: a namespace plays the part
of the application, ``create_external_storage(name=, storage_type=, bucket=, path=,
aws_s3=S3Request(...))`` creates a credentials Secret and an ExternalStorage,
``check_external_storage(name)`` asks the operator for a check and waits for its answer,
``update_call_type(name, external_storage=)`` points a CallType at a storage.

Credentials only ever travel from the caller into a Secret: the request classes hide them
in ``repr``, errors are built from our own words or the API server's ``Status.message``
(never from an exception's full text, which includes request bodies), and nothing is
logged about a Secret but its name.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, Final, TypeVar

from kubernetes import client, watch
from pydantic import SecretStr

from callstorage.api import (
    API_VERSION,
    CALLTYPE_PLURAL,
    CHECK_ANNOTATION,
    EXTERNALSTORAGE_PLURAL,
    GROUP,
    VERSION,
    InvalidSpecError,
    call_type_manifest,
    is_platform_reference,
    parse_call_type,
)
from callstorage.api.timestamps import parse_rfc3339, rfc3339_micro
from callstorage.client.errors import (
    AlreadyExists,
    ApiError,
    CallStorageError,
    CallTypeNotFound,
    CheckFailed,
    CheckTimeout,
    InvalidRequest,
    NotFoundError,
    StorageNotFound,
    api_errors,
)
from callstorage.client.kubeconfig import api_client_from_config
from callstorage.client.lookups import (
    check_storage_name,
    find_call_type,
    get_external_storage_object,
)
from callstorage.client.provider_requests import (
    Credentials,
    given_requests,
    normalise_access_mode,
    normalise_storage_type,
    provider_block,
)
from callstorage.client.views import CallTypeInfo, CheckResult, ExternalStorageInfo
from callstorage.kube import (
    MERGE_PATCH,
    REQUEST_TIMEOUT,
)
from callstorage.storagespec import parse_external_storage
from callstorage.storagetypes import PROVIDERS
from callstorage.storagetypes.azure import AzureRequest
from callstorage.storagetypes.base import ENDPOINT_KEY
from callstorage.storagetypes.s3 import S3Request

log = logging.getLogger(__name__)

#: Labels on the credentials Secrets this client creates.
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "callstorage-client"
STORAGE_LABEL: Final = f"{GROUP}/external-storage"
SECRET_SUFFIX: Final = "-credentials"  # noqa: S105 (a name suffix)
_CONFLICT_RETRIES: Final = 5
_WATCH_WINDOW: Final = 5  # seconds; between two windows the caller hears about progress


T = TypeVar("T")


def same_instant(a: Any, b: str) -> bool:
    """Whether the operator's ``requestedAt`` is our annotation value, even if it
    re-serialised the timestamp (``Z`` vs ``+00:00``)."""
    if a == b:
        return True
    if not isinstance(a, str):
        return False
    try:
        return parse_rfc3339(a) == parse_rfc3339(b)
    except ValueError:
        return False


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


# --- the client ---------------------------------------------------------------------------


class Client:
    """The seed SDK's external-storage calls for one application (namespace).

    ``api_client`` defaults to one built from the kubeconfig (``api_client_from_config``).
    Every method raises a ``CallStorageError`` subclass on failure.
    """

    def __init__(self, namespace: str, api_client: client.ApiClient | None = None) -> None:
        self.namespace = namespace
        self.api_client = api_client if api_client is not None else api_client_from_config()
        self._custom = client.CustomObjectsApi(self.api_client)
        self._core = client.CoreV1Api(self.api_client)

    def __repr__(self) -> str:
        return f"Client(namespace={self.namespace!r})"

    # -- plumbing --

    def _storage_not_found(self, name: str) -> Callable[[], CallStorageError]:
        return lambda: StorageNotFound(
            None, f"ExternalStorage {name!r} not found in namespace {self.namespace!r}")

    def _call_type_not_found(self, name: str) -> Callable[[], CallStorageError]:
        return lambda: CallTypeNotFound(
            None, f"CallType {name!r} not found in namespace {self.namespace!r}")

    def _get_storage(self, name: str) -> dict[str, Any]:
        return get_external_storage_object(self.api_client, self.namespace, name)

    def _get_call_type(self, name: str) -> dict[str, Any]:
        return find_call_type(self.api_client, self.namespace, name)

    def _list(self, plural: str, all_namespaces: bool) -> list[dict[str, Any]]:
        def not_installed() -> CallStorageError:
            return NotFoundError("CRDNotInstalled", f"the {GROUP} CRDs are not installed in "
                                 "this cluster (kubectl apply -f crds/)")

        with api_errors(not_installed):
            if all_namespaces:
                result = self._custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, _request_timeout=REQUEST_TIMEOUT)
            else:
                result = self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, _request_timeout=REQUEST_TIMEOUT)
        items = list(result.get("items") or [])
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items

    def _check_storage_name(self, name: str) -> None:
        check_storage_name(name)

    @staticmethod
    def secret_name(storage: str) -> str:
        """The name of the credentials Secret this client keeps for ``storage``."""
        return f"{storage}{SECRET_SUFFIX}"

    def _secret_body(self, storage: str, creds: Credentials,
                     owner: Mapping[str, Any] | None) -> client.V1Secret:
        meta = client.V1ObjectMeta(
            name=self.secret_name(storage), namespace=self.namespace,
            labels={MANAGED_BY_LABEL: MANAGED_BY, STORAGE_LABEL: storage},
            owner_references=[_owner_reference(owner)] if owner is not None else None)
        return client.V1Secret(metadata=meta, type="Opaque", data=creds.encoded())

    def _write_secret(self, storage: str, creds: Credentials,
                      owner: Mapping[str, Any] | None) -> bool:
        """Create the credentials Secret, or replace one this client made for ``storage``.

        Returns True if it was created. A Secret of that name that someone else made is
        never touched.
        """
        name = self.secret_name(storage)
        body = self._secret_body(storage, creds, owner)
        try:
            with api_errors(redact=creds.values()):
                self._core.create_namespaced_secret(self.namespace, body,
                                                    _request_timeout=REQUEST_TIMEOUT)
            log.info("created Secret %s/%s", self.namespace, name)
            return True
        except AlreadyExists:
            pass
        with api_errors(redact=creds.values()):
            existing = self._core.read_namespaced_secret(name, self.namespace,
                                                         _request_timeout=REQUEST_TIMEOUT)
        labels = existing.metadata.labels or {}
        if labels.get(STORAGE_LABEL) != storage or labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            raise AlreadyExists(None, f"Secret {name!r} already exists in namespace "
                                f"{self.namespace!r} and was not made by callstorage for "
                                f"{storage!r}; delete or rename it")
        if owner is None and existing.metadata.owner_references:
            # Left behind for another (deleted, being collected) storage of that name.
            raise AlreadyExists(None, f"Secret {name!r} still belongs to an earlier "
                                f"ExternalStorage {storage!r}; retry once it is deleted")
        body.metadata.resource_version = existing.metadata.resource_version
        if owner is None:
            body.metadata.owner_references = existing.metadata.owner_references
        with api_errors(redact=creds.values()):
            self._core.replace_namespaced_secret(name, self.namespace, body,
                                                 _request_timeout=REQUEST_TIMEOUT)
        log.info("replaced Secret %s/%s", self.namespace, name)
        return False

    def _rebind_secret(self, storage: str, endpoint: str) -> None:
        """Bind the credentials Secret this client made for ``storage`` to a new custom
        endpoint (the operator sends its credentials nowhere else); a Secret someone else
        made is theirs to bind."""
        name = self.secret_name(storage)
        with api_errors():
            try:
                existing = self._core.read_namespaced_secret(
                    name, self.namespace, _request_timeout=REQUEST_TIMEOUT)
            except client.ApiException as exc:
                if exc.status == 404:
                    return
                raise
        labels = existing.metadata.labels or {}
        if labels.get(STORAGE_LABEL) != storage or labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            return
        with api_errors():
            self._core.patch_namespaced_secret(
                name, self.namespace, {"stringData": {ENDPOINT_KEY: endpoint}},
                _request_timeout=REQUEST_TIMEOUT)
        log.info("bound Secret %s/%s to the new endpoint", self.namespace, name)

    def _adopt_secret(self, storage_obj: Mapping[str, Any]) -> None:
        """Make the ExternalStorage own its credentials Secret, so deleting the storage
        deletes them (Kubernetes garbage collection)."""
        name = self.secret_name(storage_obj["metadata"]["name"])
        patch = {"metadata": {"ownerReferences": [_owner_reference(storage_obj)]}}
        with api_errors():
            self._core.patch_namespaced_secret(name, self.namespace, patch,
                                               _content_type=MERGE_PATCH,
                                               _request_timeout=REQUEST_TIMEOUT)

    def _delete_secret_quietly(self, storage: str) -> None:
        with suppress(CallStorageError), api_errors():
            self._core.delete_namespaced_secret(self.secret_name(storage), self.namespace,
                                                _request_timeout=REQUEST_TIMEOUT)

    # -- external storage --

    def create_external_storage(
        self,
        name: str,
        storage_type: str,
        bucket: str,
        path: str | None = None,
        aws_s3: S3Request | Mapping[str, Any] | None = None,
        gcs_credentials: str | bytes | Mapping[str, Any] | None = None,
        azure_blob: AzureRequest | Mapping[str, Any] | None = None,
        access_mode: str | None = None,
        prefixes: Mapping[str, str] | None = None,
        *,
        gcs_endpoint: str | None = None,
        validation_interval: str | None = None,
        abs_account_name: str | None = None,
        abs_account_key: str | None = None,
        **requests: Any,
    ) -> ExternalStorageInfo:
        """Create a storage: its credentials Secret (``<name>-credentials``, owned by the
        storage) and the ExternalStorage. The seed's flat JavaScript form
        (``abs_account_name=``, ``abs_account_key=``) is accepted too. Another registered
        storage type's request goes by its descriptor's ``request_arg`` keyword.

        Returns right away; the operator validates it next (see ``check_external_storage``
        and ``get_external_storage(...).ready``).
        """
        self._check_storage_name(name)
        storage_type = normalise_storage_type(storage_type)
        if abs_account_name is not None or abs_account_key is not None:
            if azure_blob is not None:
                raise InvalidRequest(None, "give azure_blob or abs_account_name/"
                                     "abs_account_key, not both")
            azure_blob = AzureRequest(abs_account_name or "", abs_account_key=(
                SecretStr(abs_account_key) if abs_account_key is not None else None))
        block, creds = provider_block(storage_type, given_requests(
            aws_s3, gcs_credentials, azure_blob, gcs_endpoint, requests))
        if creds is not None:
            block["credentialsSecretRef"] = {"name": self.secret_name(name)}
        spec: dict[str, Any] = {"storageType": storage_type, "bucket": bucket,
                                storage_type: block}
        if path is not None:
            spec["path"] = path
        if access_mode is not None:
            spec["accessMode"] = normalise_access_mode(access_mode)
        if prefixes is not None:
            spec["prefixes"] = dict(prefixes)
        if validation_interval is not None:
            spec["validationInterval"] = validation_interval
        body = {"apiVersion": API_VERSION, "kind": "ExternalStorage",
                "metadata": {"name": name, "namespace": self.namespace}, "spec": spec}
        _validate_locally(body)

        with suppress(StorageNotFound):
            self._get_storage(name)
            raise AlreadyExists(None, f"ExternalStorage {name!r} already exists in namespace "
                                f"{self.namespace!r}; use update_external_storage")
        # The Secret first, so the operator finds it when it sees the storage; the
        # ownerReference needs the storage's uid, so it is added right after.
        created_secret = creds is not None and self._write_secret(name, creds, owner=None)
        try:
            with api_errors():
                obj: dict[str, Any] = self._custom.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, EXTERNALSTORAGE_PLURAL, body,
                    _request_timeout=REQUEST_TIMEOUT)
        except CallStorageError:
            if created_secret:
                self._delete_secret_quietly(name)
            raise
        log.info("created ExternalStorage %s/%s", self.namespace, name)
        if creds is not None:
            self._adopt_secret(obj)
        return ExternalStorageInfo.from_object(obj)

    def get_external_storage(self, name: str) -> ExternalStorageInfo:
        """One storage, without credentials. Raises ``StorageNotFound``."""
        return ExternalStorageInfo.from_object(self._get_storage(name))

    def list_external_storage(self, *, all_namespaces: bool = False) -> list[ExternalStorageInfo]:
        """Every storage of the application (or of all namespaces), without credentials."""
        return [ExternalStorageInfo.from_object(o)
                for o in self._list(EXTERNALSTORAGE_PLURAL, all_namespaces)]

    def update_external_storage(
        self,
        name: str,
        storage_type: str | None = None,
        bucket: str | None = None,
        path: str | None = None,
        aws_s3: S3Request | Mapping[str, Any] | None = None,
        gcs_credentials: str | bytes | Mapping[str, Any] | None = None,
        azure_blob: AzureRequest | Mapping[str, Any] | None = None,
        access_mode: str | None = None,
        prefixes: Mapping[str, str] | None = None,
        *,
        gcs_endpoint: str | None = None,
        validation_interval: str | None = None,
        suspend: bool | None = None,
        **requests: Any,
    ) -> ExternalStorageInfo:
        """Change a storage: only what is given changes (``prefixes`` replaces the whole
        map; ``{}`` removes every override). Credentials given in ``aws_s3``,
        ``gcs_credentials`` or ``azure_blob`` replace the stored ones; a provider request
        without credentials keeps them. Switching ``storage_type`` needs the new
        provider's request.
        """
        self._check_storage_name(name)
        obj = self._get_storage(name)
        spec: Mapping[str, Any] = obj.get("spec") or {}
        old_type = str(spec.get("storageType", ""))
        new_type = normalise_storage_type(storage_type) if storage_type else old_type
        given = given_requests(aws_s3, gcs_credentials, azure_blob, gcs_endpoint, requests)
        provider_given = any(v is not None for v in given.values())
        creds: Credentials | None = None
        # A JSON merge patch: only the fields named here change, whatever else the object
        # holds now (a field this client does not know, a concurrent change elsewhere).
        patch: dict[str, Any] = {}
        if provider_given or new_type != old_type:
            block, creds = provider_block(new_type, given)
            if creds is not None:
                block["credentialsSecretRef"] = {"name": self.secret_name(name)}
            if new_type != old_type:
                patch[old_type] = None
                patch["storageType"] = new_type
            patch[new_type] = block
        elif gcs_endpoint is not None and PROVIDERS[new_type].endpoint_arg == "gcs_endpoint":
            patch[new_type] = {"endpoint": gcs_endpoint}
        for key, value in (("bucket", bucket), ("path", path),
                           ("validationInterval", validation_interval),
                           ("suspend", suspend)):
            if value is not None:
                patch[key] = value
        if access_mode is not None:
            patch["accessMode"] = normalise_access_mode(access_mode)
        if prefixes is not None:
            old_prefixes = spec.get("prefixes") or {}
            patch["prefixes"] = ({**{k: None for k in old_prefixes}, **dict(prefixes)}
                                 if prefixes else None)
        if not patch:
            return ExternalStorageInfo.from_object(obj)
        _validate_locally({**obj, "spec": merge_patched(spec, patch)})
        if creds is not None:  # credentials first: the new spec must find them
            self._write_secret(name, creds, owner=obj)
        elif isinstance(patch.get(new_type), Mapping) and "endpoint" in patch[new_type]:
            self._rebind_secret(name, patch[new_type]["endpoint"])
        with api_errors(self._storage_not_found(name)):
            updated: dict[str, Any] = self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, EXTERNALSTORAGE_PLURAL, name,
                {"spec": patch}, _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT)
        log.info("updated ExternalStorage %s/%s", self.namespace, name)
        return ExternalStorageInfo.from_object(updated)

    def delete_external_storage(self, name: str) -> ExternalStorageInfo | None:
        """Delete a storage (and, by garbage collection, the Secret this client made).

        Returns None once it is gone, or the storage, Terminating, while something keeps
        it: a CallType still referring to it (in-use protection) or the operator's cleanup.
        """
        self._check_storage_name(name)
        with api_errors(self._storage_not_found(name)):
            self._custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, EXTERNALSTORAGE_PLURAL, name,
                body=client.V1DeleteOptions(propagation_policy="Background"),
                _request_timeout=REQUEST_TIMEOUT)
        log.info("deleted ExternalStorage %s/%s", self.namespace, name)
        try:
            return self.get_external_storage(name)
        except StorageNotFound:
            return None

    def check_external_storage(
        self,
        name: str,
        timeout: float = 60.0,
        *,
        progress: Callable[[float], None] | None = None,
    ) -> CheckResult:
        """Ask the operator to write a new ``stream-<uuid>.md`` into the storage and wait
        for the answer (seed ``checkExternalStorage``).

        Returns the object written (key or URL). Raises ``CheckFailed`` with the
        operator's message if the write failed, ``CheckTimeout`` after ``timeout``
        seconds, ``StorageNotFound``. ``progress(elapsed_seconds)`` is called every few
        seconds while waiting.
        """
        self._check_storage_name(name)
        started = time.monotonic()
        deadline = started + timeout
        obj = self._get_storage(name)
        token = _new_token((obj["metadata"].get("annotations") or {}).get(CHECK_ANNOTATION))
        patch = {"metadata": {"annotations": {CHECK_ANNOTATION: token}}}
        with api_errors(self._storage_not_found(name)):
            obj = self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, EXTERNALSTORAGE_PLURAL, name, patch,
                _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT)
        log.info("requested a check of ExternalStorage %s/%s", self.namespace, name)
        done = self._wait_for(name, lambda o: _check_answer(o, token), obj, deadline,
                              started, progress)
        if done is None:
            raise CheckTimeout(None, f"the operator did not report the check of {name!r} "
                               f"within {timeout:g}s; is the callstorage operator running?")
        last = done["status"]["lastCheck"]
        if not last.get("succeeded"):
            raise CheckFailed(last.get("reason"), str(last.get("message") or
                                                      "the check failed"))
        return CheckResult(name=name, namespace=self.namespace, object=str(last.get("object")),
                           requested_at=token, completed_at=last.get("completedAt"),
                           message=str(last.get("message") or ""), raw=dict(last))

    def _wait_for(
        self,
        name: str,
        predicate: Callable[[Mapping[str, Any]], bool],
        obj: Mapping[str, Any],
        deadline: float,
        started: float,
        progress: Callable[[float], None] | None,
    ) -> dict[str, Any] | None:
        """Watch one storage until ``predicate`` holds (returns it) or ``deadline`` passes
        (returns None). Short watch windows let the caller report progress and survive an
        expired resourceVersion by re-reading."""
        current: Mapping[str, Any] = obj
        while True:
            if predicate(current):
                return dict(current)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if progress is not None:
                progress(time.monotonic() - started)
            window = max(1, min(_WATCH_WINDOW, int(remaining + 0.999)))
            watcher = watch.Watch()
            try:
                with api_errors(self._storage_not_found(name)):
                    for event in watcher.stream(
                            self._custom.list_namespaced_custom_object, GROUP, VERSION,
                            self.namespace, EXTERNALSTORAGE_PLURAL,
                            field_selector=f"metadata.name={name}",
                            resource_version=current["metadata"].get("resourceVersion"),
                            timeout_seconds=window, _request_timeout=(5.0, window + 5.0)):
                        if event.get("type") == "DELETED":
                            raise StorageNotFound(None, f"ExternalStorage {name!r} was "
                                                  "deleted while waiting")
                        candidate = event.get("object")
                        if isinstance(candidate, Mapping) and predicate(candidate):
                            return dict(candidate)
                        if time.monotonic() >= deadline:
                            break
            except ApiError as exc:
                if exc.reason != "Expired":
                    raise
            finally:
                watcher.stop()
            current = self._get_storage(name)

    # -- call types --

    def update_call_type(
        self,
        name: str,
        external_storage: str | _Unset | None = UNSET,
        *,
        require_storage: bool = True,
    ) -> CallTypeInfo:
        """Create or update a CallType (seed ``update_call_type``).

        ``external_storage``: a storage of this namespace, or ``stream-s3`` for the
        platform storage; None (or "") removes the setting, which also means the platform
        storage. Omitted, an existing CallType keeps its setting. With ``require_storage``
        a named storage must exist (as the seed's API refuses unknown names).
        """
        storage = None if isinstance(external_storage, _Unset) else (external_storage or None)
        try:
            spec = parse_call_type({"spec": {"externalStorage": storage} if storage else {}})
        except InvalidSpecError as exc:
            raise InvalidRequest("InvalidSpec", exc.summary()) from None
        if storage and require_storage and not is_platform_reference(storage):
            self._get_storage(storage)
        for _attempt in range(_CONFLICT_RETRIES):
            try:
                obj = self._get_call_type(name)
            except CallTypeNotFound:
                body = call_type_manifest(name, self.namespace, spec)
                try:
                    with api_errors():
                        created: dict[str, Any] = self._custom.create_namespaced_custom_object(
                            GROUP, VERSION, self.namespace, CALLTYPE_PLURAL, body,
                            _request_timeout=REQUEST_TIMEOUT)
                except AlreadyExists:
                    continue  # created meanwhile: update it instead
                log.info("created CallType %s/%s", self.namespace, name)
                return CallTypeInfo.from_object(created)
            if isinstance(external_storage, _Unset):
                return CallTypeInfo.from_object(obj)
            try:  # a merge patch of the one field: other fields stay as they are
                with api_errors(self._call_type_not_found(name)):
                    updated: dict[str, Any] = self._custom.patch_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, CALLTYPE_PLURAL,
                        obj["metadata"]["name"], {"spec": {"externalStorage": storage}},
                        _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT)
            except CallTypeNotFound:
                continue  # deleted meanwhile: create it
            log.info("updated CallType %s/%s", self.namespace, name)
            return CallTypeInfo.from_object(updated)
        raise ApiError("Conflict", f"CallType {name!r} kept changing while being updated; "
                       "try again")

    def get_call_type(self, name: str) -> CallTypeInfo:
        """One CallType. Raises ``CallTypeNotFound``."""
        return CallTypeInfo.from_object(self._get_call_type(name))

    def list_call_types(self, *, all_namespaces: bool = False) -> list[CallTypeInfo]:
        """Every CallType of the application (or of all namespaces)."""
        return [CallTypeInfo.from_object(o) for o in self._list(CALLTYPE_PLURAL, all_namespaces)]

    def delete_call_type(self, name: str) -> None:
        """Delete a CallType (which releases its storage's in-use protection)."""
        obj = self._get_call_type(name)
        with api_errors(self._call_type_not_found(name)):
            self._custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, CALLTYPE_PLURAL, obj["metadata"]["name"],
                _request_timeout=REQUEST_TIMEOUT)

    # The seed's JavaScript spelling, for code ported from its examples.
    createExternalStorage = create_external_storage
    listExternalStorage = list_external_storage
    updateExternalStorage = update_external_storage
    deleteExternalStorage = delete_external_storage
    checkExternalStorage = check_external_storage
    updateCallType = update_call_type
    getCallType = get_call_type


def _owner_reference(obj: Mapping[str, Any]) -> client.V1OwnerReference:
    meta = obj["metadata"]
    # No blockOwnerDeletion: it needs permission to set finalizers on the storage, which a
    # tenant's role may lack, and nothing here needs foreground deletion.
    return client.V1OwnerReference(api_version=API_VERSION, kind="ExternalStorage",
                                   name=meta["name"], uid=meta["uid"], controller=True)


def _new_token(previous: str | None) -> str:
    """A new, unique annotation value: an RFC 3339 timestamp (microseconds)."""
    now = dt.datetime.now(dt.UTC)
    token = rfc3339_micro(now)
    return token if token != previous else rfc3339_micro(now + dt.timedelta(microseconds=1))


def _check_answer(obj: Mapping[str, Any], token: str) -> bool:
    last = (obj.get("status") or {}).get("lastCheck") or {}
    return isinstance(last, Mapping) and same_instant(last.get("requestedAt"), token)


def merge_patched(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` with a JSON merge patch (RFC 7386) applied: what the API server will
    store, so it can be validated before it is sent."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge_patched(result[key], value)
        else:
            result[key] = value
    return result


def _validate_locally(body: Mapping[str, Any]) -> None:
    """Run the operator's own model over the object, so a bad request fails before
    anything is written, with the same words the CRD would use."""
    try:
        parse_external_storage(dict(body))
    except InvalidSpecError as exc:
        raise InvalidRequest("InvalidSpec", str(exc)) from None
