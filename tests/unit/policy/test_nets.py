"""Address and port ranges: IPv4, IPv6, IPv4-mapped, zones, bad input."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arcus.policy.nets import NetSet, PortSet, RangeError, parse_address, parse_cidr, parse_port_range


def nets(*cidrs: str) -> NetSet:
    return NetSet(parse_cidr(c) for c in cidrs)


def test_parse_address_forms() -> None:
    assert parse_address("10.1.2.3") == (4, 0x0A010203)
    assert parse_address("::ffff:10.1.2.3") == (4, 0x0A010203)  # mapped: matched as IPv4
    assert parse_address("::FFFF:a01:203") == (4, 0x0A010203)
    assert parse_address("2001:db8::1") == (6, 0x20010DB8 << 96 | 1)
    assert parse_address("fe80::1%eth0") == (6, 0xFE80 << 112 | 1)


@pytest.mark.parametrize("text", ["", "example.com", "127.1", "2130706433", "0x7f.0.0.1", "1.2.3.4%eth0",
                                  "1.2.3.256", "::g", "01.2.3.4", "1.2.3.4 ", "\x00"])
def test_parse_address_refuses_what_is_not_one_literal(text: str) -> None:
    assert parse_address(text) is None


def test_netset_v4_v6_and_mapped() -> None:
    s = nets("10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "203.0.113.7")
    assert parse_address("10.255.0.1") in s
    assert parse_address("::ffff:10.1.1.1") in s
    assert parse_address("192.168.1.200") in s
    assert parse_address("192.168.2.1") not in s
    assert parse_address("203.0.113.7") in s
    assert parse_address("203.0.113.8") not in s
    assert parse_address("2001:db8:ffff::1") in s
    assert parse_address("2001:db9::1") not in s
    assert parse_address("::a00:1") not in s  # IPv4-compatible is not IPv4-mapped


def test_netset_which_is_most_specific() -> None:
    s = nets("10.0.0.0/8", "10.1.0.0/16")
    assert str(s.which(parse_address("10.1.2.3"))) == "10.1.0.0/16"
    assert str(s.which(parse_address("10.2.2.3"))) == "10.0.0.0/8"
    assert s.which(parse_address("11.0.0.1")) is None


def test_host_bits_are_cleared_and_everything_ranges() -> None:
    assert str(parse_cidr("10.1.2.3/8")) == "10.0.0.0/8"
    assert parse_address("8.8.8.8") in nets("0.0.0.0/0")
    assert parse_address("2001:db8::1") not in nets("0.0.0.0/0")
    assert parse_address("2001:db8::1") in nets("::/0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty range"),
        ("10.0.0.0/33", "bad range '10.0.0.0/33': '33' is not a valid netmask"),
        ("::ffff:10.0.0.0/104", "IPv4-mapped range '::ffff:10.0.0.0/104' is not accepted"),
        ("fe80::/10%eth0", "zone index not allowed in 'fe80::/10%eth0'"),
        ("example.com", "bad range 'example.com': Expected 4 octets in 'example.com'"),
    ],
)
def test_bad_ranges(text: str, message: str) -> None:
    with pytest.raises(RangeError) as info:
        parse_cidr(text)
    assert str(info.value) == message
    assert info.value.hint


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=6), st.integers(0, 2**32 - 1))
def test_netset_agrees_with_ipaddress_v4(ranges: list[tuple[int, int]], value: int) -> None:
    networks = [ipaddress.ip_network((a, p), strict=False) for a, p in ranges]
    s = NetSet(networks)
    addr = ipaddress.IPv4Address(value)
    assert ((4, value) in s) == any(addr in n for n in networks)


@given(st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)), max_size=6), st.integers(0, 2**128 - 1))
def test_netset_agrees_with_ipaddress_v6(ranges: list[tuple[int, int]], value: int) -> None:
    networks = [ipaddress.ip_network((a, p), strict=False) for a, p in ranges]
    s = NetSet(networks)
    addr = ipaddress.IPv6Address(value)
    assert ((6, value) in s) == any(addr in n for n in networks)


def test_ports() -> None:
    ports = PortSet([parse_port_range("443"), parse_port_range("8000-8999"), parse_port_range(" 80 ")])
    assert 443 in ports and 80 in ports and 8000 in ports and 8999 in ports and 8500 in ports
    assert 444 not in ports and 7999 not in ports and 9000 not in ports and 0 not in ports and -1 not in ports
    assert str(ports.which(8080)) == "8000-8999"
    assert str(ports.which(443)) == "443"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "bad port range '0'"),
        ("65536", "bad port range '65536'"),
        ("https", "bad port range 'https'"),
        ("9000-8000", "bad port range '9000-8000': start above end"),
        ("1-2-3", "bad port range '1-2-3'"),
        ("-5", "bad port range '-5'"),
        ("８０", "bad port range '８０'"),
    ],
)
def test_bad_ports(text: str, message: str) -> None:
    with pytest.raises(RangeError) as info:
        parse_port_range(text)
    assert str(info.value) == message
