"""Escaper types: ``type:`` value -> parser. A new escaper type is one module plus one entry here.

Imports are explicit (no discovery by string) so a frozen binary sees every module.
"""

from __future__ import annotations

from arcus.config.escaper import (
    direct_fixed,
    direct_float,
    dummy_deny,
    proxy_http,
    proxy_https,
    proxy_socks5,
    route_client,
    route_failover,
    route_geoip,
    route_select,
    route_upstream,
)
from arcus.config.objects import Family

ESCAPERS = Family(
    name="escaper",
    plural="escapers",
    types={
        direct_fixed.TYPE: direct_fixed.SPEC,
        direct_float.TYPE: direct_float.SPEC,
        dummy_deny.TYPE: dummy_deny.SPEC,
        proxy_http.TYPE: proxy_http.SPEC,
        proxy_https.TYPE: proxy_https.SPEC,
        proxy_socks5.TYPE: proxy_socks5.SPEC,
        route_client.TYPE: route_client.SPEC,
        route_failover.TYPE: route_failover.SPEC,
        route_geoip.TYPE: route_geoip.SPEC,
        route_select.TYPE: route_select.SPEC,
        route_upstream.TYPE: route_upstream.SPEC,
    },
)
