"""Which addresses the operator may connect to for a storage (SSRF protection): the decision.

A tenant who can write an ExternalStorage (or its Secret) chooses URLs the operator
connects to with the operator's network position: a custom endpoint, a GCS key's
``token_uri``, an Azure authority. Every connection made for a storage is checked when it
is opened (``callstorage.providers.guard``), against the install-time deny list (by
default loopback, unspecified, link-local and cloud-metadata addresses and names) and,
when one is set, the allow list. This module holds the pure decision (``decide``), the
resolver the guard uses (``resolve``, bounded by a timeout, replaceable in tests) and a
syntax check of a URL for a clear InvalidSpec before any client is built.

An IPv6 address that carries an IPv4 address (IPv4-mapped, -translated, -compatible,
NAT64, 6to4, Teredo, ISATAP) reaches that IPv4 host through a translator or tunnel, so the
embedded address is checked against the rules too.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from callstorage.providers.base import ProviderError, Reason

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ``resolver(host, port, timeout)`` -> the addresses to check and connect to.
Resolver = Callable[[str, int, float], list[str]]


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


_V4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_V4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_6TO4 = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")


def _v4(value: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(value & 0xFFFFFFFF)


def _rfc6052(value: int, prefix: int) -> ipaddress.IPv4Address:
    """The IPv4 address in an RFC 6052 IPv4-embedded IPv6 address with ``prefix`` bits of
    prefix; bits 64..71 (the "u" octet) are never part of it."""
    without_u = ((value >> 64) << 56) | (value & ((1 << 56) - 1))  # drop bits 64..71
    return _v4(without_u >> (120 - prefix - 32))


def embedded_ipv4(ip: IPAddress) -> Iterator[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address may reach through a translator or tunnel."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return
    value = int(ip)
    if ip in _V4_MAPPED or ip in _V4_TRANSLATED or ip in _V4_COMPATIBLE or ip in _NAT64:
        yield _v4(value)
    if ip in _NAT64_LOCAL:
        # A local NAT64 prefix may be any RFC 6052 length inside it: every reading that
        # the format allows (bits 64..71 and the suffix zero) is checked.
        shorter = [_rfc6052(value, prefix) for prefix in (48, 56, 64)
                   if (value >> 56) & 0xFF == 0 and value & ((1 << (88 - prefix)) - 1) == 0]
        yield from shorter
        if not (shorter and value & 0xFFFFFFFF == 0):  # not a zero tail of a shorter form
            yield _v4(value)
    if ip in _6TO4:
        yield _v4(value >> 80)
    if ip in _TEREDO and ip.teredo is not None:
        yield from ip.teredo  # (server, client); the client is de-obfuscated
    if (value >> 32) & 0xFDFFFFFF == 0x00005EFE:  # ISATAP interface id ::[02]00:5efe:a.b.c.d
        yield _v4(value)


def decide(host: str, addresses: Sequence[str], allow: Rules, deny: Rules) -> str | None:
    """Why ``host`` (resolving to ``addresses``) is refused, or None when it is allowed.

    Deny wins over allow; an address is denied when it, or an IPv4 address embedded in
    it, is in a denied network. With a non-empty allow list, the host name must be on it
    or every address must fall in an allowed network.
    """
    host = normalise_host(host)
    if deny.matches_host(host):
        return f"host {host} is on the operator's endpoint deny list"
    ips = [canonical_address(a) for a in addresses]
    for ip in ips:
        for candidate in (ip, *embedded_ipv4(ip)):
            network = deny.matching_network(candidate)
            if network is None:
                continue
            where = f"address {ip}" if host == str(ip) else f"host {host} resolves to {ip}"
            inner = f" (which embeds {candidate})" if candidate != ip else ""
            return f"{where}{inner}, inside denied network {network}"
    if allow and not allow.matches_host(host):
        outside = [ip for ip in ips if allow.matching_network(ip) is None]
        if outside or not ips:
            shown = f" (resolves to {outside[0]})" if outside else ""
            return f"host {host}{shown} is not on the operator's endpoint allow list"
    return None


def system_resolve(host: str, port: int, timeout: float) -> list[str]:
    """The addresses ``host`` resolves to (in the resolver's order), waiting at most
    ``timeout`` seconds: TimeoutError past it, the resolver's ``socket.gaierror`` if the
    name does not resolve.

    ``getaddrinfo`` has no timeout of its own, so it runs in a daemon thread that is
    abandoned (and finishes on its own) if the resolver hangs.
    """
    result: list[list[str]] = []
    error: list[OSError] = []

    def run() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result.append(list(dict.fromkeys(str(info[4][0]) for info in infos)))
        except OSError as exc:
            error.append(exc)

    thread = threading.Thread(target=run, name=f"resolve-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"resolving host {host} took longer than {timeout:g}s")
    if error:
        raise error[0]
    return result[0]


#: What every new policy resolves names with; tests replace it (DNS rebinding).
resolver: Resolver = system_resolve


@dataclass(frozen=True)
class Policy:
    """The rules one client's connections are checked against, and how names resolve."""

    allow: Rules
    deny: Rules
    resolve_timeout: float
    resolve: Resolver

    @classmethod
    def of(cls, allowlist: Iterable[str], denylist: Iterable[str],
           resolve_timeout: float) -> Policy:
        return cls(Rules.parse(allowlist), Rules.parse(denylist), resolve_timeout, resolver)

    def check(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` to connect to, each checked; ConnectionDenied if any
        is refused. A name on the deny list is refused before any lookup (resolving it is
        a leak too)."""
        name = normalise_host(host)
        if self.deny.matches_host(name):
            raise ConnectionDenied(name, port, f"host {name} is on the operator's endpoint "
                                   "deny list")
        addresses = self.resolve(name, port, self.resolve_timeout)
        problem = decide(name, addresses, self.allow, self.deny)
        if problem is not None:
            raise ConnectionDenied(name, port, problem)
        return addresses


class ConnectionDenied(Exception):
    """A connection the endpoint policy refuses; raised before the socket is opened.

    Deliberately not an OSError: the SDKs would take it for a network failure and retry.
    """

    def __init__(self, host: str, port: int, problem: str) -> None:
        super().__init__(f"connection to {host}:{port} refused by the endpoint policy: "
                         f"{problem}")
        self.host, self.port, self.problem = host, port, problem


def validate_url(url: str, field: str) -> None:
    """InvalidSpec unless ``url`` is an http(s) URL with a host and a valid port.

    ``field`` names where the URL came from (``spec.s3.endpoint``) for the message. Only
    the syntax: which host is actually connected to is the guard's to check.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ProviderError(Reason.INVALID_SPEC, f"{field} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not normalise_host(parts.hostname or ""):
        raise ProviderError(Reason.INVALID_SPEC, f"{field} must be an http(s) URL with a host")
    del port
