from __future__ import annotations

import pytest

from arcus.errors import OperatorError
from arcus.store.sources import normalize_source, normalize_sources, parse_source

FORM_HINT = "write an IPv4 or IPv6 range in CIDR form, e.g. 10.20.0.0/16 or 2001:db8::/48"


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("10.20.0.0/16", "10.20.0.0/16"),
        ("10.20.1.7/16", "10.20.0.0/16"),  # host bits cleared
        ("10.20.1.7", "10.20.1.7/32"),  # bare address: one host
        ("10.0.0.0/255.255.0.0", "10.0.0.0/16"),
        ("  192.168.1.0/24 ", "192.168.1.0/24"),
        ("2001:DB8:0:0::1/48", "2001:db8::/48"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::/0", "::/0"),
    ],
)
def test_normalizes(text: str, normal: str) -> None:
    assert normalize_source(text) == normal


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/33", "invalid source range '10.0.0.0/33': '33' is not a valid netmask"),
        ("300.0.0.0/8", "invalid source range '300.0.0.0/8': Octet 300 (> 255) not permitted in '300.0.0.0'"),
        ("acme", "invalid source range 'acme': Expected 4 octets in 'acme'"),
        ("2001:db8::/129", "invalid source range '2001:db8::/129': '129' is not a valid netmask"),
        ("", "invalid source range '': empty"),
    ],
)
def test_bad_ranges_say_why(text: str, message: str) -> None:
    with pytest.raises(OperatorError) as info:
        parse_source(text)
    assert info.value.code == "invalid"
    assert str(info.value) == message
    assert info.value.hint == FORM_HINT


def test_ipv4_mapped_range_refused_with_hint() -> None:
    with pytest.raises(OperatorError) as info:
        parse_source("::ffff:10.20.0.0/112")
    assert str(info.value) == (
        "invalid source range '::ffff:10.20.0.0/112': IPv4-mapped IPv6 ranges are not accepted"
    )
    assert info.value.code == "invalid"
    assert "write the IPv4 range instead" in (info.value.hint or "")


def test_range_containing_mapped_space_is_fine() -> None:
    assert normalize_source("::/0") == "::/0"  # all of IPv6, not a mapped range


def test_zone_index_refused() -> None:
    with pytest.raises(OperatorError) as info:
        parse_source("fe80::%eth0/64")
    assert str(info.value) == "invalid source range 'fe80::%eth0/64': zone index not allowed"
    assert "%zone" in (info.value.hint or "")


def test_non_text_refused() -> None:
    with pytest.raises(OperatorError, match="expected text, got int"):
        parse_source(167772160)  # type: ignore[arg-type]


def test_many_deduplicated_and_sorted_by_address() -> None:
    got = normalize_sources(["2001:db8::/32", "10.0.0.9/8", "9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16"])
    assert got == ("9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16", "2001:db8::/32")


def test_a_lone_string_is_one_range_not_characters() -> None:
    assert normalize_sources("10.0.0.0/8") == ("10.0.0.0/8",)
