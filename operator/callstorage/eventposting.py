"""Events on the operator's objects, and the quiet a namespace being deleted needs.

Nothing can be created in a namespace being deleted, and any event (even "StorageReady"
as a storage is restamped on its way out) would be refused: teardown makes no noise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from callstorage.inventory import Expiring
from callstorage.reconcile.externalstorage import Event

log = logging.getLogger(__name__)

# How long a namespace's teardown is believed: terminating never ends in Active. An Active
# answer is not kept (teardown may start any moment, and asking is rare). At most
# TERMINATING_MAX namespaces are remembered (the oldest go first).
TERMINATING_TTL, TERMINATING_MAX = 600.0, 1_000


class EventApi(Protocol):
    async def namespace_terminating(self, namespace: str) -> bool: ...

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str,
                         message: str) -> bool: ...


class EventPoster:
    """Posts events on objects, skipping namespaces being deleted."""

    def __init__(self, kube: EventApi) -> None:
        self.kube = kube
        self.terminating: Expiring[str, bool] = Expiring(TERMINATING_TTL, TERMINATING_MAX)

    async def namespace_terminating(self, namespace: str) -> bool:
        """Whether ``namespace`` is being deleted (a terminating answer is kept)."""
        if self.terminating.get(namespace):
            return True
        try:
            answer = await self.kube.namespace_terminating(namespace)
        except Exception as exc:  # unknown: behave as for a live namespace
            log.debug("could not tell whether namespace %s is terminating: %s", namespace,
                      type(exc).__name__)
            return False
        if answer:
            self.terminating.set(namespace, True)
        return answer

    async def post(self, obj: Mapping[str, Any], events: list[Event]) -> None:
        """Post ``events`` on ``obj``, unless its namespace is being deleted. Events are
        rare (transitions only), so asking costs one dry-run request per batch."""
        if not events:
            return
        namespace = str((obj.get("metadata") or {}).get("namespace", ""))
        if await self.namespace_terminating(namespace):
            log.debug("namespace %s is being deleted: %d event(s) not posted", namespace,
                      len(events))
            return
        for event in events:
            if not await self.kube.post_event(obj, event.type, event.reason, event.message):
                self.terminating.set(namespace, True)
                return
