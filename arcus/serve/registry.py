"""Server types: profile ``type:`` value -> how to build its listener and its connections.

A new server type is one module in ``arcus/serve/`` plus one entry here (explicit imports, so
a frozen binary sees every module). ``listen`` is only for types whose listening socket is
special (TLS to the client, IP_TRANSPARENT): it receives the loop, the protocol factory, the
address and the server's config, and returns a not-yet-serving ``asyncio.Server``
(``start_serving=False``); the daemon starts it after the Snapshot swap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from arcus.config.schema import ServerConfig
from arcus.serve.http_proxy import http_proxy_factory
from arcus.serve import intelli_proxy, socks_proxy, tls_listen
from arcus.serve.http_rproxy import http_rproxy_factory, rproxy_listen
from arcus.serve import sni_proxy, tcp_stream, tcp_tproxy, tls_stream

Factory = Callable[[Any, str], Callable[[], asyncio.Protocol]]
# The factory is the one ``factory`` made for this server type (rproxy_listen takes its own).
Listen = Callable[[asyncio.AbstractEventLoop, Any, str, int, ServerConfig], Awaitable[asyncio.AbstractServer]]


async def plain_listen(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol], host: str, port: int, config: ServerConfig
) -> asyncio.AbstractServer:
    return await loop.create_server(factory, host, port, backlog=1024, reuse_address=True, start_serving=False)


@dataclass(frozen=True, slots=True)
class ServerType:
    factory: Factory
    listen: Listen = plain_listen


SERVER_TYPES: dict[str, ServerType] = {
    "http_proxy": ServerType(http_proxy_factory, tls_listen.tls_listen),
    "socks_proxy": ServerType(socks_proxy.socks_proxy_factory), "intelli_proxy": ServerType(intelli_proxy.intelli_proxy_factory),
    "http_rproxy": ServerType(http_rproxy_factory, rproxy_listen),
    "sni_proxy": ServerType(sni_proxy.sni_proxy_factory), "tcp_stream": ServerType(tcp_stream.tcp_stream_factory), "tls_stream": ServerType(tls_stream.tls_stream_factory), "tcp_tproxy": ServerType(tcp_tproxy.tcp_tproxy_factory, tcp_tproxy.tproxy_listen),
}
