"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager.

Like controller-runtime's envtest, but with the namespace and garbage-collector controllers
running too, so namespaces finish deleting and ownerReferences cascade as in a cluster.
Everything listens on 127.0.0.1; certificates are generated per run.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import shutil
import ssl
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testbed import binaries
from testbed.procs import Server, free_port, wait_for

# Controllers that make namespaces and ownerReferences behave; nothing schedules pods.
_CONTROLLERS = (
    "namespace-controller,garbage-collector-controller,"
    "serviceaccount-controller,serviceaccount-token-controller"
)

# Audit at Metadata level for requests only (no bodies: Secrets must never land in a log).
_AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""


@dataclass(frozen=True)
class _KeyPair:
    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


class _Pki:
    """A throwaway CA issuing the serving and client certificates of one run."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        self._not_before = now - dt.timedelta(hours=1)
        self._not_after = now + dt.timedelta(days=7)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callstorage-testbed-ca")])
        self._ca_name = name
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_path = self.dir / "ca.crt"
        self.ca_path.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        organization: str | None = None,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        server: bool = False,
    ) -> _KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self._ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server
                     else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if dns or ips:
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        pair = _KeyPair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pair.key, key)
        return pair


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

    def __init__(self, run_dir: Path | None = None, *, audit: bool = False) -> None:
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="callstorage-cp-"))
        self._own_dir = run_dir is None
        self.audit_log: Path | None = self.run_dir / "audit.log" if audit else None
        self._servers: list[Server] = []
        self.port = 0
        self.pki: _Pki | None = None
        self.kubeconfig = self.run_dir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> Path:
        assert self.pki is not None
        return self.pki.ca_path

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context trusting the run's CA and presenting the admin certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.load_cert_chain(self.run_dir / "pki" / "admin.crt", self.run_dir / "pki" / "admin.key")
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
        pki = self.pki = _Pki(self.run_dir / "pki")
        serving = pki.issue(
            "apiserver", "kube-apiserver", server=True,
            dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"),
            ips=("127.0.0.1", "10.0.0.1"),
        )
        admin = pki.issue("admin", "admin", organization="system:masters")
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_priv, sa_pub = pki.dir / "sa.key", pki.dir / "sa.pub"
        _write_key(sa_priv, sa_key)
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
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={pki.ca_path}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_priv}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--profiling=false",
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
        write_kubeconfig(self.kubeconfig, self.server, pki.ca_path, cert=admin.cert, key=admin.key)
        wait_for(self._ready, timeout, "kube-apiserver /readyz", interval=0.25, alive=apiserver)

        kcm = Server("kube-controller-manager", [
            str(kcm_bin),
            f"--kubeconfig={self.kubeconfig}",
            f"--controllers={_CONTROLLERS}",
            "--leader-elect=false",
            f"--service-account-private-key-file={sa_priv}",
            f"--root-ca-file={pki.ca_path}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--use-service-account-credentials=false",
        ], logs)
        self._servers.append(kcm)
        return self

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
