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
  upstream cannot take is left to the owner (``from_client_eof`` says so): ``tls_stream`` gives
  the upstream a grace period, an HTTP upgrade (``http_proxy``, interception) ends.
- Backpressure and shaping through the pair's ``Flow``; the idle window is the owner's
  sweeper deadline (``Tracked.idle_window``), moved on while bytes flow.
- Accounting: bytes each way on the owner (``bytes_up``/``bytes_down``, what ``ctl conns``
  shows and the record carries) and its server and tenant counters.

The first client bytes pass through ``_first`` before anything goes upstream. The tunnel's
``Inspection`` (``arcus.serve.inspection``) sees the first chunks both ways before that while it is
``watching``: it names the protocol, notes a ClientHello's server name (``sni``) and may close the
tunnel on the policy's decision about them (that chunk is dropped). Then, when the tunnel's
tenant intercepts TLS (``icpt``, looked up once when the tunnel is made), ``_first`` hands a
ClientHello to ``arcus.serve.intercept.Interceptor``, which takes the tunnel's place on its owner
and either gives it back (spliced by a rule) or terminates the TLS. A tunnel whose tenant does
not intercept pays one attribute test.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from arcus.errors import ProtocolError
from arcus.proto.tls import looks_like_tls, parse_client_hello
from arcus.serve.flow import UPSTREAM_FULL, Flow
from arcus.serve.inspection import Inspection
from arcus.serve.upstream import UpstreamConnection

WRITE_HIGH = 1024 * 1024  # transport write buffer high-water mark while relaying
WRITE_LOW = 256 * 1024


class TunnelOwner(Protocol):
    transport: Any
    snap: Any
    conf: Any
    tenant: str
    tunnel: Any
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


INTERCEPTING_SERVERS = frozenset({"http_proxy", "sni_proxy", "socks_proxy", "intelli_proxy"})


def intercepting(owner: Any) -> Any:
    """The tenant's interception rules (``arcus.policy.intercept.TenantIntercept``) when a TLS
    tunnel of ``owner`` may be intercepted, else None (one attribute test for most tunnels)."""
    plan = owner.snap.intercept
    if not plan.any or owner.conf.type not in INTERCEPTING_SERVERS:
        return None
    if owner.transport.get_extra_info("arcus_intercepted"):
        return None  # a tunnel inside an intercepted connection (an Upgrade): already looked at
    return plan.for_tenant(owner.tenant)


class Tunnel:
    __slots__ = ("owner", "flow", "client", "up", "upt", "client_eof", "up_eof", "done", "sni", "first", "inspection", "icpt")

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
        self.icpt = intercepting(owner)  # the tenant's interception rules, when its TLS is to be looked at
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
            if owner.tunnel is not self:  # handed to the interceptor: the client's EOF is its
                if client_eof:
                    owner.tunnel.from_client_eof()
                return
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
            if self._first(data):
                return  # an interceptor has the tunnel now
        n = len(data)
        owner = self.owner
        owner.bytes_up += n
        owner.srv_stats.bytes_up += n
        owner.ten_stats.bytes_up += n
        upt = self.upt
        if upt is not None:
            upt.write(data)
        self.flow.sent_up(n)

    def _first(self, data: bytes) -> bool:
        """The tunnel's first client bytes, before they go upstream (the inspection has seen them
        first: ``self.sni``): True when they went to an interceptor (which now owns the tunnel),
        False to splice."""
        if self.icpt is None or not looks_like_tls(data):
            return False
        try:
            hello = parse_client_hello(data)
        except ProtocolError:
            return False  # not ours to judge: the upstream answers a bad hello
        from arcus.serve.intercept import Interceptor  # imported here: intercept builds on http_proxy

        return Interceptor.take(self, data, hello)

    def from_client_eof(self) -> bool:
        """Pass the client's EOF on; False when the upstream cannot be half-closed (TLS) and was
        not told: what follows is the owner's to decide."""
        self.client_eof = True
        upt = self.upt
        passed = upt is None or upt.can_write_eof()
        if upt is not None and passed:
            upt.write_eof()
        if self.up_eof:
            self._end()
        return passed

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
