"""The import direction between ``callstorage.api`` and ``callstorage.storagetypes``.

``api`` is the base: the CRD models, names, reasons, prefixes. The storage types build
their provider blocks on it, and ``callstorage.storagespec`` assembles the ExternalStorage
spec from both. Nothing in ``api`` may import a storage type or the assembled spec, so
either package imports first, alone, without a cycle and without a lazy-export list.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "callstorage"


def _imports(package: str) -> dict[str, set[str]]:
    """Module of ``callstorage.<package>`` -> the ``callstorage`` modules it imports
    (anywhere in it: at the top, under TYPE_CHECKING, inside functions)."""
    found: dict[str, set[str]] = {}
    for path in sorted((PACKAGE / package).rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    anchor = module.split(".")
                    if parts[-1] != "__init__":
                        anchor = anchor[:-1]
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
        found[module] = {n for n in names if n.startswith("callstorage")}
    return found


def _reaches(imported: str, package: str) -> bool:
    return imported == package or imported.startswith(package + ".")


def test_api_imports_no_storage_type() -> None:
    offending = {module: sorted(n for n in names
                                if _reaches(n, "callstorage.storagetypes")
                                or _reaches(n, "callstorage.storagespec"))
                 for module, names in _imports("api").items()}
    assert {m: n for m, n in offending.items() if n} == {}


def test_storage_types_import_only_the_api_base() -> None:
    # they may use the api package; never the spec assembled from them
    offending = {module: sorted(n for n in names if _reaches(n, "callstorage.storagespec"))
                 for module, names in _imports("storagetypes").items()}
    assert {m: n for m, n in offending.items() if n} == {}


def test_api_has_no_lazy_exports() -> None:
    tree = ast.parse((PACKAGE / "api" / "__init__.py").read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "__getattr__" not in defined


@pytest.mark.parametrize("first", [
    "callstorage.api",
    "callstorage.storagetypes",
    "callstorage.storagetypes.s3",
    "callstorage.api.v1alpha1",
    "callstorage.storagespec",
])
def test_each_side_imports_first_in_a_fresh_interpreter(first: str) -> None:
    code = (f"import {first}\n"
            "from callstorage.api import GROUP, CallTypeSpec\n"
            "from callstorage.storagespec import ExternalStorageSpec, S3Spec\n"
            "from callstorage.storagetypes import PROVIDERS\n"
            "assert set(PROVIDERS) <= set(ExternalStorageSpec.model_fields)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
