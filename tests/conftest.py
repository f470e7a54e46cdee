"""Shared fixtures: one real control plane per run, a fresh namespace per test, the operator.

Integration tests talk to a real kube-apiserver + etcd (built by ``hack/testbed`` or taken
from ``KUBEBUILDER_ASSETS``) and to storage emulators that check credentials
(``storage_fixtures``). Everything started here is stopped here.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.procs import Server, free_port, http_ok, wait_for

pytest_plugins = ["storage_fixtures", "node_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
OPERATOR_NAMESPACE = "callstorage-system"


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    cp = ControlPlane()
    try:
        cp.start()
    except Exception:
        cp.stop()
        raise
    yield cp
    cp.stop()


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[Any]:
    api = control_plane.api_client()
    yield api
    api.close()


Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


def make_kubectl(kubeconfig: Path) -> Kubectl:
    def kubectl(*args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", *args], input=input,
            capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result
    return kubectl


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    return make_kubectl(control_plane.kubeconfig)


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane, kube_api: Any) -> list[str]:
    """Our CRDs from ``crds/``, applied and Established."""
    return kubeutil.apply_crds(kube_api, ROOT / "crds")


@pytest.fixture
def namespace(kube_api: Any, crds: list[str]) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (the namespace controller of the
    test bed finishes the deletion in the background)."""
    name = f"t-{secrets.token_hex(4)}"
    kubeutil.create_namespace(kube_api, name)
    yield name
    kubeutil.delete_namespace(kube_api, name)


class RunningOperator:
    """The operator as a subprocess, with its log kept for later inspection."""

    def __init__(self, server: Server, metrics_port: int, health_port: int) -> None:
        self.server = server
        self.metrics_port = metrics_port
        self.health_port = health_port

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.server.stop()


OperatorFactory = Callable[..., RunningOperator]


def launch_operator(kubeconfig: Path, log_dir: Path, env: dict[str, str] | None = None,
                    name: str = "operator") -> RunningOperator:
    """Start ``python -m callstorage`` against ``kubeconfig`` and wait for its liveness
    endpoint; the caller stops it."""
    metrics_port, health_port = free_port(), free_port()
    full_env = {
        "KUBECONFIG": str(kubeconfig),
        "CALLSTORAGE_NAMESPACE": OPERATOR_NAMESPACE,
        "CALLSTORAGE_METRICS_PORT": str(metrics_port),
        "CALLSTORAGE_HEALTH_PORT": str(health_port),
        # short timeouts keep failure scenarios quick; retries stay exponential
        "CALLSTORAGE_CONNECT_TIMEOUT": "2",
        "CALLSTORAGE_READ_TIMEOUT": "3",
        "CALLSTORAGE_MAX_ATTEMPTS": "1",
        "CALLSTORAGE_RETRY_BASE": "1",
        "CALLSTORAGE_RETRY_MAX": "10",
        "CALLSTORAGE_LOG_LEVEL": "DEBUG",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    server = Server(name, [sys.executable, "-m", "callstorage"], log_dir, env=full_env,
                    cwd=ROOT)
    running = RunningOperator(server, metrics_port, health_port)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{health_port}/healthz"), 60,
                 "the operator's liveness endpoint", alive=server)
    except BaseException:
        server.stop()
        raise
    return running


@pytest.fixture(scope="session")
def operator_factory(
    control_plane: ControlPlane, kube_api: Any, crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorFactory]:
    """Start operators with given settings (env) and kubeconfig; all stopped at the end."""
    started: list[RunningOperator] = []
    kubeutil.create_namespace(kube_api, OPERATOR_NAMESPACE, exist_ok=True)

    def start(env: dict[str, str] | None = None, kubeconfig: Path | None = None,
              name: str = "operator") -> RunningOperator:
        running = launch_operator(kubeconfig or control_plane.kubeconfig,
                                  tmp_path_factory.mktemp(name), env, name)
        started.append(running)
        return running

    yield start
    for op in started:
        op.stop()


@pytest.fixture(scope="session")
def credential_values() -> set[str]:
    """Every credential a test hands to the operator; the last test of the run checks
    that none of them shows up in any status, event or operator log."""
    return set()


@pytest.fixture(scope="session")
def operator(operator_factory: OperatorFactory) -> RunningOperator:
    """The operator watching all namespaces, shared by the tests of a run."""
    return operator_factory(name="operator")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/integration, tests/e2e and tests/faults need the test bed;
    tests/node needs a real node as well (root, Debian's container runtime, the operator
    image)."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts or "e2e" in parts or "faults" in parts:
            item.add_marker(pytest.mark.integration)
        if "faults" in parts:
            item.add_marker(pytest.mark.faults)
        if "node" in parts:
            item.add_marker(pytest.mark.node)
