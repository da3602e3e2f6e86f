"""``type: socks_proxy``: SOCKS4, SOCKS4a and SOCKS5 (CONNECT and UDP ASSOCIATE).

    - name: socks
      type: socks_proxy
      listen: 127.0.0.1:1080
      escaper: direct
      versions: [4, 5]          # which SOCKS versions are accepted (default both)
      udp: true                 # allow UDP ASSOCIATE (default true)
      udp_idle: 60s             # an association with no datagram either way for this long ends
      udp_bind: 127.0.0.1       # address of the per-association relay sockets (default: the
                                # address the client's TCP connection reached)

Authentication follows the tenant (``arcus tenant set NAME --auth none|optional|required``):
username/password (RFC 1929) is offered when the tenant has users; SOCKS4 carries no password
and is refused by a tenant that requires one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yaml.nodes import Node

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import ServerConfig
from arcus.config.sections import parse_limits, parse_timeouts
from arcus.config.yamlnodes import (
    BadValue,
    default_of,
    read_address,
    read_bool,
    read_duration,
    read_int,
    read_ip,
    read_list,
    read_name,
    read_one_or_list,
)

TYPE = "socks_proxy"
COMMON_KEYS = ("listen", "escaper", "timeouts", "limits", "max_connections", "tenant")
SOCKS_KEYS = ("versions", "udp", "udp_idle", "udp_bind")
KEYS = COMMON_KEYS + SOCKS_KEYS


@dataclass(frozen=True, slots=True)
class SocksProxyServerConfig(ServerConfig):
    versions: tuple[int, ...] = (4, 5)  # accepted SOCKS versions
    udp: bool = True  # UDP ASSOCIATE allowed
    udp_idle: float = 60.0  # seconds without a datagram either way before an association ends
    udp_bind: str | None = None  # relay socket address; None: the address the TCP connection reached


def read_version(node: Node) -> int:
    version = read_int(4)(node)
    if version not in (4, 5):
        raise BadValue(f"SOCKS versions are 4 and 5, got {version}")
    return version


def parse_common(sec: ObjectSection, ctx: Context) -> dict[str, Any]:
    return {
        "listen": sec.need("listen", read_one_or_list(read_address)),
        "escaper": sec.reference("escaper", "escaper", required=True),
        "timeouts": parse_timeouts(sec, ctx.timeouts),
        "limits": parse_limits(sec, ctx.limits),
        "max_connections": sec.take("max_connections", read_int(1), default_of(ServerConfig, "max_connections")),
        "tenant": sec.take("tenant", read_name, None),
    }


def parse_socks(sec: ObjectSection) -> dict[str, Any]:
    """The SOCKS keys (shared with ``intelli_proxy``), one at a time, then their cross-field check."""
    base = SocksProxyServerConfig
    versions = sec.take("versions", read_list(read_version, allow_empty=False), default_of(base, "versions"))
    if len(set(versions)) != len(versions):
        sec.error("each version may be listed once", sec.value_line("versions"), key="versions")
    unique = tuple(sorted(set(versions)))
    udp = sec.take("udp", read_bool, default_of(base, "udp"))
    out = {
        "versions": unique,
        "udp": udp,
        "udp_idle": sec.take("udp_idle", read_duration, default_of(base, "udp_idle")),
        "udp_bind": sec.take("udp_bind", read_ip, None),
    }
    if 5 not in unique or not udp:
        for key in ("udp_idle", "udp_bind"):
            if sec.has(key):
                why = "SOCKS5 is not among versions" if 5 not in unique else "udp is false"
                sec.error(f"only used with UDP ASSOCIATE, and {why}", sec.key_line(key), key=key)
    return out


def parse(sec: ObjectSection, ctx: Context, name: str) -> SocksProxyServerConfig | None:
    common = parse_common(sec, ctx)
    socks = parse_socks(sec)
    if not sec.ok or common["listen"] is None or common["escaper"] is None:
        return None
    return SocksProxyServerConfig(name=name, type=TYPE, line=sec.key_line("name"), **common, **socks)


SPEC = TypeSpec(keys=KEYS, parse=parse)
