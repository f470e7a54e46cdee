"""High availability on a real node: two replicas, one leader; delete the leader's Pod and
the standby takes over. Measured: from the kill to a storage created at that moment being
Ready. Checked on the API server's audit log: no object is ever written by two replicas
in interleaved turns (never two active operators), and the in-use finalizer survives."""

from __future__ import annotations

import itertools
import json
import secrets
import statistics
import time
from collections import defaultdict
from typing import Any

import storages
from node_fixtures import NodeCluster
from paths import CHART
from testbed import kubeutil
from testbed.procs import wait_for

RELEASE = "ha"
LEASE = f"{RELEASE}-callstorage"
IN_USE = "callstorage.io/in-use-protection"
KILLS = 4


def test_standby_takes_over_when_the_leader_pod_is_deleted(node_cluster: NodeCluster) -> None:
    cluster = node_cluster
    ns = "cs-ha"
    cluster.kubectl("create", "namespace", ns)
    cluster.helm("install", RELEASE, str(CHART), "-n", ns, "--wait", "--timeout=3m")
    cluster.wait_ready_pods(ns, 2)
    app = f"app-{secrets.token_hex(3)}"
    try:
        kubeutil.create_namespace(cluster.api, app)
        # a storage in use by a CallType carries the in-use finalizer; it is being deleted,
        # so only that finalizer keeps it, across every failover
        cluster.s3_storage(app, "in-use")
        storages.wait_ready(cluster.api, "externalstorages", app, "in-use", timeout=60)
        kubeutil.create_object(cluster.api, "calltypes", app, {
            "apiVersion": "callstorage.io/v1alpha1", "kind": "CallType",
            "metadata": {"name": "allhands"}, "spec": {"externalStorage": "in-use"}})

        def finalizers() -> list[str]:
            obj = kubeutil.get_object(cluster.api, "externalstorages", app, "in-use")
            assert obj is not None, "the in-use storage is gone: its finalizer was lost"
            return list(obj["metadata"].get("finalizers") or [])

        wait_for(lambda: IN_USE in finalizers(), 30, "the in-use finalizer")
        cluster.kubectl("delete", "externalstorage", "in-use", "-n", app, "--wait=false")

        failovers: list[float] = []
        leaders = [cluster.lease_holder(ns, LEASE)]
        for i in range(KILLS):
            leader = leaders[-1]
            names = {p["metadata"]["name"] for p in cluster.ready_pods(ns)}
            assert leader in names, (leader, names)
            killed = time.monotonic()
            cluster.kubectl("delete", "pod", leader, "-n", ns, "--wait=false")
            cluster.s3_storage(app, f"after-kill-{i}")
            # failed over: another replica holds the Lease and the new storage is Ready
            # (the old leader may still validate it while it shuts down: no gap either way)
            wait_for(lambda: cluster.lease_holder(ns, LEASE) not in (None, leader), 30,  # noqa: B023
                     "another replica to take the Lease", interval=0.05)
            storages.wait_ready(cluster.api, "externalstorages", app, f"after-kill-{i}",
                                timeout=60)
            failovers.append(time.monotonic() - killed)
            # the standby, or the replacement Pod if it was up before the old leader let go
            new_leader = cluster.lease_holder(ns, LEASE)
            assert new_leader is not None
            assert new_leader != leader
            leaders.append(new_leader)
            assert IN_USE in finalizers()
            cluster.wait_ready_pods(ns, 2)  # the replacement is a Ready standby again
        print(f"\n[failover] kill -> new storage Ready, {KILLS} kills: "
              f"median {statistics.median(failovers):.1f}s, max {max(failovers):.1f}s, "
              f"all {[round(f, 1) for f in failovers]}")

        # No double writes. Only leaders write; each leader's last write to any object comes
        # before its successor's first; per object, each replica's writes form one unbroken
        # run; a storage created at a kill is written by the leaving and the new leader only.
        writes = cluster.status_writers(app)
        by_pod: dict[str, list[str]] = defaultdict(list)
        for seq in writes.values():
            for stamp, pod in seq:
                by_pod[pod].append(stamp)
        assert set(by_pod) <= set(leaders), (sorted(by_pod), leaders)
        for before, after in itertools.pairwise(leaders):
            if by_pod.get(before) and by_pod.get(after):
                assert max(by_pod[before]) < min(by_pod[after]), (before, after)
        cluster.assert_one_writer_at_a_time(app)
        for i in range(KILLS):  # written by the leader that went, then the one that came
            assert {pod for _, pod in writes[f"after-kill-{i}"]} <= {leaders[i], leaders[i + 1]}

        # A crash (the leader's process killed, no clean hand-over): the kubelet restarts the
        # container, which comes back with the same identity and resumes the Lease, or the
        # standby takes over once the Lease expired (15 s); whichever comes first.
        leader = cluster.lease_holder(ns, LEASE)
        (pod,) = [p for p in cluster.pods(ns) if p["metadata"]["name"] == leader]
        container = pod["status"]["containerStatuses"][0]["containerID"].split("://")[1]
        crashed = time.monotonic()
        cluster.node.ctr("tasks", "kill", "--signal=SIGKILL", container)
        cluster.s3_storage(app, "after-crash")
        storages.wait_ready(cluster.api, "externalstorages", app, "after-crash", timeout=60)
        print(f"[failover] leader process killed -> new storage Ready: "
              f"{time.monotonic() - crashed:.1f}s (new leader {cluster.lease_holder(ns, LEASE)})")
        assert IN_USE in finalizers()
        cluster.assert_one_writer_at_a_time(app)

        # the finalizer still works: without its CallType the storage finishes deleting
        cluster.kubectl("delete", "calltype", "allhands", "-n", app)
        wait_for(lambda: kubeutil.get_object(cluster.api, "externalstorages", app, "in-use")
                 is None, 60, "the released storage to be deleted")

        # memory of the operator as the kubelet reports it (summary API, through the API server)
        summary: dict[str, Any] = json.loads(cluster.kubectl(
            "get", "--raw", "/api/v1/nodes/callstorage-node/proxy/stats/summary").stdout)
        for pod in summary["pods"]:
            if pod["podRef"]["namespace"] == ns:
                mem = pod["containers"][0]["memory"]
                print(f"[memory] {pod['podRef']['name']}: working set "
                      f"{mem['workingSetBytes'] / 2**20:.1f} MiB, rss "
                      f"{mem.get('rssBytes', 0) / 2**20:.1f} MiB")
    finally:
        cluster.cleanup_release(RELEASE, ns, app)
