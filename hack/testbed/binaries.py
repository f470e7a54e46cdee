"""Find or build the Go binaries the test bed needs, and cache them outside the repo.

Lookup order for each binary: ``$KUBEBUILDER_ASSETS`` (the envtest convention, for
kube-apiserver, etcd and kubectl-style assets), then the cache under
``~/.cache/callstorage/bin/<name>-<version>/``, then a build from the Go module proxy.
Builds go through a throwaway wrapper module because k8s.io/kubernetes and etcd's server
module point their sibling modules at local paths with ``replace`` directives, which
``go install pkg@version`` refuses; the wrapper replaces them with the published twins.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.19.5"
KUBECONFORM_VERSION = "v0.7.0"
# sigs.k8s.io/cli-utils, whose kstatus package is what Flux and kpt read status with
KSTATUS_VERSION = "v0.37.2"
# MinIO has no semver tags: a pseudo-version of its main branch (@latest on 2026-11-27;
# upstream is no longer maintained). Only the media benchmark needs it.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

# promtool 3.16.0: Prometheus tags its Go module v0.<major><minor>.<patch>
PROMETHEUS_VERSION = "v0.316.0"
# The last Argo CD line whose gitops-engine is a published module (from 3.3 on it is a
# sibling directory behind a replace directive, which the module proxy cannot serve).
ARGOCD_VERSION = "v3.2.12"
ARGOCD_K8S_MINOR = "34.0"  # the k8s.io/* version its go.mod replaces them with
# The ServiceMonitor and PrometheusRule CRDs the chart's optional objects need, from the
# prometheus-operator Go module (example/prometheus-operator-crd/ in its zip).
PROMETHEUS_OPERATOR_VERSION = "v0.86.1"
MONITORING_CRDS = ("monitoring.coreos.com_servicemonitors.yaml",
                   "monitoring.coreos.com_prometheusrules.yaml")

# Staging modules of k8s.io/kubernetes; each is published as k8s.io/<name> v0.<minor>.<patch>.
_K8S_STAGING = (
    "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go",
    "cloud-provider", "cluster-bootstrap", "code-generator", "component-base",
    "component-helpers", "controller-manager", "cri-api", "cri-client", "csi-translation-lib",
    "dynamic-resource-allocation", "endpointslice", "externaljwt", "kms", "kube-aggregator",
    "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl", "kubelet", "metrics",
    "mount-utils", "pod-security-admission", "sample-apiserver", "sample-cli-plugin",
    "sample-controller",
)


# The control plane, and what a real node adds (kubelet, kube-proxy, kube-scheduler).
_K8S_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                 "kube-proxy")

# The pod sandbox ("pause") process: no registry is reachable, so the image is built here
# from this program (static, waits for a signal, reaps orphans like the upstream pause).
_PAUSE_GO = """package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, _ := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
	}
}
"""
PAUSE_VERSION = "3.10"


def cache_root() -> Path:
    """Where built binaries live; ``CALLSTORAGE_CACHE`` overrides ``~/.cache/callstorage``."""
    env = os.environ.get("CALLSTORAGE_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base if env else base / "callstorage"


@dataclass(frozen=True)
class GoBuild:
    """One Go build: a wrapper module and the packages to build from it."""

    name: str
    version: str
    binaries: tuple[str, ...]
    go_mod: str
    packages: tuple[str, ...]
    ldflags: str = ""
    main_go: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # key the cache on the wrapper's text too, for wrappers with code of our own that can
    # change while the pinned version does not
    fingerprint: bool = False

    @property
    def directory(self) -> Path:
        key = f"{self.name}-{self.version}"
        if self.fingerprint:
            text = self.go_mod + (self.main_go or "") + self.ldflags
            key += "-" + hashlib.sha256(text.encode()).hexdigest()[:12]
        return cache_root() / "bin" / key


def _kubernetes() -> GoBuild:
    v = KUBERNETES_VERSION
    major, minor = v.lstrip("v").split(".")[:2]
    staging = v.replace("v1.", "v0.", 1)
    replaces = "\n".join(f"\tk8s.io/{m} => k8s.io/{m} {staging}" for m in _K8S_STAGING)
    go_mod = (
        "module callstorage.local/kube\n\ngo 1.24\n\n"
        f"require k8s.io/kubernetes {v}\n\nreplace (\n{replaces}\n)\n"
    )
    pkg = "k8s.io/component-base/version"
    ldflags = " ".join(
        f"-X {pkg}.{k}={val}"
        for k, val in {
            "gitVersion": v,
            "gitMajor": major,
            "gitMinor": minor,
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
        }.items()
    )
    return GoBuild(
        name="kubernetes",
        version=v,
        # one build for the control plane and the node: the Go build cache is shared
        binaries=_K8S_BINARIES,
        go_mod=go_mod,
        packages=tuple(f"k8s.io/kubernetes/cmd/{b}" for b in _K8S_BINARIES),
        ldflags=f"-s -w {ldflags}",
    )


def _etcd() -> GoBuild:
    go_mod = (
        "module callstorage.local/etcd\n\ngo 1.24\n\n"
        f"require go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
    )
    main_go = (
        "package main\n\nimport (\n\t\"os\"\n\n\t\"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\n"
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    return GoBuild(
        name="etcd",
        version=ETCD_VERSION,
        binaries=("etcd",),
        go_mod=go_mod,
        packages=(".",),
        main_go=main_go,
        ldflags="-s -w",
    )


def _helm() -> GoBuild:
    go_mod = f"module callstorage.local/helm\n\ngo 1.24\n\nrequire helm.sh/helm/v3 {HELM_VERSION}\n"
    return GoBuild(
        name="helm",
        version=HELM_VERSION,
        binaries=("helm",),
        go_mod=go_mod,
        packages=("helm.sh/helm/v3/cmd/helm",),
        ldflags=f"-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
    )


def _kubeconform() -> GoBuild:
    go_mod = (
        "module callstorage.local/kubeconform\n\ngo 1.24\n\n"
        f"require github.com/yannh/kubeconform {KUBECONFORM_VERSION}\n"
    )
    return GoBuild(
        name="kubeconform",
        version=KUBECONFORM_VERSION,
        binaries=("kubeconform",),
        go_mod=go_mod,
        packages=("github.com/yannh/kubeconform/cmd/kubeconform",),
        ldflags="-s -w",
    )


def _pause() -> GoBuild:
    return GoBuild(
        name="pause",
        version=PAUSE_VERSION,
        binaries=("pause",),
        go_mod="module callstorage.local/pause\n\ngo 1.24\n",
        packages=(".",),
        main_go=_PAUSE_GO,
        ldflags="-s -w",
    )


def _minio() -> GoBuild:
    go_mod = (
        "module callstorage.local/minio\n\ngo 1.24\n\n"
        f"require github.com/minio/minio {MINIO_VERSION}\n"
    )
    return GoBuild(
        name="minio",
        version=MINIO_VERSION,
        binaries=("minio",),
        go_mod=go_mod,
        packages=("github.com/minio/minio",),
        ldflags="-s -w",
    )


def _kstatus() -> GoBuild:
    """kstatus's status.Compute behind a tiny JSON-in, JSON-out main (kstatus_main.go).

    The k8s.io libraries are lifted to the test bed's Kubernetes minor; the package
    only reads unstructured objects, so the newer libraries change nothing it relies on.
    """
    staging = KUBERNETES_VERSION.replace("v1.", "v0.", 1)
    go_mod = (
        "module callstorage.local/kstatus\n\ngo 1.24\n\nrequire (\n"
        f"\tsigs.k8s.io/cli-utils {KSTATUS_VERSION}\n"
        f"\tk8s.io/api {staging}\n"
        f"\tk8s.io/apimachinery {staging}\n)\n"
    )
    return GoBuild(
        name="kstatus",
        version=KSTATUS_VERSION,
        binaries=("kstatus",),
        go_mod=go_mod,
        packages=(".",),
        main_go=(Path(__file__).with_name("kstatus_main.go")).read_text(),
        ldflags="-s -w",
        fingerprint=True,
    )


def _promtool() -> GoBuild:
    go_mod = (
        "module callstorage.local/promtool\n\ngo 1.24\n\n"
        f"require github.com/prometheus/prometheus {PROMETHEUS_VERSION}\n"
    )
    release = "3." + str(int(PROMETHEUS_VERSION.split(".")[1]) - 300) + "." + \
        PROMETHEUS_VERSION.split(".")[2]
    return GoBuild(
        name="promtool",
        version=PROMETHEUS_VERSION,
        binaries=("promtool",),
        go_mod=go_mod,
        packages=("github.com/prometheus/prometheus/cmd/promtool",),
        ldflags=f"-s -w -X github.com/prometheus/common/version.Version={release}",
        # Prometheus's own build tag: no cloud service-discovery plugins (AWS, Azure, GCE,
        # ...), about a fifth fewer packages to compile; rule checks and tests need none
        env={"GOFLAGS": "-mod=mod -buildvcs=false -tags=remove_all_sd"},
    )


def _argocd_lua() -> GoBuild:
    # Argo CD's go.mod replaces the Kubernetes modules (it requires k8s.io/kubernetes,
    # whose staging modules are v0.0.0 there); a wrapper module must repeat that.
    staging = "v0." + ARGOCD_K8S_MINOR
    replaces = "\n".join(
        [f"\tk8s.io/{m} => k8s.io/{m} {staging}" for m in _K8S_STAGING]
        + ["\tgithub.com/golang/protobuf => github.com/golang/protobuf v1.5.4",
           "\tgithub.com/grpc-ecosystem/grpc-gateway => "
           "github.com/grpc-ecosystem/grpc-gateway v1.16.0",
           "\tgolang.org/x/tools => golang.org/x/tools v0.35.0",
           "\tgopkg.in/yaml.v2 => gopkg.in/yaml.v2 v2.4.0",
           "\tgopkg.in/yaml.v3 => gopkg.in/yaml.v3 v3.0.1"])
    go_mod = (
        "module callstorage.local/argocd-lua\n\ngo 1.24\n\n"
        f"require github.com/argoproj/argo-cd/v3 {ARGOCD_VERSION}\n\n"
        f"replace (\n{replaces}\n)\n"
    )
    return GoBuild(
        name="argocd-lua",
        version=ARGOCD_VERSION,
        binaries=("argocd-lua",),
        go_mod=go_mod,
        packages=(".",),
        main_go=Path(__file__).with_name("argocd_lua_main.go").read_text(),
        ldflags="-s -w",
        fingerprint=True,
    )


BUILDS: dict[str, GoBuild] = {
    b.name: b for b in (_kubernetes(), _etcd(), _helm(), _kubeconform(), _kstatus(),
                        _promtool(), _argocd_lua(), _minio(), _pause())
}
# Built only when asked for by name (``find("minio")``): not part of ``prepare``/make test.
ON_DEMAND = frozenset({"minio"})
# binary name -> the build that makes it
_BY_BINARY = {binary: b for b in BUILDS.values() for binary in b.binaries}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise builds of one thing across processes (parallel test runs, demo + tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def build(b: GoBuild) -> Path:
    """Build ``b`` into its cache directory unless every binary is already there."""
    target = b.directory
    if all((target / n).is_file() for n in b.binaries):
        return target
    if shutil.which("go") is None:
        raise RuntimeError(f"{b.name} {b.version} is not cached and Go is not installed")
    with _locked(target.parent / f"{target.name}.lock"):
        if all((target / n).is_file() for n in b.binaries):
            return target
        _log(f"building {b.name} {b.version} with Go (cold builds take minutes; cached after)")
        with tempfile.TemporaryDirectory(prefix=f"callstorage-{b.name}-") as tmp:
            work = Path(tmp)
            (work / "go.mod").write_text(b.go_mod)
            if b.main_go is not None:
                (work / "main.go").write_text(b.main_go)
            env = {
                **os.environ,
                "GOTOOLCHAIN": "local",
                "CGO_ENABLED": "0",
                "GOFLAGS": "-mod=mod -buildvcs=false",
                # the checksum database is not reachable from every machine; the module
                # proxy still serves content-addressed zips, and go.sum pins them per build
                "GOSUMDB": "off",
                **b.env,
            }
            out = work / "out"
            out.mkdir()
            cmd = ["go", "build", "-trimpath", "-ldflags", b.ldflags, "-o", f"{out}/",
                   *b.packages]
            subprocess.run(cmd, cwd=work, env=env, check=True)
            if b.main_go is not None:  # `go build .` names the binary after the module
                (out / Path(b.go_mod.split()[1]).name).rename(out / b.binaries[0])
            target.mkdir(parents=True, exist_ok=True)
            for n in b.binaries:
                shutil.move(str(out / n), str(target / n))
        _log(f"built {b.name} into {target}")
    return target


def find(binary: str) -> Path:
    """Path of ``binary``: from ``KUBEBUILDER_ASSETS`` when it has it, else cached or built."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / binary).is_file():
        return Path(assets) / binary
    b = _BY_BINARY.get(binary)
    if b is None:
        raise KeyError(f"unknown binary {binary!r}")
    return build(b) / binary


def monitoring_crds() -> list[Path]:
    """prometheus-operator's ServiceMonitor and PrometheusRule CRDs, fetched with
    ``go mod download`` and cached like the binaries."""
    v = PROMETHEUS_OPERATOR_VERSION
    target = cache_root() / "crds" / f"prometheus-operator-{v}"
    paths = [target / name for name in MONITORING_CRDS]
    if all(p.is_file() for p in paths):
        return paths
    if shutil.which("go") is None:
        raise RuntimeError(f"prometheus-operator {v} CRDs are not cached and Go is not installed")
    with _locked(target.parent / f"{target.name}.lock"):
        if all(p.is_file() for p in paths):
            return paths
        with tempfile.TemporaryDirectory(prefix="callstorage-promop-") as tmp:
            (Path(tmp) / "go.mod").write_text("module callstorage.local/crds\n\ngo 1.24\n")
            env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod",
                   "GOSUMDB": "off"}
            out = subprocess.run(
                ["go", "mod", "download", "-json",
                 f"github.com/prometheus-operator/prometheus-operator@{v}"],
                cwd=tmp, env=env, check=True, capture_output=True, text=True).stdout
        source = Path(json.loads(out)["Dir"]) / "example" / "prometheus-operator-crd"
        target.mkdir(parents=True, exist_ok=True)
        for name in MONITORING_CRDS:
            shutil.copyfile(source / name, target / name)
    return paths


def ensure_all(names: list[str] | None = None) -> dict[str, Path]:
    """Find or build every binary but the on-demand ones (or those named); returns
    binary -> path."""
    wanted = names or [n for n in _BY_BINARY if n not in ON_DEMAND]
    return {n: find(n) for n in wanted}
