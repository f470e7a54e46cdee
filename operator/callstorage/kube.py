"""The operator's writes and point reads against the Kubernetes API, and the kubeconfig
loader of the CLI and the Python client.

kopf does the watching; the operator's few calls of its own go through
``callstorage.apiserver`` (aiohttp, asynchronous: never blocking kopf's event loop), so
the operator process never loads the ``kubernetes`` package (~65 MB). Every call has a
request timeout. Nothing here logs a Secret's data.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from callstorage.api import EXTERNALSTORAGE_PLURAL, GROUP, VERSION
from callstorage.api.timestamps import rfc3339
from callstorage.apiserver import CONNECT_TIMEOUT, READ_TIMEOUT, ApiError, ApiServer
from callstorage.fencing import Fence
from callstorage.inventory import CachedSecret, compact

if TYPE_CHECKING:
    from kubernetes import client

log = logging.getLogger(__name__)
REQUEST_TIMEOUT: Final = (CONNECT_TIMEOUT, READ_TIMEOUT)  # (connect, read) seconds
# The operator's point calls (a write, a GET) answer in milliseconds; when a pooled
# connection went silent (a frozen middlebox) such a call fails after 10 s, not 30, and
# is retried on a fresh connection. LISTs keep REQUEST_TIMEOUT: a big cluster is slower.
POINT_TIMEOUT: Final = (CONNECT_TIMEOUT, 10.0)
LIST_PAGE: Final = 500  # objects per page of a LIST
COMPONENT = "callstorage-operator"
MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
METADATA_LIST: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


class ObjectGone(Exception):
    """A write answered 404, or found another object (``uid``) under the name: the object
    written to no longer exists (client-go's reading too).

    Never retried: the controller forgets the object as a DELETED event would, and
    resyncs, since a missed deletion rarely comes alone (a watch relist lost it).
    """

    def __init__(self, plural: str, namespace: str, name: str, uid: str = "") -> None:
        super().__init__(f"{plural} {namespace}/{name} is gone")
        self.plural, self.namespace, self.name, self.uid = plural, namespace, name, uid


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
    ``~/.kube/config``, else the in-cluster service account. The loader of the CLI and
    the Python client (the operator's is ``callstorage.apiserver``). Raises
    ``KubeconfigError``."""
    from kubernetes import client, config

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
    """The operator's own API calls (asynchronous, on kopf's event loop). Writes pass the
    ``fence`` (``callstorage.fencing``): refused, or cut off, once this replica may no
    longer lead."""

    def __init__(self, api: ApiServer, fence: Fence | None = None) -> None:
        self._api = api
        self.fence = fence if fence is not None else Fence()
        self.requests = 0  # writes and reads issued, for benchmarks

    def close(self) -> None:
        """Nothing to drop synchronously: ``aclose`` closes the connection pool."""

    async def aclose(self) -> None:
        """Close the connection pool once the writes in flight have ended: the last write
        has landed (or was cut off) before a leader hands its Lease over."""
        await self.fence.drain()
        await self._api.close()

    async def _call(self, method: str, path: str, body: Any = None,
                    content_type: str = "application/json",
                    params: Mapping[str, str] | None = None,
                    parse: bool = True, read_timeout: float = READ_TIMEOUT,
                    accept: str | None = None) -> dict[str, Any]:
        self.requests += 1
        return await self._api.request(method, path, body=body, content_type=content_type,
                                       params=params, parse=parse,
                                       read_timeout=read_timeout, accept=accept)

    async def _write(self, method: str, path: str, body: Any, content_type: str,
                     parse: bool = True, params: Mapping[str, str] | None = None
                     ) -> dict[str, Any]:
        """A write of the leader: through the fence, answered within POINT_TIMEOUT."""
        return await self.fence.write(lambda left: self._call(
            method, path, body, content_type, params=params, parse=parse,
            read_timeout=min(POINT_TIMEOUT[1], left)))

    @staticmethod
    def _path(namespace: str, plural: str, name: str = "") -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{plural}"
        return f"{path}/{quote(name)}" if name else path

    async def write_status(self, plural: str, namespace: str, name: str, uid: str,
                           status: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the status subresource of the object ``uid``; the object as written.

        A JSON patch whose first operation tests ``metadata.uid``: the status lands on
        that very object or nowhere, never on another one created under the same name
        meanwhile. (A merge patch naming ``metadata.uid`` would not do: the status
        subresource keeps the stored metadata and ignores the uid unchecked.)
        Raises ``ObjectGone`` when the object is gone or another has its name.
        """
        path = self._path(namespace, plural, name)
        ops: list[dict[str, Any]] = [{"op": "add", "path": "/status", "value": dict(status)}]
        if uid:
            ops.insert(0, {"op": "test", "path": "/metadata/uid", "value": uid})
        try:
            return await self._write("PATCH", path + "/status", ops, JSON_PATCH)
        except ApiError as exc:
            if exc.status == 404 or (exc.status == 422 and uid and
                                     await self._replaced(path, uid)):
                raise ObjectGone(plural, namespace, name, uid) from None
            raise

    async def _replaced(self, path: str, uid: str) -> bool:
        """Whether the object at ``path`` is gone or another than ``uid``: a failed test
        operation answers 422 Invalid, as an invalid status does; one GET tells which."""
        try:
            meta = (await self._call("GET", path, read_timeout=POINT_TIMEOUT[1])
                    ).get("metadata") or {}
        except ApiError as exc:
            return exc.status == 404
        return meta.get("uid") != uid

    async def set_finalizers(self, namespace: str, name: str, finalizers: list[str],
                             resource_version: str) -> bool:
        """Replace ``metadata.finalizers`` if the object is still at ``resource_version``.

        A merge patch replaces the list whole; the resourceVersion precondition makes it
        fail (409) instead of dropping a finalizer someone else added meanwhile.
        Returns False on a conflict (the caller retries on fresh state); raises
        ``ObjectGone`` on 404, which no retry can fix.
        """
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        try:
            await self._write("PATCH", self._path(namespace, EXTERNALSTORAGE_PLURAL, name),
                              body, MERGE_PATCH, parse=False)
            return True
        except ApiError as exc:
            if exc.status == 404:
                raise ObjectGone(EXTERNALSTORAGE_PLURAL, namespace, name) from None
            if exc.status == 409:
                return False
            raise

    async def read_secret(self, namespace: str, name: str, label_selector: str = ""
                          ) -> CachedSecret | None:
        """One Secret of ``namespace``, decoded; None when it does not exist, or does not
        match ``label_selector`` (then it is a LIST of that one name, filtered by the API
        server: the selector means what it means on the watch, with no parser of ours)."""
        secrets = f"/api/v1/namespaces/{quote(namespace)}/secrets"
        if label_selector:
            found = (await self._call(
                "GET", secrets, params={"fieldSelector": f"metadata.name={name}",
                                        "labelSelector": label_selector})).get("items") or []
            if not found:
                return None
            return decode_secret(str((found[0].get("metadata") or {}).get("resourceVersion", "")),
                                 found[0].get("data"))
        try:
            secret = await self._call("GET", f"{secrets}/{quote(name)}",
                                      read_timeout=POINT_TIMEOUT[1])
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return decode_secret(str((secret.get("metadata") or {}).get("resourceVersion", "")),
                             secret.get("data"))

    async def list_snapshot(self, plural: str, namespaces: list[str]) -> \
            tuple[list[dict[str, Any]], str | None]:
        """Every object of a kind (compacted: ``inventory.compact``), and the list's
        resourceVersion (the oldest of the per-namespace lists): what existed at that
        version is in the list."""
        if not namespaces:
            return await self._list_pages(f"/apis/{GROUP}/{VERSION}/{plural}")
        items: list[dict[str, Any]] = []
        versions: list[int] = []
        for ns in namespaces:
            page_items, rv = await self._list_pages(self._path(ns, plural))
            items.extend(page_items)
            if rv is not None and rv.isdigit():
                versions.append(int(rv))
        return items, str(min(versions)) if versions else None

    async def _list_pages(self, path: str) -> tuple[list[dict[str, Any]], str | None]:
        """A LIST in pages of LIST_PAGE (one consistent snapshot, the first page's
        resourceVersion): 10,000 storages never sit in memory as one answer."""
        items: list[dict[str, Any]] = []
        params = {"limit": str(LIST_PAGE)}
        version: str | None = None
        while True:
            result = await self._call("GET", path, params=params)
            meta = result.get("metadata") or {}
            if version is None:
                version = meta.get("resourceVersion")
            items.extend(compact(o) for o in result.get("items") or [])
            if not meta.get("continue"):
                return items, version
            params = {"limit": str(LIST_PAGE), "continue": str(meta["continue"])}

    async def list_secret_versions(self, namespace: str, label_selector: str = "") -> \
            tuple[dict[str, str], str | None]:
        """Name -> resourceVersion of every Secret in ``namespace`` (matching
        ``label_selector``, as the watch does), and the list's resourceVersion. Metadata
        only (PartialObjectMetadataList): no Secret data for a check that needs none."""
        body = await self._call("GET", f"/api/v1/namespaces/{quote(namespace)}/secrets",
                                params={"labelSelector": label_selector}
                                if label_selector else None, accept=METADATA_LIST)
        versions = {str(item["metadata"]["name"]):
                    str(item["metadata"].get("resourceVersion", ""))
                    for item in body.get("items") or []}
        return versions, (body.get("metadata") or {}).get("resourceVersion")

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
        try:
            # fenced like the Event it precedes: a replica that no longer leads asks nothing
            await self._write("POST", f"/api/v1/namespaces/{quote(namespace)}/events", event,
                              "application/json", parse=False, params={"dryRun": "All"})
            return False
        except ApiError as exc:
            return exc.status == 404 or _terminating(exc)

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str,
                         message: str) -> bool:
        """Record a core/v1 Event on ``obj``; failures are logged, never raised. False
        when the namespace is being deleted (nothing can be created there)."""
        meta = obj.get("metadata") or {}
        now = rfc3339()
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
        try:
            await self._write("POST", f"/api/v1/namespaces/{quote(str(meta.get('namespace')))}"
                                      "/events", event, "application/json", parse=False)
        except ApiError as exc:
            if _terminating(exc):
                return False
            log.warning("could not post event %s on %s/%s: HTTP %s", reason,
                        meta.get("namespace"), meta.get("name"), exc.status)
        return True


def _terminating(exc: ApiError) -> bool:
    """A 403 from NamespaceLifecycle admission: the namespace is being deleted."""
    return exc.status == 403 and "being terminated" in exc.body


def decode_secret(resource_version: str, data: Mapping[str, str] | None) -> CachedSecret:
    """A Secret's base64 ``data`` decoded into bytes (invalid entries are skipped)."""
    decoded: dict[str, bytes] = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value or "", validate=True)
        except ValueError:
            continue
    return CachedSecret(resource_version=resource_version, data=decoded)
