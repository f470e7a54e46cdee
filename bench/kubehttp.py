"""A minimal asyncio client for the API server, for the benchmark driver and baseline.

Plain aiohttp over one keep-alive connection pool: the cheapest way a Python program can
talk to the API server, so the baseline measures the API server and not a client library.
Every request is counted by (verb, resource) the way ``apiserver_request_total`` labels
it, so the driver can subtract its own requests from the server's counters.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import aiohttp

GROUP, VERSION = "callstorage.io", "v1alpha1"
MERGE_PATCH = "application/merge-patch+json"


async def _no_lines() -> AsyncIterator[bytes]:
    """An answer other than 200 has no watch events to read."""
    return
    yield b""


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:300]}")
        self.status = status


class KubeHTTP:
    """Async JSON calls to one API server as one user (TLS client certificate)."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext, user_agent: str,
                 pool: int = 32) -> None:
        self._server = server
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=pool),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=60),
        )
        self.counts: Counter[tuple[str, str]] = Counter()

    async def close(self) -> None:
        await self._session.close()

    async def _call(self, method: str, verb: str, resource: str, path: str,
                    body: Any = None, content_type: str = "application/json",
                    ok_missing: bool = False) -> dict[str, Any] | None:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else None
        for attempt in range(30):
            self.counts[(verb, resource)] += 1
            async with self._session.request(method, self._server + path, data=data,
                                             headers=headers) as resp:
                text = await resp.text()
                if ok_missing and resp.status == 404:
                    return None
                # a fresh API server answers 429 while a new CRD's storage initialises
                if resp.status == 429 and attempt < 29:
                    await asyncio.sleep(1.0)
                    continue
                if resp.status >= 300:
                    raise ApiError(resp.status, text)
                result: dict[str, Any] = json.loads(text) if text else {}
                return result
        raise AssertionError("unreachable")

    # --- callstorage objects ---------------------------------------------------------------
    @staticmethod
    def _custom_path(namespace: str, plural: str, name: str = "") -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}" if name else path

    async def create(self, namespace: str, plural: str, body: Mapping[str, Any]
                     ) -> dict[str, Any]:
        result = await self._call("POST", "POST", plural,
                                  self._custom_path(namespace, plural), dict(body))
        assert result is not None
        return result

    async def patch_status(self, namespace: str, plural: str, name: str,
                           status: Mapping[str, Any]) -> dict[str, Any]:
        result = await self._call("PATCH", "PATCH", f"{plural}/status",
                                  self._custom_path(namespace, plural, name) + "/status",
                                  {"status": dict(status)}, MERGE_PATCH)
        assert result is not None
        return result

    async def patch(self, namespace: str, plural: str, name: str,
                    body: Mapping[str, Any]) -> dict[str, Any] | None:
        """A merge patch of the object (None: it is gone)."""
        return await self._call("PATCH", "PATCH", plural,
                                self._custom_path(namespace, plural, name), dict(body),
                                MERGE_PATCH, ok_missing=True)

    async def delete(self, namespace: str, plural: str, name: str) -> None:
        await self._call("DELETE", "DELETE", plural,
                         self._custom_path(namespace, plural, name), ok_missing=True)

    async def list_path(self, path: str, resource: str) -> dict[str, Any]:
        """A LIST of any path (e.g. every namespace's objects of a kind)."""
        result = await self._call("GET", "LIST", resource, path)
        assert result is not None
        return result

    async def list(self, namespace: str, plural: str) -> dict[str, Any]:
        result = await self._call("GET", "LIST", plural, self._custom_path(namespace, plural))
        assert result is not None
        return result

    async def watch(self, namespace: str, plural: str, resource_version: str,
                    on_event: Callable[[str, dict[str, Any]], None],
                    on_relist: Callable[[Sequence[dict[str, Any]]], None] | None = None) -> None:
        """Call ``on_event(type, object)`` for every change until cancelled.

        A watch the server ends, or a dropped connection, resumes from the last version
        seen. 410 Gone (that version left the server's window: it drops a watcher that
        falls behind, as this single-threaded driver may under load) is an ApiError
        unless ``on_relist`` is given: then it gets a fresh LIST's items (to replace
        what it holds) and the watch goes on from that LIST.
        """
        rv = resource_version
        path = self._custom_path(namespace, plural)
        while True:
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                      "timeoutSeconds": "3600"}
            code = 200
            obj: dict[str, Any] = {}  # the ERROR event's status, if one ends the watch
            try:
                async with self._session.get(
                        self._server + path, params=params,
                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                    code = resp.status
                    async for line in resp.content if code == 200 else _no_lines():
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            code = int(obj.get("code") or 0)
                            break
                        rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                        if event.get("type") != "BOOKMARK":
                            on_event(str(event.get("type")), obj)
                    if code != 200 and (code != 410 or on_relist is None):
                        raise ApiError(code, await resp.text() if code == resp.status
                                       else str(obj))
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                await asyncio.sleep(0.5)  # resume from rv
            finally:
                self.counts[("WATCH", plural)] += 1  # the server counts it when it ends
            if code == 410 and on_relist is not None:
                listed = await self.list(namespace, plural)
                on_relist(listed.get("items") or [])
                rv = str(listed["metadata"]["resourceVersion"])

    # --- core objects -------------------------------------------------------------------
    async def create_namespace(self, name: str) -> None:
        await self._call("POST", "POST", "namespaces", "/api/v1/namespaces",
                         {"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": name}})

    async def delete_namespace(self, name: str, within: float = 300) -> None:
        """Delete a namespace and wait until it is gone (its objects with it)."""
        await self._call("DELETE", "DELETE", "namespaces", f"/api/v1/namespaces/{name}",
                         ok_missing=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if await self._call("GET", "GET", "namespaces", f"/api/v1/namespaces/{name}",
                                ok_missing=True) is None:
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"namespace {name} still exists after {within:.0f}s")

    async def put_secret(self, namespace: str, name: str, data: Mapping[str, str],
                         replace: bool = False) -> str:
        """Create or replace an Opaque Secret; returns its new resourceVersion."""
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace},
                "stringData": dict(data)}
        base = f"/api/v1/namespaces/{namespace}/secrets"
        if replace:
            result = await self._call("PUT", "PUT", "secrets", f"{base}/{name}", body)
        else:
            result = await self._call("POST", "POST", "secrets", base, body)
        assert result is not None
        return str(result["metadata"]["resourceVersion"])
