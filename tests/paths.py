"""Where the checkout's parts are, for every test (one definition of the repository root)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "callstorage"
