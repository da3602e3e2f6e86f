"""``type: proxy_socks5``: leave through an upstream SOCKS5 proxy (RFC 1928 CONNECT).

Keys of ``proxy_http`` (``proxy``, ``resolver``, and ``username``/``password`` for RFC 1929
authentication to the upstream). The destination is sent as a name (like ``socks5h://``): the
upstream proxy resolves it, so per-address policy applies to IP literals only.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcus.config.escaper.proxy_http import PROXY_KEYS, UpstreamProxyConfig, read_proxy
from arcus.config.objects import Context, ObjectSection, TypeSpec

TYPE = "proxy_socks5"
KEYS = PROXY_KEYS


@dataclass(frozen=True, slots=True)
class ProxySocks5EscaperConfig(UpstreamProxyConfig):
    pass


def parse(sec: ObjectSection, ctx: Context, name: str) -> ProxySocks5EscaperConfig | None:
    common = read_proxy(sec)
    if not sec.ok or common is None:
        return None
    return ProxySocks5EscaperConfig(name=name, type=TYPE, line=sec.key_line("name"), **common)


SPEC = TypeSpec(keys=KEYS, parse=parse)
