"""``type: direct_float``: like ``direct_fixed``, with the source address of each connection
chosen from a set of egress addresses (at random among those of the destination's family).

``addresses`` is the set the daemon starts with; ``arcus ctl escaper-float-set`` (control
command ``escaper.float.set``) replaces it live, and that live set survives reloads as long as
the profile's own ``addresses`` are unchanged. An empty set refuses connections (502) until a
set is published.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from arcus.config.escaper.direct_fixed import DIRECT_KEYS, DirectFixedEscaperConfig, check_family, read_direct
from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.yamlnodes import read_ip, read_list

TYPE = "direct_float"
KEYS = DIRECT_KEYS + ("addresses",)


@dataclass(frozen=True, slots=True)
class DirectFloatEscaperConfig(DirectFixedEscaperConfig):
    addresses: tuple[str, ...] = ()  # egress (source) addresses to choose from


def parse(sec: ObjectSection, ctx: Context, name: str) -> DirectFloatEscaperConfig | None:
    direct = read_direct(sec)
    addresses = sec.take("addresses", read_list(read_ip), ())
    for address in addresses:
        why = egress_problem(address)
        if why is not None:
            sec.error(f"addresses: {address} {why}", sec.value_line("addresses"))
    if len(set(addresses)) != len(addresses):
        sec.error("addresses: an address is listed twice", sec.value_line("addresses"))
    usable = [a for a in addresses if not _wrong_family(a, direct["resolve_strategy"])]
    if addresses and not usable:
        check_family(sec, addresses[0], direct["resolve_strategy"], "addresses")
    if not sec.ok:
        return None
    return DirectFloatEscaperConfig(name=name, type=TYPE, addresses=addresses, line=sec.key_line("name"), **direct)


def egress_problem(address: str) -> str | None:
    """Why ``address`` cannot be the source of a connection (None: it can): multicast, the
    unspecified address (0.0.0.0, ::), the IPv4 broadcast address."""
    ip = ipaddress.ip_address(address)
    if ip.is_multicast:
        return "is a multicast address: a connection cannot come from it"
    if ip.is_unspecified:
        return "is the unspecified address: give one of this machine's addresses"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "is the broadcast address: a connection cannot come from it"
    return None


def _wrong_family(address: str, strategy: str) -> bool:
    v6 = ":" in address
    return (v6 and strategy == "ipv4_only") or (not v6 and strategy == "ipv6_only")


SPEC = TypeSpec(keys=KEYS, parse=parse)
