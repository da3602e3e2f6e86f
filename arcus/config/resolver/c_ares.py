"""``type: c_ares``: DNS queries of its own (c-ares through aiodns), cached for the answers' TTLs.

Unlike ``system`` (getaddrinfo gives no TTL), every answer carries its TTL: it is cached that
long, clamped to ``min_ttl``/``max_ttl``; NXDOMAIN, no data and server failures are cached for
``negative_ttl``. ``servers`` names the DNS servers (``ip`` or ``ip:port``, IPv6 in brackets);
left out, the system's ``/etc/resolv.conf`` is read. c-ares asks each server ``tries`` times
with ``each_timeout`` per try; ``timeout`` bounds a whole lookup, whatever c-ares does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from yaml.nodes import Node

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import ResolverConfig
from arcus.config.yamlnodes import BadValue, default_of, read_duration, read_int, read_ip, read_list, scalar_text

TYPE = "c_ares"
KEYS = ("servers", "bind", "timeout", "each_timeout", "tries", "min_ttl", "max_ttl", "negative_ttl", "max_entries")
DNS_PORT = 53
SERVER_HINT = 'write an IP address, "ip:port" or "[ipv6]:port", e.g. "192.0.2.53" or "127.0.0.1:5353"'


@dataclass(frozen=True, slots=True)
class CAresResolverConfig(ResolverConfig):
    servers: tuple[str, ...] = ()  # "ip:port", canonical; empty: /etc/resolv.conf
    bind: str | None = None  # source address of the queries
    each_timeout: float = 2.0  # one try at one server
    tries: int = 2  # tries per server before c-ares gives up
    min_ttl: float = 1.0  # shorter TTLs are cached this long (a TTL of 0 would ask on every request)
    max_ttl: float = 3600.0  # longer TTLs are cut to this


def parse_server(text: str) -> str:
    """``"192.0.2.53"``, ``"192.0.2.53:5353"``, ``"2001:db8::53"``, ``"[2001:db8::53]:5353"`` → ``"ip:port"``."""
    text = text.strip()
    port_text = str(DNS_PORT)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f'invalid DNS server "{text}"; {SERVER_HINT}')
        if rest:
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f'invalid DNS server "{text}"; {SERVER_HINT}') from None
    if text.startswith("[") and ip.version != 6:
        raise ValueError(f'"{host}" in brackets is not an IPv6 address')
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f'invalid port "{port_text}" in DNS server "{text}"; write a number 1-65535')
    return f"[{ip}]:{int(port_text)}" if ip.version == 6 else f"{ip}:{int(port_text)}"


def read_server(node: Node) -> str:
    try:
        return parse_server(scalar_text(node, "a DNS server address"))
    except ValueError as exc:
        raise BadValue(str(exc)) from None


def parse(sec: ObjectSection, ctx: Context, name: str) -> CAresResolverConfig | None:
    servers = sec.take("servers", read_list(read_server, allow_empty=False), ())
    bind = sec.take("bind", read_ip, None)
    timeout = sec.take("timeout", read_duration, default_of(ResolverConfig, "timeout"))
    # A default never conflicts with what was written: it gives way to a shorter timeout / max_ttl.
    each_timeout = sec.take("each_timeout", read_duration, min(default_of(CAresResolverConfig, "each_timeout"), timeout))
    tries = sec.take("tries", read_int(1), default_of(CAresResolverConfig, "tries"))
    max_ttl = sec.take("max_ttl", read_duration, default_of(CAresResolverConfig, "max_ttl"))
    min_ttl = sec.take("min_ttl", read_duration, min(default_of(CAresResolverConfig, "min_ttl"), max_ttl))
    negative_ttl = sec.take("negative_ttl", read_duration, default_of(ResolverConfig, "negative_ttl"))
    max_entries = sec.take("max_entries", read_int(1), default_of(ResolverConfig, "max_entries"))
    # Cross-field checks: each names both keys and what to write instead.
    if min_ttl > max_ttl:
        sec.error(f"min_ttl {min_ttl:g}s is longer than max_ttl {max_ttl:g}s; make min_ttl at most max_ttl",
                  sec.value_line("min_ttl"))
    if each_timeout > timeout:
        sec.error(f"each_timeout {each_timeout:g}s is longer than timeout {timeout:g}s, which bounds the whole "
                  f"lookup; make each_timeout shorter or timeout longer",
                  sec.value_line("each_timeout"))
    if bind is not None and servers:
        family = ipaddress.ip_address(bind).version
        other = [s for s in servers if (6 if s.startswith("[") else 4) != family]
        if other:
            sec.error(f"bind {bind} is an IPv{family} address but server {other[0]} is not; "
                      f"bind an address of the servers' family", sec.value_line("bind"))
    if not sec.ok:
        return None
    return CAresResolverConfig(
        name=name,
        type=TYPE,
        timeout=timeout,
        negative_ttl=negative_ttl,
        max_entries=max_entries,
        line=sec.key_line("name"),
        servers=servers,
        bind=bind,
        each_timeout=each_timeout,
        tries=tries,
        min_ttl=min_ttl,
        max_ttl=max_ttl,
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
