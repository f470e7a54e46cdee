"""Azure Blob Storage on 127.0.0.1: Azurite (npm, pinned), with real SharedKey checks.

Azurite verifies SharedKey signatures against the keys of its accounts (given at start
in ``AZURITE_ACCOUNTS``, generated here at run time): a wrong key gets 403
AuthorizationFailure. It runs over HTTPS with a throwaway CA because Azurite takes bearer
tokens only over HTTPS (``--oauth basic``) and the storage SDK sends them only over HTTPS.
Service principals get their tokens from ``testbed.tokens.EntraTokenServer``, which
checks the client secret; Azurite then checks the token's issuer, audience and lifetime,
but neither its signature nor any role assignment (every valid token may do everything).
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import hashlib
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from callstorage.storagetypes.azure import ACCOUNT_KEY
from callstorage.storagetypes.base import ENDPOINT_KEY
from testbed.binaries import cache_root
from testbed.procs import Server, free_port, wait_for
from testbed.tlscerts import ThrowawayCA
from testbed.tokens import EntraTokenServer, ServicePrincipal

# 3.36+ require Node >= 21; Debian's Node 20 runs 3.35 fine. The version and every
# transitive package are locked (with integrity hashes) in azurite/package-lock.json:
# `make lock` / `make lock-upgrade` move them, `npm ci` installs exactly them.
AZURITE_DIR = Path(__file__).resolve().parent / "azurite"
AZURITE_VERSION = json.loads((AZURITE_DIR / "package.json").read_text())["dependencies"]["azurite"]
# The well-known development account every Azure SDK and tool knows.
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def install_azurite() -> Path:
    """Install the locked Azurite into the cache once; returns its ``azurite-blob`` script.

    The cache folder is named by the lock's digest, so a refreshed lock installs anew."""
    lock_file = AZURITE_DIR / "package-lock.json"
    digest = hashlib.sha256(lock_file.read_bytes()).hexdigest()[:12]
    home = cache_root() / "npm" / f"azurite-{AZURITE_VERSION}-{digest}"
    script = home / "node_modules" / ".bin" / "azurite-blob"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"Azurite {AZURITE_VERSION} is not cached and npm is not installed")
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel runs install once
        if script.exists():
            return script
        print(f"[testbed] installing azurite {AZURITE_VERSION} (locked) from npm into {home}",
              file=sys.stderr, flush=True)
        # Install beside the target and rename, so a killed install never looks complete.
        staging = Path(tempfile.mkdtemp(prefix=f"{home.name}-", dir=home.parent))
        try:
            for name in ("package.json", "package-lock.json"):
                shutil.copy(AZURITE_DIR / name, staging / name)
            subprocess.run(
                [npm, "ci", "--prefix", str(staging), "--no-audit", "--no-fund",
                 "--omit=dev", "--loglevel=error"],
                check=True, stdin=subprocess.DEVNULL, timeout=900,
            )
            staging.rename(home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return script


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class AzuriteServer:
    """Azurite's blob service over HTTPS, plus an Entra-style token endpoint.

    Two Azurite processes share the accounts: one checks SharedKey (a wrong key gets 403,
    as in Azure), one runs ``--oauth basic`` for bearer tokens. One process cannot do both
    faithfully: with ``--oauth`` a request whose SharedKey signature fails falls through to
    the token check and gets 400 InvalidAuthenticationInfo instead of a 403.
    ``create_container`` creates the container in both.

    ``accounts`` are created at start with random keys (Azurite reads its accounts from
    the environment once); ``devstoreaccount1`` always exists with its well-known key.
    """

    def __init__(self, servers: dict[str, Server], ports: dict[str, int],
                 accounts: dict[str, str], ca: ThrowawayCA, ca_path: Path,
                 entra: EntraTokenServer) -> None:
        self._servers = servers
        self._ports = ports
        self.accounts = accounts
        self.ca = ca  # issues certificates the storages' CA bundle trusts (relays)
        self.ca_pem = ca.cert_pem
        self.ca_path = ca_path
        self.entra = entra

    @classmethod
    def start(cls, log_dir: Path, accounts: tuple[str, ...] = ("callstorage1", "callstorage2"),
              timeout: float = 60.0) -> AzuriteServer:
        script = install_azurite()
        log_dir.mkdir(parents=True, exist_ok=True)
        ca = ThrowawayCA("callstorage azurite CA")
        tls_dir = log_dir / "azurite-tls"
        cert_path, key_path = ca.issue(["127.0.0.1", "localhost"]).write(tls_dir, "azurite")
        ca_path = tls_dir / "ca.crt"
        ca_path.write_bytes(ca.cert_pem)
        keys = {name: base64.b64encode(secrets.token_bytes(64)).decode() for name in accounts}
        env = {"AZURITE_ACCOUNTS": ";".join(f"{n}:{k}" for n, k in keys.items())}
        workspace = log_dir / "azurite-workspace"
        workspace.mkdir(exist_ok=True)
        servers: dict[str, Server] = {}
        ports: dict[str, int] = {}
        entra: EntraTokenServer | None = None
        try:
            for mode, extra in (("sharedkey", []), ("oauth", ["--oauth", "basic"])):
                ports[mode] = port = free_port()
                servers[mode] = Server(
                    f"azurite-{mode}",
                    [str(script), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                     "--inMemoryPersistence", "--skipApiVersionCheck", "--loose",
                     "--disableTelemetry", "--cert", str(cert_path), "--key", str(key_path),
                     *extra],
                    log_dir,
                    env=env,
                    cwd=workspace,  # in-memory mode writes nothing; keep strays out of cwd
                )
            for mode, server in servers.items():
                wait_for(lambda p=ports[mode]: _tcp_open(p), timeout,  # type: ignore[misc]
                         f"azurite ({mode})", alive=server)
            entra = EntraTokenServer(log_dir, ca.issue(["127.0.0.1", "localhost"]))
        except BaseException:
            for server in servers.values():
                server.stop()
            raise
        return cls(servers, ports, {DEV_ACCOUNT: DEV_ACCOUNT_KEY, **keys}, ca, ca_path, entra)

    @property
    def log_paths(self) -> list[Path]:
        return [s.log_path for s in self._servers.values()] + [self.entra.log_path]

    def endpoint_for(self, account: str, oauth: bool = False) -> str:
        """The account's blob endpoint (what ``spec.abs.endpoint`` takes for Azurite):
        the SharedKey instance's, or with ``oauth`` the one that accepts bearer tokens."""
        return f"https://127.0.0.1:{self._ports['oauth' if oauth else 'sharedkey']}/{account}"

    def key_for(self, account: str) -> str:
        return self.accounts[account]

    def create_service_principal(self) -> ServicePrincipal:
        """A principal whose Secret binds the token server and the bearer-token instance."""
        sp = self.entra.create_service_principal()
        return dataclasses.replace(sp, endpoint=self.endpoint_for(DEV_ACCOUNT, oauth=True))

    def secret_data(self, account: str) -> dict[str, str]:
        """An account-key credentials Secret's data, bound to the SharedKey instance."""
        return {ACCOUNT_KEY: self.accounts[account], ENDPOINT_KEY: self.endpoint_for(account)}

    def service_client(self, account: str, credential: Any = None, oauth: bool = False) -> Any:
        """A ``BlobServiceClient`` for ``account``, by default with its account key."""
        from azure.core.credentials import AzureNamedKeyCredential
        from azure.storage.blob import BlobServiceClient

        if credential is None:
            credential = AzureNamedKeyCredential(account, self.accounts[account])
        return BlobServiceClient(
            self.endpoint_for(account, oauth), credential=credential,
            connection_verify=str(self.ca_path), connection_timeout=5, read_timeout=30,
            retry_total=1,
        )

    def create_container(self, account: str, name: str) -> None:
        """Create container ``name`` in ``account`` on both instances."""
        for oauth in (False, True):
            with self.service_client(account, oauth=oauth) as svc:
                svc.create_container(name)

    def list_blobs(self, account: str, container: str, prefix: str = "",
                   oauth: bool = False) -> list[str]:
        with self.service_client(account, oauth=oauth) as svc:
            cc = svc.get_container_client(container)
            return [b.name for b in cc.list_blobs(name_starts_with=prefix or None)]

    def stop(self) -> None:
        try:
            self.entra.stop()
        finally:
            for server in self._servers.values():
                server.stop()

    def __enter__(self) -> AzuriteServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
