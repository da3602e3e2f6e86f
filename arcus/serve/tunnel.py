"""The one tunnel relay: bytes both ways between a client and an upstream, after a handshake.

Used by every tunnel of every server: HTTP CONNECT and 101 upgrades (``http_proxy``,
``http_rproxy``), SOCKS, ``sni_proxy``, ``tcp_stream``, ``tls_stream``, ``tcp_tproxy`` and what
``intelli_proxy`` hands over to. The server's connection object (the *owner*) keeps its
``asyncio.Protocol`` role and forwards its client events here; the tunnel becomes the owner of
the upstream connection.

- Early bytes both ways: client bytes sent before the tunnel was up (pipelined after the
  handshake, or a ClientHello only peeked at) go upstream first; upstream bytes that arrived
  before (server-first protocols: SSH, SMTP) go to the client once its success reply is out.
- Half-close: an EOF from either side is passed on (``write_eof``) and the tunnel ends when
  both sides have sent theirs. A side that cannot be half-closed (TLS) ends the tunnel when
  the other side's EOF cannot be passed on to it... from the upstream; a client EOF that a TLS
  upstream cannot take is left to the owner (``tls_stream`` gives the upstream a grace period).
- Backpressure and shaping through the pair's ``Flow``; the idle window is the owner's
  sweeper deadline (``Tracked.idle_window``), moved on while bytes flow.
- Accounting: bytes each way on the owner (``bytes_up``/``bytes_down``, what ``ctl conns``
  shows and the record carries) and its server and tenant counters.

The first client bytes pass through ``_first`` before anything goes upstream: that is where a
later step (TLS interception, protocol inspection by the auditor) decides between splicing the
tunnel, as every tunnel does today, and handing client and upstream over to an interceptor.
Before it, the tunnel's ``Inspection`` (``arcus.serve.inspection``) sees the first chunks both
ways while it is ``watching``: it names the protocol, notes a ClientHello's server name
(``sni``) and may close the tunnel on the policy's decision about them (that chunk is dropped).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from arcus.serve.flow import UPSTREAM_FULL, Flow
from arcus.serve.inspection import Inspection
from arcus.serve.upstream import UpstreamConnection

WRITE_HIGH = 1024 * 1024  # transport write buffer high-water mark while relaying
WRITE_LOW = 256 * 1024


class TunnelOwner(Protocol):
    transport: Any
    bytes_up: int
    bytes_down: int
    srv_stats: Any
    ten_stats: Any
    deadline: float
    idle_window: float
    seen_activity: int
    tunnel_check: Any  # the policy on what the first bytes show (arcus.serve.inspection), or None

    def tunnel_ended(self) -> None: ...

    def close(self, linger: bool = False) -> None: ...


class Tunnel:
    __slots__ = ("owner", "flow", "client", "up", "upt", "client_eof", "up_eof", "done", "sni", "first", "inspection")

    def __init__(self, owner: TunnelOwner, flow: Flow, up: UpstreamConnection) -> None:
        self.owner = owner
        self.flow = flow
        self.client: asyncio.Transport = owner.transport
        self.up = up
        self.upt: asyncio.Transport | None = up.transport
        self.client_eof = False
        self.up_eof = False
        self.done = False
        self.sni: str | None = None  # the server name of a TLS ClientHello seen in the tunnel
        self.first = True  # the next client bytes are the tunnel's first
        self.inspection = Inspection(self)
        up.owner = self
        flow.attach(self.upt)

    def start(self, idle: float, early_up: bytes = b"", early_down: bytes = b"", client_eof: bool = False, up_eof: bool = False) -> None:
        """Relay from now on (the owner has written its success reply). ``idle``: the idle window."""
        owner = self.owner
        owner.deadline = time.monotonic() + idle
        owner.idle_window = idle
        owner.seen_activity = owner.bytes_up + owner.bytes_down
        for t in (self.client, self.upt):
            if t is None:
                continue
            try:
                t.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
            except (AttributeError, NotImplementedError):
                pass
        if early_up:
            self.from_client(early_up)
        if early_down and not self.done:
            self.upstream_data(early_down)
        if self.done:
            return
        if client_eof:
            self.from_client_eof()
        if up_eof and not self.done:
            self.upstream_eof()
        elif self.up.closed and not self.done:
            self._end()

    # -- client -> upstream (called by the owner's data_received / eof_received)

    def from_client(self, data: bytes) -> None:
        inspection = self.inspection
        if inspection.watching and inspection.client(data):
            return  # refused on what the first bytes showed: closed, the chunk dropped
        if self.first:
            self.first = False
            self._first(data)
        n = len(data)
        owner = self.owner
        owner.bytes_up += n
        owner.srv_stats.bytes_up += n
        owner.ten_stats.bytes_up += n
        upt = self.upt
        if upt is not None:
            upt.write(data)
        self.flow.sent_up(n)

    def _first(self, data: bytes) -> None:
        """The tunnel's first client bytes, before they go upstream. The place where a later step
        chooses to splice (what happens now) or to hand the tunnel to an interceptor. The
        inspection has seen them first (``self.sni``, ``self.inspection.sniffed``)."""

    def from_client_eof(self) -> None:
        self.client_eof = True
        upt = self.upt
        if upt is not None and upt.can_write_eof():
            upt.write_eof()
        if self.up_eof:
            self._end()

    # -- upstream -> client (Owner of the UpstreamConnection)

    def upstream_data(self, data: bytes) -> None:
        if self.done:
            return
        inspection = self.inspection
        if inspection.watching and inspection.server(data):
            return  # refused on what the upstream's greeting showed: closed, the chunk dropped
        n = len(data)
        owner = self.owner
        owner.bytes_down += n
        owner.srv_stats.bytes_down += n
        owner.ten_stats.bytes_down += n
        self.client.write(data)
        self.flow.sent_down(n)

    def upstream_eof(self) -> None:
        self.up_eof = True
        if self.done:
            return
        if not self.client.can_write_eof():
            self._end()  # a TLS client side cannot be half-closed: the tunnel is over
            return
        self.client.write_eof()
        if self.client_eof:
            self._end()

    def upstream_lost(self, exc: Exception | None) -> None:
        self.upt = None
        self._end()

    def upstream_pause(self) -> None:
        self.flow.pause_client(UPSTREAM_FULL)

    def upstream_resume(self) -> None:
        self.flow.resume_client(UPSTREAM_FULL)

    # -- the end

    def refused(self) -> None:
        """The inspection's policy refused the tunnel: it ends now, gracefully (a client still
        sending meets a FIN and a drained socket, not a reset)."""
        if not self.done:
            self.done = True
            self.owner.close(linger=True)

    def _end(self) -> None:
        if not self.done:
            self.done = True
            self.owner.tunnel_ended()

    def close(self) -> None:
        """Release the upstream (the owner is closing)."""
        self.done = True
        self.flow.upstream = None
        up, self.upt = self.up, None
        up.close()
