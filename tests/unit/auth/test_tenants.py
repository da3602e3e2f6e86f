"""Tenant identification by source address: longest prefix, v4/v6, mapped, default."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcus.auth import tenants as tenants_mod
from arcus.auth.tenants import TenantEntry, TenantTable
from arcus.errors import OperatorError
from arcus.store import Tenant


@dataclass(frozen=True)
class T:
    """A minimal tenant-like object (the table must not need the store's Tenant)."""

    name: str
    sources: tuple[str, ...] = ()
    suspended: bool = False


@pytest.fixture
def table() -> TenantTable:
    return TenantTable.build(
        [
            T("default"),
            T("corp", ("10.0.0.0/8", "2001:db8::/32")),
            T("acme", ("10.20.0.0/16", "2001:db8:1::/48")),
            T("lab", ("10.20.30.0/24",), suspended=True),
            T("host", ("10.20.30.40/32", "2001:db8:1::1/128")),
            T("everyone6", ("::/0",)),
        ]
    )


@pytest.mark.parametrize(
    ("address", "tenant"),
    [
        ("10.1.2.3", "corp"),
        ("10.20.1.1", "acme"),
        ("10.20.30.1", "lab"),
        ("10.20.30.40", "host"),
        ("10.20.30.41", "lab"),
        ("10.255.255.255", "corp"),
        ("11.0.0.0", "default"),
        ("2001:db8:2::1", "corp"),
        ("2001:db8:1::2", "acme"),
        ("2001:db8:1::1", "host"),
        ("2001:db9::1", "everyone6"),
        ("::1", "everyone6"),
    ],
)
def test_longest_prefix_wins(table: TenantTable, address: str, tenant: str) -> None:
    assert table.lookup(address).name == tenant


def test_ipv4_mapped_client_matches_ipv4_ranges(table: TenantTable) -> None:
    # not the ::/0 IPv6 range, though the mapped address lies inside it
    assert table.lookup("::ffff:10.20.1.1").name == "acme"
    assert table.lookup("::ffff:10.20.30.40").name == "host"
    assert table.lookup("::ffff:192.0.2.1").name == "default"


def test_scoped_ipv6_address(table: TenantTable) -> None:
    assert table.lookup("2001:db8:1::1%eth0").name == "host"
    assert table.lookup("fe80::1%eth0").name == "everyone6"


def test_suspended_flag_is_carried(table: TenantTable) -> None:
    assert table.lookup("10.20.30.1") == TenantEntry("lab", True)
    assert table.lookup("10.20.1.1") == TenantEntry("acme", False)


def test_default_entry_as_stored() -> None:
    t = TenantTable.build([T("default", suspended=True), T("acme", ("10.0.0.0/8",))])
    assert t.lookup("192.0.2.1") == TenantEntry("default", True)
    assert t.default == TenantEntry("default", True)


def test_default_entry_when_none_given() -> None:
    t = TenantTable.build([T("acme", ("10.0.0.0/8",))])
    assert t.lookup("192.0.2.1") == TenantEntry("default", False)
    assert TenantTable.build([]).lookup("10.0.0.1") == TenantEntry("default", False)


@pytest.mark.parametrize(
    "address", ["", "not an address", "10.0.0", "300.1.1.1", "[::1]", "/tmp/sock"]
)
def test_unparsable_address_belongs_to_default(table: TenantTable, address: str) -> None:
    assert table.lookup(address).name == "default"


def test_default_may_have_ranges_too() -> None:
    t = TenantTable.build([T("default", ("192.0.2.0/24",)), T("acme", ("192.0.2.128/25",))])
    assert t.lookup("192.0.2.1").name == "default"
    assert t.lookup("192.0.2.200").name == "acme"


def test_get_by_name(table: TenantTable) -> None:
    assert table.get("lab") == TenantEntry("lab", True)
    assert table.get("nope") is None


def test_builds_from_store_tenants() -> None:
    t = TenantTable.build(
        [Tenant("acme", "Acme", ("10.20.0.0/16",), False, "2024-01-01T00:00:00Z")]
    )
    assert t.lookup("10.20.0.1").name == "acme"


def test_unnormalized_sources_accepted() -> None:
    t = TenantTable.build([T("acme", ("10.20.9.9/16", "2001:DB8::5/48"))])
    assert t.lookup("10.20.0.1").name == "acme"
    assert t.lookup("2001:db8:0:1::1").name == "acme"


def test_same_range_for_two_tenants_refused() -> None:
    with pytest.raises(OperatorError) as info:
        TenantTable.build([T("a", ("10.0.0.0/8",)), T("b", ("10.1.2.3/8",))])
    assert str(info.value) == "source range '10.0.0.0/8' given to both tenant 'a' and tenant 'b'"


def test_duplicate_tenant_refused() -> None:
    with pytest.raises(OperatorError, match="tenant 'a' given twice"):
        TenantTable.build([T("a"), T("a")])


def test_bad_range_refused() -> None:
    with pytest.raises(OperatorError, match=r"invalid source range 'x'"):
        TenantTable.build([T("a", ("x",))])


def test_cache_bounded_and_still_correct(
    table: TenantTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tenants_mod, "CACHE_SIZE", 8)
    for i in range(50):
        assert table.lookup(f"10.20.1.{i}").name == "acme"
        assert len(table._cache) <= 8
    assert table.lookup("10.20.30.40").name == "host"


def test_cached_answer_equals_first_answer(table: TenantTable) -> None:
    first = table.lookup("10.20.30.1")
    assert table.lookup("10.20.30.1") is first


# -- against a brute-force reference ------------------------------------------------------

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def reference(assignments: dict[Net, str], address: Addr, default: str = "default") -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    best: tuple[int, str] | None = None
    for network, name in assignments.items():
        if network.version == address.version and address in network:
            if best is None or network.prefixlen > best[0]:
                best = (network.prefixlen, name)
    return default if best is None else best[1]


V4_BASES = [0x0A000000, 0x0A140000, 0xC0000200]  # 10.0/16, 10.20/16, 192.0.2.0/24 and up
V6_BASE = 0x20010DB8 << 96


@st.composite
def networks(draw: st.DrawFn) -> Net:
    if draw(st.booleans()):
        # a small space so that ranges nest and addresses hit them
        plen = draw(st.integers(0, 32))
        value = draw(st.sampled_from(V4_BASES)) | draw(st.integers(0, 0xFFFF))
        return ipaddress.IPv4Network((value, plen), strict=False)
    plen = draw(st.integers(0, 128))
    value = V6_BASE | draw(st.integers(0, (1 << 80) - 1))
    # short prefixes (::/0 and the like) contain the IPv4-mapped space: mapped clients
    # must still match IPv4 ranges only
    return ipaddress.IPv6Network((value, plen), strict=False)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[Net, str], list[str]]:
    nets = draw(st.lists(networks(), max_size=25, unique=True))
    names = [f"t{i}" for i in range(6)]
    assignments = {n: draw(st.sampled_from(names)) for n in nets}
    addresses: list[str] = []
    for _ in range(draw(st.integers(1, 20))):
        kind = draw(st.sampled_from(["inside", "v4", "v6", "mapped"]))
        if kind == "inside" and nets:
            n = draw(st.sampled_from(nets))
            offset = draw(st.integers(0, n.num_addresses - 1))
            addresses.append(str(n.network_address + offset))
        elif kind == "v6":
            value = V6_BASE | draw(st.integers(0, (1 << 80) - 1))
            addresses.append(str(ipaddress.IPv6Address(value)))
        else:
            value = draw(st.sampled_from(V4_BASES)) | draw(st.integers(0, 0xFFFF))
            v4 = ipaddress.IPv4Address(value)
            addresses.append(f"::ffff:{v4}" if kind == "mapped" else str(v4))
    return assignments, addresses


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_matches_brute_force_reference(scenario: tuple[dict[Net, str], list[str]]) -> None:
    assignments, addresses = scenario
    by_tenant: dict[str, list[str]] = {}
    for net, name in assignments.items():
        by_tenant.setdefault(name, []).append(str(net))
    table = TenantTable.build([T(name, tuple(srcs)) for name, srcs in by_tenant.items()])
    for text in addresses:
        expected = reference(assignments, ipaddress.ip_address(text))
        assert table.lookup(text).name == expected, text
        assert table.lookup(text).name == expected, text  # and again, from the cache
