"""Thin kopf handlers: they only feed watch events into the controller.

Secrets are watched with ``on.event`` only: a change-detecting handler (``on.create`` /
``on.update``) would make kopf store the last-handled state, Secret data included, in an
annotation on the Secret.
"""

from __future__ import annotations

import logging
from typing import Any

from callstorage.api import CALLTYPE_PLURAL, EXTERNALSTORAGE_PLURAL, GROUP, VERSION
from callstorage.apiserver import ApiError, ApiServer, connection_info
from callstorage.controller import Controller
from callstorage.kopfloader import kopf
from callstorage.kube import Kube
from callstorage.settings import Settings

# Watch settings, chosen rather than inherited (docs/install.md "Watches"). A frozen watch
# (TCP open, nothing arriving: a stuck proxy, a half-dead API server) is noticed after
# WATCH_INACTIVITY seconds without any event or bookmark, and reconnected after
# WATCH_RECONNECT_BACKOFF; if the API server answers 410 Gone, kopf relists and the
# controller's resync prunes what vanished. A change made while a watch is frozen is seen
# at most 21 s after the stream's last event (tests/faults measures it). A quiet healthy
# stream costs one reconnect (resuming, not relisting) per WATCH_INACTIVITY seconds per
# watched kind.
WATCH_INACTIVITY = 20.0  # kopf's default is 70 s (64.7 s measured before)
WATCH_SERVER_TIMEOUT = 60  # the API server ends each watch request after this
WATCH_CLIENT_TIMEOUT = 90.0  # hard cap on one watch request, above the server's
WATCH_RECONNECT_BACKOFF = 1.0  # pause between watch requests (kopf's default: 0.1 s)
# Retries of a failing watch or LIST request (API server down or restarting): never more
# than 5 s apart, so watches resume within 5 s of the API server's return. kopf's default
# climbs to 13 and 21 s between attempts: after a half-minute outage the watches could stay
# down 20 s longer than the API server. Three kinds at one request per 5 s is no storm.
WATCH_ERROR_BACKOFFS = (1.0, 1.0, 2.0, 3.0, 5.0)


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf's memory of the last-handled state, for change-detecting handlers, which the
    operator has none of: kopf built it anyway, a deep copy of every object on every
    watch event (Secrets included), ~7% of the operator's CPU at 1000 storages."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


class _NoProgress(kopf.ProgressStorage):
    """Per-handler progress, likewise only for change-detecting handlers."""

    def fetch(self, *, key: Any, body: Any) -> Any:
        return None

    def store(self, *, key: Any, record: Any, body: Any, patch: Any) -> None:
        return None

    def purge(self, *, key: Any, body: Any, patch: Any) -> None:
        return None

    def touch(self, *, body: Any, patch: Any, value: Any) -> None:
        return None

    def clear(self, *, essence: Any) -> Any:
        return essence


def build_registry(config: Settings) -> tuple[kopf.OperatorRegistry, dict[str, Any]]:
    """A registry with every handler, and a holder through which tests can reach the
    running controller (``holder["controller"]``)."""
    registry = kopf.OperatorRegistry()
    holder: dict[str, Any] = {}

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        # Our own registry has none of kopf's default login handlers; kopf's watches and
        # the operator's own calls use the same credentials (kubectl's order). kopf asks
        # again on a 401, so a rotated ServiceAccount token is picked up.
        return connection_info(trust_env=settings.networking.trust_env)

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        # We post our own, meaningful events; kopf's per-handler ones would land on
        # every Secret in the cluster.
        settings.posting.enabled = False
        # No CRD/namespace scanning: fewer permissions, and the kinds are known upfront.
        settings.scanning.disabled = True
        settings.persistence.diffbase_storage = _NoDiffBase()
        settings.persistence.progress_storage = _NoProgress()
        settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
        settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
        settings.watching.inactivity_timeout = WATCH_INACTIVITY
        settings.watching.reconnect_backoff = WATCH_RECONNECT_BACKOFF
        settings.networking.error_backoffs = WATCH_ERROR_BACKOFFS
        settings.networking.request_timeout = 60
        if config.secret_label_selector:  # narrowed by the API server, not after delivery
            settings.watching.label_selectors["", "v1", "secrets"] = \
                config.secret_label_selector
        workers = config.max_concurrent_validations + 4
        kube = Kube(ApiServer(pool=workers))
        controller = Controller(config, kube)
        try:
            await controller.start()
        except ApiError as exc:
            await kube.aclose()
            hint = {404: "are the CRDs installed? kubectl apply --server-side -k crds/",
                    403: "does the ServiceAccount have the chart's RBAC?"}.get(exc.status, "")
            raise kopf.TemporaryError(
                f"cannot list ExternalStorages/CallTypes: HTTP {exc.status} {exc.reason}; "
                f"{hint}", delay=10) from None
        holder["controller"] = controller

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        controller: Controller | None = holder.pop("controller", None)
        if controller is not None:
            await controller.stop()
            await controller.kube.aclose()

    # async on purpose: kopf runs sync handlers in threads, and the controller's state
    # and work queues belong to the event loop.
    @kopf.on.event(GROUP, VERSION, EXTERNALSTORAGE_PLURAL, registry=registry)
    async def external_storage_event(event: kopf.RawEvent, **_: Any) -> None:
        holder["controller"].on_storage_event(event.get("type"), event["object"])

    @kopf.on.event(GROUP, VERSION, CALLTYPE_PLURAL, registry=registry)
    async def call_type_event(event: kopf.RawEvent, **_: Any) -> None:
        holder["controller"].on_call_type_event(event.get("type"), event["object"])

    @kopf.on.event("", "v1", "secrets", registry=registry)
    async def secret_event(event: kopf.RawEvent, **_: Any) -> None:
        holder["controller"].on_secret_event(event.get("type"), event["object"])

    logging.getLogger(__name__).debug("handlers registered")
    return registry, holder
