"""Running the command-line tools the tests drive (kubectl, helm, kustomize, promtool,
...): one way to run them, which fails with the tool's own output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from testbed import binaries

#: the Kubernetes version of the test bed, as Helm's --kube-version wants it
KUBE_VERSION = binaries.KUBERNETES_VERSION.lstrip("v")


def run(argv: list[str], *, env: dict[str, str] | None = None, check: bool = True,
        input: str | None = None, timeout: float = 120,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (``env`` on top of ours); with ``check``, a failure is an
    AssertionError carrying the tool's output."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                            input=input, env={**os.environ, **(env or {})}, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def kubectl(kubeconfig: Path | None, *args: str, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """kubectl against ``kubeconfig`` (None: none, for ``kubectl kustomize``)."""
    prefix = ["kubectl"] + ([f"--kubeconfig={kubeconfig}"] if kubeconfig else [])
    return run([*prefix, *args], check=check, input=input, timeout=timeout)


def kustomize(path: Path) -> list[dict[str, Any]]:
    """What ``kubectl kustomize path`` builds, as objects."""
    return [d for d in yaml.safe_load_all(kubectl(None, "kustomize", str(path)).stdout) if d]


def helm_env(home: Path) -> dict[str, str]:
    """Helm's cache, config and data under ``home``, out of $HOME: tests leave no trace."""
    return {f"HELM_{d}_HOME": str(home / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}


def helm(env: dict[str, str], *args: str, kubeconfig: Path | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """The test bed's helm with ``env`` (``helm_env``), against ``kubeconfig`` if given."""
    argv = [str(binaries.find("helm")), *args]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    return run(argv, env=env, check=check)
