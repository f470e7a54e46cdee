"""The benchmark driver: test bed up, for each size N and run: baseline, operator, report.

One run of size N, in fresh namespaces, with a fresh bucket, emulator user and operator:

1. baseline: a plain asyncio script creates N ExternalStorages (CONCURRENCY creators, as
   in step 2) and, for each, does one HeadBucket (boto3 in threads) and one status patch
   (CONCURRENCY workers); its namespace is then deleted and gone before the operator
   starts;
2. convergence: the operator (a subprocess) is started, N ExternalStorages sharing one
   Secret are created CONCURRENCY at a time, and a watch records when each turns Ready;
3. idle: nothing happens for BENCH_IDLE_S; every write the API server sees is counted;
4. rotation: the shared Secret gets a new access key of the same emulator user; the watch
   records when every object reports the new ``observedSecretVersion`` and Ready=True.

API requests are counted at the API server (``apiserver_request_total``), minus the
driver's own, which it counts itself. Progress goes to stderr, the JSON to stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.credentials import ReadOnlyCredentials

from bench import measure
from bench.kubehttp import KubeHTTP
from callstorage.api import effective_prefixes
from callstorage.api.readiness import is_ready
from callstorage.providers import s3 as s3_provider
from callstorage.providers.base import Capabilities, Reason
from callstorage.reconcile import externalstorage as es_reconcile
from callstorage.storagespec import (
    ExternalStorageSpec,
    external_storage_manifest,
    parse_external_storage,
)
from testbed import binaries, kubeutil
from testbed.controlplane import ControlPlane
from testbed.endpoints import dev_denylist
from testbed.procs import Server, free_port, http_ok, wait_for
from testbed.s3 import S3Keys, S3Server, readwrite_policy

log = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parent.parent
OPERATOR_NAMESPACE = "callstorage-system"
EXS = "externalstorages"
SECRET = "creds"  # the name of the shared Secret


# What `make bench` runs without SCENARIO, and each scenario's sizes without N.
DEFAULT_SCENARIOS = ("default",)
DEFAULT_SIZES = {"default": (100, 1000), "distinct": (1000,), "restart": (1000,),
                 "churn": (5000,)}


@dataclass(frozen=True)
class Config:
    scenarios: tuple[str, ...]
    sizes: tuple[int, ...] | None  # None: each scenario's DEFAULT_SIZES
    runs: int
    concurrency: int
    idle_s: float
    settle_s: float
    phase_timeout_s: float
    profile_dir: str | None
    keep: bool
    baseline_watch: bool
    baseline_client_per_object: bool
    baseline_announce: bool

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        sizes = tuple(int(s) for s in env.get("BENCH_SIZES", "").split(",") if s) or None
        scenarios = tuple(s.strip() for s in env.get("BENCH_SCENARIOS", "").split(",")
                          if s.strip()) or DEFAULT_SCENARIOS
        if "all" in scenarios:
            scenarios = tuple(DEFAULT_SIZES)
        unknown = [s for s in scenarios if s not in DEFAULT_SIZES]
        if unknown:
            raise SystemExit(f"unknown scenario(s) {unknown}; known: "
                             f"{', '.join(DEFAULT_SIZES)}, all")
        return cls(
            scenarios=scenarios,
            sizes=sizes,
            runs=int(env.get("BENCH_RUNS", "3")),
            concurrency=int(env.get("CALLSTORAGE_MAX_CONCURRENT_VALIDATIONS", "16")),
            idle_s=float(env.get("BENCH_IDLE_S", "60")),
            settle_s=float(env.get("BENCH_SETTLE_S", "5")),
            phase_timeout_s=float(env.get("BENCH_PHASE_TIMEOUT_S", "900")),
            profile_dir=str(Path(env["BENCH_PROFILE"]).resolve())
            if env.get("BENCH_PROFILE") else None,
            keep=env.get("BENCH_KEEP", "") not in ("", "0"),
            baseline_watch=env.get("BENCH_BASELINE_WATCH", "1") != "0",
            baseline_client_per_object=env.get("BENCH_BASELINE_CLIENTS", "") == "each",
            baseline_announce=env.get("BENCH_BASELINE_ANNOUNCE", "1") != "0",
        )


def storage_body(name: str, bucket: str, endpoint: str, secret: str = SECRET
                 ) -> dict[str, Any]:
    """One benchmark storage on the emulator (path-style, as MinIO and moto serve it),
    built by the API's own model and manifest builder."""
    return external_storage_manifest(name, None, ExternalStorageSpec.model_validate({
        "storageType": "s3", "bucket": bucket,
        "s3": {"region": "us-east-1", "endpoint": endpoint, "forcePathStyle": True,
               "credentialsSecretRef": {"name": secret}}}))


def boto_config(concurrency: int) -> BotoConfig:
    """The S3 client settings of every baseline: the operator's (path style, 2 attempts,
    5 s connect, 10 s read), a connection per worker."""
    return BotoConfig(max_pool_connections=concurrency, s3={"addressing_style": "path"},
                      retries={"mode": "standard", "total_max_attempts": 2},
                      connect_timeout=5, read_timeout=10)


def s3_client(server: S3Server, keys: S3Keys, concurrency: int) -> Any:
    """A boto3 S3 client of ``keys`` on the emulator, for a baseline's HeadBuckets."""
    return boto3.client(
        "s3", endpoint_url=server.endpoint, region_name=server.region,
        aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
        config=boto_config(concurrency))


def validating_status(generation: int, prefixes: Mapping[str, str]) -> dict[str, Any]:
    """The status the API's contract requires before the first network call of a new
    generation (Ready=Unknown, reason Validating; docs/api.md "Status"): a controller
    that skipped it would let kstatus, Flux and Argo CD read a new object as Current
    before it was validated. The baselines write it too (BENCH_BASELINE_ANNOUNCE=0: not)."""
    return es_reconcile.desired_status(None, es_reconcile.Observed(
        generation=generation, now=dt.datetime.now(dt.UTC), effective_prefixes=prefixes,
        spec_hash=None))


def validated_status(generation: int, prefixes: Mapping[str, str], bucket: str,
                     secret_version: str | None) -> dict[str, Any]:
    """The status of a successful validation (Ready=True, reason Validated), as the
    operator writes it: what every baseline writes after its HeadBucket."""
    now = dt.datetime.now(dt.UTC)
    return es_reconcile.desired_status(None, es_reconcile.Observed(
        generation=generation, now=now, effective_prefixes=prefixes,
        validation=es_reconcile.Validation(
            Reason.VALIDATED, f"bucket {bucket} is reachable with these credentials",
            Capabilities(list=True), secret_version),
        next_validation=now + dt.timedelta(hours=1)))


def distinct_secret(index: int) -> str:
    """The Secret of storage ``index`` in the ``distinct`` scenario."""
    return f"creds-{index:05d}"


class Tracker:
    """Fed by a watch: when each object first satisfied the current predicate."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self.hits: dict[str, float] = {}
        self.target = 0
        self.done = asyncio.Event()
        self._predicate: Callable[[Mapping[str, Any]], bool] = lambda _: False

    def arm(self, target: int, predicate: Callable[[Mapping[str, Any]], bool]) -> None:
        """Start a new phase: wait for ``target`` objects to satisfy ``predicate``."""
        self.hits, self.target, self._predicate = {}, target, predicate
        self.done.clear()
        now = time.perf_counter()
        for name, obj in self.latest.items():
            self._check(name, obj, now)

    def on_event(self, event_type: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        if event_type == "DELETED":
            self.latest.pop(name, None)
            return
        self.latest[name] = obj
        self._check(name, obj, time.perf_counter())

    def _check(self, name: str, obj: Mapping[str, Any], now: float) -> None:
        if name not in self.hits and self._predicate(obj):
            self.hits[name] = now
            if len(self.hits) >= self.target:
                self.done.set()

    async def wait(self, limit: float, what: str) -> None:
        try:
            await asyncio.wait_for(self.done.wait(), limit)
        except TimeoutError:
            raise TimeoutError(f"{what}: only {len(self.hits)} of {self.target} objects "
                               f"after {limit:.0f}s") from None


class Operator:
    """The operator as a subprocess (optionally sampled by py-spy), with /proc readings."""

    def __init__(self, cp: ControlPlane, log_dir: Path, concurrency: int,
                 profile: Path | None, name: str = "operator") -> None:
        health = free_port()
        self.metrics_port = free_port()
        self.started = time.perf_counter()
        self.server = Server(name, [sys.executable, "-m", "callstorage"], log_dir,
                             cwd=ROOT, env={
                                 "KUBECONFIG": str(cp.kubeconfig),
                                 "CALLSTORAGE_NAMESPACE": OPERATOR_NAMESPACE,
                                 "CALLSTORAGE_MAX_CONCURRENT_VALIDATIONS": str(concurrency),
                                 "CALLSTORAGE_HEALTH_PORT": str(health),
                                 "CALLSTORAGE_METRICS_PORT": str(self.metrics_port),
                                 "CALLSTORAGE_LOG_LEVEL": "INFO",
                                 # dev only: the emulator listens on loopback
                                 "CALLSTORAGE_ENDPOINT_DENYLIST": ",".join(dev_denylist()),
                                 "PYTHONUNBUFFERED": "1"})
        self.pid = self.server.pid
        self.spy: Server | None = None
        try:
            wait_for(lambda: http_ok(f"http://127.0.0.1:{health}/healthz"), 60,
                     "the operator's liveness endpoint", alive=self.server)
            if profile is not None:
                spy_bin = Path(sys.executable).parent / "py-spy"
                self.spy = Server("py-spy", [
                    str(spy_bin), "record", "--pid", str(self.pid), "--rate", "100", "--gil",
                    "--format", "raw", "--output", str(profile)], log_dir)
        except BaseException:
            self.stop()
            raise

    def cpu(self) -> float:
        return measure.cpu_seconds(self.pid)

    def validations(self) -> int:
        """Validations the operator finished so far (its own metrics)."""
        return self.validation_counts()[0]

    def validation_counts(self) -> tuple[int, int]:
        """Validations finished so far, and how many of them took the answer of an
        identical request in flight (sent no request of their own)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        return (int(measure.metric_sum(text, "callstorage_validations_total")),
                int(measure.metric_sum(text, "callstorage_validations_shared_total")))

    def memory(self) -> dict[str, float]:
        return measure.memory_mb(self.pid)

    def alive(self) -> None:
        if self.server.proc.poll() is not None:
            raise RuntimeError(f"the operator exited:\n{self.server.tail()}")

    def stop(self) -> None:
        self.server.stop()
        if self.spy is not None:  # py-spy writes its profile when the process it samples ends
            with contextlib.suppress(Exception):
                self.spy.proc.wait(30)
            self.spy.stop()


class Bench:
    def __init__(self, cfg: Config, cp: ControlPlane, s3: S3Server, run_dir: Path) -> None:
        self.cfg = cfg
        self.cp = cp
        self.s3 = s3
        self.run_dir = run_dir
        self.kube = KubeHTTP(cp.server, cp.ssl_context(), "callstorage-bench",
                             pool=cfg.concurrency + 8)
        self.baseline_cpu: dict[str, float] = {}
        self.watch: asyncio.Task[None] | None = None

    async def scrape(self) -> measure.RequestCounts:
        text = (await asyncio.to_thread(self.cp.get, "/metrics", 30.0)).decode()
        return measure.parse_request_totals(text)

    async def run_all(self) -> dict[str, Any]:
        from bench import scenarios

        runners: dict[str, Callable[[int, int], Awaitable[dict[str, Any]]]] = {
            "default": self.one_run,
            "distinct": lambda n, i: self.one_run(n, i, distinct=True),
            "restart": lambda n, i: scenarios.restart(self, n, i),
            "churn": lambda n, i: scenarios.churn(self, n, i),
        }
        results: dict[str, Any] = {}
        try:
            await self.warm_up()
            for scenario in self.cfg.scenarios:
                results[scenario] = {}
                for n in self.cfg.sizes or DEFAULT_SIZES[scenario]:
                    runs = []
                    for i in range(self.cfg.runs):
                        log.info("%s N=%d run %d/%d", scenario, n, i + 1, self.cfg.runs)
                        run = await runners[scenario](n, i)
                        log.info("%s N=%d run %d: %s", scenario, n, i + 1, json.dumps(
                            {k: v for k, v in run.items() if not isinstance(v, dict)}))
                        runs.append(run)
                    results[scenario][str(n)] = {**measure.summarise_runs(runs),
                                                 "runs": runs}
        finally:
            await self.kube.close()
        return results

    async def warm_up(self, n: int = 100) -> None:
        """A first, unreported baseline: a fresh API server answers its first few hundred
        requests slower (CEL programs, caches, connections), which would make run 1 of
        the first size look slower than the others."""
        log.info("warming up the API server and the S3 emulator (%d objects)", n)
        bucket = f"bench-warmup-{secrets.token_hex(3)}"
        await asyncio.to_thread(self.s3.create_bucket, bucket)
        keys = await asyncio.to_thread(self.s3.create_user, bucket, readwrite_policy(bucket))
        await self.baseline(bucket, bucket, keys, n)
        await self.kube.delete_namespace(bucket)

    # --- one run ------------------------------------------------------------------------
    async def distinct_users(self, tag: str, bucket: str, n: int) -> list[S3Keys]:
        """N emulator users, each with its own key and the same bucket policy."""
        log.info("  creating %d emulator users (one per storage)", n)
        policy = readwrite_policy(bucket)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="iam") as pool:
            return list(await asyncio.gather(*(
                loop.run_in_executor(pool, self.s3.create_user, f"bench-{tag}-{i:05d}", policy)
                for i in range(n))))

    async def put_distinct_secrets(self, ns: str, keys: list[S3Keys]) -> list[str]:
        """One Secret per storage; their resourceVersions."""
        sem = asyncio.Semaphore(self.cfg.concurrency)

        async def put(i: int) -> str:
            async with sem:
                return await self.kube.put_secret(ns, distinct_secret(i),
                                                  keys[i].as_secret_data())
        return list(await asyncio.gather(*(put(i) for i in range(len(keys)))))

    async def one_run(self, n: int, index: int, distinct: bool = False) -> dict[str, Any]:
        """The default scenario (one shared Secret), or ``distinct`` (a Secret and an
        emulator user per storage; no rotation phase)."""
        tag = f"{n}-{index}-{secrets.token_hex(3)}"
        bucket = f"bench-{tag}"
        await asyncio.to_thread(self.s3.create_bucket, bucket)
        user = f"bench-{tag}"
        keys = await asyncio.to_thread(self.s3.create_user, user, readwrite_policy(bucket))
        many = await self.distinct_users(tag, bucket, n) if distinct else None

        base_ns = f"bench-base-{tag}"
        log.info("  baseline: %d objects, one HeadBucket and one status patch each", n)
        baseline_s = await self.baseline(base_ns, bucket, keys, n, many)
        log.info("  baseline: %.2fs; deleting its namespace", baseline_s)
        await self.kube.delete_namespace(base_ns)

        ns = f"bench-{tag}"
        await self.kube.create_namespace(ns)
        await self.kube.put_secret(ns, SECRET, keys.as_secret_data())
        if many is not None:
            await self.put_distinct_secrets(ns, many)
        tracker = Tracker()
        listed = await self.kube.list(ns, EXS)
        watch = self.watch = asyncio.create_task(self.kube.watch(
            ns, EXS, str(listed["metadata"]["resourceVersion"]), tracker.on_event))
        profile = None
        if self.cfg.profile_dir:
            profile = Path(self.cfg.profile_dir) / f"operator-{tag}.txt"
        operator = await asyncio.to_thread(
            Operator, self.cp, self.run_dir / "logs" / ns, self.cfg.concurrency, profile)
        try:
            result = await self.measure_operator(operator, tracker, ns, n, bucket, user,
                                                 distinct=distinct, rotate=not distinct)
            if not distinct:
                await asyncio.to_thread(operator.stop)
                _merge(result, await self.rotation_floor(ns, bucket, keys, n,
                                                         result["rotation_baseline_heads_s"]))
                result["rotation_ratio_vs_plain"] = round(
                    result["secret_rotation_to_ready_s"] / result["rotation_baseline_plain_s"], 3)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch
            await asyncio.to_thread(operator.stop)
        await self.kube.delete_namespace(ns)
        return {"time_to_all_ready_s": result.pop("time_to_all_ready_s"),
                "baseline_s": round(baseline_s, 3),
                "ratio": round(result["_convergence"] / baseline_s, 3), **{
                    k: v for k, v in result.items() if not k.startswith("_")}}

    async def baseline(self, ns: str, bucket: str, keys: S3Keys, n: int,
                       many: list[S3Keys] | None = None) -> float:
        """Create N objects, HeadBucket and patch each one's status: no operator.

        ``many``: each object has its own Secret and keys, so each HeadBucket goes
        through a client built for its keys (from one shared boto3 Session, the cheapest
        way botocore allows; the client is closed after use).
        """
        await self.kube.create_namespace(ns)
        secret_rv = await self.kube.put_secret(ns, SECRET, keys.as_secret_data())
        secret_rvs = await self.put_distinct_secrets(ns, many) if many is not None else []
        conc = self.cfg.concurrency
        config = boto_config(conc)
        session = boto3.session.Session()
        session_lock = threading.Lock()  # building clients from a Session is not thread-safe
        s3 = session.client(
            "s3", endpoint_url=self.s3.endpoint, region_name=self.s3.region,
            aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
            config=config)

        # Distinct keys: one client signing each request with its object's keys (the way
        # the operator does it, the cheapest botocore allows; BENCH_BASELINE_CLIENTS=each:
        # one client built per object from one shared Session instead).
        shared = None
        if many is not None and not self.cfg.baseline_client_per_object:
            shared = s3_provider._signer_session().client(
                "s3", endpoint_url=self.s3.endpoint, region_name=self.s3.region,
                config=config)

        def head(index: int) -> None:
            if many is None:
                s3.head_bucket(Bucket=bucket)
                return
            keys = many[index]
            if shared is not None:
                with s3_provider._signing_as(ReadOnlyCredentials(
                        keys.access_key_id, keys.secret_access_key, None)):
                    shared.head_bucket(Bucket=bucket)
                return
            with session_lock:
                own = session.client(
                    "s3", endpoint_url=self.s3.endpoint, region_name=self.s3.region,
                    aws_access_key_id=keys.access_key_id,
                    aws_secret_access_key=keys.secret_access_key, config=config)
            try:
                own.head_bucket(Bucket=bucket)
            finally:
                own.close()
        body0 = storage_body("x", bucket, self.s3.endpoint)
        prefixes = effective_prefixes(parse_external_storage(body0))
        pool = ThreadPoolExecutor(max_workers=conc, thread_name_prefix="baseline-s3")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(pool, head, 0)  # warm-up

        def status(generation: int, index: int) -> dict[str, Any]:
            return validated_status(generation, prefixes, bucket,
                                    secret_rvs[index] if many else secret_rv)

        indices = iter(range(n))
        created: asyncio.Queue[tuple[str, int, int] | None] = asyncio.Queue()
        finished = 0
        all_finished = asyncio.Event()

        # The same shape as the operator's run: CONCURRENCY creators, and CONCURRENCY
        # workers validating what was created, with nothing else to do. The workers learn
        # of each object from a watch, as any controller must (and as the operator run's
        # own watch, which records Ready, is there in both runs); BENCH_BASELINE_WATCH=0
        # hands them each object straight from its creator instead.
        def on_event(event_type: str, obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            if event_type == "ADDED":
                name = str(meta.get("name"))
                created.put_nowait((name, int(meta.get("generation") or 1), int(name[2:])))

        watch: asyncio.Task[None] | None = None
        observer: asyncio.Task[None] | None = None
        if self.cfg.baseline_watch:
            listed = await self.kube.list(ns, EXS)
            rv = str(listed["metadata"]["resourceVersion"])
            watch = asyncio.create_task(self.kube.watch(ns, EXS, rv, on_event))
            # The operator run's driver watches for Ready (its instrument); the API server
            # serves that watch in both runs.
            observer = asyncio.create_task(self.kube.watch(ns, EXS, rv, lambda *_: None))

        async def creator() -> None:
            for i in indices:
                name = f"s-{i:05d}"
                obj = await self.kube.create(ns, EXS, storage_body(
                    name, bucket, self.s3.endpoint,
                    distinct_secret(i) if many is not None else SECRET))
                if watch is None:
                    created.put_nowait((name, int(obj["metadata"]["generation"]), i))

        async def worker() -> None:
            nonlocal finished
            while (item := await created.get()) is not None:
                if self.cfg.baseline_announce:
                    await self.kube.patch_status(ns, EXS, item[0],
                                                 validating_status(item[1], prefixes))
                await loop.run_in_executor(pool, head, item[2])
                await self.kube.patch_status(ns, EXS, item[0], status(item[1], item[2]))
                finished += 1
                if finished >= n:
                    all_finished.set()

        async def create_all() -> None:
            await asyncio.gather(*(creator() for _ in range(conc)))
            finished_all = asyncio.create_task(all_finished.wait())
            await asyncio.wait({finished_all, *([watch] if watch is not None else [])},
                               return_when=asyncio.FIRST_COMPLETED)
            if not finished_all.done():  # the watch feeding the workers ended: fail, not hang
                finished_all.cancel()
                assert watch is not None
                watch.result()
                raise RuntimeError("the baseline's watch on ExternalStorages ended")
            for _ in range(conc):
                created.put_nowait(None)

        cpu0 = measure.cpu_by_process()
        started = time.perf_counter()
        try:
            await asyncio.gather(create_all(), *(worker() for _ in range(conc)))
            elapsed = time.perf_counter() - started
            self.baseline_cpu = measure.cpu_delta(measure.cpu_by_process(), cpu0)
            return elapsed
        finally:
            if shared is not None:
                shared.close()
            for task in (watch, observer):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            pool.shutdown(wait=False)
            s3.close()

    async def measure_operator(self, op: Operator, tracker: Tracker, ns: str, n: int,
                               bucket: str, user: str, distinct: bool = False,
                               idle: bool = True, rotate: bool = True) -> dict[str, Any]:
        cfg = self.cfg
        await asyncio.sleep(2)  # let the operator finish its start-up LISTs and watches
        op.alive()
        own0 = Counter(self.kube.counts)
        before, cpu0 = await self.scrape(), op.cpu()
        processes0 = measure.cpu_by_process()
        checks0 = await asyncio.to_thread(op.validation_counts)

        # --- convergence ---
        log.info("  operator: creating %d ExternalStorages (%d at a time)", n, cfg.concurrency)
        tracker.arm(n, is_ready)
        created: dict[str, float] = {}
        names = iter(f"s-{i:05d}" for i in range(n))

        async def create() -> None:
            for name in names:
                secret = distinct_secret(int(name[2:])) if distinct else SECRET
                await self.kube.create(ns, EXS, storage_body(name, bucket, self.s3.endpoint,
                                                             secret))
                created[name] = time.perf_counter()

        started = time.perf_counter()
        await asyncio.gather(*(create() for _ in range(cfg.concurrency)))
        log.info("  operator: all created after %.2fs; waiting for Ready",
                 time.perf_counter() - started)
        await self._wait(tracker, op, "all Ready")
        convergence = max(tracker.hits.values()) - started
        latencies = [max(tracker.hits[k] - created[k], 0.0) for k in created]
        log.info("  operator: all Ready after %.2fs", convergence)
        cpu_ready = op.cpu()
        processes = measure.cpu_delta(measure.cpu_by_process(), processes0)
        checks = await asyncio.to_thread(op.validation_counts)
        await asyncio.sleep(cfg.settle_s)  # trailing Events belong to the convergence
        after = await self.scrape()
        converge_requests, other = measure.split(
            measure.delta(after, before, self.kube.counts - own0))

        result: dict[str, Any] = {
            "_convergence": convergence,
            "time_to_all_ready_s": round(convergence, 3),
            "latency_p50_s": round(measure.percentile(latencies, 0.5), 3),
            "latency_p99_s": round(measure.percentile(latencies, 0.99), 3),
            "api_requests_per_object": round(sum(converge_requests.values()) / n, 3),
            "api_requests_by_kind_per_object": {
                k: round(v / n, 3) for k, v in measure.by_label(converge_requests).items()},
            "control_plane_background_requests": sum(other.values()),
            "operator_cpu_s": {"convergence": round(cpu_ready - cpu0, 2)},
            "cpu_s_by_process": {"baseline": self.baseline_cpu, "convergence": processes},
            "validations": _checks(checks, checks0),
        }
        if idle:
            _merge(result, await self._idle(op))
        if rotate:
            _merge(result, await self._rotate(op, tracker, ns, n, bucket, user))
        memory = op.memory()
        result["operator_rss_mb"] = {"peak": round(memory["peak"], 1),
                                     **result.get("operator_rss_mb", {})}
        result["operator_cpu_s"]["total"] = round(op.cpu(), 2)
        return result

    async def _idle(self, op: Operator) -> dict[str, Any]:
        cfg = self.cfg
        log.info("  idle: counting writes for %.0fs", cfg.idle_s)
        cpu_idle0 = op.cpu()
        own1 = Counter(self.kube.counts)
        idle_before = await self.scrape()
        await asyncio.sleep(cfg.idle_s)
        idle_after = await self.scrape()
        idle_requests = measure.delta(idle_after, idle_before, self.kube.counts - own1)
        steady = op.memory()["current"]
        cpu_idle = op.cpu() - cpu_idle0
        return {
            "idle_writes_per_min": round(measure.writes(idle_requests) * 60 / cfg.idle_s, 2),
            "idle_requests_by_kind": measure.by_label(measure.split(idle_requests)[0]),
            "operator_rss_mb": {"steady": round(steady, 1)},
            "operator_cpu_s": {"idle": round(cpu_idle, 2)},
        }

    def heads(self, bucket: str, keys: S3Keys, n: int) -> float:
        """Seconds for N HeadBuckets at the operator's concurrency (one shared client):
        the floor under a rotation, which must revalidate all N storages."""
        conc = self.cfg.concurrency
        s3 = s3_client(self.s3, keys, conc)
        s3.head_bucket(Bucket=bucket)  # warm-up
        with ThreadPoolExecutor(max_workers=conc, thread_name_prefix="heads") as pool:
            started = time.perf_counter()
            list(pool.map(lambda _: s3.head_bucket(Bucket=bucket), range(n)))
            elapsed = time.perf_counter() - started
        s3.close()
        return elapsed

    async def rotation_floor(self, ns: str, bucket: str, keys: S3Keys, n: int,
                             heads_s: float) -> dict[str, Any]:
        """After the operator stopped, with the driver's watch still open: N status patches
        alone (the writes a rotation must make: each storage reports the new
        ``observedSecretVersion``), then a plain controller's rotation (one HeadBucket and
        one status patch per storage, no sharing), both at the operator's concurrency."""
        conc = self.cfg.concurrency
        s3 = s3_client(self.s3, keys, conc)
        body = storage_body("x", bucket, self.s3.endpoint)
        prefixes = effective_prefixes(parse_external_storage(body))
        sem = asyncio.Semaphore(conc)
        pool = ThreadPoolExecutor(max_workers=conc, thread_name_prefix="floor-s3")
        loop = asyncio.get_running_loop()

        async def one(i: int, version: str, head: bool) -> None:
            async with sem:
                if head:
                    await loop.run_in_executor(pool, lambda: s3.head_bucket(Bucket=bucket))
                await self.kube.patch_status(ns, EXS, f"s-{i:05d}",
                                             validated_status(1, prefixes, bucket, version))

        async def timed(version: str, head: bool) -> float:
            started = time.perf_counter()
            await asyncio.gather(*(one(i, version, head) for i in range(n)))
            return time.perf_counter() - started

        try:
            await loop.run_in_executor(pool, lambda: s3.head_bucket(Bucket=bucket))  # warm-up
            writes = await timed("floor-1", head=False)
            plain = await timed("floor-2", head=True)
        finally:
            pool.shutdown(wait=False)
            s3.close()
        log.info("  rotation floor: %d status writes in %.2fs; HeadBucket + write each in "
                 "%.2fs", n, writes, plain)
        return {"rotation_baseline_writes_s": round(writes, 3),
                "rotation_writes_vs_heads": round(writes / heads_s, 3),
                "rotation_baseline_plain_s": round(plain, 3)}

    async def _rotate(self, op: Operator, tracker: Tracker, ns: str, n: int, bucket: str,
                      user: str) -> dict[str, Any]:
        """The shared Secret gets a new access key of the same emulator user."""
        cfg = self.cfg
        op.alive()
        iam = self.s3.client("iam")
        new = await asyncio.to_thread(iam.create_access_key, UserName=user)
        keys = S3Keys(new["AccessKey"]["AccessKeyId"], new["AccessKey"]["SecretAccessKey"],
                      self.s3.endpoint)
        own2 = Counter(self.kube.counts)
        rot_before, cpu_rot0 = await self.scrape(), op.cpu()
        checks0 = await asyncio.to_thread(op.validation_counts)
        processes0 = measure.cpu_by_process()
        version: list[str] = []

        def rotated(obj: Mapping[str, Any]) -> bool:
            seen = str((obj.get("status") or {}).get("observedSecretVersion") or "")
            return bool(version) and version[0] in seen.split(",") and is_ready(obj)

        log.info("  rotation: replacing the shared Secret's keys")
        tracker.arm(n, rotated)
        rotation_started = time.perf_counter()
        version.append(await self.kube.put_secret(ns, SECRET, keys.as_secret_data(),
                                                  replace=True))
        tracker.arm(n, rotated)  # re-check what arrived before the version was known
        await self._wait(tracker, op, "all validated with the new Secret")
        rotation = max(tracker.hits.values()) - rotation_started
        log.info("  rotation: all Ready with the new Secret after %.2fs", rotation)
        cpu_rot = op.cpu() - cpu_rot0
        processes = measure.cpu_delta(measure.cpu_by_process(), processes0)
        checks = await asyncio.to_thread(op.validation_counts)
        await asyncio.sleep(min(cfg.settle_s, 2.0))
        rot_requests, _ = measure.split(measure.delta(await self.scrape(), rot_before,
                                                      self.kube.counts - own2))
        heads = await asyncio.to_thread(self.heads, bucket, keys, n)
        log.info("  rotation baseline: %d HeadBuckets in %.2fs", n, heads)
        return {
            "operator_cpu_s": {"rotation": round(cpu_rot, 2)},
            "secret_rotation_to_ready_s": round(rotation, 3),
            "rotation_baseline_heads_s": round(heads, 3),
            "rotation_ratio": round(rotation / heads, 3),
            "rotation_api_requests_per_object": round(sum(rot_requests.values()) / n, 3),
            "rotation_validations": _checks(checks, checks0),
            "cpu_s_by_process": {"rotation": processes},
        }

    async def _wait(self, tracker: Tracker, op: Operator, what: str) -> None:
        waiter = asyncio.create_task(tracker.wait(self.cfg.phase_timeout_s, what))
        try:
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=2)
                op.alive()
                if self.watch is not None and self.watch.done():
                    self.watch.result()  # raises what ended the watch
                    raise RuntimeError("the watch on ExternalStorages ended")
            await waiter
        finally:
            waiter.cancel()


def _checks(now: tuple[int, int], before: tuple[int, int]) -> dict[str, int]:
    """Validations in a phase: all, those sharing a request in flight, requests sent."""
    total, shared = now[0] - before[0], now[1] - before[1]
    return {"total": total, "shared": shared, "sent": total - shared}


async def _run(cfg: Config, cp: ControlPlane, s3: S3Server, run_dir: Path) -> dict[str, Any]:
    return await Bench(cfg, cp, s3, run_dir).run_all()  # aiohttp wants a running loop


def _merge(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    """``into.update(more)``, merging (not replacing) nested dicts of figures."""
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key].update(value)
        else:
            into[key] = value


def dumps(value: Any, level: int = 0) -> str:
    """JSON, indented, with every object of plain values on one line (readable figures)."""
    if isinstance(value, dict) and value:
        flat = json.dumps(value)
        if len(flat) <= 100 and not any(isinstance(v, dict | list) for v in value.values()):
            return flat
        pad = "  " * (level + 1)
        items = [f"{pad}{json.dumps(k)}: {dumps(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(value, list) and value:
        pad = "  " * (level + 1)
        items = [pad + dumps(v, level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * level + "]"
    return json.dumps(value)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s bench: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("botocore", "boto3", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)  # stop the test bed on `kill` too
    cfg = Config.from_env()
    if cfg.profile_dir:
        Path(cfg.profile_dir).mkdir(parents=True, exist_ok=True)
    log.info("settings: %s", json.dumps(asdict(cfg)))
    binaries.ensure_all(["etcd", "kube-apiserver", "kube-controller-manager"])
    run_dir = Path(tempfile.mkdtemp(prefix="callstorage-bench-"))
    cp = ControlPlane(run_dir / "cp")
    s3: S3Server | None = None
    ok = False
    started = time.monotonic()
    try:
        log.info("starting the control plane and the S3 emulator (logs: %s)", run_dir)
        cp.start()
        s3 = S3Server.start(run_dir / "logs")
        api = cp.api_client()
        try:
            kubeutil.apply_crds(api, ROOT / "crds")
            kubeutil.create_namespace(api, OPERATOR_NAMESPACE, exist_ok=True)
        finally:
            api.close()
        results = asyncio.run(_run(cfg, cp, s3, run_dir))
        ok = True
    finally:
        if s3 is not None:
            s3.stop()
        cp.stop()
        if ok and not cfg.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            log.info("logs kept in %s", run_dir)
    document = {
        "benchmark": "callstorage operator: ExternalStorage convergence",
        "layout": "results.<scenario>.<N>: figures as {median, min, max} over runs, and "
                  "the raw runs",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": {"scenarios": {sc: list(cfg.sizes or DEFAULT_SIZES[sc])
                                   for sc in cfg.scenarios},
                     "runs": cfg.runs,
                     "max_concurrent_validations": cfg.concurrency,
                     "idle_window_s": cfg.idle_s, "storage": "S3 emulator (moto), ReadWrite",
                     "figures": "median, min and max over runs; each run in its own "
                                "namespaces with a fresh operator process"},
        "results": results,
        "wall_time_s": round(time.monotonic() - started, 1),
    }
    text = dumps(document)
    if os.environ.get("BENCH_OUTPUT"):
        Path(os.environ["BENCH_OUTPUT"]).write_text(text + "\n")
    print(text)
    return 0
