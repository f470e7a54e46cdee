"""kopf, imported without the ``kubernetes`` package.

kopf imports ``kubernetes``, when installed, only to recognise its model classes, which
the operator never hands to kopf; that import alone costs ~65 MB of memory. It is hidden
while kopf loads; a process that already has it (a test runner, the CLI) keeps it.
Import kopf in the operator's modules as ``from callstorage.kopfloader import kopf``.
"""

from __future__ import annotations

import sys

_hide = "kubernetes" not in sys.modules
if _hide:
    sys.modules["kubernetes"] = None  # type: ignore[assignment]
try:
    import kopf
finally:
    if _hide:
        del sys.modules["kubernetes"]

__all__ = ["kopf"]
