"""``type: direct_fixed``: connect to the destination itself, from one fixed source address.

``resolver`` may be left out when the profile defines exactly one resolver. The egress guard
(``allow_special``, ``loopback_for_local_clients``) is documented in ``schema.EscaperConfig``.
``happy_eyeballs_delay``: when a name has several addresses, the next one is tried this long
after the previous attempt started if that one has not connected yet (RFC 8305); the first
to connect wins, all bounded by the server's connect timeout.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import EscaperConfig
from arcus.config.yamlnodes import default_of, read_bool, read_choice, read_cidr, read_duration, read_ip, read_list

TYPE = "direct_fixed"
DIRECT_KEYS = ("resolver", "resolve_strategy", "allow_special", "loopback_for_local_clients", "happy_eyeballs_delay")
KEYS = DIRECT_KEYS + ("bind",)
STRATEGIES = ("ipv4_first", "ipv6_first", "ipv4_only", "ipv6_only")


@dataclass(frozen=True, slots=True)
class DirectFixedEscaperConfig(EscaperConfig):
    happy_eyeballs_delay: float = 0.25  # seconds before the next address is tried alongside


def read_direct(sec: ObjectSection) -> dict:
    """The keys every direct escaper has, as constructor arguments."""
    return dict(
        resolver=sec.reference("resolver", "resolver", required=False),
        resolve_strategy=sec.take(
            "resolve_strategy", read_choice(STRATEGIES), default_of(EscaperConfig, "resolve_strategy")
        ),
        allow_special=sec.take("allow_special", read_list(read_cidr), ()),
        loopback_for_local_clients=sec.take(
            "loopback_for_local_clients", read_bool, default_of(EscaperConfig, "loopback_for_local_clients")
        ),
        happy_eyeballs_delay=sec.take(
            "happy_eyeballs_delay", read_duration, default_of(DirectFixedEscaperConfig, "happy_eyeballs_delay")
        ),
    )


def check_family(sec: ObjectSection, address: str, strategy: str, key: str) -> None:
    """Cross-field: a source address of one family cannot reach destinations of the other only."""
    family = ipaddress.ip_address(address).version
    if (family, strategy) in ((4, "ipv6_only"), (6, "ipv4_only")):
        sec.error(
            f"{key} {address} is an IPv{family} address but resolve_strategy is {strategy}; "
            f"{'bind' if key == 'bind' else 'use'} an IPv{10 - family} address or use ipv{family}_only",
            sec.value_line(key),
        )


def parse(sec: ObjectSection, ctx: Context, name: str) -> DirectFixedEscaperConfig | None:
    direct = read_direct(sec)
    bind = sec.take("bind", read_ip, None)
    if bind is not None:
        check_family(sec, bind, direct["resolve_strategy"], "bind")
    if not sec.ok:
        return None
    return DirectFixedEscaperConfig(name=name, type=TYPE, bind=bind, line=sec.key_line("name"), **direct)


SPEC = TypeSpec(keys=KEYS, parse=parse)
