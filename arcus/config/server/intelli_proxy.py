"""``type: intelli_proxy``: HTTP proxy and SOCKS proxy on one port, told apart by the first byte.

A first byte 0x04 or 0x05 is SOCKS (``socks_proxy``'s keys apply: versions, udp, udp_idle,
udp_bind); anything else is HTTP (``http_proxy``'s keys apply: limits, trusted_proxies).
As g3proxy's ``intelli_proxy``.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.server.socks_proxy import COMMON_KEYS, SOCKS_KEYS, SocksProxyServerConfig, parse_common, parse_socks
from arcus.config.yamlnodes import read_cidr, read_list

TYPE = "intelli_proxy"
KEYS = COMMON_KEYS + ("trusted_proxies",) + SOCKS_KEYS


@dataclass(frozen=True, slots=True)
class IntelliProxyServerConfig(SocksProxyServerConfig):
    pass


def parse(sec: ObjectSection, ctx: Context, name: str) -> IntelliProxyServerConfig | None:
    common = parse_common(sec, ctx)
    common["trusted_proxies"] = sec.take("trusted_proxies", read_list(read_cidr), ())
    socks = parse_socks(sec)
    if not sec.ok or common["listen"] is None or common["escaper"] is None:
        return None
    return IntelliProxyServerConfig(name=name, type=TYPE, line=sec.key_line("name"), **common, **socks)


SPEC = TypeSpec(keys=KEYS, parse=parse)
