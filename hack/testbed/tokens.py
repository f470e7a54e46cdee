"""A local stand-in for Entra ID's token endpoint, for Azure service principals.

azure-identity's ``ClientSecretCredential(tenant_id, client_id, client_secret,
authority="https://127.0.0.1:<port>")`` (with ``disable_instance_discovery=True`` and the
test bed CA in ``connection_verify``) asks this server for
``/{tenant}/v2.0/.well-known/openid-configuration`` and then POSTs the client credentials
to ``/{tenant}/oauth2/v2.0/token``. The secret is checked for real: a wrong one gets
Entra's ``invalid_client`` (AADSTS7000215) answer, an unknown client ``unauthorized_client``
(AADSTS700016), an unknown tenant AADSTS90002. Tokens are RS256 JWTs in Entra's v1 shape
(issuer ``https://sts.windows.net/{tenant}/``), which is what Azurite's ``--oauth basic``
mode accepts; Azurite checks their issuer, audience and lifetime but not the signature.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from callstorage.storagetypes.azure import CLIENT_ID, CLIENT_SECRET, TENANT_ID
from callstorage.storagetypes.base import AUTHORITY_HOST_KEY, ENDPOINT_KEY
from testbed.localhttp import LocalHTTPServer, Request, Response
from testbed.tlscerts import ServingCert


@dataclass(frozen=True)
class ServicePrincipal:
    tenant_id: str
    client_id: str
    client_secret: str
    #: where the principal's secret and tokens may go (its Secret binds them)
    authority: str | None = None
    endpoint: str | None = None

    def __repr__(self) -> str:
        return (f"ServicePrincipal(tenant_id={self.tenant_id!r}, "
                f"client_id={self.client_id!r}, client_secret='***')")

    def as_secret_data(self) -> dict[str, str]:
        """The principal as an ExternalStorage credentials Secret holds it."""
        data = {CLIENT_ID: self.client_id, CLIENT_SECRET: self.client_secret,
                TENANT_ID: self.tenant_id}
        if self.authority:
            data[AUTHORITY_HOST_KEY] = self.authority
        if self.endpoint:
            data[ENDPOINT_KEY] = self.endpoint
        return data


def _oauth_error(status: int, error: str, code: int, description: str) -> Response:
    return Response.json(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description}",
        "error_codes": [code],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
    })


class EntraTokenServer:
    """An HTTPS OAuth2 client-credentials endpoint; ``.authority`` is its base URL."""

    def __init__(self, log_dir: Path, tls: ServingCert, token_lifetime: int = 3600) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], str] = {}  # (tenant, client id) -> secret
        self._tenants: set[str] = set()
        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = secrets.token_hex(8)
        self.token_lifetime = token_lifetime
        self.issued = 0
        self._http = LocalHTTPServer("entra-token", self._app, log_dir, tls=tls)
        self.authority = self._http.url
        self.log_path = self._http.log_path

    def create_service_principal(self, tenant_id: str | None = None) -> ServicePrincipal:
        """A new client id and secret in ``tenant_id`` (a new tenant by default)."""
        sp = ServicePrincipal(
            tenant_id=tenant_id or str(uuid.uuid4()),
            client_id=str(uuid.uuid4()),
            client_secret=secrets.token_urlsafe(30),
            authority=self.authority,
        )
        with self._lock:
            self._tenants.add(sp.tenant_id)
            self._clients[(sp.tenant_id, sp.client_id)] = sp.client_secret
        return sp

    def revoke(self, sp: ServicePrincipal) -> None:
        """Forget the principal: later token requests fail as for an unknown client."""
        with self._lock:
            self._clients.pop((sp.tenant_id, sp.client_id), None)

    def stop(self) -> None:
        self._http.stop()

    # --- HTTP ---------------------------------------------------------------------------

    def _app(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        if req.method == "GET" and parts[-3:] == ["v2.0", ".well-known", "openid-configuration"]:
            return self._openid_configuration(parts[0])
        if req.method == "GET" and parts[-2:] == ["discovery", "instance"]:
            return self._instance_discovery(req)
        if req.method == "POST" and len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            return self._token(parts[0], req)
        return Response.json(404, {"error": "not_found"})

    def _openid_configuration(self, tenant: str) -> Response:
        base = f"{self.authority}/{tenant}"
        return Response.json(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0",
            "jwks_uri": f"{self.authority}/{tenant}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "response_types_supported": ["code", "id_token", "token"],
            "tenant_region_scope": "NA",
        })

    def _instance_discovery(self, req: Request) -> Response:
        host = urllib.parse.urlsplit(self.authority).netloc
        return Response.json(200, {
            "tenant_discovery_endpoint":
                f"{self.authority}/common/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host,
                          "aliases": [host]}],
        })

    def _token(self, tenant: str, req: Request) -> Response:
        form = dict(urllib.parse.parse_qsl(req.body.decode(errors="replace")))
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", 70003,
                                "The app requested an unsupported grant type.")
        client_id = form.get("client_id", "")
        scope = form.get("scope", "")
        with self._lock:
            known_tenant = tenant in self._tenants
            expected = self._clients.get((tenant, client_id))
        if not known_tenant:
            return _oauth_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if expected is None:
            return _oauth_error(400, "unauthorized_client", 700016,
                                f"Application with identifier '{client_id}' was not found "
                                f"in the directory '{tenant}'.")
        given = form.get("client_secret", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return _oauth_error(401, "invalid_client", 7000215,
                                "Invalid client secret provided.")
        if not scope.endswith("/.default"):
            return _oauth_error(400, "invalid_scope", 1002012,
                                "The provided value for scope is not valid.")
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": scope.removesuffix("/.default"),
            "iss": f"https://sts.windows.net/{tenant}/",  # the issuer Azurite accepts
            "iat": now - 5, "nbf": now - 5, "exp": now + self.token_lifetime,
            "appid": client_id, "oid": client_id, "sub": client_id, "tid": tenant,
            "ver": "1.0",
        }
        token = jwt.encode(claims, self._signing_key, algorithm="RS256",
                           headers={"kid": self._kid})
        with self._lock:
            self.issued += 1
        return Response.json(200, {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        })
