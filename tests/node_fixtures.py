"""A cluster with a real node, for the tests that run the operator as it ships.

One per session (about 30 s to start once the binaries and the image are cached): a
control plane with kube-scheduler and the workload controllers, listening on the host end
of the node's veth link; the node (kubelet, containerd, runc, CNI bridge, kube-proxy) in a
network namespace of its own; the operator image built from the Dockerfile and imported;
and the S3 emulator on the link, where Pods reach it. The API server writes an audit log
(metadata only), which the failover tests read to count status writes per object.
Everything is stopped at the end, and the node proves it left nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import kubetools
import storages
from testbed import binaries, image
from testbed.controlplane import ControlPlane
from testbed.node import Node
from testbed.procs import wait_for
from testbed.s3 import S3Server


@dataclass
class NodeCluster:
    cp: ControlPlane
    node: Node
    s3: S3Server
    image: image.BuiltImage
    api: Any

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return kubetools.kubectl(self.cp.kubeconfig, *args, check=check, input=input,
                                 timeout=timeout)

    def cleanup_release(self, release: str, *namespaces: str) -> None:
        """After a test, pass or fail: no operator of it may live on into the next test."""
        self.helm("uninstall", release, "-n", namespaces[0], "--wait", "--timeout=2m",
                  check=False)
        for ns in namespaces:
            self.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false",
                         check=False)

    def helm(self, *args: str, timeout: float = 300,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(binaries.find("helm")), *args,
                                 f"--kubeconfig={self.cp.kubeconfig}"],
                                capture_output=True, text=True, timeout=timeout, check=False,
                                env={"HOME": str(self.cp.run_dir), "PATH": "/usr/bin:/bin",
                                     "HELM_CACHE_HOME": str(self.cp.run_dir / "helm"),
                                     "HELM_CONFIG_HOME": str(self.cp.run_dir / "helm"),
                                     "HELM_DATA_HOME": str(self.cp.run_dir / "helm")})
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)}: {result.stderr.strip()}")
        return result

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("pods", "-n", namespace)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, namespace: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(namespace) if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", []))]

    def wait_ready_pods(self, namespace: str, count: int, timeout: float = 180) -> None:
        wait_for(lambda: len(self.ready_pods(namespace)) == count
                 and len(self.pods(namespace)) == count, timeout,
                 f"{count} Ready Pods in {namespace}", interval=0.5)

    def lease_holder(self, namespace: str, name: str) -> str | None:
        lease = self.kubectl("get", "lease", name, "-n", namespace, "-o", "json",
                             check=False)
        if lease.returncode != 0:
            return None
        holder: str | None = json.loads(lease.stdout)["spec"].get("holderIdentity")
        return holder

    def s3_storage(self, namespace: str, name: str) -> None:
        """An S3 ExternalStorage on the emulator with keys of its own (ReadWrite)."""
        storages.s3_storage(self.api, self.s3, namespace, name)

    def status_writers(self, namespace: str) -> dict[str, list[tuple[str, str]]]:
        """Per ExternalStorage of ``namespace``: (time, Pod) of every status write, from the
        audit log (bound ServiceAccount tokens name their Pod)."""
        assert self.cp.audit_log is not None
        writes: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for line in self.cp.audit_log.read_text().splitlines():
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if (event.get("stage") != "ResponseComplete" or event.get("verb") != "patch"
                    or ref.get("resource") != "externalstorages"
                    or ref.get("subresource") != "status" or ref.get("namespace") != namespace
                    or not 200 <= event.get("responseStatus", {}).get("code", 0) < 300):
                continue
            pod = (event["user"].get("extra") or {}).get(
                "authentication.kubernetes.io/pod-name", ["?"])[0]
            writes[ref["name"]].append((event["stageTimestamp"], pod))
        return writes

    def assert_one_writer_at_a_time(self, namespace: str) -> None:
        """Never two active operators: ordered by time, the status writes to the storages
        of ``namespace`` come in one unbroken run per Pod (no Pod writes again after
        another one started writing)."""
        seq = sorted(w for writes in self.status_writers(namespace).values() for w in writes)
        pods = [pod for _, pod in seq]
        runs = [p for j, p in enumerate(pods) if j == 0 or pods[j - 1] != p]
        assert runs, f"no status writes in {namespace}"
        assert len(runs) == len(set(runs)), f"writers took turns: {runs}"

    def in_node(self, url: str, timeout: float = 5) -> str:
        """GET ``url`` from inside the node's network namespace (Service IPs work there)."""
        code = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
                f"{url!r}, timeout={timeout}).read().decode())")
        return self.node.exec("python3", "-c", code, timeout=timeout + 5).stdout


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    started = time.monotonic()
    built = image.build()
    node = Node()
    cp = ControlPlane(tmp_path_factory.mktemp("node-cp"), audit=True,
                      address=node.host_ip, for_node=True)
    s3: S3Server | None = None
    api = None
    try:
        cp.start()
        node.start(cp)
        node.import_archive(built.archive)
        s3 = S3Server.start(tmp_path_factory.mktemp("node-s3"), host=node.host_ip)
        api = cp.api_client()
        print(f"\n[node] cluster with a real node up in {time.monotonic() - started:.1f}s")
        yield NodeCluster(cp, node, s3, built, api)
    finally:
        if api is not None:
            api.close()
        if s3 is not None:
            s3.stop()
        stopping = time.monotonic()
        node.stop()
        stopped_node = time.monotonic()
        cp.stop()
        print(f"\n[node] stopped: node {stopped_node - stopping:.1f}s, control plane "
              f"{time.monotonic() - stopped_node:.1f}s")
    left = node.leftovers()
    assert not left, f"the node left traces on the host: {left}"
