"""The operator's watches of ExternalStorages, CallTypes and Secrets.

kopf ran them before: per event it fed a per-object worker task, built a body view, a
logger and a handler call, about 1 ms of CPU per event (a fifth of the operator's CPU at
1,000 storages), and at start it listed every object a second time after the
controller's own LIST and replayed each one. Here an event is one JSON parse and one call
into the controller, and the ExternalStorage and CallType watches start from the
resourceVersion of the controller's start-up LIST.

The behaviour is the one chosen for kopf before (docs/install.md "Watches"): LIST in pages,
then WATCH from the list's resourceVersion with bookmarks; a failing LIST or WATCH request
(API server down or restarting) is retried after WATCH_ERROR_BACKOFFS, never more than 5 s
apart, logged at WARNING.

Timing, and why a quiet watch never relists. The API server keeps a window of recent
events per resource (its watch cache: the last ~75 s of them; measured, a version 76 s
old still resumed, one 87 s old got 410 Gone); a watch resuming from a resourceVersion
older than that gets 410. A watch of one namespace (or one label selection) may see no
event for hours while other namespaces' writes move that window on; it stays resumable
only thanks to bookmarks, events carrying nothing but the current resourceVersion, which
we keep like any other. kube-apiserver (v1.34, measured:
tests/integration/test_watch_quiet.py) sends a watch its first bookmark about 2 s before
the watch's own deadline (``timeoutSeconds``), then one a minute. So each request asks for
WATCH_SERVER_TIMEOUT seconds: every request ends with a bookmark and the next resumes from
it. The frozen-stream threshold WATCH_INACTIVITY is that deadline plus a margin, above the
longest silence of a healthy stream (request to first bookmark, ~28 s); a stream silent
longer (a stuck proxy, a half-dead API server) is reconnected at once, other reconnects
wait WATCH_RECONNECT_BACKOFF; all resume from the last resourceVersion.

Only 410 Gone relists (a resourceVersion really lost: the API server restarted, or was
away longer than its window). A relist is one LIST of the watch's own kind and scope: the
objects it returns are handed on (type None) and then ``relisted`` gets the keys listed
and the list's resourceVersion, from which the consumer forgets what vanished meanwhile
(``Controller.on_relisted``); see ``Watch._list`` for why that needs no wider resync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from callstorage import metrics
from callstorage.apiserver import ApiError, ApiServer

log = logging.getLogger(__name__)

# The API server ends each watch request after this (``timeoutSeconds``), sending a
# bookmark ~2 s before: 30 s keeps a frozen stream's detection near client-go's (its
# HTTP/2 health check: ~45 s) at one request per 30 s per watch.
WATCH_SERVER_TIMEOUT: Final = 30
# Silence (no event, no bookmark, no end) after which a stream is taken for frozen: the
# longest healthy silence (request to its first bookmark) plus a margin for a slow server.
WATCH_INACTIVITY: Final = WATCH_SERVER_TIMEOUT + 5.0
# Hard cap on one watch request (a stream that trickles but never ends), above the rest.
WATCH_CLIENT_TIMEOUT: Final = WATCH_SERVER_TIMEOUT + 10.0
WATCH_RECONNECT_BACKOFF: Final = 1.0  # pause between watch requests
# Retries of a failing watch or LIST request: never more than 5 s apart, so watches resume
# within 5 s of the API server's return; three kinds at one request per 5 s is no storm.
WATCH_ERROR_BACKOFFS: Final = (1.0, 1.0, 2.0, 3.0, 5.0)
LIST_PAGE: Final = 500  # objects per page: 10,000 storages never sit in memory at once

Handler = Callable[[str | None, Mapping[str, Any]], None]
# (namespace, name) of every object a LIST returned, and the list's resourceVersion
Relisted = Callable[[set[tuple[str, str]], str | None], None]


class _Gone(Exception):
    """410 Gone: the resourceVersion is too old to resume from; LIST again."""


@dataclass(frozen=True)
class Kind:
    what: str  # for logs and the errors metric: "ExternalStorage", "CallType", "Secret"
    prefix: str  # "/apis/callstorage.io/v1alpha1" or "/api/v1"
    plural: str

    @property
    def api_version(self) -> str:
        return self.prefix.removeprefix("/apis/").removeprefix("/api/")

    def path(self, namespace: str | None) -> str:
        if namespace is None:
            return f"{self.prefix}/{self.plural}"
        return f"{self.prefix}/namespaces/{quote(namespace)}/{self.plural}"


class Watch:
    """One kind in one namespace (or cluster-wide), fed to ``handler``: listed objects
    with event type None, then ADDED / MODIFIED / DELETED as they come; after each LIST,
    ``relisted`` with the keys it returned."""

    def __init__(self, api: ApiServer, kind: Kind, namespace: str | None, handler: Handler,
                 *, label_selector: str = "", start_version: str | None = None,
                 relisted: Relisted | None = None) -> None:
        self.api = api
        self.kind = kind
        self.namespace = namespace
        self.handler = handler
        self.relisted = relisted
        self.label_selector = label_selector
        self.version = start_version  # None: LIST first
        where = f"in {namespace}" if namespace else "cluster-wide"
        self.name = f"{kind.what}s {where}"

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if self.version is None:
                    await self._list()
                frozen = await self._watch()
                failures = 0
                # a frozen stream has waited WATCH_INACTIVITY already: reconnect at once
                delay = 0.0 if frozen else WATCH_RECONNECT_BACKOFF
            except _Gone:
                log.debug("watch of %s: resourceVersion gone, listing again", self.name)
                self.version = None
                delay = WATCH_RECONNECT_BACKOFF
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = WATCH_ERROR_BACKOFFS[min(failures, len(WATCH_ERROR_BACKOFFS) - 1)]
                failures += 1
                log.warning("watch of %s failed (%s); retrying in %.0fs", self.name,
                            _describe(exc), delay)
            await asyncio.sleep(delay)

    def _params(self) -> dict[str, str]:
        return {"labelSelector": self.label_selector} if self.label_selector else {}

    async def _list(self) -> None:
        """Page by page, each object handed on as it comes (type None), then the keys
        listed to ``relisted``.

        That is all a relist needs, no resync of other kinds or namespaces: the LIST is
        every live object of this watch's kind, scope and selector at its
        resourceVersion, so an object the consumer holds in that scope (no newer than the
        list) and the list lacks was deleted, or left the selection, while the watch was
        away; the objects listed replay every change it missed. Other watches lost
        nothing: each resumes from its own resourceVersion. The consumer's periodic
        resync (``resyncInterval``) stays the net for anything else.
        """
        params = {**self._params(), "limit": str(LIST_PAGE)}
        version: str | None = None
        keys: set[tuple[str, str]] = set()
        while True:
            try:
                page = await self.api.request("GET", self.kind.path(self.namespace),
                                              params=params)
            except ApiError as exc:
                if exc.status == 410:  # the continue token expired: start over
                    raise _Gone from None
                raise
            meta = page.get("metadata") or {}
            if version is None:
                version = str(meta.get("resourceVersion") or "") or None
            for obj in page.get("items") or []:
                if "kind" not in obj:  # list items may lack it; Events posted on them need it
                    obj = {"apiVersion": self.kind.api_version, "kind": self.kind.what, **obj}
                self._hand_on(None, obj)
                item = obj.get("metadata") or {}
                keys.add((str(item.get("namespace") or ""), str(item.get("name") or "")))
            if not meta.get("continue"):
                break
            params = {**self._params(), "limit": str(LIST_PAGE),
                      "continue": str(meta["continue"])}
        self.version = version
        if self.relisted is not None:
            try:
                self.relisted(keys, version)
            except Exception:  # as a handler's: the watch goes on
                metrics.record_reconcile_error(self.kind.what)
                log.exception("handling the relist of %s failed", self.name)

    async def _watch(self) -> bool:
        """One watch request, until the server ends it (False) or it falls silent for
        WATCH_INACTIVITY seconds (True). Every event's resourceVersion is kept, a
        bookmark's too: the next request resumes from it."""
        params = {**self._params(), "watch": "true", "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(WATCH_SERVER_TIMEOUT)}
        if self.version is not None:
            params["resourceVersion"] = self.version
        try:
            async for event in self.api.stream(self.kind.path(self.namespace), params,
                                               inactivity=WATCH_INACTIVITY,
                                               total=WATCH_CLIENT_TIMEOUT):
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("reason") or ""),
                                   str(obj.get("message") or ""))
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._hand_on(kind, obj)
                if version:
                    self.version = str(version)
        except ApiError as exc:
            if exc.status == 410:
                raise _Gone from None
            raise
        except TimeoutError:
            # nothing for WATCH_INACTIVITY seconds (or the client cap): reconnect, resuming
            log.debug("watch of %s: no event or bookmark for %.0fs, reconnecting", self.name,
                      WATCH_INACTIVITY)
            return True
        return False

    def _hand_on(self, kind: str | None, obj: Mapping[str, Any]) -> None:
        try:
            self.handler(kind, obj)
        except Exception:  # one bad object must not end the watch of all the others
            metrics.record_reconcile_error(self.kind.what)
            meta = obj.get("metadata") or {}
            log.exception("handling a %s event of %s %s/%s failed", kind or "listed",
                          self.kind.what, meta.get("namespace"), meta.get("name"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status} {exc.reason}".strip()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
