"""`tcp_tproxy`: Linux transparent proxying of TCP (TPROXY).

The firewall steers connections for any destination to the listener without rewriting them
(nftables ``tproxy to`` or iptables ``-j TPROXY``, plus a policy route delivering the marked
packets locally; docs/servers.md has the rules). The listening socket has ``IP_TRANSPARENT``
(``IPV6_TRANSPARENT``), which lets it accept connections addressed to foreign addresses, so
each accepted socket's *local* address is the destination the client meant: that is where the
connection goes, through the server's escaper, after admission (tenant by the server's
``tenant:`` or the source address, policy on the destination address, limits).

A client that connects to the listener's own address (not redirected) is refused: relaying
it would connect the proxy to itself.
"""

from __future__ import annotations

import asyncio
import socket
from collections import defaultdict
from collections.abc import Callable

from arcus.config.schema import ServerConfig
from arcus.errors import ErrorCode, Refusal
from arcus.serve.relay import RelayConnection

IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
IPV6_TRANSPARENT = getattr(socket, "IPV6_TRANSPARENT", 75)
SOL_IP = getattr(socket, "SOL_IP", 0)

_bound: defaultdict[str, set[tuple[str, int]]] = defaultdict(set)  # server -> its listening addresses


def original_destination(sockname) -> tuple[str, int]:
    host = str(sockname[0]).split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(sockname[1])


class TcpTproxyConnection(RelayConnection):
    def handshake_started(self) -> None:
        local = self.transport.get_extra_info("sockname")
        if not local:
            self.refuse(Refusal(ErrorCode.INTERNAL, "the accepted socket has no local address"))
            return
        host, port = original_destination(local)
        if (host, port) in _bound.get(self.server, ()):
            self.refuse(Refusal(ErrorCode.CLIENT_BAD_REQUEST, "connected to the transparent proxy itself, not redirected to it"))
            return
        self.open(host, port)

    def audit_method(self) -> str | None:
        return "TPROXY"


def tcp_tproxy_factory(shared, server: str):
    def make() -> TcpTproxyConnection:
        return TcpTproxyConnection(shared, server)

    return make


def transparent_socket(host: str, port: int) -> socket.socket:
    """A bound, non-blocking TCP socket with IP_TRANSPARENT (needs CAP_NET_ADMIN)."""
    if host == "localhost":
        host = "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
            else:
                sock.setsockopt(SOL_IP, IP_TRANSPARENT, 1)
        except PermissionError:
            raise OSError("IP_TRANSPARENT needs the CAP_NET_ADMIN capability (run as root or grant it)") from None
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def tproxy_listen(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol], host: str, port: int, config: ServerConfig
) -> asyncio.AbstractServer:
    sock = transparent_socket(host, port)
    try:
        srv = await loop.create_server(factory, sock=sock, backlog=1024, start_serving=False)
    except BaseException:
        sock.close()
        raise
    for s in srv.sockets:
        _bound[config.name].add(original_destination(s.getsockname()))
    return srv
