"""`http_proxy`: an HTTP/1.1 forward proxy (absolute-form requests and CONNECT tunnels).

One ``HttpProxyConnection`` per client connection, callback-style ``asyncio.Protocol``: all
state on the instance, backpressure with pause/resume of the other side, deadlines checked
by the runtime's sweeper. Every request on a keep-alive connection is parsed and accounted on
its own; request and response bodies are forwarded as they arrive, never re-encoded (chunked
bodies are scanned to find their end, not decoded).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from arcus.errors import ErrorCode, EscapeError, ProtocolError, Refusal
from arcus.proto import http1
from arcus.proto.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, Limits
from arcus.serve.http_exchange import Exchange, answer_without_request
from arcus.serve.context import Shared
from arcus.serve.flow import BUFFER, UPSTREAM_FULL
from arcus.serve.http_routing import ForwardRouting
from arcus.serve.session import Session, host_port
from arcus.tenancy.admission import Admitted, Destination
from arcus.tenancy.identify import Claims, identify
from arcus.serve.upstream import UpstreamConnection

log = logging.getLogger("arcus.serve")

MAX_PENDING = 256 * 1024  # client bytes buffered while the upstream is not ready

# connection states
HEAD = 0  # waiting for (the rest of) a request head
CONNECTING = 1  # request parsed, upstream connection being opened
BODY = 2  # forwarding the request body
RESPONSE = 3  # request sent, waiting for / relaying the response
TUNNEL = 4  # CONNECT or Upgrade: bytes both ways
CLOSED = 5
STATE_NAMES = ("idle", "connecting", "request_body", "response", "tunnel", "closed")

class HttpProxyConnection(Session):
    """One HTTP client connection; ``routing`` says where its requests go (forward or reverse)."""

    def __init__(self, shared: Shared, server: str, routing: Any = None) -> None:
        super().__init__(shared, server)
        self.routing = routing if routing is not None else ForwardRouting()
        self.buf = bytearray()
        self.state = HEAD
        self.ex: Exchange | None = None  # the request in flight
        self.ubuf = bytearray()
        self.client_eof = False
        self.up_eof = False
        self.keep_alive = True
        self.reject: Refusal | None = None
        self.scanned = 0  # bytes of an incomplete request head already checked

    # ------------------------------------------------------------------ asyncio.Protocol

    def closed_at_accept(self) -> None:
        self.state = CLOSED

    def accepted(self) -> None:
        self._configure()

    def _configure(self) -> bool:
        lim = self.conf.limits
        self.limits = Limits(lim.max_request_line, lim.max_header_bytes, lim.max_headers)
        self.local_client = self.shared.host.is_local(self.client_ip)  # the egress guard's own notion of "on the box"
        return self.routing.configure(self)

    def rejected(self, refusal: Refusal) -> None:
        if self._configure():
            self._reject_connection(refusal)

    def _reject_connection(self, refusal: Refusal) -> None:
        """Over a connection limit: answer 503 to the first request (reading it first, so the
        client's request is not met by a reset), then close."""
        self.keep_alive = False
        self.reject = refusal
        self.deadline = time.monotonic() + min(5.0, self.conf.timeouts.client_header)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == TUNNEL:
            self.tunnel.from_client(data)
            return
        if state == BODY and not self.buf:
            self._forward_body(data)
            return
        if state == CLOSED:
            self.linger_data(data)
            return
        if state == HEAD and not self.buf:
            # first bytes of a request: the whole head must follow within client_header
            self.deadline = time.monotonic() + self.conf.timeouts.client_header
            self.idle_window = 0.0
        self.buf += data
        if state == HEAD:
            self._process()
        elif state == BODY:
            self._forward_body(b"")
        elif len(self.buf) > MAX_PENDING:
            self.flow.pause_client(BUFFER)

    def eof_received(self) -> bool | None:
        self.client_eof = True
        if self.state == TUNNEL:
            self.tunnel.from_client_eof()
            return True
        if self.state in (HEAD, CLOSED):
            return False  # nothing in flight: close
        if self.state == BODY:
            # the client gave up in the middle of its request body
            self._count_error(ErrorCode.CLIENT_ABORTED)
            self._close()
            return False
        return True  # request complete; still relaying the response: answer it, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self.teardown()

    # ------------------------------------------------------------------ requests

    def _process(self) -> None:
        """Parse and start the request(s) waiting in the buffer."""
        while self.state == HEAD and self.buf:
            try:
                parsed = http1.parse_request_head(self.buf, self.limits, scanned=self.scanned)
            except ProtocolError as exc:
                self._count_error(ErrorCode.CLIENT_BAD_REQUEST)
                self.keep_alive = False
                self._write(answer_without_request(exc.status, ErrorCode.for_client_status(exc.status), exc.message, self.shared.next_request_id()))
                self._close(linger=True)
                return
            if parsed is None:
                self.scanned = len(self.buf)  # a head sent byte by byte costs linear work, not quadratic
                if self.flow.client_paused & BUFFER:
                    self.flow.resume_client(BUFFER)
                return
            head, used = parsed
            self.scanned = 0
            del self.buf[:used]
            self._start(head)

    def _start(self, req: http1.RequestHead) -> None:
        if self.state == CLOSED or not self._begin(req):
            return
        refused = self.routing.route(self, req)
        if refused is not None:
            self._refuse(refused)
            return
        self._identify(req)

    def _begin(self, req: http1.RequestHead) -> bool:
        """What every request starts with, forward or reverse: the current Snapshot (store changes
        reach kept-alive connections; a request in flight keeps its own), a request id, fresh
        per-request state, and the refusal of a connection rejected at accept. False: answered."""
        self.refresh_snapshot()
        self.ex = Exchange(req, self.shared.next_request_id(), self.limits, self.bytes_up, self.bytes_down)
        self.srv_stats.requests += 1
        self.keep_alive = req.keep_alive and not self.shared.draining
        self.target = host_port(req.host, req.port) if req.host else ""
        self.check = None
        if self.reject is not None:
            self._refuse(self.reject)
            return False
        return True

    # ------------------------------------------------------------------ the gate: who, whether, how fast

    def _identify(self, req: http1.RequestHead) -> None:
        """Who is asking and may the request leave (``arcus.tenancy.admission``)."""
        claims, refused = self.routing.claims(self, req)
        if refused is not None:
            tv = identify(self.snap.tenancy, dataclasses.replace(claims, username=None, password=None)).tenant
            self.user = self.gate.user = None
            self.set_tenant(tv)
            self.ten_stats.requests += 1
            self._refuse(dataclasses.replace(refused, realm=tv.realm))
            return
        self._check(claims, self.routing.destination(self, req))

    def _check(self, claims: Claims, dest: Destination) -> None:
        gate = self.gate
        gate.check(self.snap, claims, dest, self._admitted)
        if gate.task is not None and self.state != CLOSED:
            # credentials are being verified off the loop
            self.state = CONNECTING
            self.deadline = 0.0

    def _admitted(self, verdict: Admitted | Refusal) -> None:
        """The gate's verdict on the current request: tenant state, rate, policy."""
        if self.state == CLOSED:
            return
        self.set_tenant(self.gate.tenant)
        self.ten_stats.requests += 1
        self.user = self.gate.user
        if isinstance(verdict, Refusal):
            self._refuse(self.routing.refusal(self, verdict))
            return
        self.ex.decision = "allow"
        self.ex.rule = verdict.rule
        self.ex.reports = verdict.reports
        self.check = verdict.check
        self.flow.shape_up = verdict.shape_up
        self.flow.shape_down = verdict.shape_down
        if self.ex.req.form == "authority":
            self._open_tunnel()
        else:
            self._forward()

    def _refuse(self, r: Refusal) -> None:
        """Answer the current request ourselves (a refusal, an upstream failure): the exchange
        says how. A request with a body closes the connection after the answer (its body is not
        read: closed gracefully)."""
        if r.code is not ErrorCode.REDIRECTED:
            self._count_error(r.code)
        if self.ex.req.framing != NO_BODY:
            self.keep_alive = False
        template = self.tview.block_page if self.tview is not None else None
        self._write(self.ex.refusal(r, self.keep_alive, template, self.tenant, self.target))
        self._request_done()

    # ------------------------------------------------------------------ forwarding

    def _pool_key(self, scheme: bytes) -> tuple:
        req = self.ex.req
        key = (self.conf.escaper, self.tenant, self.local_client, scheme, req.host, req.port)
        if getattr(self.snap.escapers.get(self.conf.escaper), "varies_by_client", False):
            # routed by client or user: a connection opened for one route is not another's
            key += (self.client_ip, self.user.name if self.user is not None else None)
        return key + self.routing.pool_key_extra(self)

    def _forward(self) -> None:
        req = self.ex.req
        key = self._pool_key(req.scheme)
        up = self.shared.pool.take(key, self.client_ip, self.snap.escapers.get(self.conf.escaper)) if self.check is None else None
        if up is not None:
            up.reused = True
            self._attach(up)
            self._send_request()
            return
        self.state = CONNECTING
        self.deadline = 0.0  # the escaper bounds the connect itself
        self.task = asyncio.get_running_loop().create_task(self._connect(key), name=f"arcus-connect-{self.id}")

    async def _connect(self, key: tuple, retry: bool = False) -> None:
        req = self.ex.req
        ssl = self.routing.upstream_ssl(req)
        conn = await self.connect_upstream(req.host, req.port, lambda: UpstreamConnection(key), ssl)
        if not isinstance(conn, Refusal):
            try:
                await self.routing.connected(self, conn)
            except EscapeError as exc:
                conn = Refusal.of(exc)
        self.task = None
        if isinstance(conn, Refusal):
            if self.state != CLOSED:
                self._upstream_failed(conn)
            return
        up: UpstreamConnection = conn.protocol  # type: ignore[assignment]
        if self.state == CLOSED:
            up.close()
            return
        self._attach(up)
        if req.form == "authority":
            self._tunnel_ready()
        else:
            self._send_request()

    def _attach(self, up: UpstreamConnection) -> None:
        self.up = up
        up.owner = self
        self.ubuf.clear()
        self.ex.resp_scanned = 0
        self.up_eof = False
        self.flow.attach(up.transport)  # paused at once if the client has not taken the last response

    def _send_request(self) -> None:
        req = self.ex.req
        up = self.up
        out = self.routing.request_headers(self, req)
        up.write(http1.build_request_head(req.method, req.path, out, req.version))
        self.ex.head_sent = True
        self.ex.retry_ok = up.reused and req.framing == NO_BODY
        up.reused = False
        if req.framing == NO_BODY:
            self._request_sent()
        else:
            self.state = BODY
            self.deadline = time.monotonic() + self.conf.timeouts.client_body
            self.idle_window = self.conf.timeouts.client_body
            self._forward_body(b"")
            if self.state == BODY and self.flow.client_paused & BUFFER:
                self.flow.resume_client(BUFFER)

    def _forward_body(self, data: bytes) -> None:
        """Send request body bytes upstream: first what is buffered, then ``data``."""
        if self.buf:
            if data:
                self.buf += data
            data = bytes(self.buf)
            self.buf.clear()
        if not data:
            return
        try:
            n, done = self.ex.request_body(data)
        except ProtocolError as exc:
            self._count_error(ErrorCode.CLIENT_BAD_REQUEST)
            self.keep_alive = False
            if not self.ex.head_sent or self.ex.status == 0:
                self._write(self.ex.answer(400, ErrorCode.BAD_REQUEST, exc.message, False))
            self._close(linger=True)
            return
        if n:
            chunk = data if n == len(data) else data[:n]
            self.bytes_up += n
            self.srv_stats.bytes_up += n
            self.ten_stats.bytes_up += n
            if self.up is not None:
                self.up.write(chunk)
            self.flow.sent_up(n)
        if n < len(data):
            self.buf += data[n:]
        if done:
            self._request_sent()
            if len(self.buf) > MAX_PENDING:
                self.flow.pause_client(BUFFER)

    def _request_sent(self) -> None:
        if self.state == CLOSED:
            return
        if self.ex.resp is not None and self.ex.status >= 200:
            # the response was complete before the body: nothing more to wait for
            self.state = RESPONSE
            return
        self.state = RESPONSE
        self.idle_window = 0.0
        if self.ex.status == 0:
            self.deadline = time.monotonic() + self.conf.timeouts.upstream_response

    # ------------------------------------------------------------------ responses (Owner of UpstreamConnection)

    def upstream_data(self, data: bytes) -> None:
        if self.ex.resp is not None and self.ex.status >= 200:
            self._relay_body(data)
            return
        self.ubuf += data
        self._parse_response()

    def _parse_response(self) -> None:
        while self.ubuf:
            try:
                event = self.ex.next_response(self.ubuf, self.limits)
            except ProtocolError as exc:
                self._upstream_failed(Refusal(ErrorCode.UPSTREAM_BAD_RESPONSE, f"invalid response from upstream: {exc.message}"))
                return
            if event is None:
                return
            kind, resp, data = event
            if kind == "final":
                self._response_head(resp, data)
                return
            if kind == "switch":
                self._switch_protocols(resp)
                return
            self._write(data)  # an interim response (1xx) the client may see

    def _response_head(self, resp: http1.ResponseHead, rest: bytes) -> None:
        req = self.ex.req
        if resp.framing == CHUNKED and req.version == b"1.0":
            # we asked in HTTP/1.0, so the origin must not chunk; an HTTP/1.0 client could not decode it
            self._upstream_failed(
                Refusal(ErrorCode.UPSTREAM_BAD_RESPONSE, "the upstream answered an HTTP/1.0 request with a chunked body")
            )
            return
        if resp.framing == UNTIL_CLOSE or self.state == BODY:
            self.keep_alive = False
        head = self.ex.response_head(resp, self.limits, self.keep_alive)
        self.deadline = time.monotonic() + self.conf.timeouts.upstream_body
        self.idle_window = self.conf.timeouts.upstream_body
        if resp.framing == NO_BODY or (resp.framing == LENGTH and resp.content_length == 0):
            self.transport.write(head)
            self._response_done(rest)
        elif rest:
            self._relay_body(rest, head)  # head and first body bytes in one write
        else:
            self.transport.write(head)

    def _relay_body(self, data: bytes, head: bytes = b"") -> None:
        try:
            n, done = self.ex.response_body(data)
        except ProtocolError as exc:
            log.info("connection %s: invalid chunked body from %s: %s", self.id, self.target, exc.message)
            if head:  # nothing sent to the client yet: it can still get a proper 502
                self.ex.resp = None
                self.ex.status = 0
                self._upstream_failed(Refusal(ErrorCode.UPSTREAM_BAD_RESPONSE, f"invalid response from upstream: {exc.message}"))
                return
            self._count_error(ErrorCode.UPSTREAM_BAD_RESPONSE)
            self._close()
            return
        if n:
            self.bytes_down += n
            self.srv_stats.bytes_down += n
            self.ten_stats.bytes_down += n
            body = data if n == len(data) else data[:n]
            self.transport.write(head + body if head else body)
            self.flow.sent_down(n)
        elif head:
            self.transport.write(head)
        if done:
            self._response_done(data[n:])

    def _response_done(self, extra: bytes) -> None:
        up = self.up
        resp = self.ex.resp
        reusable = (
            up is not None
            and resp.keep_alive
            and not extra
            and not self.ubuf
            and self.state == RESPONSE
            and not self.up_eof
        )
        if up is not None:
            self.up = None
            up.owner = None
            self.flow.detach()
            if reusable:
                up.pool = self.shared.pool
                self.shared.pool.put(up, self.conf.timeouts.upstream_idle, self.conf.limits.max_pool_per_host)
            else:
                up.close()
        if self.state == BODY:
            # the origin answered before the request body was complete: the rest cannot be framed
            self.keep_alive = False
        self._request_done()

    def _request_done(self) -> None:
        """The current exchange is over: record it, then wait for the next request or close."""
        ex, self.ex = self.ex, None
        if ex is not None:
            ex.record(self, self.bytes_up, self.bytes_down, None)
        if not self.keep_alive or self.client_eof or self.state == CLOSED:
            self._close(linger=(ex is not None and ex.unread) or bool(self.buf))
            return
        self.state = HEAD
        timeouts = self.conf.timeouts
        self.deadline = time.monotonic() + timeouts.client_idle
        self.idle_window = 0.0
        if self.flow.client_paused & BUFFER:
            self.flow.resume_client(BUFFER)
        if self.buf:
            self.deadline = time.monotonic() + timeouts.client_header
            self._process()

    def upstream_eof(self) -> None:
        self.up_eof = True
        resp = self.ex.resp
        if resp is not None and self.ex.status >= 200 and resp.framing == UNTIL_CLOSE:
            self._response_done(b"")
            return
        # EOF before the response ended: the response was cut (or, on a reused connection, the
        # origin had closed it): closing clears the owner, so say it here
        up = self.up
        if up is not None:
            self.flow.detach()
            up.close()
        self.upstream_lost(None)

    def upstream_lost(self, exc: Exception | None) -> None:
        self.up = None
        if self.state in (CLOSED, HEAD):
            return
        resp = self.ex.resp
        if resp is not None and self.ex.status >= 200:
            if resp.framing == UNTIL_CLOSE:
                self._response_done(b"")
            else:
                self._count_error(ErrorCode.UPSTREAM_CLOSED)
                self._close()  # cut in the middle of a body: the client must see it was cut
            return
        if self.ex is not None and self.ex.retry_ok:
            # a pooled connection the origin had closed under us: try once on a fresh one
            self.ex.retry_ok = False
            self.state = CONNECTING
            self.deadline = 0.0
            key = self._pool_key(self.ex.req.scheme)
            self.task = asyncio.get_running_loop().create_task(self._connect(key), name=f"arcus-connect-{self.id}")
            return
        reason = f": {exc}" if exc else ""
        self._upstream_failed(Refusal(ErrorCode.UPSTREAM_CLOSED, f"the upstream closed the connection before answering{reason}"))

    def upstream_pause(self) -> None:
        self.flow.pause_client(UPSTREAM_FULL)

    def upstream_resume(self) -> None:
        self.flow.resume_client(UPSTREAM_FULL)

    def _upstream_failed(self, r: Refusal) -> None:
        up, self.up = self.up, None
        if up is not None:
            self.flow.detach()
            up.abort()
        if self.ex.resp is not None and self.ex.status >= 200:
            self._count_error(r.code)
            self._close()
            return
        self.state = RESPONSE
        if r.code is ErrorCode.DENIED and r.rule is None:
            # refused on the way out by the escaper's egress guard (the box's own addresses...)
            r = dataclasses.replace(r, rule="egress")
        self._refuse(r)

    # ------------------------------------------------------------------ tunnels

    def _open_tunnel(self) -> None:
        self.state = CONNECTING
        self.deadline = 0.0
        key = ("tunnel",)
        self.task = asyncio.get_running_loop().create_task(self._connect(key), name=f"arcus-connect-{self.id}")

    def _tunnel_ready(self) -> None:
        self.ex.status = 200
        self.transport.write(b"HTTP/1.1 200 Connection established\r\nVia: 1.1 arcus\r\n\r\n")
        self._enter_tunnel(b"")

    def _switch_protocols(self, resp: http1.ResponseHead) -> None:
        self._write(self.ex.switching_head(resp))
        rest = bytes(self.ubuf)
        self.ubuf.clear()
        self._enter_tunnel(rest)

    def _enter_tunnel(self, early_down: bytes) -> None:
        """CONNECT answered 200, or an upgrade answered 101: the one tunnel relay from now on.
        The request's record is written when the tunnel ends (``closing``)."""
        self.state = TUNNEL
        up, self.up = self.up, None
        self.flow.resume_client(BUFFER)
        early_up, self.buf = bytes(self.buf), bytearray()
        self.start_tunnel(up, early_up, early_down, self.client_eof, self.up_eof)

    # ------------------------------------------------------------------ plumbing

    def _count_error(self, code: ErrorCode) -> None:
        if self.ex is not None:
            self.ex.error = code
        self.srv_stats.errors[code] += 1
        self.ten_stats.errors[code] += 1

    def _write(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)

    def _close(self, linger: bool = False) -> None:
        """Close after what was written has been sent (``linger``: gracefully, see Session.close;
        pointless once the client has sent its EOF)."""
        if self.ended:
            return
        self.close(linger and not self.client_eof)

    def closing(self) -> None:
        """Teardown: the pending task and upstream go; a request in flight is recorded (a tunnel
        that ended, a response cut by the origin, a body the client gave up on)."""
        self.state = CLOSED
        super().closing()
        ex, self.ex = self.ex, None
        if ex is not None and self.tview is not None:
            ex.record(self, self.bytes_up, self.bytes_down, self.sni_seen)

    # ------------------------------------------------------------------ Tracked

    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    def on_timeout(self) -> None:
        state = self.state
        if state == HEAD:
            if self.buf:
                self._count_error(ErrorCode.CLIENT_TIMEOUT)
                self.keep_alive = False
                self._write(answer_without_request(408, ErrorCode.CLIENT_TIMEOUT, "the request head did not arrive in time", self.shared.next_request_id()))
            self._close()
        elif state == BODY:
            self._count_error(ErrorCode.CLIENT_TIMEOUT)
            self.keep_alive = False
            if self.ex.status == 0:
                self._write(self.ex.answer(408, ErrorCode.CLIENT_TIMEOUT, "the request body stalled", False))
            self._close()
        elif state == RESPONSE:
            if self.ex.status >= 200:
                self._count_error(ErrorCode.UPSTREAM_TIMEOUT)
                self._close()
            else:
                self.keep_alive = False
                self._upstream_failed(Refusal(ErrorCode.UPSTREAM_TIMEOUT, "the upstream did not answer in time"))
        elif state == TUNNEL:
            self._count_error(ErrorCode.TUNNEL_IDLE)
            self._close()
        else:
            self._close()

    def drain(self) -> None:
        self.keep_alive = False
        if self.state == HEAD and not self.buf:
            self._close()


def http_proxy_factory(shared: Shared, server: str):
    def factory() -> HttpProxyConnection:
        return HttpProxyConnection(shared, server)

    return factory
