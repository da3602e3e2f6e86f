"""``type: tcp_tproxy``: Linux transparent proxying of TCP.

Packets for any destination are steered to the listener by the firewall (an nftables or
iptables ``TPROXY`` rule plus a policy route, see docs/servers.md); the listener is an
``IP_TRANSPARENT`` socket, which needs CAP_NET_ADMIN, and each accepted connection's local
address is the destination the client meant. No keys beyond the common ones.
"""

from __future__ import annotations

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import ServerConfig
from arcus.config.server.tcp_stream import COMMON_KEYS, common_ok, parse_common

TYPE = "tcp_tproxy"
KEYS = COMMON_KEYS


def parse(sec: ObjectSection, ctx: Context, name: str) -> ServerConfig | None:
    common = parse_common(sec, ctx)
    if not common_ok(sec, common):
        return None
    return ServerConfig(name=name, type=TYPE, line=sec.key_line("name"), **common)


SPEC = TypeSpec(keys=KEYS, parse=parse)
