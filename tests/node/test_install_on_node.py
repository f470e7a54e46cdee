"""The operator as it ships: the image built from the Dockerfile, installed with Helm (chart
defaults) and with ``kubectl apply -k manifests/``, run by a kubelet under the chart's
securityContext in a namespace that enforces the restricted Pod Security Standard."""

from __future__ import annotations

import re
import secrets
from typing import Any

import storages
from node_fixtures import NodeCluster
from paths import CHART, ROOT
from testbed import kubeutil
from testbed.procs import wait_for

RELEASE = "cs"


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    (status,) = pod["status"]["containerStatuses"]
    return dict(status)


def _restricted_namespace(cluster: NodeCluster, name: str) -> None:
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")


def _check_running_as_shipped(cluster: NodeCluster, namespace: str) -> list[dict[str, Any]]:
    """Both replicas Ready from the imported image, non-root, read-only root filesystem."""
    cluster.wait_ready_pods(namespace, 2)
    pods = cluster.ready_pods(namespace)
    for pod in pods:
        status = _container(pod)
        assert status["imageID"].endswith(cluster.image.digest), status["imageID"]
        assert status["restartCount"] == 0
        name = pod["metadata"]["name"]
        ident = cluster.kubectl("exec", "-n", namespace, name, "--", "id", "-u").stdout
        assert ident.strip() == "10001"
        denied = cluster.kubectl("exec", "-n", namespace, name, "--", "touch", "/opt/x",
                                 check=False)
        assert denied.returncode != 0
        assert "Read-only file system" in denied.stderr
        # /tmp is the one writable place (a size-limited emptyDir)
        cluster.kubectl("exec", "-n", namespace, name, "--", "touch", "/tmp/x")
    return pods


def _validates_s3_storage(cluster: NodeCluster) -> str:
    app = f"app-{secrets.token_hex(3)}"
    kubeutil.create_namespace(cluster.api, app)
    cluster.s3_storage(app, "recordings")
    storages.wait_ready(cluster.api, "externalstorages", app, "recordings", timeout=90)
    obj = kubeutil.get_object(cluster.api, "externalstorages", app, "recordings")
    assert storages.condition(obj)["reason"] == "Validated"
    assert obj is not None
    assert obj["status"].get("lastValidatedAt")
    return app


def _scrape_through_service(cluster: NodeCluster, namespace: str, service: str,
                            app: str) -> None:
    """Prometheus' view: /metrics through the Service's cluster IP (kube-proxy's rules).
    The Service spreads requests over both replicas; the leader's says so and has
    validated something."""
    ip = cluster.get("service", service, "-n", namespace)["spec"]["clusterIP"]
    seen: dict[str, str] = {}

    def leader_seen() -> bool:
        text = cluster.in_node(f"http://{ip}:8080/metrics")
        leader = re.search(r"^callstorage_leader (\S+)$", text, re.M)
        assert leader is not None, text[:500]
        seen[leader.group(1)] = text
        return "1.0" in seen

    wait_for(leader_seen, 60, "a scrape through the Service that reaches the leader",
             interval=0.2)
    ours = "\n".join(line for line in seen["1.0"].splitlines()
                     if line.startswith("callstorage_"))
    assert re.search(r'^callstorage_validations_total\{[^}]*reason="Validated"[^}]*\} [1-9]',
                     ours, re.M), ours
    assert f'callstorage_storage_ready{{name="recordings",namespace="{app}"}} 1.0' in ours \
        or f'callstorage_storage_ready{{namespace="{app}",name="recordings"}} 1.0' in ours, ours


def test_helm_install_defaults_run_validate_upgrade_and_uninstall(
        node_cluster: NodeCluster) -> None:
    cluster = node_cluster
    ns = "cs-helm"
    _restricted_namespace(cluster, ns)
    try:
        before = set(cluster.kubectl("get", "all,sa,role,rolebinding,lease,pdb,cm,secret",
                                     "-n", ns, "-o", "name").stdout.split())
        # chart defaults: the image callstorage/callstorage:<appVersion>, present on the node
        cluster.helm("install", RELEASE, str(CHART), "-n", ns, "--wait", "--timeout=3m")
        pods = _check_running_as_shipped(cluster, ns)
        names = {p["metadata"]["name"] for p in pods}
        wait_for(lambda: cluster.lease_holder(ns, f"{RELEASE}-callstorage") in names, 30,
                 "one replica to take the leader Lease")
        # what the readiness probe sees: one leader, one standby that could take over
        holder = cluster.lease_holder(ns, f"{RELEASE}-callstorage")
        for pod in pods:
            said = cluster.in_node(f"http://{pod['status']['podIP']}:8081/readyz")
            assert said == ("leader" if pod["metadata"]["name"] == holder else "standby")
        app = _validates_s3_storage(cluster)
        _scrape_through_service(cluster, ns, f"{RELEASE}-callstorage-metrics", app)

        # a changed setting rolls out: new Pods with it, one leader, storages stay validated
        cluster.helm("upgrade", RELEASE, str(CHART), "-n", ns, "--set", "settings.logLevel=DEBUG",
                     "--wait", "--timeout=3m")
        cluster.kubectl("rollout", "status", f"deployment/{RELEASE}-callstorage", "-n", ns,
                        "--timeout=180s")
        pods = _check_running_as_shipped(cluster, ns)
        assert not names & {p["metadata"]["name"] for p in pods}
        for pod in pods:
            env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
            assert env["CALLSTORAGE_LOG_LEVEL"] == "DEBUG"
        new_names = {p["metadata"]["name"] for p in pods}
        wait_for(lambda: cluster.lease_holder(ns, f"{RELEASE}-callstorage") in new_names, 60,
                 "a new replica to lead after the rollout")
        cluster.s3_storage(app, "after-upgrade")
        storages.wait_ready(cluster.api, "externalstorages", app, "after-upgrade", timeout=60)
        # the rollout replaced every replica, and never had two operators writing at once
        cluster.assert_one_writer_at_a_time(app)

        cluster.helm("uninstall", RELEASE, "-n", ns, "--wait", "--timeout=3m")
        # what Helm made is gone, and so is the Lease (owned by the last leader's Pod)
        def only_before_left() -> bool:
            now = set(cluster.kubectl("get", "all,sa,role,rolebinding,lease,pdb,cm,secret",
                                      "-n", ns, "-o", "name").stdout.split())
            return now <= before
        wait_for(only_before_left, 90, "nothing of the release left in its namespace")
        assert cluster.kubectl("get", "crd", "externalstorages.callstorage.io").returncode == 0
        kubeutil.delete_namespace(cluster.api, app)
        kubeutil.delete_namespace(cluster.api, ns)
    finally:
        cluster.cleanup_release(RELEASE, ns)


def test_kubectl_apply_k_manifests_runs_and_validates(node_cluster: NodeCluster) -> None:
    cluster = node_cluster
    ns = "callstorage-system"  # the base's own, labelled restricted by namespace.yaml
    try:
        cluster.kubectl("apply", "-k", str(ROOT / "manifests"))
        _check_running_as_shipped(cluster, ns)
        wait_for(lambda: (cluster.lease_holder(ns, "callstorage-operator") or "")
                 .startswith("callstorage-operator-"), 30, "a leader")
        app = _validates_s3_storage(cluster)
        _scrape_through_service(cluster, ns, "callstorage-operator-metrics", app)
        kubeutil.delete_namespace(cluster.api, app)
        wait_for(lambda: cluster.kubectl("get", "namespace", app, check=False).returncode != 0,
                 60, f"namespace {app} to go")
    finally:
        cluster.kubectl("delete", "-k", str(ROOT / "manifests"), "--ignore-not-found",
                        "--wait=true", timeout=180, check=False)
