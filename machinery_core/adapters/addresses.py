"""The address guard: which service and notification URLs Machinery may call.

Only http and https. A URL whose host is (or resolves to) a loopback, private,
link-local, shared, multicast, reserved or unspecified address, or the cloud metadata
endpoint, is refused unless ALLOWED_SERVICE_HOSTS allows it. Registration checks the
literal host (names are not resolved then); every call resolves the host again and
refuses it if any of its addresses is refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from machinery_core.domain.errors import InvalidDefinition, Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# socket.getaddrinfo's shape: (host, port) -> [(family, type, proto, canonname, sockaddr)]
Resolver = Callable[[str, int | None], Sequence[tuple[Any, ...]]]

# What the local (development) runtime allows when ALLOWED_SERVICE_HOSTS is not set.
LOOPBACK_HOSTS = "127.0.0.0/8,::1,localhost"

METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
# An IPv4 address in legacy notation that inet_aton (so the system resolver) accepts:
# 2130706433, 127.1, 0x7f.0.0.1, 0177.0.0.1 ...
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")
_HOST_NAME = re.compile(
    r"^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


class AddressError(Unprocessable):
    """A call-time refusal; `kind` and `retryable` become the step's ErrorInfo."""

    kind = "AddressRefused"
    retryable = False


class AddressRefused(AddressError):
    """The host is, or resolves to, an address that is refused and not allowed."""


class UnresolvedHost(AddressError):
    """The host name does not resolve (now): retryable, DNS may come back."""

    kind = "DnsError"
    retryable = True


def _connects_to(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::/96) one reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64_PREFIX:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_metadata(address: IPAddress) -> bool:
    return _connects_to(address) in METADATA_ADDRESSES


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` is refused as a destination, or None when it is publicly routable."""
    address = _connects_to(address)
    if isinstance(address, ipaddress.IPv6Address):
        if address.sixtofour is not None and refusal_reason(address.sixtofour):
            return "a 6to4 address of a refused IPv4 address"
    if address in METADATA_ADDRESSES:
        return "the cloud metadata endpoint"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address in SHARED_ADDRESS_SPACE:
        return "shared address space (100.64.0.0/10)"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not globally routable"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The IP address `host` spells, in any form the system resolver would take, or None."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(bare.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def _name(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _is_localhost(host: str) -> bool:
    name = _name(host)
    return name == "localhost" or name.endswith(".localhost")


def _hosts_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of `url`; both URL parsers must agree that there is a host.

    requests connects to the host urllib3 parses; the host urlsplit parses (what the
    models validate) is checked as well, so a URL the two read differently cannot slip by.
    """
    try:
        parsed = parse_url(url)
        split = urlsplit(url)
        port = parsed.port
    except (LocationParseError, ValueError) as error:
        raise AddressRefused(f"{url!r} is not a URL Machinery can call: {error}") from error
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise AddressRefused(f"{url!r}: only http:// and https:// addresses are called")
    if not parsed.host or not split.hostname:
        raise AddressRefused(f"{url!r} has no host")
    return scheme, parsed.host, port if port is not None else (443 if scheme == "https" else 80)


@dataclass(frozen=True)
class AddressPolicy:
    """Refuses non-public destinations except those `names` and `networks` allow."""

    names: frozenset[str] = frozenset()  # exact host names, or "*.suffix" for subdomains
    networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=socket.getaddrinfo, compare=False)

    @classmethod
    def parse(cls, allowed: str, resolver: Resolver = socket.getaddrinfo) -> AddressPolicy:
        """From ALLOWED_SERVICE_HOSTS: comma-separated host names, IP addresses and CIDRs."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in allowed.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _name(entry)
            if "/" in entry or not _HOST_NAME.match(name):
                raise ValueError(
                    f"ALLOWED_SERVICE_HOSTS: {entry!r} is neither a host name, "
                    "an IP address nor a CIDR"
                )
            names.add(name)
        return cls(frozenset(names), tuple(networks), resolver)

    def _name_allowed(self, host: str) -> bool:
        name = _name(host)
        if name in self.names:
            return True
        return any(entry.startswith("*.") and name.endswith(entry[1:]) for entry in self.names)

    def _address_allowed(self, address: IPAddress) -> bool:
        """In an allowed network; the metadata endpoint only when listed as itself."""
        candidates = [address, _connects_to(address)]
        if is_metadata(address):
            return any(
                network.num_addresses == 1 and network.network_address in candidates
                for network in self.networks
            )
        return any(c in network for c in candidates for network in self.networks)

    def _refusal(self, host: str, address: IPAddress, *, name_allowed: bool) -> str | None:
        reason = refusal_reason(address)
        if reason is None or self._address_allowed(address):
            return None
        if name_allowed and not is_metadata(address):
            return None  # an allowed host name may resolve to private addresses
        name = _name(host)
        shown = f"{name} ({address})" if name != str(address) else name
        if is_metadata(address):
            return (
                f"{shown} is {reason}; only an ALLOWED_SERVICE_HOSTS entry of this exact "
                "address allows it"
            )
        return f"{shown} is {reason}; it is refused unless ALLOWED_SERVICE_HOSTS allows it"

    def _literal_refusal(self, host: str) -> str | None:
        """The refusal of a literal IP or a localhost name; None for other names."""
        address = literal_address(host)
        if address is None and _is_localhost(host):
            address = ipaddress.IPv4Address("127.0.0.1")
        if address is None:
            return None
        return self._refusal(host, address, name_allowed=self._name_allowed(host))

    def registration_refusal(self, url: str) -> str | None:
        """Why `url` cannot be registered, or None. Names are not resolved here."""
        try:
            _, host, _ = _hosts_of(url)
        except AddressRefused as refused:
            return str(refused)
        split_host = urlsplit(url).hostname or ""
        return self._literal_refusal(host) or self._literal_refusal(split_host)

    def check_registration(self, url: str, path: str) -> None:
        """Raise InvalidDefinition (422) naming `path` when `url` is refused."""
        reason = self.registration_refusal(url)
        if reason is not None:
            raise InvalidDefinition(
                "the address is refused by the address guard", [{"path": path, "message": reason}]
            )

    def check_call(self, url: str) -> tuple[str, str]:
        """Before a call: resolve the host; raise AddressError if any address is refused.

        Answers (host, address): the call must connect to that checked address, not to
        whatever a second resolution would give (DNS rebinding).
        """
        _, host, port = _hosts_of(url)
        split_refusal = self._literal_refusal(urlsplit(url).hostname or "")
        if split_refusal is not None:
            raise AddressRefused(split_refusal)
        literal = literal_address(host)
        addresses = {literal} if literal is not None else self._resolve(host, port)
        name_allowed = self._name_allowed(host)
        for address in sorted(addresses, key=str):
            reason = self._refusal(host, address, name_allowed=name_allowed)
            if reason is not None:
                raise AddressRefused(reason)
        return host.strip("[]").lower(), str(min(addresses, key=str))

    def _resolve(self, host: str, port: int | None) -> set[IPAddress]:
        try:
            found = self.resolver(host.strip("[]"), port)
        except (OSError, UnicodeError) as error:
            raise UnresolvedHost(f"{host} does not resolve: {error}") from error
        addresses: set[IPAddress] = set()
        for *_, sockaddr in found:
            try:
                addresses.add(ipaddress.ip_address(sockaddr[0]))
            except (ValueError, IndexError, TypeError):
                raise AddressRefused(
                    f"{host} resolves to {sockaddr!r}, which is not an IP address"
                ) from None
        if not addresses:
            raise UnresolvedHost(f"{host} resolves to no address")
        return addresses


# What production code gets unless it says otherwise: nothing private is allowed.
PUBLIC_ONLY = AddressPolicy()
