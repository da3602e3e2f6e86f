"""``type: http_proxy``: an HTTP/1.1 forward proxy (absolute-form requests and CONNECT).

With ``tls:`` (``arcus.config.server.tls``) the listener speaks TLS to its clients
(HTTPS-to-proxy, ``curl --proxy https://...``).
"""

from __future__ import annotations

from dataclasses import dataclass

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import ServerConfig
from arcus.config.sections import parse_limits, parse_timeouts
from arcus.config.server.tls import TlsListenConfig, parse_tls
from arcus.config.yamlnodes import default_of, read_address, read_cidr, read_int, read_list, read_name, read_one_or_list

TYPE = "http_proxy"
KEYS = ("listen", "escaper", "timeouts", "limits", "max_connections", "tenant", "trusted_proxies", "tls")


@dataclass(frozen=True, slots=True)
class HttpProxyServerConfig(ServerConfig):
    tls: TlsListenConfig | None = None  # TLS to the clients (certificate and key from the profile)


def parse(sec: ObjectSection, ctx: Context, name: str) -> HttpProxyServerConfig | None:
    listen = sec.need("listen", read_one_or_list(read_address))
    escaper = sec.reference("escaper", "escaper", required=True)
    timeouts = parse_timeouts(sec, ctx.timeouts)
    limits = parse_limits(sec, ctx.limits)
    max_connections = sec.take("max_connections", read_int(1), default_of(ServerConfig, "max_connections"))
    tenant = sec.take("tenant", read_name, None)
    trusted = sec.take("trusted_proxies", read_list(read_cidr), ())
    tls = parse_tls(sec, ctx)
    if not sec.ok or listen is None or escaper is None:
        return None
    return HttpProxyServerConfig(
        name=name,
        type=TYPE,
        listen=listen,
        escaper=escaper,
        timeouts=timeouts,
        limits=limits,
        max_connections=max_connections,
        tenant=tenant,
        trusted_proxies=trusted,
        tls=tls,
        line=sec.key_line("name"),
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
