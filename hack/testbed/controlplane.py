"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager.

Like controller-runtime's envtest, but with the namespace and garbage-collector controllers
running too, so namespaces finish deleting and ownerReferences cascade as in a cluster.
Everything listens on 127.0.0.1; certificates are generated per run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testbed import binaries
from testbed.procs import Server, free_port, wait_for
from testbed.tlscerts import ThrowawayCA

# Controllers that make namespaces and ownerReferences behave, and the resource quota
# controller, which counts what a ResourceQuota limits (its admission refuses objects a
# quota covers until the controller has filled in status.used); nothing schedules pods.
_CONTROLLERS = (
    "namespace-controller,garbage-collector-controller,"
    "serviceaccount-controller,serviceaccount-token-controller,resourcequota-controller"
)
# With a real node: what Deployments, Services, PodDisruptionBudgets and the Pods'
# ServiceAccount volumes (the kube-root-ca.crt ConfigMap) need, and the node lifecycle
# controller, which lifts the not-ready taint a kubelet registers its node with.
_NODE_CONTROLLERS = (
    ",deployment-controller,replicaset-controller,endpointslice-controller,"
    "endpoints-controller,disruption-controller,root-ca-certificate-publisher-controller,"
    "pod-garbage-collector-controller,node-lifecycle-controller"
)

# Audit at Metadata level for requests only (no bodies: Secrets must never land in a log).
_AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""


def _write_rsa_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path.chmod(0o600)


def write_kubeconfig(
    path: Path, server: str, ca: Path, *, cert: Path | None = None, key: Path | None = None,
    token: str | None = None, user: str = "admin",
) -> Path:
    """Write a kubeconfig for one user (client certificate or bearer token)."""
    creds: dict[str, str] = {}
    if cert is not None and key is not None:
        creds = {"client-certificate": str(cert), "client-key": str(key)}
    if token is not None:
        creds["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": {
            "server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": user, "context": {"cluster": "testbed", "user": user}}],
        "current-context": user,
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    path.chmod(0o600)
    return path


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, for one run."""

    def __init__(self, run_dir: Path | None = None, *, audit: bool = False,
                 address: str = "127.0.0.1", for_node: bool = False,
                 profiling: bool = False) -> None:
        """``address``: where the API server listens and what it advertises (a real node's
        Pods reach it there through the ``kubernetes`` Service). ``for_node``: also run
        kube-scheduler and the workload controllers, with the Node authorizer and the
        ServiceAccount admission plugin on, as a cluster with kubelets needs."""
        self.address = address
        self.for_node = for_node
        self.profiling = profiling  # the API server's /debug/pprof (benchmarks)
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="callstorage-cp-"))
        self._own_dir = run_dir is None
        self.audit_log: Path | None = self.run_dir / "audit.log" if audit else None
        self._servers: list[Server] = []
        self.port = 0
        self.pki_dir = self.run_dir / "pki"
        self.kubeconfig = self.run_dir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.pki_dir / "ca.crt"

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context trusting the run's CA and presenting the admin certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        return ctx

    def get(self, path: str, timeout: float = 10.0) -> bytes:
        """GET a raw API path as admin (e.g. ``/openapi/v2``, ``/metrics``)."""
        req = urllib.request.Request(self.server + path)  # noqa: S310 - loopback https
        with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as r:  # noqa: S310
            body: bytes = r.read()
            return body

    def _ready(self) -> bool:
        try:
            return self.get("/readyz", timeout=2) == b"ok"
        except OSError:
            return False

    def start(self, timeout: float = 120.0) -> ControlPlane:
        """Start everything and wait until the API server is ready."""
        etcd_bin = binaries.find("etcd")
        apiserver_bin = binaries.find("kube-apiserver")
        kcm_bin = binaries.find("kube-controller-manager")
        logs = self.run_dir / "logs"
        ca = self._ca = ThrowawayCA("callstorage-testbed-ca")
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        self.ca_path.write_bytes(ca.cert_pem)
        serving_cert, serving_key = ca.issue([
            "127.0.0.1", "localhost", self.address, "10.0.0.1", "kubernetes", "kubernetes.default",
            "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
        ]).write(self.pki_dir, "apiserver")
        admin_cert, admin_key = ca.issue_client("admin", "system:masters").write(
            self.pki_dir, "admin")
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_priv, sa_pub = self.pki_dir / "sa.key", self.pki_dir / "sa.pub"
        _write_rsa_key(sa_priv, sa_key)
        sa_pub.write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

        client_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = Server("etcd", [
            str(etcd_bin), "--name=testbed", f"--data-dir={self.run_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=testbed={peer_url}", "--unsafe-no-fsync", "--log-level=warn",
        ], logs)
        self._servers.append(etcd)

        self.port = free_port()
        args = [
            str(apiserver_bin),
            f"--etcd-servers={etcd_url}",
            f"--secure-port={self.port}",
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--tls-cert-file={serving_cert}",
            f"--tls-private-key-file={serving_key}",
            f"--client-ca-file={self.ca_path}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_priv}",
            "--service-cluster-ip-range=10.0.0.0/24",
            # the Node authorizer lets kubelets read what their Pods need, no more
            "--authorization-mode=Node,RBAC" if self.for_node else "--authorization-mode=RBAC",
            *(["--enable-admission-plugins=NodeRestriction",
               # logs/exec/stats: reach kubelets by their node IP, not by host name
               "--kubelet-preferred-address-types=InternalIP",
               f"--kubelet-client-certificate={admin_cert}",
               f"--kubelet-client-key={admin_key}"] if self.for_node
              else ["--disable-admission-plugins=ServiceAccount"]),
            "--allow-privileged=true",
            f"--profiling={'true' if self.profiling else 'false'}",
            f"--cert-dir={self.run_dir / 'apiserver-certs'}",
        ]
        if self.audit_log is not None:
            policy = self.run_dir / "audit-policy.yaml"
            policy.write_text(_AUDIT_POLICY)
            args += [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                     "--audit-log-format=json", "--audit-log-mode=blocking"]
        wait_for(lambda: _tcp_open(client_port), 30, "etcd to listen", alive=etcd)
        apiserver = Server("kube-apiserver", args, logs)
        self._servers.append(apiserver)
        write_kubeconfig(self.kubeconfig, self.server, self.ca_path, cert=admin_cert,
                         key=admin_key)
        wait_for(self._ready, timeout, "kube-apiserver /readyz", interval=0.25, alive=apiserver)

        kcm = Server("kube-controller-manager", [
            str(kcm_bin),
            f"--kubeconfig={self.kubeconfig}",
            f"--controllers={_CONTROLLERS}{_NODE_CONTROLLERS if self.for_node else ''}",
            "--leader-elect=false",
            f"--service-account-private-key-file={sa_priv}",
            f"--root-ca-file={self.ca_path}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--use-service-account-credentials=false",
            # a quota created before the controller discovered a new CRD (it looks every
            # 30 s) gets that kind counted at the next full sync: 5 min by default
            "--resource-quota-sync-period=10s",
        ], logs)
        self._servers.append(kcm)
        if self.for_node:
            self._servers.append(Server("kube-scheduler", [
                str(binaries.find("kube-scheduler")),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
            ], logs))
        return self

    def issue_client(self, name: str, user: str, group: str | None = None) -> Path:
        """A kubeconfig for ``user`` (client certificate signed by the run's CA)."""
        cert, key = self._ca.issue_client(user, group).write(self.pki_dir, name)
        return write_kubeconfig(self.run_dir / f"{name}.kubeconfig", self.server,
                                self.ca_path, cert=cert, key=key, user=user)

    def user_kubeconfig(self, user: str, group: str = "system:masters",
                        server: str | None = None) -> Path:
        """A kubeconfig with a client certificate of its own (CN=``user``), so the audit
        log attributes that client's requests to it; ``server`` to go through a proxy."""
        kubeconfig = self.issue_client(user, user, group)
        if server is not None:
            config = json.loads(kubeconfig.read_text())
            config["clusters"][0]["cluster"]["server"] = server
            kubeconfig.write_text(json.dumps(config, indent=2))
        return kubeconfig

    def component(self, name: str) -> Server:
        """The running process of ``etcd``, ``kube-apiserver`` or ``kube-controller-manager``."""
        return next(s for s in self._servers if s.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL one component (a crash, not a shutdown)."""
        server = self.component(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.proc.wait(10)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Start a killed component again with the same arguments (same port, same data);
        for the API server, wait until it is ready."""
        old = self.component(name)
        old.stop(grace=1)
        new = Server(name, old.argv, old.log_path.parent)
        self._servers[self._servers.index(old)] = new
        if name == "kube-apiserver":
            wait_for(self._ready, timeout, "kube-apiserver /readyz", interval=0.1, alive=new)

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for the admin (or the given kubeconfig)."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig or self.kubeconfig),
                                client_configuration=cfg)
        return client.ApiClient(cfg)

    def stop(self) -> None:
        """Stop every process (controller-manager first, etcd last) and clean up."""
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self._own_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def logs(self) -> dict[str, str]:
        """Tail of each component's log, for failure messages."""
        return {s.name: s.tail() for s in self._servers}

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tcp_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
