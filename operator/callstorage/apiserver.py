"""The operator's own connection to the API server: credentials and a small async client.

The operator's watches (``callstorage.watching``) and its own calls (status patches,
Secret reads, LISTs, Events) go through this aiohttp client, which kopf brings anyway. The official
``kubernetes`` package is not loaded by the operator: importing it costs ~65 MB of memory
(every API model class), more than everything else the operator holds for 1,000
storages. The CLI and the Python client still use it (``callstorage.kube``).

Credentials come in kubectl's order (``KUBECONFIG``, ``~/.kube/config``, the in-cluster
ServiceAccount). Kubeconfig users with a client certificate, a token, a token file or a
password are read here; those that need a plugin (``exec``, ``auth-provider``) are loaded
by the ``kubernetes`` package's own loader, which only they pay for.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp
import yaml

from callstorage.kopfloader import kopf

# (connect, read) seconds for every call
CONNECT_TIMEOUT: Final = 5.0
READ_TIMEOUT: Final = 30.0
SERVICE_ACCOUNT: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# A projected ServiceAccount token is rotated by the kubelet: read again this often.
TOKEN_REREAD_S: Final = 60.0


class ApiError(Exception):
    """The API server answered with an error status (``status``: the HTTP code)."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class CredentialsError(Exception):
    """No usable kubeconfig or in-cluster configuration; ``reason`` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _kubeconfig_paths() -> list[Path]:
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    default = Path("~/.kube/config").expanduser()
    return [default] if default.exists() else []


def connection_info(trust_env: bool = False) -> kopf.ConnectionInfo:
    """The API server and credentials, in kubectl's order. Raises ``CredentialsError``."""
    paths = [p for p in _kubeconfig_paths() if p.exists()]
    if paths:
        return _from_kubeconfig(paths, trust_env)
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get(
        "KUBERNETES_SERVICE_PORT", "443")
    if host:
        token_file = SERVICE_ACCOUNT / "token"
        if not token_file.exists():
            raise CredentialsError("NoKubeconfig", f"in a cluster, but {token_file} is missing")
        server_host = f"[{host}]" if ":" in host else host
        return kopf.ConnectionInfo(
            server=f"https://{server_host}:{port}",
            ca_path=str(SERVICE_ACCOUNT / "ca.crt"),
            token=token_file.read_text().strip(), trust_env=trust_env)
    raise CredentialsError("NoKubeconfig", "no kubeconfig found: pass --kubeconfig, set "
                                           "KUBECONFIG, or create ~/.kube/config")


def _from_kubeconfig(paths: list[Path], trust_env: bool) -> kopf.ConnectionInfo:
    """The current context of the merged kubeconfig files (the first value of a name wins,
    as kubectl merges them); file paths are relative to the file that names them."""
    current: str | None = None
    contexts: dict[str, dict[str, Any]] = {}
    clusters: dict[str, tuple[dict[str, Any], Path]] = {}
    users: dict[str, tuple[dict[str, Any], Path]] = {}
    try:
        for path in paths:
            doc = yaml.safe_load(path.read_text()) or {}
            current = current or doc.get("current-context")
            for item in doc.get("contexts") or []:
                contexts.setdefault(item["name"], item.get("context") or {})
            for item in doc.get("clusters") or []:
                clusters.setdefault(item["name"], (item.get("cluster") or {}, path.parent))
            for item in doc.get("users") or []:
                users.setdefault(item["name"], (item.get("user") or {}, path.parent))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise CredentialsError("InvalidKubeconfig",
                               f"cannot read the kubeconfig: {type(exc).__name__}") from None
    context = contexts.get(current or "")
    if context is None or context.get("cluster") not in clusters:
        raise CredentialsError("InvalidKubeconfig",
                               f"the kubeconfig's current context {current!r} is incomplete")
    cluster, cluster_dir = clusters[context["cluster"]]
    user, user_dir = users.get(context.get("user", ""), ({}, cluster_dir))
    if user.get("exec") or user.get("auth-provider"):
        return _via_kubernetes_client(trust_env)

    def file(base: Path, value: object) -> str | None:
        return str((base / str(value)).resolve()) if value else None

    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(file(user_dir, user["tokenFile"]) or "").read_text().strip()
    return kopf.ConnectionInfo(
        server=str(cluster.get("server", "")),
        ca_path=file(cluster_dir, cluster.get("certificate-authority")),
        ca_data=cluster.get("certificate-authority-data") or None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")) or None,
        certificate_path=file(user_dir, user.get("client-certificate")),
        certificate_data=user.get("client-certificate-data") or None,
        private_key_path=file(user_dir, user.get("client-key")),
        private_key_data=user.get("client-key-data") or None,
        username=user.get("username"), password=user.get("password"),
        token=token or None, default_namespace=context.get("namespace"),
        proxy_url=cluster.get("proxy-url"), trust_env=trust_env)


def _via_kubernetes_client(trust_env: bool) -> kopf.ConnectionInfo:
    """Credentials from a plugin (exec, auth-provider), through the official loader."""
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        config.load_kube_config(client_configuration=cfg, persist_config=False)
    except config.ConfigException as exc:
        raise CredentialsError("InvalidKubeconfig",
                               f"cannot load the kubeconfig: {exc}") from None
    header = cfg.get_api_key_with_prefix("authorization") or ""
    scheme, _, token = header.partition(" ") if " " in header else ("", "", header)
    return kopf.ConnectionInfo(
        server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
        username=cfg.username or None, password=cfg.password or None,
        scheme=scheme or None, token=token or None, certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file, trust_env=trust_env)


class ApiServer:
    """JSON calls to the API server on one keep-alive pool (created on first use, in the
    running loop). A 401 reloads the credentials once (a rotated token) and retries."""

    def __init__(self, loader: Callable[[], kopf.ConnectionInfo] = connection_info,
                 pool: int = 16) -> None:
        self._loader = loader
        self._pool = pool
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def _connect(self, reload: bool = False) -> tuple[aiohttp.ClientSession, str]:
        async with self._lock:
            stale = time.monotonic() - self._loaded_at > TOKEN_REREAD_S and \
                os.environ.get("KUBERNETES_SERVICE_HOST") is not None
            if self._session is None or reload or stale:
                info = await asyncio.to_thread(self._loader)
                old, self._session = self._session, None
                if old is not None:
                    await old.close()
                headers = {"Accept": "application/json",
                           "User-Agent": "callstorage-operator"}
                auth = None
                if info.token:
                    headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
                elif info.username and info.password:
                    auth = aiohttp.BasicAuth(info.username, info.password)
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(),
                                                   limit=self._pool),
                    headers=headers, auth=auth, trust_env=info.trust_env,
                    timeout=aiohttp.ClientTimeout(connect=CONNECT_TIMEOUT,
                                                  sock_read=READ_TIMEOUT,
                                                  total=CONNECT_TIMEOUT + READ_TIMEOUT))
                self._info = info
                self._loaded_at = time.monotonic()
            return self._session, str(self._info.server if self._info else "").rstrip("/")

    async def request(self, method: str, path: str, *, body: Any = None,
                      content_type: str = "application/json",
                      params: Mapping[str, str] | None = None,
                      parse: bool = True, read_timeout: float = READ_TIMEOUT,
                      accept: str | None = None) -> dict[str, Any]:
        """The decoded JSON answer ({} when ``parse`` is False); ``ApiError`` on >= 400.
        ``read_timeout``: seconds of silence before the call fails (the session's 30 s
        fits a LIST; point calls pass less)."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        if accept is not None:
            headers["Accept"] = accept
        timeout = aiohttp.ClientTimeout(connect=CONNECT_TIMEOUT, sock_read=read_timeout,
                                        total=CONNECT_TIMEOUT + read_timeout)
        for attempt in (1, 2):
            session, server = await self._connect(reload=attempt == 2)
            async with session.request(method, server + path, data=data,
                                       headers=headers or None, params=params,
                                       timeout=timeout, proxy=self._info.proxy_url
                                       if self._info else None) as resp:
                if resp.status == 401 and attempt == 1:
                    continue
                if resp.status >= 400:
                    raise ApiError(resp.status, resp.reason or "",
                                   (await resp.read()).decode(errors="replace"))
                if not parse:
                    await resp.read()
                    return {}
                result: dict[str, Any] = json.loads(await resp.read())
                return result
        raise AssertionError("unreachable")

    async def stream(self, path: str, params: Mapping[str, str], *, inactivity: float,
                     total: float) -> AsyncIterator[dict[str, Any]]:
        """The JSON lines of a streaming GET (a watch), each decoded once. No byte for
        ``inactivity`` seconds raises TimeoutError (a frozen stream); ``total`` caps the
        request. Lines are split here, not by aiohttp's readline, which refuses lines
        over 128 KiB (an object with a big status or Secret)."""
        timeout = aiohttp.ClientTimeout(connect=CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT,
                                        sock_read=inactivity, total=total)
        for attempt in (1, 2):
            session, server = await self._connect(reload=attempt == 2)
            async with session.get(server + path, params=params, timeout=timeout,
                                   proxy=self._info.proxy_url if self._info else None
                                   ) as resp:
                if resp.status == 401 and attempt == 1:
                    continue
                if resp.status >= 400:
                    raise ApiError(resp.status, resp.reason or "",
                                   (await resp.read()).decode(errors="replace"))
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    while (end := buffer.find(b"\n")) >= 0:
                        line, buffer = buffer[:end], buffer[end + 1:]
                        if line.strip():
                            yield json.loads(line)
                if buffer.strip():
                    yield json.loads(buffer)
                return

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
