"""Escapers decide how a request leaves the box.

Leaf escapers open connections (``direct_*`` to the destination, ``proxy_*`` through an
upstream proxy) or refuse them (``dummy_deny``); route escapers pick another escaper by a rule
and pass the call down unchanged, ``check`` and ``user`` included. Escapers that wrap others are
built after them (``arcus.escape.build_escapers``) and hold them directly.

Life cycle: the runtime calls ``await start()`` once a Snapshot's escapers are built (health
checks begin) and ``close()`` when that Snapshot is replaced or the daemon stops. A closed
escaper still serves ``connect`` for connections that captured its Snapshot earlier.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl as ssl_module
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arcus.config.schema import EscaperConfig
from arcus.errors import EscapeError

AddressCheck = Callable[[str], "str | bool | None"]
ProtocolFactory = Callable[[], asyncio.Protocol]


@dataclass(frozen=True, slots=True)
class Connected:
    transport: asyncio.Transport
    protocol: asyncio.Protocol
    peer: str  # the address actually connected to, "ip:port" (a proxy escaper: the proxy's)
    via: str = ""  # the leaf escaper that made the connection (route escapers fill it in)


class Escaper:
    type_name = ""

    def __init__(self, config: EscaperConfig) -> None:
        self.config = config
        self.name = config.name

    async def connect(
        self,
        host: str,
        port: int,
        client_ip: str,
        protocol_factory: ProtocolFactory,
        *,
        timeout: float,
        ssl: ssl_module.SSLContext | None = None,
        check: AddressCheck | None = None,
        user: str | None = None,
    ) -> Connected:
        """Open a connection to ``host:port`` on behalf of ``client_ip`` (and ``user``, the
        authenticated user's name, which route_client and route_select may route by).

        ``check``, when given, is asked about every address the name resolved to before it is
        connected to (the tenant's policy against DNS rebinding): a string refuses the address
        with that reason, True allows it outright (a rule opened it explicitly), None leaves it
        to the escaper's own egress guard. An escaper that does not resolve the name itself
        (the proxy escapers: the upstream proxy resolves) asks ``check`` about IP literals only.

        ``ssl``: TLS to the destination over the connection (the origin's certificate checked
        for ``host``); a proxy escaper starts it once its tunnel is up.

        Raises ``arcus.errors.EscapeError`` saying why it could not (its ``status`` is what the
        client is answered with).
        """
        raise NotImplementedError

    # -- life cycle and introspection

    async def start(self) -> None:
        """Begin background work (health checks); called once, on the event loop."""

    def close(self) -> None:
        """Stop background work and release what the escaper holds."""

    def adopt(self, previous: Escaper) -> None:
        """Take over live state from the escaper of the same name in the Snapshot being replaced
        (a published float address set, breaker states). Default: nothing to keep."""

    @property
    def next_escapers(self) -> tuple[Escaper, ...]:
        """Escapers this one hands connections to (empty for a leaf)."""
        return ()

    @property
    def varies_by_client(self) -> bool:
        """Whether two clients asking for the same destination may leave by different paths
        (route_client, a pool hashed by client or user, anything wrapping one): a connection
        pool must then not share upstream connections between clients."""
        return any(e.varies_by_client for e in self.next_escapers)

    def probe_address(self) -> tuple[str, int] | None:
        """Where a health check of this escaper connects to (a proxy escaper: its proxy)."""
        return None

    def info(self) -> dict[str, Any]:
        """State for ``arcus ctl escapers``: type, and whatever the type keeps live."""
        return {"name": self.name, "type": self.type_name}


def hop_failed(exc: BaseException) -> str | None:
    """The escaper that could not reach its own next hop (``EscapeError.hop``), else None."""
    return exc.hop if isinstance(exc, EscapeError) else None


def format_peer(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Small writes (handshakes, interactive tunnels) go out at once."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def describe_os_error(exc: BaseException) -> str:
    """What went wrong, in the system's words ("Connection refused"), not asyncio's."""
    if isinstance(exc, OSError) and not isinstance(exc, ssl_module.SSLError) and exc.errno:
        try:
            return os.strerror(exc.errno)
        except ValueError:
            pass
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
