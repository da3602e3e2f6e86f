"""`http_proxy`: the HTTP/1.1 connection of forward and reverse proxying, as a thin asyncio adapter.

One ``HttpProxyConnection`` per client connection (callback-style ``asyncio.Protocol``). Every
decision is ``arcus.serve.http_machine.HttpMachine``'s (sans-io: events in, actions out); this
module turns transport callbacks into the machine's events and performs the actions it asks
for: it is the machine's ``Actions`` sink. What is I/O or daemon state lives here: the routing
strategy (``arcus.serve.http_routing``: forward or reverse), admission through the gate, the
upstream pool and the escaper's connect, the flow (pause reasons, shaping), the tunnel hand-off,
counters, deadlines and records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import Any

from arcus.errors import ErrorCode, EscapeError, Refusal
from arcus.proto import http1
from arcus.proto.http1 import Limits
from arcus.serve.context import Shared
from arcus.serve.flow import BUFFER, SHAPER, UPSTREAM_FULL
from arcus.serve.http_exchange import Exchange
from arcus.serve.http_machine import HttpMachine
from arcus.serve.http_states import CLOSED, STATE_NAMES
from arcus.serve.http_routing import ForwardRouting
from arcus.serve.session import Session, host_port
from arcus.serve.upstream import UpstreamConnection, take_early, tunnel_upstream
from arcus.tenancy.admission import Admitted, Destination
from arcus.tenancy.identify import identify

log = logging.getLogger("arcus.serve")

MAX_UPSTREAM_TRIES = 16
"""Upstreams one request is offered to at most when they fail to connect (a reverse proxy site
with several: ``Routing.retry_upstream``)."""


class HttpProxyConnection(Session):
    """One HTTP client connection; ``routing`` says where its requests go (forward or reverse)."""

    def __init__(self, shared: Shared, server: str, routing: Any = None) -> None:
        super().__init__(shared, server)
        self.routing = routing if routing is not None else ForwardRouting()
        self.m = HttpMachine(self)
        self.target = ""
        self.local_client = False
        self.escaper: Any = None  # the server's escaper in ``snap`` (looked up again when the Snapshot changes)
        self.varies = False  # ... whether its route depends on the client (the pool key then says who)
        self.own_claims: tuple | None = None  # (config, Claims) when requests cannot claim more (routing.claims)
        self.upstream_data = self.m.upstream_data  # type: ignore[method-assign]  # the machine's event, without a hop
        self.early: tuple[bytes, bool, bool] = (b"", False, False)  # what a CONNECT's upstream said before the 200
        # every request the policy lets leave is answered with this instead (InterceptedHttp: the
        # origin's TLS failed): the record keeps the decision and the rule
        self.failure: Refusal | None = None

    @property
    def ex(self) -> Exchange | None:
        """The request in flight (routing strategies read it)."""
        return self.m.ex

    # ------------------------------------------------------------------ asyncio.Protocol -> events

    def closed_at_accept(self) -> None:
        self.m.state = CLOSED

    def accepted(self) -> None:
        self._configure()

    def _configure(self) -> bool:
        conf = self.conf
        lim = conf.limits
        self.limits = self.m.limits = Limits(lim.max_request_line, lim.max_header_bytes, lim.max_headers)
        self.m.timeouts = conf.timeouts
        self.local_client = self.shared.host.is_local(self.client_ip)  # the egress guard's own notion of "on the box"
        return bool(self.routing.configure(self))

    def rejected(self, refusal: Refusal) -> None:
        if self._configure():
            self.m.reject_connection(refusal)

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.from_client(data)
        else:
            self.m.client_data(data)

    def eof_received(self) -> bool | None:
        tunnel = self.tunnel
        if tunnel is not None:
            self.m.client_eof = True
            if not tunnel.from_client_eof():
                # an upgrade to a TLS upstream (inside interception, to an https origin): the
                # origin cannot be told of a half-close, so the client's end is the tunnel's end
                self.close()
            return True
        return self.m.client_ended(bool(self.flow.upstream_paused & SHAPER))

    def connection_lost(self, exc: Exception | None) -> None:
        self.teardown()

    # upstream events (Owner of UpstreamConnection)

    def upstream_data(self, data: bytes) -> None:
        self.m.upstream_data(data)

    def upstream_eof(self) -> None:
        self.m.upstream_eof()

    def upstream_lost(self, exc: Exception | None) -> None:
        self.up = None
        self.m.upstream_lost(exc)

    def upstream_pause(self) -> None:
        self.flow.pause_client(UPSTREAM_FULL)

    def upstream_resume(self) -> None:
        self.flow.resume_client(UPSTREAM_FULL)

    # Tracked

    def state_name(self) -> str:
        return STATE_NAMES[self.m.state]

    def on_timeout(self) -> None:
        self.m.timeout()

    def drain(self) -> None:
        self.m.drain()

    def closing(self) -> None:
        """Teardown: the pending task and upstream go; a request in flight is recorded (a tunnel
        that ended, a response cut by the origin, a body the client gave up on)."""
        ex = self.m.closed()
        super().closing()
        if ex is not None and self.tview is not None:
            self.record(ex)  # as every exchange is: a decrypted one (InterceptedHttp) keeps its sni and detail

    # ------------------------------------------------------------------ actions: requests

    def exchange(self, req: http1.RequestHead) -> Exchange:
        """A new request: the current Snapshot (store changes reach kept-alive connections; a
        request in flight keeps its own), a request id, fresh per-request state."""
        if self.snap is not self.shared.snapshot:
            self.refresh_snapshot()
        self.m.timeouts = self.conf.timeouts
        self.srv_stats.requests += 1
        if self.m.reject is not None:  # refused at accept (a connection limit): the tenant counts it too, as the server does
            self.ten_stats.requests += 1
        self.target = host_port(req.host, req.port or 0) if req.host else ""
        self.check = self.tunnel_check = None
        return Exchange(req, self.shared.next_request_id(), self.limits, self.bytes_up, self.bytes_down)

    def admit(self, ex: Exchange) -> None:
        """Where the request goes (routing) and who is asking and may it leave (the gate,
        ``arcus.tenancy.admission``); the verdict goes back to the machine."""
        req = ex.req
        if req.method in MAX_FORWARDS_METHODS and max_forwards(req.headers) == 0:
            # RFC 9110 7.6.2: the last hop answers it (TRACE is not echoed: its head may carry
            # credentials and cookies)
            allow = [(b"Allow", b"GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT")]
            status = 200 if req.method == b"OPTIONS" else 405
            self.m.answered(lambda keep_alive: ex.answer(
                status, ErrorCode.UNSUPPORTED, "Max-Forwards: 0: this proxy is the last hop", keep_alive,
                body=b"", extra=allow, error=status != 200,
            ))
            return
        if req.host in self.routing.local_hosts:
            page = self.routing.local_page(self, req)
            if page is not None:
                page(self, ex)  # answered by the proxy itself, through m.answered (arcus.serve.onboard)
                return
        refused = self.routing.route(self, req)
        if refused is not None:
            self.m.admitted(refused)
            return
        claims, refused = self.routing.claims(self, req)
        if refused is not None:
            assert self.snap is not None and self.gate is not None
            tv = identify(self.snap.tenancy, dataclasses.replace(claims, username=None, password=None)).tenant
            self.gate.user = None
            self.set_user(None)
            self.set_tenant(tv)
            self.ten_stats.requests += 1
            self.m.admitted(dataclasses.replace(refused, realm=tv.realm))
            return
        dest: Destination = self.routing.destination(self, req)
        gate = self.gate
        assert gate is not None
        gate.check(self.snap, claims, dest, self._verdict)
        if gate.task is not None and not self.ended:
            self.deadline = 0.0  # credentials are being verified off the loop

    def _verdict(self, verdict: Admitted | Refusal) -> None:
        """The gate's verdict on the current request: tenant state, rate, policy."""
        m = self.m
        gate = self.gate
        if m.state == CLOSED or gate is None:
            return
        if gate.tenant is not self.tview:
            self.set_tenant(gate.tenant)
        self.ten_stats.requests += 1
        if gate.user is not self.user:
            self.set_user(gate.user)
        if isinstance(verdict, Refusal):
            m.admitted(verdict)
            return
        ex = m.ex
        assert ex is not None
        ex.decision = "allow"
        ex.rule = verdict.rule
        ex.reports = verdict.reports
        self.check = verdict.check
        self.tunnel_check = verdict.tunnel_check
        self.flow.shape_up = verdict.shape_up
        self.flow.shape_down = verdict.shape_down
        if self.tview is not None and self.tview.icap is not None:
            ex.plan_icap(self)  # bodies through the tenant's ICAP service (arcus.icap)
        m.admitted(self.failure)

    def refuse(self, ex: Exchange, r: Refusal, keep_alive: bool) -> None:
        r = self.routing.refusal(self, r)  # the routing's last word, on admission's refusals and upstream failures alike
        template = self.tview.block_page if self.tview is not None else None
        self.write_client(ex.refusal(r, keep_alive, template, self.tenant, self.target))

    def record(self, ex: Exchange) -> None:
        ex.record(self, self.bytes_up, self.bytes_down, self.sni_seen)  # a CONNECT's: the SNI its tunnel saw

    def head_refused(self, status: int, code: ErrorCode) -> str:
        request_id = self.shared.next_request_id()
        self.conn_error = (status, code, request_id)  # the connection's record says it
        return request_id

    # ------------------------------------------------------------------ actions: the upstream

    def _pool_key(self, req: http1.RequestHead) -> tuple:
        escaper = self.snap.escapers.get(self.conf.escaper)
        if escaper is not self.escaper:  # an escaper's graph is fixed: asked once per escaper
            self.escaper = escaper
            self.varies = bool(getattr(escaper, "varies_by_client", False))
        key: tuple = (self.conf.escaper, self.tenant, self.local_client, req.scheme, req.host, req.port)
        if self.varies:
            # routed by client or user: a connection opened for one route is not another's
            key += (self.client_ip, self.user.name if self.user is not None else None)
        extra = self.routing.pool_key_extra
        return key if extra is None else key + extra(self)

    def open_upstream(self, tunnel: bool, reuse: bool) -> bool:
        """A pooled upstream attached now (True), or a connect started (its end is an event)."""
        ex = self.m.ex
        assert ex is not None and self.snap is not None
        req = ex.req
        key = ("tunnel",) if tunnel else self._pool_key(req)
        if reuse and self.check is None:
            up = self.shared.pool.take(key, self.client_ip, self.escaper)
            if up is not None:
                self._attach(up)
                return True
        self.task = asyncio.get_running_loop().create_task(self._connect(key, req), name=f"arcus-connect-{self.id}")
        return False

    async def _connect(self, key: tuple, req: http1.RequestHead) -> None:
        ssl = self.routing.upstream_ssl(req)
        for _ in range(MAX_UPSTREAM_TRIES):
            assert req.host is not None and req.port is not None
            # a CONNECT's upstream may greet first (SSH, SMTP): kept until the tunnel starts
            factory = tunnel_upstream if req.form == "authority" else functools.partial(UpstreamConnection, key)
            conn = await self.connect_upstream(req.host, req.port, factory, ssl)
            if not isinstance(conn, Refusal):
                try:
                    await self.routing.connected(self, conn)
                except EscapeError as exc:
                    conn = Refusal.of(exc)
            if not isinstance(conn, Refusal) or self.m.state == CLOSED or not self.routing.retry_upstream(self, req, conn):
                break
            key = self._pool_key(req)  # another of a reverse proxy site's upstreams (arcus.serve.http_rproxy.Site)
        self.task = None
        if isinstance(conn, Refusal):
            self.m.upstream_failed(conn)
            return
        up: UpstreamConnection = conn.protocol  # type: ignore[assignment]
        if self.m.state == CLOSED:
            up.close()
            return
        self.early = take_early(up)  # only a fresh connection can have spoken before it was ours
        ex = self.m.ex
        if self.early[0] and ex is not None and not ex.tunnel:
            # an upstream proxy's bytes right after its CONNECT 200, before our request: they answer
            # nothing we asked, and the response that follows could not be told from them
            said = len(self.early[0])
            up.close()
            self.early = (b"", False, False)
            self.m.upstream_failed(Refusal(
                ErrorCode.UPSTREAM_PROTOCOL, f"the upstream sent {said} bytes before it was sent a request"))
            return
        self._attach(up)
        self.m.upstream_connected()

    def _attach(self, up: UpstreamConnection) -> None:
        ex = self.m.ex
        if ex is not None and ex.icap is not None:
            up = ex.icap.attach(up)  # type: ignore[assignment]  # the stage stands in for the upstream
        self.up = up
        up.owner = self
        flow = self.flow
        if flow.upstream_paused:
            flow.attach(up.transport)  # paused at once if the client has not taken the last response
        else:
            flow.upstream = up.transport  # nothing to carry over: what attach does, inline on the hot path

    def send_head(self, ex: Exchange) -> None:
        req = ex.req
        out = self.routing.request_headers(self, req)
        if req.method in MAX_FORWARDS_METHODS:
            out = forwarded_max_forwards(out)
        assert self.up is not None
        # through the connection's write, never its transport: an ICAP stage stands in for it
        self.up.write(http1.build_request_head(req.method, req.path, out, req.version))

    def forward_up(self, data: bytes, n: int) -> None:
        self.bytes_up += n
        self.srv_stats.bytes_up += n
        self.ten_stats.bytes_up += n
        up = self.up
        if up is not None:
            up.write(data)
        self.flow.sent_up(n)

    def forward_down(self, data: bytes, n: int) -> None:
        self.bytes_down += n
        self.srv_stats.bytes_down += n
        self.ten_stats.bytes_down += n
        self.transport.write(data)
        flow = self.flow
        if flow.shape_down:
            flow.sent_down(n)

    def release_upstream(self, reusable: bool) -> None:
        up, self.up = self.up, None
        if up is None:
            return
        up.owner = None
        flow = self.flow
        if flow.upstream_paused:
            flow.detach()
        else:
            flow.upstream = None  # nothing paused: what detach does, inline on the hot path
        if reusable and type(up) is not UpstreamConnection:
            up = up.unwrap()  # type: ignore[attr-defined]  # an ICAP stage: the connection under it, if reusable
            if up is None:
                return
        if reusable:
            up.pool = self.shared.pool  # type: ignore[assignment]  # UpstreamConnection.pool is typed None
            self.shared.pool.put(up, self.conf.timeouts.upstream_idle, self.conf.limits.max_pool_per_host)
        else:
            up.close()

    def abort_upstream(self) -> None:
        up, self.up = self.up, None
        if up is not None:
            self.flow.detach()
            up.abort()

    def enter_tunnel(self, early_up: bytes, early_down: bytes, client_eof: bool, up_eof: bool) -> None:
        """CONNECT answered 200, or an upgrade answered 101: the one tunnel relay from now on."""
        up, self.up = self.up, None
        assert up is not None
        self.flow.resume_client(BUFFER)
        (said, eof, paused), self.early = self.early, (b"", False, False)
        self.start_tunnel(up, early_up, said + early_down, client_eof, up_eof or eof)
        if paused and self.tunnel is not None and not self.flow.upstream_paused and up.transport is not None:
            up.transport.resume_reading()

    # ------------------------------------------------------------------ actions: the client

    def write_client(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)

    def pause_client(self) -> None:
        self.flow.pause_client(BUFFER)

    def resume_client(self) -> None:
        self.flow.resume_client(BUFFER)

    def count_error(self, code: ErrorCode) -> None:
        self.srv_stats.errors[code] += 1
        self.ten_stats.errors[code] += 1

    def linger(self, data: bytes) -> None:
        self.linger_data(data)

    def close_client(self, linger: bool) -> None:
        if not self.ended:
            self.close(linger)


def http_proxy_factory(shared: Shared, server: str):
    def factory() -> HttpProxyConnection:
        return HttpProxyConnection(shared, server)

    return factory


MAX_FORWARDS_METHODS = frozenset({b"OPTIONS", b"TRACE"})
"""The methods Max-Forwards applies to (RFC 9110 7.6.2)."""


def max_forwards(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's Max-Forwards (the first valid one), or None when it has none."""
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"max-forwards" and value.strip().isdigit():
            return int(value.strip())
    return None


def forwarded_max_forwards(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The head that goes upstream with its Max-Forwards one lower (RFC 9110 7.6.2: a
    recipient that forwards must decrement it)."""
    out = []
    for name, value in headers:
        if len(name) == 12 and name.lower() == b"max-forwards" and value.strip().isdigit():
            value = b"%d" % max(0, int(value.strip()) - 1)
        out.append((name, value))
    return out
