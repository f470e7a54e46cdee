"""The connect-time guard: every connection made for a storage is checked when it opens.

All three SDKs open their sockets through urllib3 (boto3 through botocore's pool manager;
google-cloud-storage and google-auth through requests; azure-storage-blob and
azure-identity through azure-core's requests transport). Each client gets its own urllib3
connection classes whose ``_new_conn`` resolves the host once, checks every address
against the endpoint policy (``endpoint_policy.Policy``) and connects to a checked
address: what is checked is what is connected (the host urllib3 parsed, not what another
URL parser made of the text), and no second lookup can answer differently (DNS
rebinding). TLS is untouched: it starts on the returned socket and still verifies the
URL's host name. A refused connection is never opened: ``ConnectionDenied``.

Redirects are never followed: a requests session of ours raises ``RedirectRefused`` on a
3xx answer with a Location (azure-core and google-auth send through such sessions);
botocore follows no Location, and its S3 region redirects are turned off per client. The
hooks are per client, never process-wide, so the operator's own calls (Kubernetes API,
cloud metadata for ambient credentials) are not affected.

The same two places, opening a connection and sending a request on one, make every
connection of a provider call subject to its total deadline (``providers.deadline``).

With an HTTP(S) proxy configured (``HTTPS_PROXY``) the connection goes to the proxy, so
its address is what is checked; such a proxy must enforce egress itself.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection

from callstorage.providers import deadline
from callstorage.providers.endpoint_policy import ConnectionDenied, Policy

__all__ = ["ConnectionDenied", "GuardedAdapter", "RedirectRefused", "guard_boto_client",
           "guarded_pool", "guarded_session"]


class RedirectRefused(Exception):
    """An endpoint answered with a redirect, which the operator does not follow."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the endpoint answered HTTP {status} (a redirect); redirects are "
                         "not followed")
        self.status = status


def _open(policy: Policy, conn: HTTPConnection) -> socket.socket:
    """urllib3's ``HTTPConnection._new_conn`` with the check between lookup and connect."""
    host, port = conn._dns_host, conn.port  # what urllib3 would have connected to
    deadline.check()  # past the call's deadline nothing new opens (and nothing retries)
    if deadline.current() is not None:  # lookup and connect end by the deadline too
        policy = dataclasses.replace(policy, resolve_timeout=deadline.cap(
            policy.resolve_timeout))
    try:
        addresses = policy.check(host, port)
        error: OSError | None = None
        for address in addresses:  # numeric: create_connection does no lookup of its own
            try:
                sock = connection.create_connection(
                    (address, port), deadline.cap(conn.timeout),
                    source_address=conn.source_address, socket_options=conn.socket_options)
            except OSError as exc:
                error = exc
                continue
            try:
                deadline.track(sock)
            except BaseException:
                sock.close()
                raise
            return sock
        raise error or OSError(f"no address for {host}")
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
        ) from exc
    except OSError as exc:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}"
                                 ) from exc


def guarded_pool(pool_cls: type[HTTPConnectionPool], policy: Policy
                 ) -> type[HTTPConnectionPool]:
    """``pool_cls`` whose connections open through ``policy``."""
    base: Any = pool_cls.ConnectionCls

    class GuardedConnection(base):  # type: ignore[misc]
        def _new_conn(self) -> socket.socket:
            return _open(policy, self)

        def request(self, *args: Any, **kwargs: Any) -> Any:
            # a kept-alive connection belongs to the provider call now sending on it
            deadline.check()
            if self.sock is not None:
                deadline.track(self.sock)
            return super().request(*args, **kwargs)

    return type(f"Guarded{pool_cls.__name__}", (pool_cls,),
                {"ConnectionCls": GuardedConnection})


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose connections open through ``policy`` and which refuses
    to hand back a redirect (so no session of ours can follow one)."""

    def __init__(self, policy: Policy, **kwargs: Any) -> None:
        # set before HTTPAdapter.__init__, which builds the pool manager
        self._pools = {"http": guarded_pool(HTTPConnectionPool, policy),
                       "https": guarded_pool(HTTPSConnectionPool, policy)}
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pools
        return manager

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
             ) -> requests.Response:
        response = super().send(request, *args, **kwargs)
        if response.is_redirect:  # a 3xx with a Location (GCS's 308 carries none)
            response.close()
            raise RedirectRefused(response.status_code)
        return response


def guarded_session(policy: Policy, session: requests.Session | None = None
                    ) -> requests.Session:
    """``session`` (default: a new one) with every connection guarded by ``policy``."""
    session = session if session is not None else requests.Session()
    adapter = GuardedAdapter(policy)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def guard_boto_client(client: Any, policy: Policy) -> None:
    """Make a botocore client open its connections through ``policy``.

    botocore takes no connection class from its callers, but keeps the pool classes of
    its pool managers in one dict (``URLLib3Session._pool_classes_by_scheme``) that the
    managers share; replacing its entries before the first request guards every pool the
    client will create, proxied or not.
    """
    session = client._endpoint.http_session
    pools = session._pool_classes_by_scheme
    for scheme in ("http", "https"):
        pools[scheme] = guarded_pool(pools[scheme], policy)
    client.meta.events.register_first("needs-retry.s3", _before_retry_or_redirect)


def _before_retry_or_redirect(request_dict: dict[str, Any] | None = None,
                              caught_exception: BaseException | None = None,
                              response: tuple[Any, Any] | None = None,
                              **_: Any) -> None:
    """Runs before botocore's retry and region-redirect handlers of every S3 response.

    A refused connection ends the call at once (botocore retries any exception of its
    HTTP layer; a refusal would only be refused again), and so does a provider call past
    its deadline (``providers.deadline``). And no redirect is followed:
    botocore's S3 redirector re-sends a request answered 301/302/307 (or with a
    wrong-region error) to the bucket's region, another host, and asks HeadBucket for
    that region from inside its own handler, which recurses without end against a server
    that always redirects. Marking the request as already redirected (the redirector's
    own once-per-request flag) makes the answer the call's error, naming its status: a
    wrong ``spec.s3.region`` is reported (InvalidSpec, with the bucket's region when S3
    says it), never silently followed.
    """
    if caught_exception is not None and isinstance(
            getattr(caught_exception, "kwargs", {}).get("error"),
            ConnectionDenied | deadline.DeadlineExceeded):
        raise caught_exception
    status = getattr(response[0], "status_code", 0) if response else 0
    if caught_exception is not None or status >= 400:
        deadline.check()  # no retry (nor its back-off) past the call's deadline
    redirect = ((request_dict or {}).get("context") or {}).get("s3_redirect")
    if isinstance(redirect, dict):
        redirect["redirected"] = True
