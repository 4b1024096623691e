"""Client addresses: which proxies may name the client (``IDENTITY_TRUSTED_PROXIES``), and what a rate
limit counts by (an IPv4 address, or an IPv6 /64: one host is usually given a whole /64).

Standard library only: the settings import it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_HOPS = 16
IPV6_COUNTED_PREFIX = 64
_MAX_ENTRY = 64  # longer than any address with a port and brackets
_USAGE = ("a number of proxy hops (e.g. 1) or a comma-separated list of proxy addresses or networks "
          "(e.g. 10.0.0.0/8,192.168.1.7)")


@dataclass(frozen=True)
class TrustedProxies:
    """Who may set ``X-Forwarded-For``: the last ``hops`` proxies, or peers in ``networks``; none by default."""

    hops: int = 0
    networks: tuple[IPNetwork, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.hops or self.networks)

    def __str__(self) -> str:
        if self.hops:
            return str(self.hops)
        return ",".join(str(n) for n in self.networks) or "none"

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def parse_trusted_proxies(text: str | None) -> TrustedProxies:
    """``IDENTITY_TRUSTED_PROXIES`` as given; ``ValueError`` says what is wrong (without the variable's name)."""
    text = (text or "").strip()
    if not text or text == "0":
        return TrustedProxies()
    if text.isdigit():
        hops = int(text)
        if hops > MAX_HOPS:
            raise ValueError(f"must be at most {MAX_HOPS} hops, got {hops}")
        return TrustedProxies(hops=hops)
    networks: list[IPNetwork] = []
    for entry in (part.strip() for part in text.split(",")):
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError as exc:
            reason = "has host bits set" if "host bits" in str(exc) else "is not an address or network"
            raise ValueError(f"must be {_USAGE}; {entry[:60]!r} {reason}") from None
        if network.prefixlen == 0:
            raise ValueError(f"must not trust every address ({network}): any client could choose its own address")
        networks.append(network)
    return TrustedProxies(networks=tuple(dict.fromkeys(networks)))


def parse_address(text: str) -> IPAddress | None:
    """An address as REMOTE_ADDR or an ``X-Forwarded-For`` entry gives it (``1.2.3.4:80``, ``[::1]:443`` too);
    an IPv4-mapped IPv6 address as its IPv4 address; None when it is not an address."""
    text = text.strip()
    return None if len(text) > _MAX_ENTRY else _parse_address(text)


@lru_cache(maxsize=4096)
def _parse_address(text: str) -> IPAddress | None:
    if text.startswith("["):
        text, _, port = text[1:].partition("]")
        if port and not (port.startswith(":") and port[1:].isdigit()):
            return None
    elif text.count(":") == 1:  # IPv4 with a port
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_client(peer: str, forwarded_for: str, trusted: TrustedProxies) -> str | None:
    """The client's address, from the peer and its ``X-Forwarded-For``, or None to keep the peer.

    A hop count takes the entry that many places from the right (the address the outermost trusted proxy
    saw); a network list walks the entries right to left from a trusted peer, skipping trusted proxies,
    and takes the first address that is not one. A malformed or too short header is ignored.
    """
    entries = forwarded_for.split(",")
    if trusted.hops:
        if len(entries) < trusted.hops:
            return None
        client = parse_address(entries[-trusted.hops])
        return None if client is None else str(client)
    hop = parse_address(peer)
    if hop is None or not trusted.trusts(hop):
        return None  # the header came from someone who may not set it: counted against the peer
    for entry in reversed(entries):
        hop = parse_address(entry)
        if hop is None:
            return None
        if not trusted.trusts(hop):
            return str(hop)
    return str(hop)  # every hop is a trusted proxy: the request started inside, at the leftmost


@lru_cache(maxsize=8192)
def counting_key(remote_addr: str) -> str:
    """What rate limits count by: the IPv4 address, the IPv6 /64, or the text itself when not an address."""
    address = parse_address(remote_addr)
    if address is None:
        return remote_addr[:_MAX_ENTRY] or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_COUNTED_PREFIX), strict=False))
    return str(address)
