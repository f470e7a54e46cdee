"""Which custom endpoints the operator may call (SSRF protection).

A tenant who can write an ExternalStorage chooses the URL the operator connects to, with
the operator's network position. Before any connection, a custom endpoint's host (and any
other tenant-chosen URL the SDK will call: a GCS key's ``token_uri``, an Azure authority)
is checked against the install-time deny list (by default link-local and cloud-metadata
addresses) and, when one is set, the allow list. The host name is resolved first (with a
bounded timeout) and every address it resolves to is checked, so a DNS name or a numeric
spelling of a metadata address (``2852039166``, ``::ffff:169.254.169.254``) is caught too.

The check cannot stop DNS rebinding (a name that resolves differently when the SDK
connects a moment later); the deny list is a guard against mistakes and casual abuse, and
network policy (egress rules) is the stronger control.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from callstorage.providers.base import ProviderError, Reason

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_RESOLVE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Rules:
    """Parsed allow or deny entries: CIDRs/addresses, exact hosts and ``*.domain`` hosts."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # ".example.com" for an entry "*.example.com"

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Rules:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        suffixes: list[str] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                hosts.add(entry)
        return cls(tuple(networks), frozenset(hosts), tuple(suffixes))

    def __bool__(self) -> bool:
        return bool(self.networks or self.hosts or self.suffixes)

    def matches_host(self, host: str) -> bool:
        return host in self.hosts or any(host.endswith(s) for s in self.suffixes)

    def matching_network(self, address: IPAddress) -> IPNetwork | None:
        for network in self.networks:
            if address.version == network.version and address in network:
                return network
        return None


def normalise_host(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def canonical_address(address: str) -> IPAddress:
    """An address as checked: IPv4-mapped IPv6 (``::ffff:a.b.c.d``) becomes IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def decide(host: str, addresses: Sequence[str], allow: Rules, deny: Rules) -> str | None:
    """Why ``host`` (resolving to ``addresses``) is refused, or None when it is allowed.

    Deny wins over allow. With a non-empty allow list, the host name must be on it or
    every address must fall in an allowed network.
    """
    host = normalise_host(host)
    if deny.matches_host(host):
        return f"host {host} is on the operator's endpoint deny list"
    ips = [canonical_address(a) for a in addresses]
    for ip in ips:
        network = deny.matching_network(ip)
        if network is not None:
            where = f"address {ip} is" if host == str(ip) else f"host {host} resolves to {ip},"
            return f"{where} inside denied network {network}"
    if allow and not allow.matches_host(host):
        outside = [ip for ip in ips if allow.matching_network(ip) is None]
        if outside or not ips:
            shown = f" (resolves to {outside[0]})" if outside else ""
            return f"host {host}{shown} is not on the operator's endpoint allow list"
    return None


def resolve(host: str, port: int, timeout: float) -> list[str]:
    """The addresses ``host`` resolves to, waiting at most ``timeout`` seconds.

    ``getaddrinfo`` has no timeout of its own, so it runs in a daemon thread that is
    abandoned (and finishes on its own) if the resolver hangs.
    """
    result: list[list[str]] = []
    error: list[OSError] = []

    def run() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result.append(sorted({str(info[4][0]) for info in infos}))
        except OSError as exc:
            error.append(exc)

    thread = threading.Thread(target=run, name=f"resolve-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ProviderError(Reason.TIMEOUT,
                            f"resolving host {host} took longer than {timeout:g}s")
    if error:
        raise ProviderError(Reason.ENDPOINT_UNREACHABLE,
                            f"cannot resolve host {host}: {_gai_reason(error[0])}")
    return result[0]


def _gai_reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror) and exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA):
        return "no such host"
    return exc.strerror or type(exc).__name__


def check_url(url: str, field: str, allowlist: Iterable[str], denylist: Iterable[str],
              timeout: float = DEFAULT_RESOLVE_TIMEOUT) -> None:
    """Raise EndpointNotAllowed (or a resolution failure) unless ``url`` may be called.

    ``field`` names where the URL came from (``spec.s3.endpoint``) for the message.
    """
    parts = urllib.parse.urlsplit(url)
    host = normalise_host(parts.hostname or "")
    if parts.scheme not in ("http", "https") or not host:
        raise ProviderError(Reason.INVALID_SPEC, f"{field} must be an http(s) URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ProviderError(Reason.INVALID_SPEC, f"{field} has an invalid port") from None
    allow, deny = Rules.parse(allowlist), Rules.parse(denylist)
    # Names on the deny list are refused before any lookup: resolving them is a leak too.
    if deny.matches_host(host):
        raise ProviderError(Reason.ENDPOINT_NOT_ALLOWED,
                            f"{field}: host {host} is on the operator's endpoint deny list")
    problem = decide(host, resolve(host, port, timeout), allow, deny)
    if problem is not None:
        raise ProviderError(Reason.ENDPOINT_NOT_ALLOWED, f"{field}: {problem}")
