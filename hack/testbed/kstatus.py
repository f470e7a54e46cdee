"""What kstatus (sigs.k8s.io/cli-utils, as used by Flux and kpt) computes for objects.

Runs the test bed's ``kstatus`` binary (binaries.py; its main is kstatus_main.go), which
passes each object to the library's ``status.Compute`` and prints the result unchanged:
the rules are the library's, none are restated here.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

from testbed import binaries


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class KStatus:
    status: str
    message: str
    conditions: tuple[Condition, ...] = ()


def compute(objs: list[dict[str, Any]], *, timeout: float = 30) -> list[KStatus]:
    """kstatus's result for each object, in order, from one run of the binary."""
    if not objs:
        return []
    result = subprocess.run([str(binaries.find("kstatus"))], input=json.dumps(objs),
                            capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kstatus failed ({result.returncode}): {result.stderr.strip()}")
    out: list[dict[str, Any]] = json.loads(result.stdout)
    if len(out) != len(objs):
        raise RuntimeError(f"kstatus returned {len(out)} results for {len(objs)} objects")
    return [KStatus(status=r["status"], message=r["message"],
                    conditions=tuple(Condition(**c) for c in r["conditions"]))
            for r in out]
