"""Copy the CRDs from ``crds/`` (the one source of truth) into the Helm chart's ``crds/``.

Helm installs only what lies inside the chart directory, so the chart carries byte-identical
copies. Run after changing a CRD:

    python hack/sync_crds.py          # copy, and remove copies whose source is gone
    python hack/sync_crds.py --check  # exit 1 and name the differences (CI, tests)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "crds"
CHART_CRDS = ROOT / "helm" / "callstorage" / "crds"
# kustomize's file in crds/ is not a CRD; Helm would try to install it
NOT_CRDS = {"kustomization.yaml"}


def sources(source: Path = SOURCE) -> list[Path]:
    """The CRD files of ``source``, sorted."""
    return sorted(p for p in source.glob("*.yaml") if p.name not in NOT_CRDS)


def _show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def differences(source: Path = SOURCE, target: Path = CHART_CRDS) -> list[str]:
    """One line per copy that is missing, differs, or has no source any more."""
    problems: list[str] = []
    wanted = {p.name: p for p in sources(source)}
    for name, src in wanted.items():
        copy = target / name
        if not copy.is_file():
            problems.append(f"missing: {_show(copy)}")
        elif copy.read_bytes() != src.read_bytes():
            problems.append(f"differs: {_show(copy)} != {_show(src)}")
    if target.is_dir():
        for stale in sorted(target.glob("*.yaml")):
            if stale.name not in wanted:
                problems.append(f"stale: {_show(stale)} (no {_show(source / stale.name)})")
    return problems


def sync(source: Path = SOURCE, target: Path = CHART_CRDS) -> None:
    """Make ``target`` hold exactly the CRD files of ``source``."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in sources(source)}
    for src in sources(source):
        shutil.copyfile(src, target / src.name)
    for stale in target.glob("*.yaml"):
        if stale.name not in wanted:
            stale.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences, copy nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = differences()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python hack/sync_crds.py", file=sys.stderr)
        return 1 if problems else 0
    sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
