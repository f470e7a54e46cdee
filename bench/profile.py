"""Sum a py-spy ``--format raw`` profile (collapsed stacks) by function.

``python -m bench.profile FILE [TOP]`` prints, per function, the share of all samples in
which it is on the stack (inclusive) and on top of it (self), largest first, then the
shares of the operator's parts (GROUPS); idle threads (waiting in ``select``/``epoll``/
locks) are counted apart so the shares are of CPU work.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")
# leaf frames of a thread that waits rather than works
_IDLE = ("select", "poll", "epoll", "wait", "_wait_for_tstate_lock", "acquire", "sleep",
         "_worker", "accept", "recv_into", "readinto")


def frames(stack: str) -> list[str]:
    out = []
    for raw in stack.split(";"):
        m = _FRAME.match(raw.strip())
        out.append(f"{m['func']} ({m['file']})" if m else raw.strip())
    return out


# Where the operator's time goes, by the frame a sample passes through (first match wins,
# in this order); the shares are of all working samples.
GROUPS = (
    ("provider call (botocore, in a worker thread)", ("call_provider",)),
    ("kopf: diff base and progress (per event)", ("_detect_causes",)),
    ("kopf: handler invocation (per event)", ("process_watching_cause",)),
    ("kopf: rest of event processing", ("process_resource_event",)),
    ("kopf: watch stream and JSON decoding", ("watcher", "infinite_watch")),
    ("operator: own API calls", ("ApiClient.call_api", "ApiServer.request", "Kube._call",
                                 "Kube._run")),
    ("operator: reconcile rounds (rest)", ("StorageRounds.storage_round",
                                           "StorageRounds.worker")),
    ("operator: watch event handler", ("Intake.on_storage_event",)),
)


def groups(path: Path) -> str:
    """Working samples by GROUPS."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        fs = frames(stack)
        if fs and fs[-1].split(" ")[0].split(".")[-1] in _IDLE:
            continue
        n = int(count)
        total += n
        names = [f.split(" (")[0] for f in fs]
        label = next((g for g, keys in GROUPS if any(k in names for k in keys)), "other")
        counts[label] += n
    return "\n".join(f"{100 * n / total:6.1f}  {label}" for label, n in counts.most_common())


def summarise(path: Path, top: int = 30) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        fs = frames(stack)
        if fs and fs[-1].split(" ")[0].split(".")[-1] in _IDLE:
            idle += n
            continue
        total += n
        own[fs[-1]] += n
        for f in set(fs):
            inclusive[f] += n
    lines = [f"{path.name}: {total} working samples ({idle} idle samples left out)",
             f"{'incl%':>6} {'self%':>6}  function (file)"]
    for func, n in inclusive.most_common(top):
        lines.append(f"{100 * n / total:6.1f} {100 * own[func] / total:6.1f}  {func}")
    lines.append("-- by self time --")
    for func, n in own.most_common(top):
        lines.append(f"{100 * inclusive[func] / total:6.1f} {100 * n / total:6.1f}  {func}")
    return "\n".join(lines)


def main() -> int:
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    print(summarise(Path(sys.argv[1]), top))
    print("-- by part --")
    print(groups(Path(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
