"""Counting and summarising: API server request counters, /proc figures, medians."""

from __future__ import annotations

import os
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

MUTATING_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
# What the operator reads and writes. Requests on other resources come from the control
# plane itself (kube-controller-manager's informers renew their watches every few minutes)
# and are reported apart, as `other`.
OPERATOR_RESOURCES = frozenset({
    "externalstorages", "externalstorages/status", "calltypes", "calltypes/status",
    "secrets", "events"})
# The API server's own heartbeats, whatever anyone else does: its identity Lease and the
# endpoints of the `kubernetes` Service, reconciled every 10 s. The operator (standalone,
# no leader election) touches none of these.
BACKGROUND_RESOURCES = frozenset({"leases", "endpoints", "endpointslices"})

_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

RequestCounts = Counter[tuple[str, str]]


def parse_request_totals(text: str) -> RequestCounts:
    """``apiserver_request_total`` summed by (verb, resource[/subresource]).

    Non-resource requests (/metrics, /readyz, discovery) have no resource and are left out.
    """
    counts: RequestCounts = Counter()
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        labels = dict(_LABEL.findall(m.group("labels")))
        resource = labels.get("resource", "")
        if not resource:
            continue
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels.get("verb", ""), resource)] += int(float(m.group("value")))
    return counts


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of ``name`` in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def delta(after: RequestCounts, before: RequestCounts,
          own: RequestCounts | None = None) -> RequestCounts:
    """Requests between two scrapes, minus the ones the benchmark itself made."""
    result: RequestCounts = Counter()
    mine: RequestCounts = own if own is not None else Counter()
    for key in set(after) | set(before):
        n = after.get(key, 0) - before.get(key, 0) - mine.get(key, 0)
        if n > 0 and key[1] not in BACKGROUND_RESOURCES:
            result[key] = n
    return result


def split(counts: RequestCounts) -> tuple[RequestCounts, RequestCounts]:
    """(requests on the operator's resources, the rest)."""
    mine: RequestCounts = Counter()
    rest: RequestCounts = Counter()
    for key, n in counts.items():
        (mine if key[1] in OPERATOR_RESOURCES else rest)[key] = n
    return mine, rest


def writes(counts: Mapping[tuple[str, str], int]) -> int:
    return sum(n for (verb, _), n in counts.items() if verb in MUTATING_VERBS)


def by_label(counts: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """``{"PATCH externalstorages/status": 1000, ...}``, largest first."""
    return {f"{verb} {res}": n for (verb, res), n in
            sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


# --- /proc -------------------------------------------------------------------------------
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its own threads; not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += children
            todo += children
    return found


def _component(argv: list[str]) -> str | None:
    name = Path(argv[0]).name if argv else ""
    if name in ("etcd", "kube-apiserver", "kube-controller-manager"):
        return name
    if any("moto" in a for a in argv[1:4]):  # moto.server, or the test bed's wrapper
        return "s3-emulator"
    if "callstorage" in argv:
        return "operator"
    return None


def cpu_by_process() -> dict[str, float]:
    """CPU seconds so far of this process ("bench") and of the test bed's processes."""
    result = {"bench": cpu_seconds(os.getpid())}
    for pid in _descendants(os.getpid()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            name = _component([a for a in argv.split("\0") if a])
            if name is not None:
                result[name] = result.get(name, 0.0) + cpu_seconds(pid)
        except OSError:
            continue
    return result


def cpu_delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}


def memory_mb(pid: int) -> dict[str, float]:
    """``{"peak": VmHWM, "current": VmRSS}`` in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values["peak" if key == "VmHWM" else "current"] = int(rest.split()[0]) / 1024
    return values


# --- statistics ----------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Iterable[float], digits: int = 3) -> dict[str, float]:
    """Median, min and max over runs."""
    vals = [float(v) for v in values]
    if not vals:
        return {}
    return {"median": round(statistics.median(vals), digits),
            "min": round(min(vals), digits), "max": round(max(vals), digits)}


def summarise_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Every numeric leaf of the per-run dicts as median/min/max (same nesting)."""
    def walk(items: Sequence[Any]) -> Any:
        first = items[0]
        if isinstance(first, Mapping):
            keys: list[str] = []
            for item in items:
                keys += [k for k in item if k not in keys]
            out: dict[str, Any] = {}
            for key in keys:
                present = [item[key] for item in items if key in item]
                if all(_number(v) for v in present):  # a count absent from a run is 0
                    present = [item.get(key, 0) for item in items]
                value = walk(present)
                if value is not None:
                    out[key] = value
            return out
        if not all(_number(v) for v in items):
            return None
        return summary(items)
    result: dict[str, Any] = walk(list(runs))
    return result


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
