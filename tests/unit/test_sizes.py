"""The package's size limits (README's house rules): no module over 600 lines, no class
over 400, no function over 60 in ``operator/callstorage``. The few known offenders are
listed by name; each must shrink below its limit and leave the list, and nothing may
join it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "callstorage"
MODULE_MAX, CLASS_MAX, FUNCTION_MAX = 600, 400, 60
# Over their limit before the rule was checked; to be split, not to grow.
KNOWN = {
    "cli.py", "cli.py:build_parser",
    "client/facade.py", "client/facade.py:Client",
    "client/facade.py:create_external_storage", "client/facade.py:update_external_storage",
    "providers/azure.py:_build", "providers/gcs.py:_build", "providers/s3.py:_build",
}


def _oversized() -> set[str]:
    found: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        source = path.read_text()
        if len(source.splitlines()) > MODULE_MAX:
            found.add(name)
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            limit = CLASS_MAX if isinstance(node, ast.ClassDef) else FUNCTION_MAX
            if (node.end_lineno or node.lineno) - node.lineno + 1 > limit:
                found.add(f"{name}:{node.name}")
    return found


def test_no_module_class_or_function_is_over_its_limit() -> None:
    oversized = _oversized()
    assert sorted(oversized - KNOWN) == [], "over the size limit"
    assert sorted(KNOWN - oversized) == [], "within the limit now: take it off KNOWN"
