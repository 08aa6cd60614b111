"""The address classifier behind `http_request`'s guard against reaching private networks."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.tools.addresses import IPNetwork, address_refusal, host_refusal, parse_networks

ALLOWLISTS = st.sampled_from(
    [(), parse_networks(["127.0.0.0/8"]), parse_networks(["10.0.0.0/8", "fc00::/7"])]
)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("169.254.169.254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "unique local (private)"),
        ("fd12:3456::1", "unique local (private)"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("::8.8.8.8", "IPv4-compatible"),
        ("64:ff9b::a00:1", "NAT64"),
        ("64:ff9b::808:808", "NAT64"),
        ("64:ff9b:1::1", "NAT64 (local)"),
        ("2002:7f00:1::", "6to4"),
        ("2002:808:808::1", "6to4"),
        ("2001:0:4136:e378::1", "Teredo"),
        ("2001:db8::1", "documentation"),
        ("4000::1", "not global unicast"),
    ],
)
def test_non_public_addresses_are_refused_with_their_class(address: str, reason: str) -> None:
    assert address_refusal(ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ip_address(address)) is None


def test_allowlisted_networks_open_private_addresses() -> None:
    allowed = parse_networks(["10.0.0.0/8", "127.0.0.0/8", "fc00::/7"])

    assert address_refusal(ip_address("10.1.2.3"), allowed) is None
    assert address_refusal(ip_address("::ffff:127.0.0.1"), allowed) is None
    assert address_refusal(ip_address("fd00::5"), allowed) is None
    assert address_refusal(ip_address("192.168.0.1"), allowed) == "private"


def test_metadata_addresses_need_an_exact_allowlist_entry() -> None:
    broad = parse_networks(["169.254.0.0/16", "100.64.0.0/10", "fc00::/7"])
    exact = parse_networks(["169.254.169.254/32"])

    assert address_refusal(ip_address("169.254.169.254"), broad) == "cloud metadata"
    assert address_refusal(ip_address("100.100.100.200"), broad) == "cloud metadata"
    assert address_refusal(ip_address("fd00:ec2::254"), broad) == "cloud metadata"
    assert address_refusal(ip_address("169.254.169.254"), exact) is None


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0177.0.0.1",
        "0x7f.1",
        "0x7f000001",
        "127.1",
        "127.0.1",
        "127.0.0.01",
        "127.0.0.1.",
        "017700000001",
        "example.0x1",
        "foo.123",
    ],
)
def test_non_canonical_numeric_hosts_are_refused_even_when_allowlisted(host: str) -> None:
    refusal = host_refusal(host, parse_networks(["0.0.0.0/0"]))

    assert refusal == "numeric host that is not a canonical IP address"


@pytest.mark.parametrize("host", ["example.com", "1e100.net", "xn--bcher-kva.example", "a.b.c"])
def test_names_are_left_to_resolution(host: str) -> None:
    assert host_refusal(host) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [("8.8.8.8", None), ("[2606:4700::1111]", None), ("[::1]", "loopback"), ("", "empty host")],
)
def test_literal_hosts_are_judged_at_once(host: str, expected: str | None) -> None:
    assert host_refusal(host) == expected


@given(st.ip_addresses(v=4), ALLOWLISTS)
def test_ipv4_mapped_form_gets_the_same_verdict(
    address: IPv4Address, allowed: Sequence[IPNetwork]
) -> None:
    mapped = IPv6Address(f"::ffff:{address}")

    assert address_refusal(mapped, allowed) == address_refusal(address, allowed)


@given(st.ip_addresses(v=4))
def test_allowed_ipv4_addresses_are_globally_routable(address: IPv4Address) -> None:
    if address_refusal(address) is None:
        assert address.is_global
        assert not address.is_multicast


@given(st.ip_addresses(v=6))
def test_allowed_ipv6_addresses_are_global_unicast(address: IPv6Address) -> None:
    if address_refusal(address) is None and address.ipv4_mapped is None:
        assert address in parse_networks(["2000::/3"])[0]
        assert address not in parse_networks(["2001::/23"])[0]
        assert address not in parse_networks(["2002::/16"])[0]


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_integer_hosts_are_refused(number: int) -> None:
    assert host_refusal(str(number)) is not None
    assert host_refusal(hex(number)) is not None


@given(st.text(), ALLOWLISTS)
def test_host_refusal_never_raises_on_arbitrary_text(
    host: str, allowed: Sequence[IPNetwork]
) -> None:
    assert host_refusal(host, allowed) is None or isinstance(host_refusal(host, allowed), str)
