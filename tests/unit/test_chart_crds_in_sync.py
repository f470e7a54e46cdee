"""The chart's crds/ and the kustomize CRD list are exact copies of crds/ (one source)."""

from __future__ import annotations

from pathlib import Path

import yaml

import sync_crds
from paths import ROOT


def test_chart_crds_are_identical_copies() -> None:
    problems = sync_crds.differences()
    assert not problems, "\n".join([*problems, "fix: python hack/sync_crds.py"])


def test_there_are_crds_to_copy() -> None:
    names = {p.name for p in sync_crds.sources()}
    assert {"externalstorages.yaml", "calltypes.yaml"} <= names


def test_kustomization_lists_every_crd() -> None:
    kustomization = yaml.safe_load((ROOT / "crds" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in sync_crds.sources())


def test_differences_finds_missing_changed_and_stale_copies(tmp_path: Path) -> None:
    source, target = tmp_path / "crds", tmp_path / "chart-crds"
    source.mkdir()
    (source / "a.yaml").write_text("a: 1\n")
    (source / "b.yaml").write_text("b: 1\n")
    (source / "kustomization.yaml").write_text("resources: [a.yaml, b.yaml]\n")

    assert sorted(sync_crds.differences(source, target)) == [
        f"missing: {target / 'a.yaml'}",
        f"missing: {target / 'b.yaml'}",
    ]

    sync_crds.sync(source, target)
    assert sync_crds.differences(source, target) == []
    assert sorted(p.name for p in target.iterdir()) == ["a.yaml", "b.yaml"]

    (target / "a.yaml").write_text("a: 2\n")  # edited in the chart instead of crds/
    (target / "old.yaml").write_text("gone: true\n")  # a CRD removed from crds/
    assert sorted(sync_crds.differences(source, target)) == [
        f"differs: {target / 'a.yaml'} != {source / 'a.yaml'}",
        f"stale: {target / 'old.yaml'} (no {source / 'old.yaml'})",
    ]

    sync_crds.sync(source, target)
    assert sync_crds.differences(source, target) == []
    assert not (target / "old.yaml").exists()
