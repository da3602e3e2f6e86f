"""``type: tcp_stream``: every client connection is relayed to one of a fixed list of upstreams.

Also home of what the other stream-like servers (``tls_stream``, ``sni_proxy``, ``tcp_tproxy``,
``http_rproxy``) read the same way: the keys every server has, an upstream address (a host
name or an IP, and a port), and a file path relative to the profile's directory.

Upstreams are kept as their ``host:port`` text (validated here, split by
``split_upstream``), so ``arcus config show`` writes them back exactly as they load.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yaml.nodes import Node, ScalarNode

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import ServerConfig
from arcus.config.sections import parse_limits, parse_timeouts
from arcus.config.values import split_host_port
from arcus.config.yamlnodes import (
    BadValue,
    default_of,
    read_address,
    read_choice,
    read_cidr,
    read_int,
    read_list,
    read_name,
    read_one_or_list,
    scalar_text,
)

TYPE = "tcp_stream"
COMMON_KEYS = ("listen", "escaper", "timeouts", "limits", "max_connections", "tenant", "trusted_proxies")
BALANCES = ("round_robin", "random")
KEYS = COMMON_KEYS + ("upstreams", "balance")

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
UPSTREAM_HINT = 'write "host:port" with a host name or an IP address, e.g. "backend.internal:8080" or "[::1]:443"'


@dataclass(frozen=True, slots=True)
class TcpStreamConfig(ServerConfig):
    upstreams: tuple[str, ...] = ()  # "host:port", tried in the balance order
    balance: str = "round_robin"  # round_robin | random; on a failed connect the next one is tried


# --- shared readers ---------------------------------------------------------------------------


def split_upstream(text: str) -> tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` -> (host, port); raises ValueError saying what to write."""
    host, port_text, bracketed = split_host_port(text, "upstream", UPSTREAM_HINT)
    if not bracketed:
        if not _is_ip(host):
            if len(host) > 253 or _DNS_NAME.fullmatch(host) is None:
                raise ValueError(f'"{host}" is neither an IP address nor a host name; {UPSTREAM_HINT}')
            host = host.lower()
    if not port_text.isdigit() or not port_text.isascii() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f'invalid port "{port_text}" in "{text}"; write a number 1-65535')
    return host, int(port_text)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def read_upstream(node: Node) -> str:
    text = scalar_text(node, "an upstream address")
    try:
        host, port = split_upstream(text)
    except ValueError as exc:
        raise BadValue(str(exc)) from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_host_name(node: Node) -> str:
    """A DNS host name (lowercased), e.g. a TLS name to verify an upstream certificate against."""
    text = scalar_text(node, "a host name")
    if len(text) > 253 or _DNS_NAME.fullmatch(text) is None:
        raise BadValue(f'"{text}" is not a host name (letters, digits, "-" and "_" in dot-separated labels)')
    return text.lower()


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def read_path(ctx: Context):
    """A readable file; a relative path is taken from the profile's directory (``config show`` writes
    it back absolute). ``~`` (null) means "not set", so a shown profile loads again."""
    source = ctx.issues.file
    base = Path(source).parent if not source.startswith("<") else Path.cwd()

    def read(node: Node) -> str | None:
        if is_null(node):
            return None
        text = scalar_text(node, "a file path")
        if not text:
            raise BadValue("expected a file path")
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise BadValue(f"{path} is not a readable file")
        return str(path.resolve())

    return read


def parse_common(sec: ObjectSection, ctx: Context) -> dict[str, Any]:
    """The keys every server has, as keyword arguments of ``ServerConfig`` (name/type/line aside)."""
    return {
        "listen": sec.need("listen", read_one_or_list(read_address)),
        "escaper": sec.reference("escaper", "escaper", required=True),
        "timeouts": parse_timeouts(sec, ctx.timeouts),
        "limits": parse_limits(sec, ctx.limits),
        "max_connections": sec.take("max_connections", read_int(1), default_of(ServerConfig, "max_connections")),
        "tenant": sec.take("tenant", read_name, None),
        "trusted_proxies": sec.take("trusted_proxies", read_list(read_cidr), ()),
    }


def common_ok(sec: ObjectSection, common: dict[str, Any]) -> bool:
    return sec.ok and common["listen"] is not None and common["escaper"] is not None


# --- tcp_stream -------------------------------------------------------------------------------


def parse_upstreams(sec: ObjectSection) -> tuple[tuple[str, ...] | None, str]:
    upstreams = sec.need("upstreams", read_one_or_list(read_upstream))
    balance = sec.take("balance", read_choice(BALANCES), default_of(TcpStreamConfig, "balance"))
    return upstreams, balance


def parse(sec: ObjectSection, ctx: Context, name: str) -> TcpStreamConfig | None:
    common = parse_common(sec, ctx)
    upstreams, balance = parse_upstreams(sec)
    if not common_ok(sec, common) or upstreams is None:
        return None
    return TcpStreamConfig(
        name=name, type=TYPE, line=sec.key_line("name"), upstreams=upstreams, balance=balance, **common
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
