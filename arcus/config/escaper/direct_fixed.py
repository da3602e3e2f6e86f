"""``type: direct_fixed``: connect to the destination itself, from one fixed source address.

``resolver`` may be left out when the profile defines exactly one resolver. The egress guard
(``allow_special``, ``loopback_for_local_clients``) is documented in ``schema.EscaperConfig``.
"""

from __future__ import annotations

import ipaddress

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import EscaperConfig
from arcus.config.yamlnodes import default_of, read_bool, read_choice, read_cidr, read_ip, read_list

TYPE = "direct_fixed"
KEYS = ("resolver", "bind", "resolve_strategy", "allow_special", "loopback_for_local_clients")
STRATEGIES = ("ipv4_first", "ipv6_first", "ipv4_only", "ipv6_only")


def parse(sec: ObjectSection, ctx: Context, name: str) -> EscaperConfig | None:
    resolver = sec.reference("resolver", "resolver", required=False)
    bind = sec.take("bind", read_ip, None)
    strategy = sec.take("resolve_strategy", read_choice(STRATEGIES), default_of(EscaperConfig, "resolve_strategy"))
    allow_special = sec.take("allow_special", read_list(read_cidr), ())
    local = sec.take("loopback_for_local_clients", read_bool, default_of(EscaperConfig, "loopback_for_local_clients"))
    # Cross-field: a source address of one family cannot reach destinations of the other only.
    if bind is not None:
        family = ipaddress.ip_address(bind).version
        if (family, strategy) in ((4, "ipv6_only"), (6, "ipv4_only")):
            sec.error(
                f"bind {bind} is an IPv{family} address but resolve_strategy is {strategy}; "
                f"bind an IPv{10 - family} address or use ipv{family}_only",
                sec.value_line("bind"),
            )
    if not sec.ok:
        return None
    return EscaperConfig(
        name=name,
        type=TYPE,
        resolver=resolver,
        bind=bind,
        resolve_strategy=strategy,
        allow_special=allow_special,
        loopback_for_local_clients=local,
        line=sec.key_line("name"),
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
