"""Build the operator image from the repository's Dockerfile, with no image registry.

No registry is reachable here, so the Dockerfile's base (``PYTHON_IMAGE``) is made from
Debian packages with mmdebstrap (bookworm: Python 3.11, as in python:3.11-slim-bookworm)
and imported into buildah's storage; buildah then builds the Dockerfile as written. Every
Python package comes from the hash-checked locks in ``hack/image/``. The result is saved
as an image archive that containerd imports (``ctr images import``) and cached by the
content of everything that goes into it, so an unchanged tree is not rebuilt.

Reproducibility: timestamps are fixed (``SOURCE_DATE_EPOCH``, ``buildah --timestamp``),
Python packages are pinned by hash, and the base's Debian package versions are recorded in
``hack/image/base-packages.txt``; a build whose versions differ (a new point release)
says so. ``python -m testbed image --lock`` refreshes the locks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed import apt, binaries

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "hack" / "image"
IMAGE_NAME = "docker.io/callstorage/callstorage"
SUITE = "bookworm"
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
# python3 + venv (the Dockerfile runs `python -m venv`), CA roots for TLS to real buckets;
# groupadd/useradd come with minbase's passwd.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
EPOCH = 0  # SOURCE_DATE_EPOCH: every file and the image config carry this time


def _log(msg: str) -> None:
    print(f"[image] {msg}", file=sys.stderr, flush=True)


def app_version() -> str:
    for line in (ROOT / "helm" / "callstorage" / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    raise RuntimeError("helm/callstorage/Chart.yaml has no appVersion")


@dataclass(frozen=True)
class BuiltImage:
    name: str  # fully qualified, as the CRI names it (docker.io/callstorage/callstorage:x)
    digest: str  # image id: digest of its config, as `ctr images ls` and Pod status show it
    archive: Path  # docker-archive tar for `ctr images import`


def _cache() -> Path:
    return binaries.cache_root() / "images"


def _buildah(*args: str, runroot: Path) -> list[str]:
    return ["buildah", f"--root={_cache() / 'buildah'}", f"--runroot={runroot}",
            "--storage-driver=overlay", *args]


def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _context_files() -> list[Path]:
    """What the Dockerfile's build context holds (mirrors .dockerignore)."""
    files = [ROOT / "Dockerfile", ROOT / "pyproject.toml", ROOT / "README.md",
             *sorted(IMAGE_DIR.glob("*.lock"))]
    files += [p for p in (ROOT / "operator").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return files


def _base_key() -> str:
    h = hashlib.sha256("\n".join((*MIRRORS, *BASE_PACKAGES, str(EPOCH))).encode())
    return h.hexdigest()[:16]


def build_base(runroot: Path) -> str:
    """The Debian base rootfs as a buildah image; returns its local name."""
    name = f"localhost/callstorage-base:{SUITE}-{_base_key()}"
    if subprocess.run(_buildah("inspect", "--type=image", name, runroot=runroot),
                      capture_output=True, check=False).returncode == 0:
        return name
    _log(f"making the base rootfs from Debian {SUITE} packages with mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="callstorage-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}
        subprocess.run([
            "mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
            f"--include={','.join(BASE_PACKAGES)}",
            # no docs, man pages or translations in a container image
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--customize-hook=chroot \"$1\" dpkg-query -W -f '${Package}=${Version}\\n' "
            f"> {Path(tmp) / 'packages.txt'}",
            "--customize-hook=rm -rf \"$1\"/var/cache/apt/* \"$1\"/var/lib/apt/lists/*",
            SUITE, str(rootfs), *MIRRORS,
        ], check=True, env=env)
        _check_base_packages((Path(tmp) / "packages.txt").read_text())
        ctr = subprocess.run(_buildah("from", "scratch", runroot=runroot), check=True,
                             capture_output=True, text=True).stdout.strip()
        try:
            subprocess.run(_buildah("add", ctr, str(rootfs), "/", runroot=runroot), check=True,
                           capture_output=True)
            subprocess.run(_buildah("config", "--cmd=python3", "--env=LANG=C.UTF-8",
                                    ctr, runroot=runroot), check=True)
            subprocess.run(_buildah("commit", "--quiet", f"--timestamp={EPOCH}", ctr, name,
                                    runroot=runroot), check=True, capture_output=True)
        finally:
            subprocess.run(_buildah("rm", ctr, runroot=runroot), check=False,
                           capture_output=True)
    return name


def _check_base_packages(found: str) -> None:
    recorded = IMAGE_DIR / "base-packages.txt"
    lines = sorted(line for line in found.splitlines() if line)
    if not recorded.is_file():
        recorded.write_text("\n".join(lines) + "\n")
        return
    want = set(recorded.read_text().split())
    drift = sorted(set(lines) ^ want)
    if drift:
        _log("the base's Debian packages differ from hack/image/base-packages.txt (a new "
             f"point release?): {', '.join(drift[:10])}; refresh with "
             "`python -m testbed image --lock`")


def build(tag: str | None = None) -> BuiltImage:
    """Build (or reuse) the operator image; returns its name, digest and archive."""
    apt.ensure(apt.IMAGE_PACKAGES)
    tag = tag or app_version()
    name = f"{IMAGE_NAME}:{tag}"
    key = f"{_base_key()}-{_hash_files(_context_files())}"
    out = _cache() / key
    meta = out / "image.json"
    if meta.is_file():
        data = json.loads(meta.read_text())
        if data["name"] == name and Path(data["archive"]).is_file():
            return BuiltImage(name, data["digest"], Path(data["archive"]))
    # One build at a time in the shared buildah store, whatever the checkout: a build's
    # closing `rmi --prune` removed another checkout's build container mid-COPY.
    with binaries._locked(_cache() / "buildah-store.lock"), \
            tempfile.TemporaryDirectory(prefix="callstorage-buildah-") as runroot_s:
        if meta.is_file():  # built by another run while we waited
            data = json.loads(meta.read_text())
            if data["name"] == name and Path(data["archive"]).is_file():
                return BuiltImage(name, data["digest"], Path(data["archive"]))
        runroot = Path(runroot_s)
        base = build_base(runroot)
        _log(f"building {name} from the Dockerfile with buildah (base {base})")
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(_buildah(
            "bud", *_pip_network_args(), "--pull=false", "--isolation=chroot",
            "--network=host", "--layers=false",
            f"--timestamp={EPOCH}", f"--build-arg=PYTHON_IMAGE={base}", "--file=Dockerfile",
            f"--tag={name}", ".", runroot=runroot), cwd=ROOT, check=True)
        archive = out / "image.tar"
        subprocess.run(_buildah("push", "--quiet", name,
                                f"docker-archive:{archive}:{name}", runroot=runroot),
                       check=True)
        # drop the previous build's now untagged image (the base stays tagged)
        subprocess.run(_buildah("rmi", "--prune", runroot=runroot), check=False,
                       capture_output=True)
        # the digest containerd will report: that of the manifest as stored in the archive
        digest = _archive_digest(archive)
        meta.write_text(json.dumps({"name": name, "digest": digest, "archive": str(archive)}))
    _prune(keep=3)
    return BuiltImage(name, digest, archive)


def _prune(keep: int) -> None:
    """Keep the ``keep`` newest image archives (each a few hundred MB), drop older ones."""
    built = sorted((d for d in _cache().iterdir() if (d / "image.json").is_file()),
                   key=lambda d: (d / "image.json").stat().st_mtime, reverse=True)
    for old in built[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _pip_network_args() -> list[str]:
    """Hand the host's package index and CA bundle to the build stage, if it has them."""
    args = []
    if os.environ.get("PIP_INDEX_URL"):
        args.append(f"--build-arg=PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}")
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():
        args += [f"--volume={ca}:/run/host-ca.crt:ro", "--build-arg=PIP_CERT=/run/host-ca.crt"]
    return args


def _archive_digest(archive: Path) -> str:
    """Digest of the image config in a docker-archive (what `ctr` and the CRI call the
    image id); stable for identical content."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest = json.loads(member.read())
        config = manifest[0]["Config"]
        body = tar.extractfile(config)
        assert body is not None
        return "sha256:" + hashlib.sha256(body.read()).hexdigest()


def lock() -> None:
    """Regenerate the hash-pinned locks with uv (run after changing dependencies)."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    common = ["--generate-hashes", "--python-version=3.11",
              "--python-platform=x86_64-manylinux_2_36", "--no-header", "--quiet"]
    subprocess.run([uv, "pip", "compile", str(ROOT / "pyproject.toml"), *common,
                    "-o", str(IMAGE_DIR / "requirements.lock")], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".in") as build_in:
        build_in.write("pip\nhatchling\n")
        build_in.flush()
        subprocess.run([uv, "pip", "compile", build_in.name, *common,
                        "-o", str(IMAGE_DIR / "build-requirements.lock")], check=True)
    (IMAGE_DIR / "base-packages.txt").unlink(missing_ok=True)
    _log("locks refreshed; the next build records hack/image/base-packages.txt")
