"""``make bench-media``: upload throughput and memory of the media path, against its limits.

For each generated file (1 GiB and 4 GiB by default) and each S3 server (MinIO, built from
its Go module, and moto, the tests' emulator, which keeps objects in Python memory and is
measured only up to ``BENCH_MEDIA_MOTO_MAX_GB``), every run uploads the same file four
ways, each in its own process (so its peak RSS is its own), in rotating order:

- ``raw_put``: one streaming HTTP PUT of the file with ``http.client`` in 1 MiB writes, to
  a presigned URL (botocore only computes the signature): the transfer limit of one
  connection with no SDK in the way;
- ``boto3_upload_file``: boto3's ``upload_file`` with boto3's defaults (over plain HTTP
  botocore hashes every part with SHA-256 for the signature);
- ``boto3_unsigned_payload``: the same with ``payload_signing_enabled=False``, as our
  client is configured: shows how much of the difference is that one setting;
- ``callstorage``: ``callstorage.transfer.upload`` through the client the media path
  builds (``providers.build_media_client``): 8 MiB parts, 8 in parallel, CRC32C per part.

Plus the disk read rate of each file (read sequentially in 8 MiB blocks, page cache as
found: the file was just written, and the uploads read it the same way). Prints one JSON
document on stdout; progress on stderr. Figures are medians over ``BENCH_MEDIA_RUNS``; MB
is 10^6 bytes, RSS is in MiB.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
METHODS = ("raw_put", "boto3_upload_file", "boto3_unsigned_payload", "callstorage")
# Seed 001's upload-time table, and the bitrates we assume for its rows.
REFERENCE: dict[str, dict[str, Any]] = {
    "audio_2h": {"bitrate_kbps": 1536, "seconds": 7200, "seed_bound_s": 10,
                 "assumed": "WAV, PCM 16-bit stereo 48 kHz"},
    "hd_video_1h": {"bitrate_kbps": 4000, "seconds": 3600, "seed_bound_s": 30,
                    "assumed": "MP4, 1280x720, 4 Mbit/s audio+video"},
    "fhd_video_2h": {"bitrate_kbps": 8000, "seconds": 7200, "seed_bound_s": 120,
                     "assumed": "MP4, 1920x1080, 8 Mbit/s audio+video"},
}


def log(message: str) -> None:
    print(f"[bench-media] {message}", file=sys.stderr, flush=True)


# --- the uploaders (run in child processes) ------------------------------------------


def _worker(method: str, cfg: dict[str, Any]) -> dict[str, Any]:
    path, size = cfg["path"], os.path.getsize(cfg["path"])
    if method == "raw_put":
        import boto3
        from botocore.config import Config

        signer = boto3.client(
            "s3", endpoint_url=cfg["endpoint"], region_name="us-east-1",
            aws_access_key_id=cfg["key_id"], aws_secret_access_key=cfg["secret"],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        url = urllib.parse.urlsplit(signer.generate_presigned_url(
            "put_object", Params={"Bucket": cfg["bucket"], "Key": cfg["key"]},
            ExpiresIn=3600))
        started = time.perf_counter()
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=120)
        conn.putrequest("PUT", f"{url.path}?{url.query}", skip_accept_encoding=True)
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        with open(path, "rb") as fh:
            while chunk := fh.read(MiB):
                conn.send(chunk)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"raw PUT answered {answer.status}")
        return {"seconds": time.perf_counter() - started}
    if method in ("boto3_upload_file", "boto3_unsigned_payload"):
        import boto3
        from botocore.config import Config

        s3: dict[str, Any] = {"addressing_style": "path"}
        if method == "boto3_unsigned_payload":  # what callstorage's S3 client does too
            s3["payload_signing_enabled"] = False
        client = boto3.client(
            "s3", endpoint_url=cfg["endpoint"], region_name="us-east-1",
            aws_access_key_id=cfg["key_id"], aws_secret_access_key=cfg["secret"],
            config=Config(s3=s3))
        started = time.perf_counter()
        client.upload_file(path, cfg["bucket"], cfg["key"])
        return {"seconds": time.perf_counter() - started}
    from callstorage.providers import build_media_client
    from callstorage.providers.base import ProviderInputs
    from callstorage.settings import Settings
    from callstorage.storagespec import parse_external_storage
    from callstorage.transfer import TransferOptions, upload
    from testbed.endpoints import dev_denylist

    spec = parse_external_storage({
        "apiVersion": "callstorage.io/v1alpha1", "kind": "ExternalStorage",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {"storageType": "s3", "bucket": cfg["bucket"],
                 "s3": {"region": "us-east-1", "endpoint": cfg["endpoint"],
                        "forcePathStyle": True, "credentialsSecretRef": {"name": "c"}}}})
    options = TransferOptions(part_size=cfg["part_size"], concurrency=cfg["concurrency"])
    inputs = ProviderInputs(secret={"accessKeyId": cfg["key_id"].encode(),
                                    "secretAccessKey": cfg["secret"].encode(),
                                    "endpoint": cfg["endpoint"].encode()})
    # dev only: the emulator listens on loopback, which the default policy denies
    settings = Settings(read_timeout=120, endpoint_denylist=dev_denylist())
    client = build_media_client(spec, inputs, settings, options.concurrency)
    started = time.perf_counter()
    result = upload(client, cfg["key"], path, "video/mp4", options)
    seconds = time.perf_counter() - started
    client.close()
    return {"seconds": seconds, "parts": result.parts}


def _run_child(method: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """One upload in a fresh process: its wall time, peak RSS and CPU."""
    with tempfile.NamedTemporaryFile("w+", suffix=".json") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench.media", "worker", method,
                                 json.dumps(cfg), out.name])
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{method} failed (exit {proc.returncode})")
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
    size = os.path.getsize(cfg["path"])
    result.update(MBps=round(size / 1e6 / result["seconds"], 1),
                  peak_rss_MiB=round(result.pop("peak_rss_kib") / 1024, 1),
                  cpu_s=round(usage.ru_utime + usage.ru_stime, 2),
                  seconds=round(result["seconds"], 2))
    return result


# --- the driver ------------------------------------------------------------------------------


def generate(path: Path, size: int) -> None:
    """``size`` bytes that no server could compress or deduplicate: 64 MiB of random
    bytes, each copy with its own counter in front."""
    block = os.urandom(64 * MiB)
    with open(path, "wb") as fh:
        written = 0
        while written < size:
            piece = (written.to_bytes(16, "big") + block[16:])[: size - written]
            fh.write(piece)
            written += len(piece)


def read_rate(path: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(8 * MiB):
            pass
    return round(path.stat().st_size / 1e6 / (time.perf_counter() - started), 1)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"MBps": _median([r["MBps"] for r in runs]),
            "seconds": _median([r["seconds"] for r in runs]),
            "peak_rss_MiB": _median([r["peak_rss_MiB"] for r in runs]),
            "cpu_s": _median([r["cpu_s"] for r in runs]),
            "runs": runs}


def _server_versions(names: list[str]) -> dict[str, str]:
    from importlib.metadata import version

    from testbed.binaries import MINIO_VERSION

    known = {"minio": f"MinIO github.com/minio/minio@{MINIO_VERSION}, built from its Go "
                      "module; data on local disk",
             "moto": f"moto {version('moto')} server mode, IAM enforced (objects in Python "
                     "memory)"}
    return {n: known.get(n, "?") for n in names}


def _servers(names: list[str], work: Path) -> Any:
    from testbed.minio import MinIOServer
    from testbed.s3 import S3Server

    for name in names:
        if name == "minio":
            yield name, MinIOServer.start(work / "minio-data", work / "logs")
        elif name == "moto":
            yield name, S3Server.start(work / "logs")
        else:
            raise SystemExit(f"unknown server {name!r} (minio, moto)")


def main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        result = _worker(argv[1], json.loads(argv[2]))
        # VmHWM belongs to this process image: fork+exec starts it afresh, while the
        # ru_maxrss a parent gets from wait4 includes the parent's pages before exec.
        status = Path("/proc/self/status").read_text()
        hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        result["peak_rss_kib"] = int(hwm.split()[1])
        Path(argv[3]).write_text(json.dumps(result))
        return 0
    env = os.environ
    sizes = [float(s) for s in env.get("BENCH_MEDIA_SIZES_GB", "1,4").split(",") if s]
    runs = int(env.get("BENCH_MEDIA_RUNS", "2"))
    servers = [s for s in env.get("BENCH_MEDIA_SERVERS", "minio,moto").split(",") if s]
    moto_max = float(env.get("BENCH_MEDIA_MOTO_MAX_GB", "1"))
    part_size = int(float(env.get("BENCH_MEDIA_PART_MIB", "8")) * MiB)
    concurrency = int(env.get("BENCH_MEDIA_CONCURRENCY", "8"))
    base = env.get("BENCH_MEDIA_DIR") or None
    work = Path(tempfile.mkdtemp(prefix="callstorage-bench-media-", dir=base))
    report: dict[str, Any] = {
        "benchmark": "media upload",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "load_average_at_start": [round(x, 1) for x in os.getloadavg()]},
        "servers": _server_versions(servers),
        "settings": {"runs": runs, "part_size_MiB": part_size / MiB,
                     "concurrency": concurrency, "units": "MB = 10^6 bytes; RSS in MiB"},
        "files": {}, "results": {},
    }
    try:
        files: dict[str, Path] = {}
        for gb in sizes:
            label = f"{gb:g}GiB"
            path = work / f"{label}.bin"
            log(f"generating {label}")
            generate(path, int(gb * GiB))
            files[label] = path
            report["files"][label] = {"bytes": path.stat().st_size,
                                      "disk_read_MBps": read_rate(path)}
        for name, server in _servers(servers, work):
            with server:
                report["results"][name] = _bench_server(
                    name, server, files, runs, part_size, concurrency, moto_max)
        report["machine"]["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
        report["reference"] = _reference(report)
        report["targets"] = _targets(report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


def _bench_server(name: str, server: Any, files: dict[str, Path], runs: int,
                  part_size: int, concurrency: int, moto_max: float) -> dict[str, Any]:
    bucket = f"bench-{secrets.token_hex(4)}"
    server.create_bucket(bucket)
    admin = server.client()
    out: dict[str, Any] = {}
    for label, path in files.items():
        if name == "moto" and path.stat().st_size > moto_max * GiB:
            out[label] = {"skipped": f"moto keeps objects in Python memory; measured up to "
                                     f"{moto_max:g} GiB (BENCH_MEDIA_MOTO_MAX_GB)"}
            continue
        per_method: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
        for run in range(runs):
            shift = run % len(METHODS)
            order = METHODS[shift:] + METHODS[:shift]
            for method in order:
                key = f"{method}/{label}-{run}"
                cfg = {"endpoint": server.endpoint, "bucket": bucket, "key": key,
                       "path": str(path), "key_id": server.admin.access_key_id,
                       "secret": server.admin.secret_access_key, "part_size": part_size,
                       "concurrency": concurrency}
                log(f"{name} {label} run {run + 1}/{runs}: {method}")
                result = _run_child(method, cfg)
                head = admin.head_object(Bucket=bucket, Key=key)
                if int(head["ContentLength"]) != path.stat().st_size:
                    raise RuntimeError(f"{method} stored {head['ContentLength']} bytes")
                admin.delete_object(Bucket=bucket, Key=key)
                per_method[method].append(result)
                log(f"  {result['MBps']} MB/s, peak RSS {result['peak_rss_MiB']} MiB")
        summary = {m: _summary(r) for m, r in per_method.items()}
        ours, boto, raw = (summary[m]["MBps"] for m in ("callstorage", "boto3_upload_file",
                                                        "raw_put"))
        summary["ratio_vs_boto3"] = round(ours / boto, 2)
        summary["fraction_of_raw_put"] = round(ours / raw, 2)
        out[label] = summary
    return out


def _reference(report: dict[str, Any]) -> dict[str, Any]:
    """Seconds for the seed's reference recordings at the measured MinIO rate."""
    rates = [v["callstorage"]["MBps"] for server in ("minio",)
             for v in report["results"].get(server, {}).values() if "callstorage" in v]
    if not rates:
        return {}
    rate = min(rates)  # the slower of the sizes measured
    out: dict[str, Any] = {"rate_MBps_used": rate, "server": "minio"}
    for name, ref in REFERENCE.items():
        size = ref["bitrate_kbps"] * 1000 / 8 * ref["seconds"]
        seconds = round(size / 1e6 / rate, 1)
        out[name] = {**ref, "bytes": int(size), "upload_s": seconds,
                     "within_seed_bound": seconds <= ref["seed_bound_s"]}
    return out


def _targets(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": "callstorage >= 2x boto3 upload_file, or >= 0.8 of the "
                                   "raw PUT; peak RSS < 150 MiB for 4 GiB"}
    for server, sizes in report["results"].items():
        for label, v in sizes.items():
            if "callstorage" not in v:
                continue
            speed = v["ratio_vs_boto3"] >= 2 or v["fraction_of_raw_put"] >= 0.8
            memory = v["callstorage"]["peak_rss_MiB"] < 150
            out[f"{server}/{label}"] = {"speed_met": speed, "memory_met": memory}
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
