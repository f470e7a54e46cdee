"""Start the operator: settings, logging, metrics, then kopf's loop with our handlers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import ValidationError

from callstorage import __version__, metrics
from callstorage.apiserver import ApiServer
from callstorage.fencing import Fence
from callstorage.handlers import Startup, build_registry
from callstorage.kopfloader import kopf
from callstorage.settings import Settings

if TYPE_CHECKING:
    from callstorage.leader import LeaderElector


class DemoteKopfRetries(logging.Filter):
    """kopf logs each retried API request (a watch reconnecting while the API server is
    down or restarting) at ERROR; that state is expected and heals itself, so WARNING.
    kopf's escalation after its last retry stays ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.name.startswith("kopf") and \
                "failed; will retry" in record.getMessage():
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(settings: Settings) -> None:
    """Text or JSON logs on stderr; kopf's per-event chatter only at DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(DemoteKopfRetries())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # kopf logs one INFO line per handled event (for every Secret in the cluster too), and
    # at DEBUG it may print object bodies: Secret data must never reach a log.
    logging.getLogger("kopf").setLevel(logging.WARNING)
    for noisy in ("botocore", "boto3", "urllib3", "azure", "google", "kubernetes",
                  "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="callstorage run",
        description="Run the callstorage operator. Settings come from CALLSTORAGE_* "
                    "environment variables (see README); flags override a few of them.",
    )
    # -n means what it means in every other command (and kubectl): a namespace, here the
    # operator's own; which namespaces it serves is a setting of its own.
    parser.add_argument("-n", "--namespace", default=None, metavar="NS",
                        help="the operator's own namespace, home of the platform storage "
                             "(CALLSTORAGE_NAMESPACE)")
    parser.add_argument("--watch-namespace", action="append", default=None, metavar="NS",
                        help="serve only this namespace (repeatable; "
                             "CALLSTORAGE_WATCH_NAMESPACES); default: all")
    parser.add_argument("--metrics-port", type=int, default=None)
    parser.add_argument("--health-port", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides: dict[str, object] = {}
    if args.namespace:
        overrides["namespace"] = args.namespace
    if args.watch_namespace:
        overrides["watch_namespaces"] = args.watch_namespace
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    if args.health_port is not None:
        overrides["health_port"] = args.health_port
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:  # one line per setting, not a traceback
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            print(f"callstorage: invalid settings: {where + ': ' if where else ''}"
                  f"{error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    configure_logging(settings)
    log = logging.getLogger("callstorage")
    log.info("callstorage %s starting (namespace %s, platform storage %s, watching %s)",
             __version__, settings.namespace, settings.platform_storage,
             ", ".join(settings.watch_namespaces) or "all namespaces")
    metrics.start_metrics_server(settings.metrics_port)
    # elected: no write until the Lease is ours, none after it could not be renewed
    fence = Fence.closed() if settings.leader_election else None
    registry, holder = build_registry(settings, fence)
    namespaces = list(settings.watch_namespaces)
    if namespaces and settings.namespace not in namespaces:
        namespaces.append(settings.namespace)
    if fence is not None:
        return asyncio.run(_run_elected(settings, registry, namespaces, fence,
                                        holder["startup"]))
    liveness = (f"http://0.0.0.0:{settings.health_port}/healthz"
                if settings.health_port else None)
    asyncio.run(kopf.operator(
        registry=registry,
        standalone=True,  # no kopf peering: one process, or the Lease decides (below)
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
    ))
    return 0


async def _run_elected(settings: Settings, registry: kopf.OperatorRegistry,
                       namespaces: list[str], fence: Fence, startup: Startup) -> int:
    """One of several replicas: serve health, wait for the Lease, then run kopf."""
    from callstorage.leader import (
        LeaderElector,
        LeaseConfig,
        default_identity,
        pod_owner,
        run_elected,
    )

    api = ApiServer(pool=2)  # the Lease's own connections: never queued behind the workers'
    elector = LeaderElector(api, LeaseConfig(
        name=settings.lease_name, namespace=settings.namespace, identity=default_identity(),
        lease_duration=settings.lease_duration, renew_deadline=settings.lease_renew_deadline,
        retry_period=settings.lease_retry_period, owner=pod_owner()), fence)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    health = await _serve_health(settings.health_port, elector, startup) \
        if settings.health_port else None

    async def lead() -> None:
        metrics.LEADER.set(1)
        try:
            # kopf installs its own SIGTERM handler: it stops, then run_elected releases.
            # No stop_flag: kopf would wait 5 s for its waiter on a flag never set.
            await kopf.operator(registry=registry, standalone=True,
                                clusterwide=not namespaces, namespaces=namespaces)
        finally:
            metrics.LEADER.set(0)

    try:
        return await run_elected(elector, lead, stop)
    finally:
        if health is not None:
            await health.cleanup()
        await api.close()


async def _serve_health(port: int, elector: LeaderElector,
                        startup: Startup) -> web.AppRunner:
    """``/healthz``: the process answers (liveness). ``/readyz``: it reached the API server
    within a lease duration, and either leads with its controller running (start-up
    LISTs done: the CRDs are there and RBAC allows them) or could take over if the leader
    goes."""
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if not elector.healthy():
            return web.Response(status=503, text="no contact with the API server")
        if not elector.is_leader:
            return web.Response(text="standby")
        if not startup.running:
            return web.Response(status=503, text=f"leader, not running: {startup.problem}")
        return web.Response(text="leader")

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 - probed by the kubelet
    return runner
