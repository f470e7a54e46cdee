"""Shared fixtures: one real control plane per run, a fresh namespace per test, the operator.

Integration tests talk to a real kube-apiserver + etcd (built by ``hack/testbed`` or taken
from ``KUBEBUILDER_ASSETS``) and to storage emulators that check credentials
(``storage_fixtures``). Everything started here is stopped here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import kubetools
from callstorage.api import CALLTYPE_PLURAL, EXTERNALSTORAGE_PLURAL, GROUP, VERSION
from paths import ROOT
from testbed import kubeutil
from testbed.controlplane import ControlPlane
from testbed.endpoints import TEST_DENYLIST
from testbed.procs import Server, free_port, http_ok, wait_for

pytest_plugins = ["storage_fixtures", "node_fixtures", "fault_fixtures"]

OPERATOR_NAMESPACE = "callstorage-system"
# The emulators listen on 127.0.0.1, which the default deny list refuses: every operator,
# CLI and in-process Settings() of the tests denies the default list without loopback,
# plus the loopback address attack tests listen on (testbed.endpoints; dev only).
DENYLIST_ENV = {"CALLSTORAGE_ENDPOINT_DENYLIST": ",".join(TEST_DENYLIST)}
os.environ.update(DENYLIST_ENV)


@contextlib.contextmanager
def started(cp: ControlPlane) -> Iterator[ControlPlane]:
    """``cp`` started, and stopped afterwards (also when it fails to start)."""
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with started(ControlPlane()) as cp:
        yield cp


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of this test's own, with an audit log (``cp.audit_log``): for a
    test that configures the operator's access itself or reads who asked for what."""
    with started(ControlPlane(tmp_path_factory.mktemp("cluster"), audit=True)) as cp:
        yield cp


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[Any]:
    api = control_plane.api_client()
    yield api
    api.close()


Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


def make_kubectl(kubeconfig: Path) -> Kubectl:
    """kubectl bound to ``kubeconfig`` (``kubetools.kubectl``)."""
    def bound(*args: str, check: bool = True, input: str | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return kubetools.kubectl(kubeconfig, *args, check=check, input=input, timeout=timeout)
    return bound


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    return make_kubectl(control_plane.kubeconfig)


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm's environment with its cache, config and data in a temporary directory."""
    return kubetools.helm_env(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane, kube_api: Any) -> list[str]:
    """Our CRDs from ``crds/``, applied and Established."""
    return kubeutil.apply_crds(kube_api, ROOT / "crds")


@pytest.fixture
def namespace(kube_api: Any, crds: list[str], credential_values: set[str],
              running_operators: list[RunningOperator]) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (the namespace controller of the
    test bed finishes the deletion in the background).

    Before it goes, the leak guard: no credential any test registered in
    ``credential_values`` may appear in this namespace's objects (status included) or
    events, the platform storage's namespace, or any operator's log."""
    with leak_guarded_namespace(kube_api, f"t-{secrets.token_hex(4)}", credential_values,
                                running_operators) as name:
        yield name


@contextlib.contextmanager
def leak_guarded_namespace(kube_api: Any, name: str, values: set[str],
                           operators: list[RunningOperator]) -> Iterator[str]:
    """Namespace ``name``, deleted afterwards; before it goes, none of ``values`` may be in
    its objects or events, the platform storage's namespace, or ``operators``' logs."""
    kubeutil.create_namespace(kube_api, name)
    try:
        yield name
        leaks = credential_leaks(kube_api, [name, OPERATOR_NAMESPACE], values, operators)
    finally:
        kubeutil.delete_namespace(kube_api, name)
    if leaks:
        # counts only: printing a leaked value would leak it into the test output
        pytest.fail(f"credential values found: {leaks}", pytrace=False)


def credential_leaks(kube_api: Any, namespaces: list[str], values: set[str],
                     operators: list[RunningOperator]) -> dict[str, int]:
    """Place -> how many of ``values`` it contains, for every place that has any: the
    callstorage objects (spec and status) and events of ``namespaces``, operator logs."""
    if not values:
        return {}
    custom = client.CustomObjectsApi(kube_api)
    core = client.CoreV1Api(kube_api)
    places: dict[str, str] = {}
    for ns in namespaces:
        for plural in (EXTERNALSTORAGE_PLURAL, CALLTYPE_PLURAL):
            try:
                listed = custom.list_namespaced_custom_object(GROUP, VERSION, ns, plural)
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            places[f"{plural} in {ns}"] = json.dumps(listed.get("items", []))
        places[f"events in {ns}"] = "\n".join(
            f"{e.reason} {e.message}" for e in core.list_namespaced_event(ns).items)
    for op in operators:
        places[f"log of {op.server.name}"] = op.log()
    found = {where: sum(value in text for value in values) for where, text in places.items()}
    return {where: n for where, n in found.items() if n}


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
        **DENYLIST_ENV,
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
    tmp_path_factory: pytest.TempPathFactory, running_operators: list[RunningOperator],
) -> Iterator[OperatorFactory]:
    """Start operators with given settings (env) and kubeconfig; all stopped at the end."""
    started = running_operators
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
def running_operators() -> list[RunningOperator]:
    """Every operator process started in this run (their logs are checked for leaks)."""
    return []


@pytest.fixture(scope="session")
def credential_values() -> set[str]:
    """Every credential a test hands to the operator, for all providers; the leak guard of
    ``namespace`` checks that none shows up in any status, event or operator log."""
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
