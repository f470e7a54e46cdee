"""The ``restart`` and ``churn`` scenarios (``default`` and ``distinct`` are in run.py).

restart: an operator converges N storages and is stopped; a fresh one starts on them.
    Baseline: a plain client LISTs what any controller must learn at start (every
    ExternalStorage, CallType and Secret). Measured: time from the new process's start
    until it is steady, the API requests it made, and the validations it ran (target:
    none, since every storage is well within its validation interval, and LISTs/WATCHes
    only).
churn: N storages converge, then for BENCH_CHURN_S seconds BENCH_CHURN_RATE changes per
    second, a third each creates, spec updates (a new ``path``: a new generation to
    validate) and deletes. Lag: a create or update answered -> that generation seen
    Ready. Baseline: a plain script runs the same sequence of changes on its own N
    storages, each create and update followed by one HeadBucket and one status patch
    (CONCURRENCY workers), lag measured the same way from its own watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bench import measure
from bench.kubehttp import ApiError
from callstorage.api import effective_prefixes
from callstorage.api.readiness import is_ready
from callstorage.storagespec import parse_external_storage
from testbed.s3 import readwrite_policy

if TYPE_CHECKING:
    from bench.run import Bench, Operator

log = logging.getLogger("bench")
EXS = "externalstorages"
QUIET_WINDOW_S = 3.0  # steady: this long with under QUIET_CPU of a core used
QUIET_CPU = 0.03


async def _watched(b: Bench, ns: str) -> tuple[Any, asyncio.Task[None]]:
    from bench.run import Tracker

    tracker = Tracker()
    listed = await b.kube.list(ns, EXS)
    watch = b.watch = asyncio.create_task(b.kube.watch(
        ns, EXS, str(listed["metadata"]["resourceVersion"]), tracker.on_event))
    return tracker, watch


async def _stop_watch(watch: asyncio.Task[None]) -> None:
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await watch


async def _start_operator(b: Bench, ns: str, name: str) -> Operator:
    from bench.run import Operator

    return await asyncio.to_thread(Operator, b.cp, b.run_dir / "logs" / ns,
                                   b.cfg.concurrency, None, name)


# --- restart -----------------------------------------------------------------------------
async def restart(b: Bench, n: int, index: int) -> dict[str, Any]:
    from bench.run import SECRET

    tag = f"r{n}-{index}-{secrets.token_hex(3)}"
    bucket = f"bench-{tag}"
    await asyncio.to_thread(b.s3.create_bucket, bucket)
    keys = await asyncio.to_thread(b.s3.create_user, bucket, readwrite_policy(bucket))
    ns = f"bench-{tag}"
    await b.kube.create_namespace(ns)
    await b.kube.put_secret(ns, SECRET, keys.as_secret_data())
    tracker, watch = await _watched(b, ns)
    try:
        first = await _start_operator(b, ns, "operator")
        try:
            log.info("  restart: the first operator converges %d storages", n)
            converged = await b.measure_operator(first, tracker, ns, n, bucket, bucket,
                                                 idle=False, rotate=False)
        finally:
            await asyncio.to_thread(first.stop)

        log.info("  restart baseline: LIST every ExternalStorage, CallType and Secret")
        started = time.perf_counter()
        await b.kube.list_path("/apis/callstorage.io/v1alpha1/externalstorages", EXS)
        await b.kube.list_path("/apis/callstorage.io/v1alpha1/calltypes", "calltypes")
        await b.kube.list_path("/api/v1/secrets", "secrets")
        baseline_s = time.perf_counter() - started

        own0 = Counter(b.kube.counts)
        before = await b.scrape()
        log.info("  restart: a fresh operator on %d converged storages", n)
        op = await _start_operator(b, ns, "operator-restarted")
        try:
            steady = await _until_steady(b, op, before, own0)
            log.info("  restart: steady after %.2fs", steady)
            cpu_steady = op.cpu()
            await asyncio.sleep(b.cfg.settle_s)
            requests = measure.delta(await b.scrape(), before, b.kube.counts - own0)
            mine, _ = measure.split(requests)
            validations = await asyncio.to_thread(op.validations)
            memory = op.memory()
            not_ready = sum(1 for o in tracker.latest.values() if not is_ready(o))
        finally:
            await asyncio.to_thread(op.stop)
    finally:
        await _stop_watch(watch)
    await b.kube.delete_namespace(ns)
    return {
        "time_to_steady_s": round(steady, 3),
        "baseline_s": round(baseline_s, 3),
        "ratio": round(steady / baseline_s, 3),
        "validations": validations,
        "api_requests": measure.by_label(mine),
        "api_writes": measure.writes(mine),
        "not_ready_after": not_ready,
        "operator_cpu_s": {"to_steady": round(cpu_steady, 2)},
        "operator_rss_mb": {"peak": round(memory["peak"], 1),
                            "steady": round(memory["current"], 1)},
        "first_convergence": {k: converged[k] for k in (
            "time_to_all_ready_s", "api_requests_per_object", "operator_rss_mb")},
    }


async def _until_steady(b: Bench, op: Operator, before: measure.RequestCounts,
                        own0: Counter[tuple[str, str]]) -> float:
    """Seconds from the process's start to the start of its first quiet window taken
    after it has LISTed ExternalStorages (its start-up LIST, which its watch resumes from)
    and Secrets (its Secret watch's LIST): while a LIST is in flight the process waits,
    quiet but not done."""
    deadline = time.perf_counter() + b.cfg.phase_timeout_s
    samples: list[tuple[float, float]] = []
    while time.perf_counter() < deadline:
        op.alive()
        now, cpu = time.perf_counter(), op.cpu()
        samples.append((now, cpu))
        old = [s for s in samples if s[0] <= now - QUIET_WINDOW_S]
        if old:
            t0, c0 = old[-1]
            if (cpu - c0) / (now - t0) < QUIET_CPU:
                lists = measure.delta(await b.scrape(), before, b.kube.counts - own0)
                if lists.get(("LIST", EXS), 0) >= 1 and lists.get(("LIST", "secrets"), 0) >= 1:
                    return t0 - op.started
        await asyncio.sleep(0.25)
    raise TimeoutError("the restarted operator never became steady")


# --- churn -------------------------------------------------------------------------------
Op = tuple[str, int]  # ("create" | "update" | "delete", storage number)


def churn_plan(n: int, seconds: float, rate: float, seed: int) -> list[Op]:
    """The changes, the same for the baseline and the operator: storages 0..n-1 exist
    at the start; creates add n, n+1, ...; updates and deletes pick a live one."""
    rng = random.Random(seed)
    live = list(range(n))
    nxt = n
    plan: list[Op] = []
    for _ in range(int(seconds * rate)):
        kind = rng.choice(("create", "update", "delete"))
        if kind == "create" or not live:
            plan.append(("create", nxt))
            live.append(nxt)
            nxt += 1
        elif kind == "update":
            plan.append(("update", rng.choice(live)))
        else:
            victim = live.pop(rng.randrange(len(live)))
            plan.append(("delete", victim))
    return plan


class LagTracker:
    """Per create/update: from its answer to the watch seeing that generation Ready."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[int, float]] = {}
        self.lags: list[float] = []
        self.superseded = 0
        self.latest: dict[str, dict[str, Any]] = {}

    def expect(self, name: str, generation: int) -> None:
        if name in self.pending:
            self.superseded += 1  # an update overtook the previous one's status
        self.pending[name] = (generation, time.perf_counter())
        obj = self.latest.get(name)
        if obj is not None:
            self.on_event("MODIFIED", obj)

    def forget(self, name: str) -> None:
        if self.pending.pop(name, None) is not None:
            self.superseded += 1

    def on_event(self, event_type: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        if event_type == "DELETED":
            self.latest.pop(name, None)
            self.forget(name)  # an update answered just before its object's deletion
            return
        self.latest[name] = obj
        want = self.pending.get(name)
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        if want is not None and generation >= want[0] and is_ready(obj):
            self.lags.append(time.perf_counter() - want[1])
            del self.pending[name]

    def on_relist(self, items: Sequence[dict[str, Any]]) -> None:
        """The watch's 410 Gone: a LIST replaces what was seen (vanished = deleted)."""
        names = {str((o.get("metadata") or {}).get("name")) for o in items}
        for name in (set(self.latest) | set(self.pending)) - names:
            self.on_event("DELETED", {"metadata": {"name": name}})
        for obj in items:
            self.on_event("MODIFIED", obj)

    def unreconciled(self) -> int:
        return len(self.pending) + sum(1 for o in self.latest.values() if not is_ready(o))


async def _apply(b: Bench, ns: str, bucket: str, plan: list[Op], rate: float,
                 lag: LagTracker, then: Callable[[str, int], Awaitable[None]] | None
                 ) -> float:
    """Send the plan at ``rate`` per second (at most 64 in flight); the achieved rate."""
    from bench.run import SECRET, storage_body

    sem = asyncio.Semaphore(64)
    tasks: list[asyncio.Task[None]] = []

    async def one(kind: str, i: int) -> None:
        name = f"s-{i:05d}"
        async with sem:
            if kind == "delete":
                lag.forget(name)
                await b.kube.delete(ns, EXS, name)
                return
            if kind == "create":
                obj: Mapping[str, Any] | None = await b.kube.create(
                    ns, EXS, storage_body(name, bucket, b.s3.endpoint, SECRET))
            else:
                obj = await b.kube.patch(ns, EXS, name,
                                         {"spec": {"path": f"v{secrets.token_hex(3)}/"}})
            if obj is None:
                return
            generation = int(obj["metadata"]["generation"])
            lag.expect(name, generation)
            if then is not None:
                await then(name, generation)

    started = time.perf_counter()
    for k, (kind, i) in enumerate(plan):
        delay = started + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(kind, i)))
    await asyncio.gather(*tasks)
    return len(plan) / (time.perf_counter() - started)


async def churn(b: Bench, n: int, index: int) -> dict[str, Any]:
    from bench.run import SECRET, s3_client, storage_body, validated_status, validating_status

    seconds = float(os.environ.get("BENCH_CHURN_S", "60"))
    rate = float(os.environ.get("BENCH_CHURN_RATE", "100"))
    plan = churn_plan(n, seconds, rate, seed=index)
    tag = f"c{n}-{index}-{secrets.token_hex(3)}"
    bucket = f"bench-{tag}"
    await asyncio.to_thread(b.s3.create_bucket, bucket)
    keys = await asyncio.to_thread(b.s3.create_user, bucket, readwrite_policy(bucket))

    # --- baseline: its own N storages, then the same changes, validated by a script
    base_ns = f"bench-base-{tag}"
    log.info("  churn baseline: %d storages, then %d changes at %.0f/s", n, len(plan), rate)
    await b.baseline(base_ns, bucket, keys, n)
    base_lag = LagTracker()
    listed = await b.kube.list(base_ns, EXS)
    for obj in listed.get("items", []):
        base_lag.on_event("ADDED", obj)
    base_watch = asyncio.create_task(b.kube.watch(
        base_ns, EXS, str(listed["metadata"]["resourceVersion"]), base_lag.on_event,
        base_lag.on_relist))
    conc = b.cfg.concurrency
    s3 = s3_client(b.s3, keys, conc)
    pool = ThreadPoolExecutor(max_workers=conc, thread_name_prefix="churn-s3")
    work: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    prefixes = effective_prefixes(parse_external_storage(
        storage_body("x", bucket, b.s3.endpoint, SECRET)))

    def status(generation: int) -> dict[str, Any]:
        return validated_status(generation, prefixes, bucket, None)

    async def worker() -> None:
        while True:
            name, generation = await work.get()
            try:
                if b.cfg.baseline_announce:
                    with contextlib.suppress(ApiError):  # deleted meanwhile
                        await b.kube.patch_status(base_ns, EXS, name,
                                                  validating_status(generation, prefixes))
                await loop.run_in_executor(pool, lambda: s3.head_bucket(Bucket=bucket))
                with contextlib.suppress(ApiError):  # deleted meanwhile
                    await b.kube.patch_status(base_ns, EXS, name, status(generation))
            finally:
                work.task_done()

    async def enqueue(name: str, generation: int) -> None:
        work.put_nowait((name, generation))

    workers = [asyncio.create_task(worker()) for _ in range(conc)]
    try:
        base_rate = await _apply(b, base_ns, bucket, plan, rate, base_lag, enqueue)
        await work.join()
        await _settle(base_lag, b.cfg.phase_timeout_s, watch=base_watch)
    finally:
        for w in workers:
            w.cancel()
        await _stop_watch(base_watch)
        pool.shutdown(wait=False)
        s3.close()
    await b.kube.delete_namespace(base_ns)

    # --- the operator: converge N, then the same changes
    ns = f"bench-{tag}"
    await b.kube.create_namespace(ns)
    await b.kube.put_secret(ns, SECRET, keys.as_secret_data())
    tracker, watch = await _watched(b, ns)
    op = await _start_operator(b, ns, "operator")
    try:
        log.info("  churn: the operator converges %d storages", n)
        await b.measure_operator(op, tracker, ns, n, bucket, bucket, idle=False, rotate=False)
        await _stop_watch(watch)
        lag = LagTracker()
        listed = await b.kube.list(ns, EXS)
        for obj in listed.get("items", []):
            lag.on_event("ADDED", obj)
        watch = b.watch = asyncio.create_task(b.kube.watch(
            ns, EXS, str(listed["metadata"]["resourceVersion"]), lag.on_event, lag.on_relist))
        own0 = Counter(b.kube.counts)
        before, cpu0 = await b.scrape(), op.cpu()
        log.info("  churn: %d changes at %.0f/s", len(plan), rate)
        op_rate = await _apply(b, ns, bucket, plan, rate, lag, None)
        settled = await _settle(lag, b.cfg.phase_timeout_s, op, watch)
        cpu = op.cpu() - cpu0
        requests, _ = measure.split(measure.delta(await b.scrape(), before,
                                                  b.kube.counts - own0))
        memory = op.memory()
    finally:
        await _stop_watch(watch)
        await asyncio.to_thread(op.stop)
    await b.kube.delete_namespace(ns)
    changes = sum(1 for k, _ in plan if k != "delete")
    return {
        "lag_p50_s": round(measure.percentile(lag.lags, 0.5), 3),
        "lag_p99_s": round(measure.percentile(lag.lags, 0.99), 3),
        "baseline_lag_p50_s": round(measure.percentile(base_lag.lags, 0.5), 3),
        "baseline_lag_p99_s": round(measure.percentile(base_lag.lags, 0.99), 3),
        "ratio_p99": round(measure.percentile(lag.lags, 0.99)
                           / measure.percentile(base_lag.lags, 0.99), 3),
        "changes": len(plan),
        "rate_achieved_per_s": {"operator": round(op_rate, 1),
                                "baseline": round(base_rate, 1)},
        "settled_after_s": round(settled, 3),
        "unreconciled": lag.unreconciled(),
        "baseline_unreconciled": base_lag.unreconciled(),
        "superseded_updates": lag.superseded,
        "api_requests_per_change": round(sum(requests.values()) / max(changes, 1), 3),
        "api_requests_by_kind": measure.by_label(requests),
        "operator_cpu_s": {"churn": round(cpu, 2)},
        "operator_rss_mb": {"peak": round(memory["peak"], 1),
                            "end": round(memory["current"], 1)},
    }


async def _settle(lag: LagTracker, limit: float, op: Operator | None = None,
                  watch: asyncio.Task[None] | None = None) -> float:
    """Wait until every change is Ready (or ``limit``); seconds waited. A watch that
    ended fails the run at once (it would wait the whole ``limit`` for nothing)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if op is not None:
            op.alive()
        if watch is not None and watch.done():
            watch.result()
            raise RuntimeError("the watch on ExternalStorages ended")
        if lag.unreconciled() == 0:
            break
        await asyncio.sleep(0.25)
    return time.perf_counter() - started
