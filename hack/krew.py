"""Build the krew archive of the kubectl plugin and print its manifest.

The archive holds ``kubectl-callstorage``, a launcher that runs the CLI of the installed
``callstorage`` package with python3 (the manifest's caveats say to ``pip install`` it),
and the license. The manifest is docs/krew/callstorage.yaml with the version, the
archive's URI and its sha256 filled in.

    python hack/krew.py --homepage https://... --uri https://.../kubectl-callstorage-v0.1.0.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "docs" / "krew" / "callstorage.yaml"
LAUNCHER = """#!/bin/sh
# kubectl-callstorage: the callstorage CLI as a kubectl plugin (installed by krew).
# The CLI itself comes from the callstorage Python package: pip install callstorage
exec "${CALLSTORAGE_PYTHON:-python3}" -c 'import sys
sys.argv[0] = "kubectl-callstorage"  # the CLI then calls itself "kubectl callstorage"
from callstorage.cli import main
sys.exit(main())' "$@"
"""
LICENSE_TEXT = "Apache License 2.0 (see the callstorage repository's pyproject.toml).\n"


def version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'(?m)^version = "([^"]+)"', text)
    assert found is not None
    return "v" + found.group(1)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0  # reproducible
    tar.addfile(info, io.BytesIO(data))


def build_archive(out: Path) -> Path:
    """Write ``kubectl-callstorage-<version>.tar.gz`` into ``out``; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"kubectl-callstorage-{version()}.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "kubectl-callstorage", LAUNCHER.encode(), 0o755)
        _add(tar, "LICENSE", LICENSE_TEXT.encode(), 0o644)
    path.write_bytes(buffer.getvalue())
    return path


def manifest(homepage: str, uri: str, archive: Path) -> str:
    """docs/krew/callstorage.yaml with VERSION, HOMEPAGE, URI and SHA256 filled in."""
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    text = MANIFEST.read_text()
    for key, value in (("VERSION", version()), ("HOMEPAGE", homepage), ("URI", uri),
                       ("SHA256", sha)):
        text = re.sub(rf"(:\s){key}$", rf"\g<1>{value}", text, flags=re.M)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homepage", required=True, help="the project's URL")
    parser.add_argument("--uri", required=True, help="where the archive will be published")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    archive = build_archive(args.out)
    print(f"archive: {archive}", file=sys.stderr)
    print(manifest(args.homepage, args.uri, archive), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
