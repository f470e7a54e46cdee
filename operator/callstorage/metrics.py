"""Prometheus metrics of the operator, served on a port of their own.

The series live in a registry of this module (not prometheus-client's global one), so that
what ``/metrics`` shows is exactly what the operator records, plus the usual process and
Python runtime series, and tests can read values without scraping other libraries' series.

Label values are bounded: storage types and reasons are closed sets; ``namespace``/``name``
of the readiness gauge follow the ExternalStorages that exist, and ``forget_storage`` drops
a series when its object goes, so deleted storages do not linger as stale ``0`` values.
"""

from __future__ import annotations

import contextlib
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

# Counters and histograms would each carry a `<name>_created` series (a timestamp nobody
# graphs) and so double the series count of the operator; Prometheus does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

VALIDATIONS = Counter(
    "callstorage_validations",
    "Storage validations finished, by storage type, result and reason.",
    ["storage_type", "result", "reason"],
    registry=REGISTRY,
)
# A HeadBucket answers in milliseconds; a dead endpoint runs into connect + read timeouts
# times the SDK's attempts (seconds to about a minute): the buckets span both.
VALIDATION_DURATION = Histogram(
    "callstorage_validation_duration_seconds",
    "Wall time of one storage validation, including SDK retries.",
    ["storage_type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0),
    registry=REGISTRY,
)
SHARED_CHECKS = Counter(
    "callstorage_validations_shared",
    "Validations answered by an identical validation request already in flight (same "
    "namespace, Secret versions and requests), included in callstorage_validations_total.",
    ["storage_type"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "callstorage_leader",
    "1 while this replica holds the leader Lease and handles objects, else 0.",
    registry=REGISTRY,
)
STORAGE_READY = Gauge(
    "callstorage_storage_ready",
    "1 when the ExternalStorage's Ready condition is True, else 0.",
    ["namespace", "name"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "callstorage_reconcile_errors",
    "Unexpected errors in handlers (not storage failures, which are validations).",
    ["kind"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "callstorage_queue_depth",
    "Validations waiting for a free slot (see CALLSTORAGE_MAX_CONCURRENT_VALIDATIONS).",
    registry=REGISTRY,
)

# The series names a family of each type shows on /metrics (no _created: see above).
_SERIES_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                    "summary": ("", "_sum", "_count"), "info": ("_info",)}


def exported_series() -> set[str]:
    """Every series name /metrics can show; dashboards and alert rules may use only these."""
    return {family.name + suffix for family in REGISTRY.collect()
            for suffix in _SERIES_SUFFIXES.get(family.type, ("",))}


_server: WSGIServer | None = None
_thread: threading.Thread | None = None
_lock = threading.Lock()


def record_validation(storage_type: str, result: str, reason: str, seconds: float) -> None:
    """Count one finished validation and observe how long it took."""
    VALIDATIONS.labels(storage_type=storage_type, result=result, reason=reason).inc()
    VALIDATION_DURATION.labels(storage_type=storage_type).observe(max(seconds, 0.0))


def set_storage_ready(namespace: str, name: str, ready: bool) -> None:
    """Set the readiness gauge of one ExternalStorage."""
    STORAGE_READY.labels(namespace=namespace, name=name).set(1 if ready else 0)


def forget_storage(namespace: str, name: str) -> None:
    """Drop the readiness series of a deleted ExternalStorage (no error if unknown)."""
    with contextlib.suppress(KeyError):
        STORAGE_READY.remove(namespace, name)


def record_reconcile_error(kind: str) -> None:
    """Count one unexpected handler error for ``kind`` (ExternalStorage, CallType, ...)."""
    RECONCILE_ERRORS.labels(kind=kind).inc()


def set_queue_depth(n: int) -> None:
    """Set how many validations are waiting for a concurrency slot."""
    QUEUE_DEPTH.set(max(n, 0))


def start_metrics_server(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - in-pod
    """Serve ``/metrics`` from a daemon thread; port 0 disables metrics.

    A second call while a server runs is a no-op, so a restarted kopf loop in the same
    process does not fail on an address already in use.
    """
    global _server, _thread
    if port == 0:
        return
    with _lock:
        if _server is not None:
            return
        _server, _thread = start_http_server(port, addr=host, registry=REGISTRY)


def stop_metrics_server() -> None:
    """Stop the server started by ``start_metrics_server`` (for tests and clean exits)."""
    global _server, _thread
    with _lock:
        if _server is None:
            return
        _server.shutdown()
        _server.server_close()
        if _thread is not None:
            _thread.join(timeout=5)
        _server, _thread = None, None
