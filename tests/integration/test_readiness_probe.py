"""``/readyz`` on the real API server: a leader whose controller cannot start (here: its
RBAC lacks the CRDs' kinds, as when the chart's ClusterRole or the CRDs are missing) is
not ready, and says why; granted the rights, it starts and becomes ready (issue 24,
item 9). A replica that leads without handling anything must not count as available.
"""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.request
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conftest import OperatorFactory
from testbed.controlplane import ControlPlane
from testbed.procs import wait_for

USER = "callstorage-readiness"


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, type(exc).__name__


def grant_leases(api: Any, namespace: str) -> None:
    """Just what leader election needs: the Lease in the operator's namespace."""
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "leases"},
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                   "verbs": ["get", "create", "update", "patch"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "leases"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leases"},
        "subjects": [{"kind": "User", "name": USER, "apiGroup": "rbac.authorization.k8s.io"}]})


def test_a_leader_that_cannot_start_is_not_ready_until_it_can(
    control_plane: ControlPlane, kube_api: Any, namespace: str,
    operator_factory: OperatorFactory,
) -> None:
    grant_leases(kube_api, namespace)
    kubeconfig = control_plane.user_kubeconfig(USER, group=f"{USER}-group")
    operator = operator_factory({
        "CALLSTORAGE_LEADER_ELECTION": "true", "CALLSTORAGE_NAMESPACE": namespace,
        "CALLSTORAGE_WATCH_NAMESPACES": namespace, "CALLSTORAGE_LEASE_NAME": "readiness",
    }, kubeconfig=kubeconfig, name="readiness-operator")
    binding = f"{namespace}-operator"
    rbac = client.RbacAuthorizationV1Api(kube_api)
    try:
        answers: list[tuple[int, str]] = []

        def leading() -> bool:
            answers.append(readyz(operator.health_port))
            return "leader" in answers[-1][1]

        wait_for(leading, 20, "the replica taking the Lease")
        # it leads; its start-up LIST is refused (403) and retried: never ready meanwhile
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            answers.append(readyz(operator.health_port))
            time.sleep(0.2)
        after_lead = answers[next(i for i, a in enumerate(answers) if "leader" in a[1]):]
        assert all(code == 503 for code, _ in after_lead), after_lead
        assert "HTTP 403" in after_lead[-1][1], after_lead[-1]

        rbac.create_cluster_role_binding({
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": USER,
                          "apiGroup": "rbac.authorization.k8s.io"}]})
        # kopf retries the start-up 10 s after each refusal
        wait_for(lambda: readyz(operator.health_port) == (200, "leader"), 30,
                 "the leader ready once it could start")
    finally:
        operator.stop()
        with contextlib.suppress(ApiException):  # not created if the test failed before
            rbac.delete_cluster_role_binding(binding)
