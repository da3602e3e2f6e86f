"""``type: sni_proxy``: routes each connection by the server name its client asks for.

A TLS client is routed by the SNI of its ClientHello to ``SNI:tls_port``; a plain HTTP client
on the same listener by its ``Host`` header to ``host:http_port`` (or the port the Host
header names). Nothing is decrypted: the bytes read to decide are forwarded first.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import ServerConfig
from arcus.config.server.tcp_stream import COMMON_KEYS, common_ok, parse_common
from arcus.config.yamlnodes import default_of, read_int

TYPE = "sni_proxy"
KEYS = COMMON_KEYS + ("tls_port", "http_port")


@dataclass(frozen=True, slots=True)
class SniProxyConfig(ServerConfig):
    tls_port: int = 443  # destination port of TLS connections (SNI:tls_port)
    http_port: int = 80  # destination port of plain HTTP when its Host header names none


def _port(sec: ObjectSection, key: str) -> int:
    port = sec.take(key, read_int(1), default_of(SniProxyConfig, key))
    if port > 65535:
        sec.error(f"port {port} out of range 1-65535", sec.value_line(key), key=key)
    return port


def parse(sec: ObjectSection, ctx: Context, name: str) -> SniProxyConfig | None:
    common = parse_common(sec, ctx)
    tls_port = _port(sec, "tls_port")
    http_port = _port(sec, "http_port")
    if not common_ok(sec, common):
        return None
    return SniProxyConfig(
        name=name, type=TYPE, line=sec.key_line("name"), tls_port=tls_port, http_port=http_port, **common
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
