"""`proxy_https`: ``proxy_http`` over TLS to the upstream proxy (HTTPS-to-proxy).

The proxy's certificate is verified against ``ca_file`` (or the system's CAs) for ``tls_name``
(or the proxy's host). With ``ssl`` to the destination as well, that TLS runs inside the
proxy's TLS (TLS in TLS).
"""

from __future__ import annotations

from arcus.config.escaper.proxy_https import ProxyHttpsEscaperConfig
from arcus.escape.proxy_http import ProxyHttpEscaper
from arcus.resolve.base import Resolver
from arcus.tls.contexts import proxy_context


class ProxyHttpsEscaper(ProxyHttpEscaper):
    type_name = "proxy_https"
    protocol_name = "HTTPS CONNECT"
    config: ProxyHttpsEscaperConfig

    def __init__(self, config: ProxyHttpsEscaperConfig, resolver: Resolver | None) -> None:
        super().__init__(config, resolver, proxy_context(config.ca_file), config.tls_name)

    def info(self) -> dict:
        return {**super().info(), "tls_name": self.tls_name}
