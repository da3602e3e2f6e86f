"""``type: http_proxy``: an HTTP/1.1 forward proxy (absolute-form requests and CONNECT)."""

from __future__ import annotations

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import ServerConfig
from arcus.config.sections import parse_limits, parse_timeouts
from arcus.config.yamlnodes import default_of, read_address, read_cidr, read_int, read_list, read_name, read_one_or_list

TYPE = "http_proxy"
KEYS = ("listen", "escaper", "timeouts", "limits", "max_connections", "tenant", "trusted_proxies")


def parse(sec: ObjectSection, ctx: Context, name: str) -> ServerConfig | None:
    listen = sec.need("listen", read_one_or_list(read_address))
    escaper = sec.reference("escaper", "escaper", required=True)
    timeouts = parse_timeouts(sec, ctx.timeouts)
    limits = parse_limits(sec, ctx.limits)
    max_connections = sec.take("max_connections", read_int(1), default_of(ServerConfig, "max_connections"))
    tenant = sec.take("tenant", read_name, None)
    trusted = sec.take("trusted_proxies", read_list(read_cidr), ())
    if not sec.ok or listen is None or escaper is None:
        return None
    return ServerConfig(
        name=name,
        type=TYPE,
        listen=listen,
        escaper=escaper,
        timeouts=timeouts,
        limits=limits,
        max_connections=max_connections,
        tenant=tenant,
        trusted_proxies=trusted,
        line=sec.key_line("name"),
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
