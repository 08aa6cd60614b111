"""Which IP addresses `http_request` may call: public ones, and those the operator allowlists.

A workflow's author picks the URL, so without this check a step could reach the
service's own network: a database on 10.x, the loopback admin port, or a cloud
metadata endpoint that hands out credentials. Every address that is not globally
routable unicast is refused, and so are IPv6 forms that carry an IPv4 address a
gateway may route to one of those (NAT64, 6to4, Teredo). An IPv4-mapped address
(`::ffff:a.b.c.d`) is the IPv4 address itself to the socket layer, so it is judged
as that address.

Refusals are returned as reasons (data), never raised: the caller decides how to
report them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final, TypeAlias

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network

# Metadata endpoints sit inside ranges an operator may reasonably allowlist (Alibaba's is
# in CGNAT space, AWS's IPv6 one in fc00::/7), so only an allowlist entry naming the
# address exactly opens them.
METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset(
    ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)

# The first block containing an address names the reason, so narrower blocks come first.
_REFUSED: Final[tuple[tuple[IPNetwork, str], ...]] = tuple(
    (ip_network(cidr), reason)
    for cidr, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "NAT64 (local)"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignment"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)

# IANA allocates global unicast IPv6 only from 2000::/3; anything outside it is special.
_GLOBAL_UNICAST_V6: Final = IPv6Network("2000::/3")

# WHATWG URL parsing (what browsers and many resolvers do) reads a host whose last label
# is a number as an IPv4 address in decimal, octal or hex, in one to four parts.
_NUMERIC_LABEL: Final = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)")


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The operator's allowlist as networks; a malformed entry raises ValueError at start."""
    return tuple(ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def address_refusal(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why `address` may not be called, or None when it may.

    An address inside an `allowed` network may be called whatever its class, except a
    cloud metadata address, which must be allowlisted exactly (as a /32 or /128).
    """
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address_refusal(address.ipv4_mapped, allowed)
    bare = _without_scope(address)
    if bare in METADATA_ADDRESSES:
        exact = any(net.num_addresses == 1 and net.network_address == bare for net in allowed)
        return None if exact else "cloud metadata"
    if any(bare in net for net in allowed):
        return None
    for network, reason in _REFUSED:
        if bare in network:
            return reason
    if isinstance(bare, IPv6Address) and bare not in _GLOBAL_UNICAST_V6:
        return "not global unicast"
    if not bare.is_global:
        return "not globally routable"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host writes literally (`[...]` allowed for IPv6), else None."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ip_address(text)
    except ValueError:
        return None


def host_refusal(host: str, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why a URL host is refused before any lookup, or None when it may be resolved.

    A literal address is judged at once. A numeric host that is not a canonical dotted
    quad (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`, `127.0.0.1.`) is refused
    outright: resolvers disagree on what such hosts mean, and a check that reads one
    differently from the connecting client is a way around it. Never raises.
    """
    if not host:
        return "empty host"
    address = literal_address(host)
    if address is not None:
        return address_refusal(address, allowed)
    labels = host.split(".")
    last = labels[-1] or (labels[-2] if len(labels) > 1 else "")
    if _NUMERIC_LABEL.fullmatch(last):
        return "numeric host that is not a canonical IP address"
    return None


def _without_scope(address: IPAddress) -> IPAddress:
    """`fe80::1%eth0` compares unequal to `fe80::1`; the zone does not change the class."""
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        return IPv6Address(address.packed)
    return address
