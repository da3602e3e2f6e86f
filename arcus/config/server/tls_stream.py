"""``type: tls_stream``: like ``tcp_stream``, but the connection to the upstream is TLS, verified.

The client speaks plain TCP to Arcus; Arcus speaks TLS to the upstream and checks its
certificate against ``tls_ca`` (a PEM file of trusted CAs) or the system's roots, for the name
``tls_name`` (default: the upstream's host, which may be an IP address with an IP SAN).
There is no switch to turn verification off.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.server.tcp_stream import KEYS as STREAM_KEYS
from arcus.config.server.tcp_stream import (
    TcpStreamConfig,
    common_ok,
    parse_common,
    parse_upstreams,
    read_host_name,
    read_path,
)

TYPE = "tls_stream"
KEYS = STREAM_KEYS + ("tls_ca", "tls_name")


@dataclass(frozen=True, slots=True)
class TlsStreamConfig(TcpStreamConfig):
    tls_ca: str | None = None  # PEM file of trusted CAs; None: the system's roots
    tls_name: str | None = None  # name the certificate must carry; None: each upstream's host


def parse(sec: ObjectSection, ctx: Context, name: str) -> TlsStreamConfig | None:
    common = parse_common(sec, ctx)
    upstreams, balance = parse_upstreams(sec)
    tls_ca = sec.take("tls_ca", read_path(ctx), None)
    tls_name = sec.take("tls_name", read_host_name, None)
    if not common_ok(sec, common) or upstreams is None:
        return None
    return TlsStreamConfig(
        name=name,
        type=TYPE,
        line=sec.key_line("name"),
        upstreams=upstreams,
        balance=balance,
        tls_ca=tls_ca,
        tls_name=tls_name,
        **common,
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
