"""What one ExternalStorage status write costs the API server, with the CRD's CEL rules
and without them: the floor under every rotation (each storage must report the new
``observedSecretVersion``), which ``rotation_writes_vs_heads`` compares with N HeadBuckets.

``PYTHONPATH=hack python -m bench.apiwrites [N]`` (N = 1000): for each CRD variant, a fresh
control plane, N storages, one status write each, then ROUNDS rounds of N status
merge-patches (16 at a time, no watcher, as the operator writes them); the API server's
CPU per write (from /proc) as JSON. ``BENCH_PPROF=DIR`` also saves a 4-second CPU profile
of the API server during round 2 of each variant (``go tool pprof -top BINARY FILE``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from bench import measure
from bench.kubehttp import KubeHTTP
from bench.run import EXS, ROOT, storage_body, validated_status
from testbed import binaries, kubeutil
from testbed.controlplane import ControlPlane

log = logging.getLogger("bench.apiwrites")
ROUNDS = 3
CONCURRENCY = 16


def without_cel(node: Any) -> Any:
    """The schema with every ``x-kubernetes-validations`` removed."""
    if isinstance(node, dict):
        return {k: without_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [without_cel(v) for v in node]
    return node


def _status(version: str) -> dict[str, Any]:
    return validated_status(1, {"audio": "a/", "video": "v/"}, "bkt", version)


async def _rounds(cp: ControlPlane, n: int, pprof: Path | None) -> list[float]:
    kube = KubeHTTP(cp.server, cp.ssl_context(), "bench-apiwrites", pool=CONCURRENCY + 4)
    sem = asyncio.Semaphore(CONCURRENCY)
    pid = cp.component("kube-apiserver").pid

    async def limited(make: Any) -> None:
        async with sem:
            await make()

    async def each(make: Any) -> None:
        await asyncio.gather(*(limited(lambda i=i: make(f"s-{i:05d}")) for i in range(n)))

    try:
        await kube.create_namespace("writes")
        await each(lambda name: kube.create("writes", EXS, storage_body(
            name, "bkt", "https://s3.test")))
        await each(lambda name: kube.patch_status("writes", EXS, name, _status("0")))
        per_write: list[float] = []
        for r in range(ROUNDS):
            grab = None
            if pprof is not None and r == 1:
                def save() -> None:
                    assert pprof is not None
                    pprof.write_bytes(cp.get("/debug/pprof/profile?seconds=4", timeout=60))
                grab = threading.Thread(target=save)
                grab.start()
            cpu0 = measure.cpu_seconds(pid)
            started = time.perf_counter()
            await each(lambda name, r=r: kube.patch_status("writes", EXS, name,
                                                           _status(str(r + 1))))
            wall = time.perf_counter() - started
            cpu = measure.cpu_seconds(pid) - cpu0
            log.info("  round %d: %d writes in %.2fs, API server CPU %.2fs", r + 1, n, wall, cpu)
            per_write.append(cpu * 1000 / n)
            if grab is not None:
                grab.join()
        return per_write
    finally:
        await kube.close()


def variant(name: str, crds: Path, n: int, pprof_dir: Path | None) -> dict[str, Any]:
    log.info("%s: %d storages", name, n)
    with tempfile.TemporaryDirectory(prefix="callstorage-apiwrites-") as tmp, \
            ControlPlane(Path(tmp) / "cp", profiling=pprof_dir is not None) as cp:
        api = cp.api_client()
        try:
            kubeutil.apply_crds(api, crds)
        finally:
            api.close()
        pprof = pprof_dir / f"apiserver-{name}.pprof" if pprof_dir is not None else None
        per_write = asyncio.run(_rounds(cp, n, pprof))
    return {"apiserver_cpu_ms_per_write": {"median": round(statistics.median(per_write), 2),
                                           "rounds": [round(v, 2) for v in per_write]}}


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    pprof_dir = Path(os.environ["BENCH_PPROF"]).resolve() if os.environ.get("BENCH_PPROF") \
        else None
    if pprof_dir is not None:
        pprof_dir.mkdir(parents=True, exist_ok=True)
    binaries.ensure_all(["etcd", "kube-apiserver", "kube-controller-manager"])
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="callstorage-crds-") as tmp:
        stripped = Path(tmp)
        for path in kubeutil.crd_files(ROOT / "crds"):
            docs = list(yaml.safe_load_all(path.read_text()))
            (stripped / path.name).write_text(yaml.safe_dump_all(without_cel(docs)))
        for name, crds in (("with_cel", ROOT / "crds"), ("without_cel", stripped)):
            results[name] = variant(name, crds, n, pprof_dir)
    print(json.dumps({"benchmark": "API server CPU per ExternalStorage status write",
                      "n": n, "concurrency": CONCURRENCY, "rounds": ROUNDS,
                      "machine": {"cpus": os.cpu_count()}, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
