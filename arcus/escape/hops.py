"""Connections the daemon opens to itself are counted, so a loop ends instead of eating the box.

An ``sni_proxy`` asked for its own port (``curl http://127.0.0.1:PORT/`` to it, or a TLS name
that resolves to the box) connects to itself; the new connection asks for the same, and so on:
one request made 9,988 nested connections and ran the daemon out of descriptors in 1.7 s. A
``tcp_stream`` whose upstream is its own listener does it with no request at all. A chain that
passes through the daemon a few times on purpose (a stream in front of the HTTP proxy, an
escaper whose upstream proxy is another server of the same daemon) is no loop, so a connection
to the daemon's own address is not refused as such: the hops are counted.

How: a connection an escaper opens to one of the daemon's own listeners (an address of this box,
loopback or one of its own, at a port in :data:`LISTENING`) is
bound to a local port before it connects, and :data:`LINKS` remembers that port with the hop
count of the connection it was opened for plus one (:data:`HOPS`, which the session sets around
its call into the escapers). When the daemon accepts a connection from a client on the box, it
looks the client's port up (:meth:`Links.take`): found, the new connection carries that count;
a session whose count reached :data:`MAX_HOPS` is refused ``loop_detected`` when it asks for an
upstream. Binding first is what makes the lookup certain: the port is known before the peer can
accept, whichever of the two the event loop hears of first. Connections to other destinations
(a local service that is not Arcus, every remote origin) are opened as before: no bind, nothing
remembered, no cost.

One registry per process (the daemon is one; test daemons in one process share it, and their
connections to each other are hops too). Bounded: an entry nobody takes (a connection to a
local service that is not Arcus) is forgotten after :data:`REMEMBERED` newer ones, and a port
the kernel hands out again is simply overwritten.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from collections import OrderedDict
from contextvars import ContextVar
from typing import Any

MAX_HOPS = 8
"""Passes through the daemon a connection may make before it is taken for a loop."""
REMEMBERED = 4096
"""Ports of connections to this box remembered at most (the oldest are forgotten first)."""

HOPS: ContextVar[int] = ContextVar("arcus_hops", default=0)
"""The hop count of the connection on whose behalf the escapers connect (set by the session)."""


class Links:
    """Local port of a connection we opened to this box -> the hop count its peer gets."""

    __slots__ = ("_ports", "limit")

    def __init__(self, limit: int = REMEMBERED) -> None:
        self._ports: OrderedDict[int, int] = OrderedDict()
        self.limit = limit

    def add(self, port: int, hops: int) -> None:
        ports = self._ports
        ports.pop(port, None)
        ports[port] = hops
        if len(ports) > self.limit:
            ports.popitem(last=False)

    def take(self, port: int) -> int:
        """The hop count of the connection whose local port is ``port`` (0: not one of ours)."""
        return self._ports.pop(port, 0) if self._ports else 0

    def forget(self, port: int) -> None:
        self._ports.pop(port, None)

    def __len__(self) -> int:
        return len(self._ports)


LINKS = Links()


class Listening:
    """The TCP ports the daemon listens on, as each owner (a daemon) last said: ``port in LISTENING``."""

    __slots__ = ("_by_owner", "_ports")

    def __init__(self) -> None:
        self._by_owner: dict[object, frozenset[int]] = {}
        self._ports: frozenset[int] = frozenset()

    def replace(self, owner: object, ports: frozenset[int] | set[int]) -> None:
        if ports:
            self._by_owner[owner] = frozenset(ports)
        else:
            self._by_owner.pop(owner, None)
        self._ports = frozenset().union(*self._by_owner.values())

    def __contains__(self, port: object) -> bool:
        return port in self._ports


LISTENING = Listening()


async def connect_counted(addr: str, port: int, source: str | None = None) -> socket.socket:
    """A TCP socket connected to ``addr:port`` (an address of this box), bound first so that its
    port is remembered in :data:`LINKS` before the peer can accept it. Raises OSError."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    local = 0
    try:
        sock.setblocking(False)
        sock.bind((source if source is not None else ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
        local = sock.getsockname()[1]
        LINKS.add(local, HOPS.get() + 1)
        await loop.sock_connect(sock, (addr, port))
    except BaseException:
        if local:
            LINKS.forget(local)
        sock.close()
        raise
    return sock


async def create_connection(
    factory: Any, addr: str, port: int, *, counted: bool, source: str | None = None,
    ssl: ssl_module.SSLContext | None = None, server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
) -> tuple[asyncio.Transport, Any]:
    """``loop.create_connection`` to ``addr:port``; ``counted``: one of the daemon's own
    listeners, connected through :func:`connect_counted` (bound and remembered first)."""
    loop = asyncio.get_running_loop()
    if not counted:
        return await loop.create_connection(
            factory, addr, port, ssl=ssl, server_hostname=server_hostname,
            local_addr=(source, 0) if source is not None else None, ssl_handshake_timeout=ssl_handshake_timeout)
    sock = await connect_counted(addr, port, source)
    try:
        return await loop.create_connection(
            factory, sock=sock, ssl=ssl, server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout)
    except BaseException:
        sock.close()
        raise
