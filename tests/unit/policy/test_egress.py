"""The egress guard: special destinations, IPv6 forms that carry an IPv4 address, the live set
of the box's own addresses, and who counts as a client on the box."""

from __future__ import annotations

import ipaddress

import pytest

from arcus.policy.egress import EgressGuard, HostAddresses, embedded_ipv4, parse_ip

OFF_BOX = "198.51.100.7"
OWN = "10.99.0.1"


@pytest.fixture
def guard() -> EgressGuard:
    return EgressGuard(own_addresses=[OWN, "2001:db8::1"])


@pytest.mark.parametrize(
    ("dest", "carried", "why"),
    [
        ("::127.0.0.1", "127.0.0.1", "IPv4-compatible"),  # [::127.0.0.1] in a URL
        ("::7f00:2", "127.0.0.2", "IPv4-compatible"),
        ("::169.254.169.254", "169.254.169.254", "IPv4-compatible"),
        (f"::{OWN}", OWN, "IPv4-compatible"),
        ("::ffff:0:127.0.0.1", "127.0.0.1", "IPv4-translated"),
        ("64:ff9b::127.0.0.1", "127.0.0.1", "NAT64"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254", "NAT64"),  # cloud metadata through a NAT64
        ("64:ff9b::100.100.100.200", "100.100.100.200", "NAT64"),
        (f"64:ff9b::{OWN}", OWN, "NAT64"),
        ("64:ff9b::224.0.0.1", "224.0.0.1", "NAT64"),
        ("2002:7f00:1::1", "127.0.0.1", "6to4"),
        ("2002:a9fe:a9fe::", "169.254.169.254", "6to4"),
        ("2001:0:7f00:1::", "127.0.0.1", "Teredo server"),
        ("2001:0:c633:6407::80ff:fffe", "127.0.0.1", "Teredo client"),  # client bits are inverted
    ],
)
def test_ipv6_forms_carrying_a_special_ipv4_address_are_refused(guard, dest, carried, why) -> None:
    reason = guard.check(OFF_BOX, dest)
    assert reason is not None
    assert f"carries {carried} ({why})" in reason
    # not "this box's loopback" to a client on the box either: another path to that address
    assert guard.check("127.0.0.1", dest) == reason
    assert guard.check(OWN, dest) == reason


@pytest.mark.parametrize(
    "dest", ["64:ff9b::8.8.8.8", "::8.8.8.8", "2002:808:808::1", "::ffff:0:8.8.8.8", "2001:db8::99", "2606:4700::1111"]
)
def test_ipv6_forms_carrying_an_ordinary_address_pass(guard, dest) -> None:
    assert guard.check(OFF_BOX, dest) is None


def test_ipv4_mapped_is_the_ipv4_address_itself(guard) -> None:
    assert guard.check(OFF_BOX, "::ffff:127.0.0.1") == "127.0.0.1 is loopback"
    assert guard.check("127.0.0.1", "::ffff:127.0.0.1") is None  # a local client's loopback allowance holds
    assert guard.check(OFF_BOX, f"::ffff:{OWN}") == f"{OWN} is one of this box's own addresses"
    assert guard.check(OFF_BOX, "::ffff:169.254.169.254") == "169.254.169.254 is in the special-purpose range 169.254.0.0/16"
    assert guard.check(OFF_BOX, "::1") == "::1 is loopback"
    assert guard.check(OFF_BOX, "::") == ":: is in the special-purpose range ::/128"


def test_an_allowed_range_opens_the_form_it_names_only() -> None:
    g = EgressGuard(allow=["64:ff9b::/96"])
    assert g.check(OFF_BOX, "64:ff9b::a9fe:a9fe") is None  # the operator opened the NAT64 prefix
    g = EgressGuard(allow=["169.254.169.254/32"])
    assert g.check(OFF_BOX, "169.254.169.254") is None
    assert g.check(OFF_BOX, "64:ff9b::a9fe:a9fe") is not None  # another path to it stays shut


def test_embedded_ipv4_forms() -> None:
    v4 = ipaddress.IPv4Address
    assert embedded_ipv4(parse_ip("::127.0.0.1")) == [(v4("127.0.0.1"), "IPv4-compatible")]
    assert embedded_ipv4(parse_ip("2001:0:4136:e378:8000:63bf:3fff:fdd2")) == [
        (v4("65.54.227.120"), "Teredo server"),
        (v4("192.0.2.45"), "Teredo client"),
    ]
    assert embedded_ipv4(parse_ip("127.0.0.1")) == []
    assert embedded_ipv4(parse_ip("2001:db8::1")) == []
    assert parse_ip("::ffff:10.0.0.1") == v4("10.0.0.1")
    assert parse_ip("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")
    with pytest.raises(ValueError):
        parse_ip("example.com")


def test_host_addresses_is_the_one_answer_to_on_the_box() -> None:
    host = HostAddresses([OWN, "2001:db8::1"])
    for client in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", OWN, f"::ffff:{OWN}", "2001:db8::1"):
        assert host.is_local(client), client
    for client in (OFF_BOX, "::127.0.0.1", "10.99.0.2", "2001:db8::2", "", "not an address"):
        assert not host.is_local(client), client
    guard = EgressGuard(own_addresses=host)
    assert guard.is_local(OWN) and not guard.is_local(OFF_BOX)


def test_guards_see_a_change_of_the_box_addresses_at_once() -> None:
    host = HostAddresses(["10.99.0.1"])
    guards = [EgressGuard(own_addresses=host), EgressGuard(allow=["192.0.2.0/24"], own_addresses=host)]
    assert all(g.check(OFF_BOX, "10.99.0.7") is None for g in guards)
    gained, lost = host.replace(["10.99.0.7", "2001:db8::5"])
    assert gained == {parse_ip("10.99.0.7"), parse_ip("2001:db8::5")}
    assert lost == {parse_ip("10.99.0.1")}
    for g in guards:
        assert g.check(OFF_BOX, "10.99.0.7") == "10.99.0.7 is one of this box's own addresses"
        assert g.check(OFF_BOX, "10.99.0.1") is None  # no longer the box's
        assert g.check("10.99.0.7", "10.99.0.7") is None  # a client on the box, at its new address
        assert g.is_local("2001:db8::5")
    assert host.replace(["10.99.0.7", "2001:db8::5"]) == (frozenset(), frozenset())


def test_a_fixed_list_still_makes_a_guard(guard) -> None:
    assert guard.check(OFF_BOX, OWN) == f"{OWN} is one of this box's own addresses"
    assert guard.check(OWN, OWN) is None
    assert EgressGuard(own_addresses=[OWN], loopback_for_local_clients=False).check(OWN, "127.0.0.1") == "127.0.0.1 is loopback"
