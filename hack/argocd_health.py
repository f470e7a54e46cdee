"""Write the generated parts of docs/argocd-health/ from their sources.

- ``resource_customizations/callstorage.io/<Kind>/health_test.yaml`` and ``testdata/``:
  from the case tables ``tests/cases/readiness.py`` (shared by every reader of status)
  and ``tests/cases/argocd_health.py`` (Argo CD's layout, ready to upstream; Argo's own
  test walks these files). The health is the table's; the message follows the rule
  ``expected_message`` states.
- ``argocd-cm.yaml``: the health and action scripts, verbatim, as argocd-cm keys.

    python hack/argocd_health.py          # write, and remove testdata no case uses
    python hack/argocd_health.py --check  # exit 1 and name the differences (tests)
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "argocd-health"
GROUP_DIR = DOCS / "resource_customizations" / "callstorage.io"
CM = DOCS / "argocd-cm.yaml"
KINDS = ("ExternalStorage", "CallType")
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "operator")]

from callstorage.api.readiness import PENDING, readiness  # noqa: E402
from cases import argocd_health  # noqa: E402 - with the tests
from cases import readiness as readiness_cases  # noqa: E402

Obj = dict[str, Any]


def _describe(condition: Obj) -> str:
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    return f"{reason}: {message}" if reason and message else reason or message


def expected_message(obj: Obj, health: str) -> str:
    """The message Argo CD shows: the deciding condition's ``<reason>: <message>``, or
    callstorage.api.readiness's own message while the Ready condition says nothing about
    the current generation."""
    conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
    if health == "Suspended":
        return _describe(conditions["Suspended"])
    if health == "Degraded":
        return _describe(conditions["Stalled"])
    r = readiness(obj)
    ready = conditions.get("Ready")
    if ready is None or (r.reason == PENDING and r.message != ready.get("message")):
        return r.message
    return _describe(ready)


def cases() -> list[tuple[str, Obj, str]]:
    """(id, object, health) of both tables."""
    return ([(c.id, c.object, c.health) for c in readiness_cases.CASES]
            + [(c.id, c.object, c.health) for c in argocd_health.CASES])

_CM_HEADER = """\
# Argo CD health checks and the "check" action for callstorage's kinds: merge into the
# argocd-cm ConfigMap, e.g.
#   kubectl -n argocd patch configmap argocd-cm --patch-file docs/argocd-health/argocd-cm.yaml
# Generated from resource_customizations/ by hack/argocd_health.py: edit the .lua files.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
"""


def _block(key: str, text: str, indent: int) -> str:
    pad = " " * indent
    return f"{pad}{key}: |\n" + textwrap.indent(text, pad + "  ")


def argocd_cm() -> str:
    """The argocd-cm snippet: every health.lua, and the actions of each kind that has any."""
    out = _CM_HEADER
    for kind in KINDS:
        out += _block(f"resource.customizations.health.callstorage.io_{kind}",
                      (GROUP_DIR / kind / "health.lua").read_text(), 2)
    for kind in KINDS:
        actions = GROUP_DIR / kind / "actions"
        if not actions.is_dir():
            continue
        body = _block("discovery.lua", (actions / "discovery.lua").read_text(), 0)
        body += "definitions:\n"
        for action in sorted(p.parent for p in actions.glob("*/action.lua")):
            body += f"  - name: {action.name}\n"
            body += _block("action.lua", (action / "action.lua").read_text(), 4)
        out += _block(f"resource.customizations.actions.callstorage.io_{kind}", body, 2)
    return out


def expected() -> dict[Path, str]:
    """Every generated file and its content."""
    files: dict[Path, str] = {CM: argocd_cm()}
    for kind in KINDS:
        tests = []
        for case_id, obj, health in cases():
            if obj["kind"] != kind:
                continue
            path = f"testdata/{case_id}.yaml"
            files[GROUP_DIR / kind / path] = yaml.safe_dump(obj, sort_keys=False)
            tests.append({"healthStatus": {"status": health,
                                           "message": expected_message(obj, health)},
                          "inputPath": path})
        files[GROUP_DIR / kind / "health_test.yaml"] = (
            "# Generated from tests/cases/readiness.py and tests/cases/argocd_health.py by\n"
            "# hack/argocd_health.py.\n" + yaml.safe_dump({"tests": tests}, sort_keys=False))
    return files


def _generated_testdata() -> set[Path]:
    return {p for kind in KINDS for p in (GROUP_DIR / kind / "testdata").glob("*.yaml")}


def differences() -> list[str]:
    """One line per generated file that is missing, differs, or is stale."""
    want = expected()
    problems = [f"{'missing' if not p.is_file() else 'differs'}: {p.relative_to(ROOT)}"
                for p, text in want.items() if not p.is_file() or p.read_text() != text]
    problems += [f"stale: {p.relative_to(ROOT)}" for p in sorted(_generated_testdata() - set(want))]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = differences()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python hack/argocd_health.py", file=sys.stderr)
        return 1 if problems else 0
    want = expected()
    for path, text in want.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for stale in _generated_testdata() - set(want):
        stale.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
