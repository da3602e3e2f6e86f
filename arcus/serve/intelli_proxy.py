"""`intelli_proxy`: HTTP proxy and SOCKS proxy on one port (g3proxy's ``intelli_proxy``).

The first byte decides: 0x04 or 0x05 is SOCKS (``socks_proxy``), anything else HTTP
(``http_proxy``). The connection is then handed to that protocol as if it had been accepted
by it (``set_protocol``, ``connection_made``, ``data_received`` with the sniffed bytes), so
the server's stats, limits and audit are exactly those of the protocol chosen. The box's and
the tenant's connection slots are taken at accept, as every server does, and handed over with
the connection (a client over a limit is answered in the protocol it then speaks). Until the
first byte arrives the connection is registered (``ctl conns`` shows it "sniffing") and bounded
by ``timeouts.client_header``. One that ends before its first byte (the client left, or the
bound ran out) is accounted and recorded as an HTTP proxy connection that said nothing, as
every server records its silent connections (``Session.ended_unheard``).
"""

from __future__ import annotations

import asyncio
import time

from arcus.errors import Refusal
from arcus.serve.context import Shared, Tracked, client_sni
from arcus.serve.http_proxy import HttpProxyConnection
from arcus.serve.socks_proxy import SocksConnection
from arcus.tenancy.admission import Gate
from arcus.tenancy.identify import Claims, identify


class SniffConnection(asyncio.Protocol, Tracked):
    __slots__ = ("transport", "done", "gate", "refused")  # and Tracked's

    transport: asyncio.Transport  # set by connection_made, before any other callback

    def __init__(self, shared: Shared, server: str) -> None:
        self.track(shared, server, "-")
        self.done = False
        self.gate: Gate | None = None
        self.refused: Refusal | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        conf = self.shared.snapshot.servers.get(self.server)
        if conf is None or self.shared.draining:
            self.done = True
            self.transport.abort()
            return
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.client = f"{peer[0]}:{peer[1]}"
        client_ip = str(peer[0]).split("%", 1)[0]
        tv = identify(self.shared.snapshot.tenancy, Claims(client_ip, conf.tenant, sni=client_sni(transport))).tenant
        self.gate = Gate(self.shared, tv, self.client)
        self.refused = self.gate.hold_connection()
        self.id = next(self.shared.ids)
        self.shared.connections[self.id] = self
        self.deadline = time.monotonic() + conf.timeouts.client_header

    def data_received(self, data: bytes) -> None:
        if self.done or not data:
            return
        gate, self.gate = self.gate, None  # the slots go with the connection
        assert gate is not None  # set at accept; only _unheard (which sets done) clears it
        self._forget()
        cls = SocksConnection if data[0] in (4, 5) else HttpProxyConnection
        proto = cls(self.shared, self.server)
        transport = self.transport
        transport.set_protocol(proto)
        proto.connection_made(transport, (gate, self.refused))
        if not transport.is_closing():
            proto.data_received(data)

    def eof_received(self) -> bool | None:
        self._unheard()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._unheard()

    def _forget(self) -> None:
        """Unregistered, once; the gate has gone with the connection (handed over, or to the
        record of a silent one: ``_unheard``)."""
        if not self.done:
            self.done = True
            self.deadline = 0.0
            self.shared.connections.pop(self.id, None)

    def _unheard(self) -> None:
        """The connection ends before its first byte: its record and counters, once (not when
        it was handed over, nor when its server was gone at accept)."""
        gate, self.gate = self.gate, None
        self._forget()
        if gate is not None:
            HttpProxyConnection(self.shared, self.server).ended_unheard(self.transport, gate)

    # Tracked
    def state_name(self) -> str:
        return "sniffing"

    def on_timeout(self) -> None:
        self._unheard()
        self.transport.close()

    def abort(self, reason: str) -> None:
        self._unheard()
        self.transport.abort()

    def drain(self) -> None:
        self.on_timeout()


def intelli_proxy_factory(shared: Shared, server: str):
    def factory() -> SniffConnection:
        return SniffConnection(shared, server)

    return factory
