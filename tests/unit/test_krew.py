"""The krew manifest of the kubectl plugin, and the archive hack/krew.py builds for it:
installed the way krew installs (the archive's files, ``bin`` on PATH), kubectl finds the
plugin and it runs the CLI of the installed package."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from callstorage import __version__
from paths import ROOT

sys.path.insert(0, str(ROOT / "hack"))
import krew  # hack/ script, not a package

URI = "https://downloads.example.test/kubectl-callstorage.tar.gz"


def test_manifest_is_a_complete_krew_plugin(tmp_path: Path) -> None:
    archive = krew.build_archive(tmp_path)
    plugin = yaml.safe_load(krew.manifest("https://example.test/callstorage", URI, archive))
    assert plugin["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert plugin["kind"] == "Plugin"
    assert plugin["metadata"]["name"] == "callstorage"  # kubectl callstorage
    spec = plugin["spec"]
    assert spec["version"] == f"v{__version__}"
    assert spec["homepage"] == "https://example.test/callstorage"
    assert len(spec["shortDescription"]) <= 50
    assert "pip install callstorage" in spec["caveats"]
    (platform,) = spec["platforms"]
    assert platform["uri"] == URI
    assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert platform["bin"] == "kubectl-callstorage"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {f["from"] for f in platform["files"]} <= names
    assert krew.build_archive(tmp_path / "again").read_bytes() == archive.read_bytes()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")
def test_installed_like_krew_kubectl_runs_the_plugin(tmp_path: Path) -> None:
    archive = krew.build_archive(tmp_path / "dist")
    store = tmp_path / "krew" / "store" / "callstorage"
    with tarfile.open(archive) as tar:
        tar.extractall(store, filter="data")
    bin_dir = tmp_path / "krew" / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl-callstorage").symlink_to(store / "kubectl-callstorage")
    # only krew's bin and kubectl on PATH (not the venv's own kubectl-callstorage)
    kubectl = Path(shutil.which("kubectl") or "kubectl")
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), str(kubectl.parent)]),
           "CALLSTORAGE_PYTHON": sys.executable}
    listed = subprocess.run(["kubectl", "plugin", "list"], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert str(bin_dir / "kubectl-callstorage") in listed.stdout
    result = subprocess.run(["kubectl", "callstorage", "version", "-o", "yaml"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"version: {__version__}\n"
    usage = subprocess.run(["kubectl", "callstorage", "--help"], capture_output=True,
                           text=True, env=env, timeout=60, check=False)
    assert usage.stdout.startswith("usage: kubectl callstorage")
