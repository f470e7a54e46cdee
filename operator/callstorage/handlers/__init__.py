"""kopf's part: log in, start the controller and its watches, stop them.

kopf no longer watches anything itself: per event it cost about 1 ms of CPU (a per-object
worker task, a body view, a logger, a handler call), and a restart listed every object
twice. The watches are the operator's own (``callstorage.watching``), fed straight into
the controller.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from callstorage.api import CALLTYPE_PLURAL, EXTERNALSTORAGE_PLURAL, GROUP, VERSION
from callstorage.apiserver import ApiError, ApiServer, connection_info
from callstorage.controller import Controller
from callstorage.engine.intake import CALL_TYPE, STORAGE
from callstorage.fencing import Fence
from callstorage.kopfloader import kopf
from callstorage.kube import Kube
from callstorage.secretcache import SECRET
from callstorage.settings import Settings
from callstorage.watching import Kind, Watch


class Startup:
    """Whether the controller runs (its start-up LISTs done, its workers and watches
    started) and, until it does, what keeps it from it: a leader is ready only then."""

    def __init__(self) -> None:
        self.running = False
        self.problem = "starting"


def build_registry(config: Settings, fence: Fence | None = None
                   ) -> tuple[kopf.OperatorRegistry, dict[str, Any]]:
    """A registry with every handler, and a holder through which tests can reach the
    running controller (``holder["controller"]``) and the runner its start-up state
    (``holder["startup"]``, a ``Startup``). ``fence``: the leader election's, which every
    write passes (none: a single replica, always allowed)."""
    registry = kopf.OperatorRegistry()
    startup = Startup()
    holder: dict[str, Any] = {"startup": startup}

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        # Our own registry has none of kopf's default login handlers; whatever kopf asks
        # of the API server uses the operator's credentials (kubectl's order).
        return connection_info(trust_env=settings.networking.trust_env)

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        # We post our own, meaningful events; kopf's per-handler ones would land on
        # every Secret in the cluster.
        settings.posting.enabled = False
        # No CRD/namespace scanning: fewer permissions, and the kinds are known upfront.
        settings.scanning.disabled = True
        settings.networking.request_timeout = 60
        workers = config.max_concurrent_validations + 4
        kube = Kube(ApiServer(pool=workers), fence)
        controller = Controller(config, kube)
        try:
            await controller.start()
        except ApiError as exc:
            await kube.aclose()
            hint = {404: "are the CRDs installed? kubectl apply --server-side -k crds/",
                    403: "does the ServiceAccount have the chart's RBAC?"}.get(exc.status, "")
            startup.problem = (f"cannot list ExternalStorages/CallTypes: HTTP {exc.status} "
                               f"{exc.reason}; {hint}")
            raise kopf.TemporaryError(startup.problem, delay=10) from None
        except Exception as exc:
            await kube.aclose()
            startup.problem = f"start-up failed: {type(exc).__name__}"
            raise
        holder["controller"] = controller
        holder["watches"] = start_watches(config, controller)
        startup.running, startup.problem = True, ""

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        startup.running, startup.problem = False, "stopping"
        watches: Watches | None = holder.pop("watches", None)
        if watches is not None:
            await watches.stop()
        controller: Controller | None = holder.pop("controller", None)
        if controller is not None:
            await controller.stop()
            await controller.kube.aclose()

    logging.getLogger(__name__).debug("handlers registered")
    return registry, holder


class Watches:
    """The running watches (``callstorage.watching``), on their own connection pool."""

    def __init__(self, api: ApiServer, tasks: list[asyncio.Task[None]]) -> None:
        self.api = api
        self.tasks = tasks

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.api.close()


def start_watches(config: Settings, controller: Controller) -> Watches:
    """One watch per kind and watched namespace (or one cluster-wide). ExternalStorages
    and CallTypes resume from the controller's start-up LIST; Secrets are listed (only
    the referenced ones are kept), narrowed by the API server to the label selector."""
    api = ApiServer(pool=0)  # long-lived streams: not on the pool of the workers' calls
    scopes: list[str | None] = list(controller.watched_namespaces()) or [None]
    feeds = (
        (Kind("ExternalStorage", f"/apis/{GROUP}/{VERSION}", EXTERNALSTORAGE_PLURAL),
         controller.on_storage_event, controller.listed_versions.get(EXTERNALSTORAGE_PLURAL),
         "", STORAGE),
        (Kind("CallType", f"/apis/{GROUP}/{VERSION}", CALLTYPE_PLURAL),
         controller.on_call_type_event, controller.listed_versions.get(CALLTYPE_PLURAL), "",
         CALL_TYPE),
        (Kind("Secret", "/api/v1", "secrets"), controller.on_secret_event, None,
         config.secret_label_selector or "", SECRET),
    )
    tasks = [asyncio.create_task(
        Watch(api, kind, ns, handler, label_selector=selector, start_version=version,
              relisted=functools.partial(controller.on_relisted, what, ns)).run(),
        name=f"watch {kind.plural} {ns or '*'}")
        for kind, handler, version, selector, what in feeds for ns in scopes]
    return Watches(api, tasks)
