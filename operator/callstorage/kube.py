"""The operator's writes and point reads against the Kubernetes API.

kopf does the watching; these few calls go through the official ``kubernetes`` client,
which blocks, so each runs in a thread pool of its own and never on kopf's event loop.
Every call has a request timeout. Nothing here logs a Secret's data.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from callstorage.api import EXTERNALSTORAGE_PLURAL, GROUP, VERSION
from callstorage.inventory import CachedSecret

log = logging.getLogger(__name__)
T = TypeVar("T")
REQUEST_TIMEOUT: Final = (5.0, 30.0)  # (connect, read) seconds of an API call
# The operator's point calls (a write, a GET) answer in milliseconds; when a pooled
# connection went silent (a frozen middlebox) such a call fails after 10 s, not 30, and
# is retried on a fresh connection. LISTs keep REQUEST_TIMEOUT: a big cluster is slower.
POINT_TIMEOUT: Final = (5.0, 10.0)
COMPONENT = "callstorage-operator"
MERGE_PATCH: Final = "application/merge-patch+json"
METADATA_LIST: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


class ObjectGone(Exception):
    """A write answered 404: the object no longer exists (client-go's reading too).

    Never retried: the controller forgets the object as a DELETED event would, and
    resyncs, since a missed deletion rarely comes alone (a watch relist lost it).
    """

    def __init__(self, plural: str, namespace: str, name: str) -> None:
        super().__init__(f"{plural} {namespace}/{name} is gone")
        self.plural, self.namespace, self.name = plural, namespace, name


class KubeconfigError(Exception):
    """No usable kubeconfig or in-cluster configuration; ``reason`` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def kubeconfig_present() -> bool:
    """Whether ``KUBECONFIG`` names an existing file, or ``~/.kube/config`` exists."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return any(Path(p).expanduser().exists() for p in env.split(os.pathsep) if p)
    return Path("~/.kube/config").expanduser().exists()


def load_api_client(
    pool_size: int | None = None,
    *,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
) -> client.ApiClient:
    """An ApiClient in kubectl's order: ``kubeconfig``, else ``KUBECONFIG``, else
    ``~/.kube/config``, else the in-cluster service account. The one loader of the
    operator, the CLI and the Python client. Raises ``KubeconfigError``."""
    cfg = client.Configuration()
    try:
        if kubeconfig is not None or kubeconfig_present():
            config.load_kube_config(
                config_file=os.fspath(kubeconfig) if kubeconfig is not None else None,
                context=context, client_configuration=cfg, persist_config=False)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
        else:
            raise KubeconfigError("NoKubeconfig", "no kubeconfig found: pass --kubeconfig, "
                                  "set KUBECONFIG, or create ~/.kube/config")
    except config.ConfigException as exc:
        raise KubeconfigError("InvalidKubeconfig", f"cannot load the kubeconfig: {exc}") from None
    except OSError as exc:
        raise KubeconfigError("InvalidKubeconfig",
                              f"cannot read the kubeconfig: {exc.strerror or exc}") from None
    if pool_size is not None:
        cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


class Kube:
    """Thin async facade over the blocking client."""

    def __init__(self, api_client: client.ApiClient, workers: int) -> None:
        self._api = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self.requests = 0  # writes and reads issued, for benchmarks

    async def _run(self, fn: Callable[[], T]) -> T:
        self.requests += 1
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """Drop queued calls and wait for those already sent: a leader hands its Lease
        over only after its last write has landed (no write from it after a successor's)."""
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    async def patch_status(self, plural: str, namespace: str, name: str,
                           status_patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource; the object as written.

        Raises ``ObjectGone`` on 404.
        """
        def call() -> dict[str, Any]:
            try:
                result: dict[str, Any] = self._custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, plural, name, {"status": dict(status_patch)},
                    _content_type=MERGE_PATCH, _request_timeout=POINT_TIMEOUT)
                return result
            except ApiException as exc:
                if exc.status == 404:
                    raise ObjectGone(plural, namespace, name) from None
                raise
        return await self._run(call)

    async def set_finalizers(self, namespace: str, name: str, finalizers: list[str],
                             resource_version: str) -> bool:
        """Replace ``metadata.finalizers`` if the object is still at ``resource_version``.

        A merge patch replaces the list whole; the resourceVersion precondition makes it
        fail (409) instead of dropping a finalizer someone else added meanwhile.
        Returns False on a conflict (the caller retries on fresh state); raises
        ``ObjectGone`` on 404, which no retry can fix.
        """
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}

        def call() -> bool:
            try:
                self._custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, EXTERNALSTORAGE_PLURAL, name, body,
                    _content_type=MERGE_PATCH, _request_timeout=POINT_TIMEOUT)
                return True
            except ApiException as exc:
                if exc.status == 404:
                    raise ObjectGone(EXTERNALSTORAGE_PLURAL, namespace, name) from None
                if exc.status == 409:
                    return False
                raise
        return await self._run(call)

    async def read_secret(self, namespace: str, name: str, label_selector: str = ""
                          ) -> CachedSecret | None:
        """One Secret of ``namespace``, decoded; None when it does not exist, or does not
        match ``label_selector`` (then it is a LIST of that one name, filtered by the API
        server: the selector means what it means on the watch, with no parser of ours)."""
        def call() -> CachedSecret | None:
            if label_selector:
                found = self._core.list_namespaced_secret(
                    namespace, field_selector=f"metadata.name={name}",
                    label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT).items
                if not found:
                    return None
                return decode_secret(found[0].metadata.resource_version, found[0].data)
            try:
                secret = self._core.read_namespaced_secret(
                    name, namespace, _request_timeout=POINT_TIMEOUT)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return decode_secret(secret.metadata.resource_version, secret.data)
        return await self._run(call)

    async def list_objects(self, plural: str, namespaces: list[str]) -> list[dict[str, Any]]:
        """Every object of a kind (in the watched namespaces; [] = cluster-wide)."""
        items, _ = await self.list_snapshot(plural, namespaces)
        return items

    async def list_snapshot(self, plural: str, namespaces: list[str]) -> \
            tuple[list[dict[str, Any]], str | None]:
        """Every object of a kind, and the list's resourceVersion (the oldest of the
        per-namespace lists): what existed at that version is in the list."""
        def call() -> tuple[list[dict[str, Any]], str | None]:
            if not namespaces:
                result = self._custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, _request_timeout=REQUEST_TIMEOUT)
                return list(result.get("items", [])), \
                    (result.get("metadata") or {}).get("resourceVersion")
            items: list[dict[str, Any]] = []
            versions: list[int] = []
            for ns in namespaces:
                result = self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, plural, _request_timeout=REQUEST_TIMEOUT)
                items.extend(result.get("items", []))
                rv = str((result.get("metadata") or {}).get("resourceVersion", ""))
                if rv.isdigit():
                    versions.append(int(rv))
            return items, str(min(versions)) if versions else None
        return await self._run(call)

    async def list_secret_versions(self, namespace: str, label_selector: str = "") -> \
            tuple[dict[str, str], str | None]:
        """Name -> resourceVersion of every Secret in ``namespace`` (matching
        ``label_selector``, as the watch does), and the list's resourceVersion. Metadata
        only (PartialObjectMetadataList): no Secret data for a check that needs none."""
        def call() -> tuple[dict[str, str], str | None]:
            response = self._api.call_api(
                f"/api/v1/namespaces/{namespace}/secrets", "GET",
                query_params=[("labelSelector", label_selector)] if label_selector else [],
                header_params={"Accept": METADATA_LIST}, auth_settings=["BearerToken"],
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
            try:
                body = json.loads(response.data)
            finally:
                response.release_conn()
            versions = {str(item["metadata"]["name"]):
                        str(item["metadata"].get("resourceVersion", ""))
                        for item in body.get("items") or []}
            return versions, (body.get("metadata") or {}).get("resourceVersion")
        return await self._run(call)

    async def namespace_terminating(self, namespace: str) -> bool:
        """Whether ``namespace`` is being deleted (or gone).

        Asked without any permission on Namespaces: a dry-run Event create, which the API
        server's NamespaceLifecycle admission refuses (403) in a terminating namespace and
        otherwise accepts without storing anything. An audit log shows that 403 with the
        authorization decision "allow": admission said no, not RBAC.
        """
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": "callstorage-probe.", "namespace": namespace},
            # namespaced like the Event: a cluster-scoped involvedObject is valid only in
            # "default", and an invalid probe would answer 422 in every live namespace
            "involvedObject": {"apiVersion": "v1", "kind": "Namespace", "name": namespace,
                               "namespace": namespace},
            "type": "Normal", "reason": "NamespaceProbe", "message": "dry run",
            "source": {"component": COMPONENT},
        }

        def call() -> bool:
            try:
                response = self._core.create_namespaced_event(
                    namespace, event, dry_run="All", _request_timeout=POINT_TIMEOUT,
                    _preload_content=False)
                response.read()
                response.release_conn()
                return False
            except ApiException as exc:
                return exc.status == 404 or _terminating(exc)
        return await self._run(call)

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str,
                         message: str) -> bool:
        """Record a core/v1 Event on ``obj``; failures are logged, never raised. False
        when the namespace is being deleted (nothing can be created there)."""
        meta = obj.get("metadata") or {}
        now = dt.datetime.now(dt.UTC)
        # A plain dict, and the answer left unparsed: the client's model classes deep-copy
        # its Configuration per instance, which made events the dearest call we make.
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.",
                         "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                "name": meta.get("name"), "namespace": meta.get("namespace"),
                "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
            "type": type_, "reason": reason, "message": message[:1024],
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT, "reportingInstance": COMPONENT,
        }

        def call() -> bool:
            try:
                response = self._core.create_namespaced_event(
                    meta.get("namespace"), event, _request_timeout=POINT_TIMEOUT,
                    _preload_content=False)
                response.read()
                response.release_conn()
            except ApiException as exc:
                if _terminating(exc):
                    return False
                log.warning("could not post event %s on %s/%s: HTTP %s", reason,
                            meta.get("namespace"), meta.get("name"), exc.status)
            return True
        return await self._run(call)


def _terminating(exc: ApiException) -> bool:
    """A 403 from NamespaceLifecycle admission: the namespace is being deleted."""
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) \
        else str(exc.body or "")
    return exc.status == 403 and "being terminated" in body


def decode_secret(resource_version: str, data: Mapping[str, str] | None) -> CachedSecret:
    """A Secret's base64 ``data`` decoded into bytes (invalid entries are skipped)."""
    decoded: dict[str, bytes] = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value or "", validate=True)
        except ValueError:
            continue
    return CachedSecret(resource_version=resource_version, data=decoded)
