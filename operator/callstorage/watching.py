"""The operator's watches of ExternalStorages, CallTypes and Secrets.

kopf ran them before: per event it fed a per-object worker task, built a body view, a
logger and a handler call, about 1 ms of CPU per event (a fifth of the operator's CPU at
1,000 storages), and at start it listed every object a second time after the
controller's own LIST and replayed each one. Here an event is one JSON parse and one call
into the controller, and the ExternalStorage and CallType watches start from the
resourceVersion of the controller's start-up LIST.

The behaviour is the one chosen for kopf before (docs/install.md "Watches"): LIST in pages,
then WATCH from the list's resourceVersion with bookmarks. A watch request lasts at most
WATCH_SERVER_TIMEOUT on the server (WATCH_CLIENT_TIMEOUT client-side); a stream that
delivers no event and no bookmark for WATCH_INACTIVITY seconds is taken for frozen (a stuck
proxy, a half-dead API server) and reconnected at once; other reconnects wait
WATCH_RECONNECT_BACKOFF; all resume from the last resourceVersion; only 410 Gone relists
(the controller then resyncs, as a relist replays live objects only). A failing LIST or
WATCH request (API server down or restarting) is retried after WATCH_ERROR_BACKOFFS, never
more than 5 s apart, logged at WARNING.
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

WATCH_INACTIVITY: Final = 20.0  # kopf's default was 70 s (64.7 s measured before)
WATCH_SERVER_TIMEOUT: Final = 60  # the API server ends each watch request after this
WATCH_CLIENT_TIMEOUT: Final = 90.0  # hard cap on one watch request, above the server's
WATCH_RECONNECT_BACKOFF: Final = 1.0  # pause between watch requests
# Retries of a failing watch or LIST request: never more than 5 s apart, so watches resume
# within 5 s of the API server's return; three kinds at one request per 5 s is no storm.
WATCH_ERROR_BACKOFFS: Final = (1.0, 1.0, 2.0, 3.0, 5.0)
LIST_PAGE: Final = 500  # objects per page: 10,000 storages never sit in memory at once

Handler = Callable[[str | None, Mapping[str, Any]], None]


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
    with event type None, then ADDED / MODIFIED / DELETED as they come."""

    def __init__(self, api: ApiServer, kind: Kind, namespace: str | None, handler: Handler,
                 *, label_selector: str = "", start_version: str | None = None) -> None:
        self.api = api
        self.kind = kind
        self.namespace = namespace
        self.handler = handler
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
        """Page by page, each object handed on as it comes (type None)."""
        params = {**self._params(), "limit": str(LIST_PAGE)}
        version: str | None = None
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
            if not meta.get("continue"):
                break
            params = {**self._params(), "limit": str(LIST_PAGE),
                      "continue": str(meta["continue"])}
        self.version = version

    async def _watch(self) -> bool:
        """One watch request, until the server ends it (False) or it falls silent for
        WATCH_INACTIVITY seconds (True)."""
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
