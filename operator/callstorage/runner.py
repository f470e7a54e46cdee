"""Start the operator: settings, logging, metrics, then kopf's loop with our handlers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import kopf

from callstorage import __version__, metrics
from callstorage.handlers import build_registry
from callstorage.settings import Settings


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
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure_logging(settings)
    log = logging.getLogger("callstorage")
    log.info("callstorage %s starting (namespace %s, platform storage %s, watching %s)",
             __version__, settings.namespace, settings.platform_storage,
             ", ".join(settings.watch_namespaces) or "all namespaces")
    metrics.start_metrics_server(settings.metrics_port)
    registry, _ = build_registry(settings)
    namespaces = list(settings.watch_namespaces)
    if namespaces and settings.namespace not in namespaces:
        namespaces.append(settings.namespace)
    liveness = (f"http://0.0.0.0:{settings.health_port}/healthz"
                if settings.health_port else None)
    asyncio.run(kopf.operator(
        registry=registry,
        standalone=True,  # one replica (Recreate): no peering objects, no extra RBAC
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
    ))
    return 0
