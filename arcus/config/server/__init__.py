"""Server types: ``type:`` value -> parser. A new server type is one module plus one entry here.

Imports are explicit (no discovery by string) so a frozen binary sees every module.
"""

from __future__ import annotations

from arcus.config.objects import Family
from arcus.config.server import (
    http_proxy,
    http_rproxy,
    intelli_proxy,
    sni_proxy,
    socks_proxy,
    tcp_stream,
    tcp_tproxy,
    tls_stream,
)

SERVERS = Family(
    name="server",
    plural="servers",
    types={
        http_proxy.TYPE: http_proxy.SPEC,
        socks_proxy.TYPE: socks_proxy.SPEC, intelli_proxy.TYPE: intelli_proxy.SPEC,
        sni_proxy.TYPE: sni_proxy.SPEC, tcp_stream.TYPE: tcp_stream.SPEC, tls_stream.TYPE: tls_stream.SPEC, http_rproxy.TYPE: http_rproxy.SPEC, tcp_tproxy.TYPE: tcp_tproxy.SPEC,
    },
)
