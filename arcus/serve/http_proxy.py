"""`http_proxy`: an HTTP/1.1 forward proxy (absolute-form requests and CONNECT tunnels).

One ``HttpProxyConnection`` per client connection, callback-style ``asyncio.Protocol``: all
state on the instance, backpressure with pause/resume of the other side, deadlines checked
by the runtime's sweeper. Every request on a keep-alive connection is parsed and accounted on
its own; request and response bodies are forwarded as they arrive, never re-encoded (chunked
bodies are scanned to find their end, not decoded).
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl as ssl_module
import time

from arcus.audit.events import AuditEvent
from arcus.errors import EscapeError, ProtocolError
from arcus.limit import max_pause
from arcus.proto import http1
from arcus.proto.http1 import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, ChunkedScanner, Limits
from arcus.serve import admission, gate
from arcus.serve.context import Shared, Snapshot, Tracked
from arcus.serve.tenancy import TenantView, UserView
from arcus.serve.upstream import UpstreamConnection

log = logging.getLogger("arcus.serve")

VIA = b"1.1 arcus"
MAX_PENDING = 256 * 1024  # client bytes buffered while the upstream is not ready

# connection states
HEAD = 0  # waiting for (the rest of) a request head
CONNECTING = 1  # request parsed, upstream connection being opened
BODY = 2  # forwarding the request body
RESPONSE = 3  # request sent, waiting for / relaying the response
TUNNEL = 4  # CONNECT or Upgrade: bytes both ways
CLOSED = 5
STATE_NAMES = ("idle", "connecting", "request_body", "response", "tunnel", "closed")

# reasons to stop reading from the client (bit mask)
PAUSE_UPSTREAM = 1  # the upstream cannot take more
PAUSE_BUFFER = 2  # too much pipelined / early data buffered
PAUSE_SHAPER = 4  # over a bandwidth limit: reading resumes when the shaper says so

# whose fault an error was, for stats and the audit log (STYLE: errors say whose fault it was)
_SIDES = {
    "bad_request": "client", "uri_too_long": "client", "header_too_large": "client",
    "version_not_supported": "client", "not_a_proxy_request": "client", "client_bad_request": "client",
    "client_timeout": "client", "client_aborted": "client", "auth_required": "client",
    "auth_throttled": "client", "rate_limited": "client", "user_conn_limit": "client",
    "denied": "forbidden", "tenant_suspended": "forbidden", "user_blocked": "forbidden",
    "user_expired": "forbidden", "unknown_tenant": "forbidden",
    "upstream_connect": "upstream", "upstream_timeout": "upstream", "upstream_closed": "upstream",
    "upstream_bad_response": "upstream", "resolve_failed": "upstream", "resolve_timeout": "upstream",
    "server_busy": "internal", "box_conn_limit": "internal", "tenant_conn_limit": "client", "internal": "internal",
}

_client_ssl: ssl_module.SSLContext | None = None


def _origin_ssl() -> ssl_module.SSLContext:
    global _client_ssl
    if _client_ssl is None:
        _client_ssl = ssl_module.create_default_context()
    return _client_ssl


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HttpProxyConnection(asyncio.Protocol, Tracked):
    __slots__ = (
        "shared", "snap", "conf", "limits", "transport", "buf", "state", "up", "id", "server",
        "tenant", "client", "client_ip", "target", "started", "bytes_up", "bytes_down", "deadline",
        "idle_window", "seen_activity", "srv_stats", "ten_stats", "req", "req_id", "req_started",
        "req_left", "req_scanner", "resp", "resp_left", "resp_scanner", "ubuf", "keep_alive",
        "paused", "up_paused", "status", "resp_bytes", "task", "client_eof", "up_eof",
        "local_client", "head_sent", "retry_ok", "tenant_suspended", "error_code", "write_paused",
        "scanned", "uscanned", "tview", "user", "conn_tenant", "held", "user_held", "shape_up", "shape_down",
        "up_shaped", "decision", "rule_id", "reports", "check", "req_up0", "req_down0", "audited_user", "reject",
    )

    def __init__(self, shared: Shared, server: str) -> None:
        self.shared = shared
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.state = HEAD
        self.up: UpstreamConnection | None = None
        self.id = 0
        self.tenant = "default"
        self.client = ""
        self.client_ip = ""
        self.target = ""
        self.started = time.monotonic()
        self.bytes_up = 0
        self.bytes_down = 0
        self.deadline = 0.0
        self.idle_window = 0.0
        self.seen_activity = 0
        self.req: http1.RequestHead | None = None
        self.resp: http1.ResponseHead | None = None
        self.ubuf = bytearray()
        self.paused = 0
        self.up_paused = False
        self.task: asyncio.Task | None = None
        self.client_eof = False
        self.up_eof = False
        self.keep_alive = True
        self.req_scanner: ChunkedScanner | None = None
        self.resp_scanner: ChunkedScanner | None = None
        self.error_code = ""
        self.req_id = "-"
        self.write_paused = False  # the client's socket buffer is full
        self.tview: TenantView | None = None
        self.user: UserView | None = None
        self.conn_tenant = "default"  # the tenant found at accept (server binding or source address)
        self.held: list = []  # connection limiters this connection holds a slot in
        self.user_held = ""  # the user whose connection slot this connection holds
        self.shape_up: tuple = ()  # bandwidth shapers for client -> upstream
        self.shape_down: tuple = ()
        self.up_shaped = False
        self.decision = ""  # policy outcome for the audit log: allow, deny, redirect
        self.rule_id: str | None = None
        self.reports: tuple = ()
        self.check = None  # per-address policy check handed to the escaper
        self.req_up0 = 0
        self.req_down0 = 0
        self.reject: tuple[str, str] | None = None
        self.scanned = 0  # bytes of an incomplete request head already checked
        self.uscanned = 0  # the same for a response head
        self.status = 0
        self.retry_ok = False
        self.head_sent = False

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        shared = self.shared
        snap: Snapshot = shared.snapshot
        self.snap = snap
        conf = snap.servers.get(self.server)
        if conf is None:  # the listener outlived its server in a reload: refuse rather than hang
            self.state = CLOSED
            transport.abort()
            return
        self.conf = conf
        lim = conf.limits
        self.limits = Limits(lim.max_request_line, lim.max_header_bytes, lim.max_headers)
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.client_ip = peer[0].split("%", 1)[0]
        self.client = _host_port(self.client_ip, peer[1])
        if conf.tenant is not None:
            self.tenant = conf.tenant
        else:
            self.tenant = snap.tenants.lookup(self.client_ip).name
            if self.tenant == "default" and snap.tenancy.proxy_hosts:
                # over TLS, the name the client gave the proxy itself can say whose client it is
                sslobj = transport.get_extra_info("ssl_object")
                by_sni = snap.tenancy.by_proxy_host(getattr(sslobj, "arcus_sni", None))
                if by_sni is not None:
                    self.tenant = by_sni.name
        self.conn_tenant = self.tenant
        self.tview = snap.tenancy.get(self.tenant)
        self.tenant_suspended = self.tview.suspended
        self.local_client = shared.host.is_local(self.client_ip)  # the egress guard's notion: loopback or the box's own
        self.srv_stats = shared.server_counters.get(self.server)
        self.ten_stats = shared.tenant_counters.get(self.tenant)
        self.id = next(shared.ids)
        self.srv_stats.conns_total += 1
        self.ten_stats.conns_total += 1
        self.srv_stats.conns_active += 1
        self.ten_stats.conns_active += 1
        shared.connections[self.id] = self
        if self.srv_stats.conns_active > conf.max_connections or shared.draining:
            self._reject_connection("server_busy", "the proxy is at its connection limit; try again later")
            return
        refused = self._hold(shared.limits.get(""), "box_conn_limit")
        if refused is None:
            refused = self._hold(shared.limits.get("t:" + self.tenant), "tenant_conn_limit")
        if refused is not None:
            self._reject_connection(refused, f"too many connections ({refused.replace('_', ' ')}); try again later")
            return
        self.deadline = time.monotonic() + conf.timeouts.client_header

    def _hold(self, lim, code: str) -> str | None:
        """Take a connection slot in ``lim`` for the life of this connection; the error code if full."""
        if lim is None or lim.spec.max_conns is None:
            return None
        if not lim.conns.try_acquire():
            return code
        self.held.append(lim)
        return None

    def _reject_connection(self, code: str, message: str) -> None:
        """Over a connection limit: answer 503 to the first request (reading it first, so the
        client's request is not met by a reset), then close."""
        self.keep_alive = False
        self.reject = (code, message)
        self.deadline = time.monotonic() + min(5.0, self.conf.timeouts.client_header)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == TUNNEL:
            self.bytes_up += len(data)
            self.srv_stats.bytes_up += len(data)
            self.ten_stats.bytes_up += len(data)
            up = self.up
            if up is not None:
                up.write(data)
            if self.shape_up:
                self._shape_client(len(data))
            return
        if state == BODY and not self.buf:
            self._forward_body(data)
            return
        if state == CLOSED:
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
            self._pause(PAUSE_BUFFER)

    def eof_received(self) -> bool | None:
        self.client_eof = True
        if self.state == TUNNEL:
            up = self.up
            if up is not None and up.transport is not None and up.transport.can_write_eof():
                up.transport.write_eof()
            if self.up_eof:
                self._close()
            return True
        if self.state in (HEAD, CLOSED):
            return False  # nothing in flight: close
        if self.state == BODY:
            # the client gave up in the middle of its request body
            self._count_error("client_aborted")
            self._close()
            return False
        return True  # request complete; still relaying the response: answer it, then close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != CLOSED:
            self._teardown()

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self.up
        if up is not None and up.transport is not None and not self.up_paused:
            self.up_paused = True
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.up
        if self.up_paused:
            self.up_paused = False
            if up is not None and up.transport is not None:
                up.transport.resume_reading()

    # ------------------------------------------------------------------ requests

    def _process(self) -> None:
        """Parse and start the request(s) waiting in the buffer."""
        while self.state == HEAD and self.buf:
            try:
                parsed = http1.parse_request_head(self.buf, self.limits, scanned=self.scanned)
            except ProtocolError as exc:
                self._count_error("client_bad_request")
                self.keep_alive = False
                code = "bad_request" if exc.status == 400 else {414: "uri_too_long", 431: "header_too_large", 505: "version_not_supported"}.get(exc.status, "bad_request")
                self._send_simple(exc.status, code, exc.message)
                self._close()
                return
            if parsed is None:
                self.scanned = len(self.buf)  # a head sent byte by byte costs linear work, not quadratic
                if self.paused & PAUSE_BUFFER:
                    self._resume(PAUSE_BUFFER)
                return
            head, used = parsed
            self.scanned = 0
            del self.buf[:used]
            self._start(head)

    def _start(self, req: http1.RequestHead) -> None:
        self.req = req
        snap = self.shared.snapshot
        if snap is not self.snap and self.server in snap.servers:
            # Store changes take effect on the next request, even on a kept-alive connection;
            # a request in flight keeps the Snapshot it started with.
            self.snap = snap
            self.conf = snap.servers[self.server]
        self.req_id = self.shared.next_request_id()
        self.req_started = time.monotonic()
        self.status = 0
        self.resp = None
        self.resp_bytes = 0
        self.head_sent = False
        self.error_code = ""
        self.srv_stats.requests += 1
        self.keep_alive = req.keep_alive and not self.shared.draining
        self.req_left = req.content_length if req.framing == LENGTH else 0
        self.req_scanner = ChunkedScanner(self.limits) if req.framing == CHUNKED else None
        self.target = _host_port(req.host, req.port) if req.host else ""
        self.req_up0 = self.bytes_up
        self.req_down0 = self.bytes_down
        if self.reject is not None:
            code, message = self.reject
            self._refuse(503, code, message, "internal")
            return
        self.decision = ""
        self.rule_id = None
        self.reports = ()
        self.check = None
        if req.form not in ("authority", "absolute"):
            self._refuse(
                400,
                "not_a_proxy_request",
                "this is a proxy: send an absolute URI (http://host/path) or CONNECT host:port",
                "client",
            )
            return
        self._identify(req)

    # ------------------------------------------------------------------ the gate: who, whether, how fast

    def _identify(self, req: http1.RequestHead) -> None:
        """Find the request's tenant and user (order: arcus.serve.gate), then authenticate."""
        username = password = header = None
        if self.snap.tenancy.any_users or self.conf.trusted_proxies:
            auth_value, tenant_hdr = gate.scan_headers(req.headers)
            if tenant_hdr is not None:
                header = tenant_hdr.decode("latin-1")
            if auth_value is not None:
                creds = gate.parse_basic(auth_value)
                if creds is None:
                    tv = self.snap.tenancy.get(self.conn_tenant)
                    self._refusal(admission.Refusal(407, "auth_required", "malformed Proxy-Authorization (expected Basic credentials)", realm=tv.realm))
                    return
                username, password = creds
        who = admission.identify(
            self.snap, self.conf.tenant, self.conf.trusted_proxies, self.conn_tenant, self.client_ip, username, password, header
        )
        if isinstance(who, admission.Refusal):
            self._set_tenant(self.snap.tenancy.get(self.conn_tenant))
            self._refusal(who)
            return
        if isinstance(who, TenantView):
            self._set_tenant(who)
            self.user = None
            self._admit()
            return
        self._set_tenant(who.tenant)
        known = admission.credentials_known(self.shared, who, self.client_ip)
        if known is None:
            # a key-derivation function takes a good part of a second: never on the event loop
            self.state = CONNECTING
            self.deadline = 0.0
            self.task = asyncio.get_running_loop().create_task(self._verify(who), name=f"arcus-auth-{self.id}")
            return
        self._authenticated(known)

    def _set_tenant(self, tv: TenantView) -> None:
        self.tview = tv
        if tv.name != self.tenant:
            # the request belongs to another tenant than the connection's source said
            self.ten_stats.conns_active -= 1
            self.tenant = tv.name
            self.ten_stats = self.shared.tenant_counters.get(tv.name)
            self.ten_stats.conns_active += 1
            self.ten_stats.conns_total += 1
        self.ten_stats.requests += 1

    async def _verify(self, creds: admission.Credentials) -> None:
        result = await admission.verify_credentials(self.shared, creds, self.client_ip)
        self.task = None
        if self.state != CLOSED:
            self._authenticated(result)

    def _authenticated(self, result: UserView | admission.Refusal) -> None:
        if isinstance(result, admission.Refusal):
            self._refusal(result)
            return
        user = result
        self.user = user
        if self.user_held != user.key:
            if self.user_held:
                admission.release_user_slot(self.shared, self.user_held)
                self.user_held = ""
            if not admission.hold_user_slot(self.shared, user):
                self._refuse(503, "user_conn_limit", f"user {user.name} has too many connections open", "client")
                return
            self.user_held = user.key
        self._admit()

    def _admit(self) -> None:
        """Tenant state, request rate, policy; then the request may leave."""
        req = self.req
        tunnel = req.form == "authority"
        verdict = admission.admit(
            self.shared,
            self.snap,
            self.tview,
            self.user,
            host=req.host,
            port=req.port,
            client_ip=self.client_ip,
            method=req.method.decode("latin-1"),
            path=None if tunnel else req.path.decode("latin-1"),
            is_tunnel=tunnel,
        )
        if isinstance(verdict, admission.Refusal):
            self._refusal(verdict)
            return
        self.decision = "allow"
        self.rule_id = verdict.rule
        self.reports = verdict.reports
        self.check = verdict.check
        self.shape_up = verdict.shape_up
        self.shape_down = verdict.shape_down
        if tunnel:
            self._open_tunnel()
        else:
            self._forward()

    def _refusal(self, r: admission.Refusal) -> None:
        """Answer a refusal of the admission steps in HTTP."""
        if r.status == 407:
            self._count_error(r.code)
            self.decision = "deny"
            req = self.req
            if req is not None and req.framing != NO_BODY:
                self.keep_alive = False
            self._send_simple(407, r.code, r.message, extra=[(b"Proxy-Authenticate", r.realm)])
            self._request_done()
        elif r.code == "denied":
            self.decision = "deny"
            self.rule_id = r.rule
            self._block(r.rule or "default", r.message)
        elif r.status == 302:
            self.decision = "redirect"
            self.rule_id = r.rule
            self._redirect(r.redirect_to or "/")
        else:
            self._refuse(r.status, r.code, r.message, _SIDES.get(r.code, "client"), retry_after=r.retry_after)

    def _block(self, rule: str, reason: str) -> None:
        self._count_error("denied")
        req = self.req
        if req is not None and req.framing != NO_BODY:
            self.keep_alive = False
        body = gate.render_block_page(
            self.tview.block_page if self.tview is not None else None,
            tenant=self.tenant,
            rule=rule,
            reason=reason,
            request_id=self.req_id,
            host=self.target,
        )
        self._send_simple(
            403, "denied", reason, body=body, content_type=b"text/html; charset=utf-8", extra=[(b"X-Arcus-Rule", rule.encode())]
        )
        self._request_done()

    def _redirect(self, location: str) -> None:
        req = self.req
        if req is not None and req.framing != NO_BODY:
            self.keep_alive = False
        self._send_simple(302, "redirected", f"moved to {location}", extra=[(b"Location", location.encode())], error=False)
        self._request_done()

    def _refuse(self, status: int, code: str, message: str, side: str, retry_after: float = 0.0) -> None:
        """Answer the current request ourselves. A request with a body closes the connection
        after the answer (its body is not read)."""
        self._count_error(code)
        if status == 403:
            self.decision = "deny"
        req = self.req
        if req is not None and req.framing != NO_BODY:
            self.keep_alive = False
        extra = [(b"Retry-After", str(max(1, math.ceil(retry_after))).encode())] if status == 429 else None
        self._send_simple(status, code, message, extra=extra)
        self._request_done()

    # ------------------------------------------------------------------ forwarding

    def _pool_key(self, scheme: bytes) -> tuple:
        req = self.req
        key = (self.conf.escaper, self.tenant, self.local_client, scheme, req.host, req.port)
        if getattr(self.snap.escapers.get(self.conf.escaper), "varies_by_client", False):
            # routed by client or user: a connection opened for one route is not another's
            key += (self.client_ip, self.user.name if self.user is not None else None)
        return key

    def _shape_client(self, n: int) -> None:
        """Over a bandwidth limit: stop reading from the client for as long as the shapers say."""
        pause = max_pause(time.monotonic(), n, *self.shape_up)
        if pause > 0 and not self.paused & PAUSE_SHAPER:
            self._pause(PAUSE_SHAPER)
            asyncio.get_running_loop().call_later(pause, self._resume, PAUSE_SHAPER)

    def _shape_upstream(self, n: int) -> None:
        pause = max_pause(time.monotonic(), n, *self.shape_down)
        up = self.up
        if pause > 0 and up is not None and up.transport is not None and not self.up_shaped:
            self.up_shaped = True
            up.transport.pause_reading()
            asyncio.get_running_loop().call_later(pause, self._unshape_upstream, up)

    def _unshape_upstream(self, up: UpstreamConnection) -> None:
        self.up_shaped = False
        if up.transport is not None and not up.closed and not self.up_paused:
            up.transport.resume_reading()

    def _forward(self) -> None:
        req = self.req
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
        req = self.req
        escaper = self.snap.escapers[self.conf.escaper]
        timeouts = self.conf.timeouts
        try:
            conn = await escaper.connect(
                req.host,
                req.port,
                self.client_ip,
                lambda: UpstreamConnection(key),
                timeout=timeouts.upstream_connect,
                ssl=_origin_ssl() if req.scheme == b"https" else None,
                check=self.check,
                user=self.user.name if self.user is not None else None,
            )
        except EscapeError as exc:
            self.task = None
            if self.state == CLOSED:
                return
            self._upstream_failed(exc.status, exc.code, exc.message, exc.side)
            return
        except Exception as exc:  # noqa: BLE001 - a bug must answer 500, not hang the client
            self.task = None
            log.exception("connect failed unexpectedly")
            if self.state != CLOSED:
                self._upstream_failed(500, "internal", f"internal error: {type(exc).__name__}", "internal")
            return
        self.task = None
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
        self.uscanned = 0
        self.up_eof = False
        if self.write_paused and up.transport is not None:
            # the client still has not taken the previous response: do not read ahead of it
            self.up_paused = True
            up.transport.pause_reading()

    def _send_request(self) -> None:
        req = self.req
        up = self.up
        headers = http1.forward_headers(req.headers, req.connection_tokens)
        host = f"[{req.host}]" if ":" in req.host else req.host
        if req.port != (443 if req.scheme == b"https" else 80):
            host = f"{host}:{req.port}"
        out = [(b"Host", host.encode())]
        for name, value in headers:
            n = len(name)
            if (n == 4 and name.lower() == b"host") or (n == 11 and name.lower() == gate.X_TENANT_ID):
                continue
            out.append((name, value))
        out.append((b"Via", (b"1.0 arcus" if req.version == b"1.0" else VIA)))
        if req.framing == CHUNKED:
            out.append((b"Transfer-Encoding", b"chunked"))
        if req.upgrade:
            # a protocol switch (WebSocket) must reach the origin: Upgrade is hop-by-hop, so it is re-added
            out.extend((n, v) for n, v in req.headers if len(n) == 7 and n.lower() == b"upgrade")
            out.append((b"Connection", b"upgrade"))
        elif req.version == b"1.0":
            out.append((b"Connection", b"close"))
        up.write(http1.build_request_head(req.method, req.path, out, req.version))
        self.head_sent = True
        self.retry_ok = up.reused and req.framing == NO_BODY
        up.reused = False
        self.resp_scanner = None
        if req.framing == NO_BODY:
            self._request_sent()
        else:
            self.state = BODY
            self.deadline = time.monotonic() + self.conf.timeouts.client_body
            self.idle_window = self.conf.timeouts.client_body
            self._forward_body(b"")
            if self.state == BODY and self.paused & PAUSE_BUFFER:
                self._resume(PAUSE_BUFFER)

    def _forward_body(self, data: bytes) -> None:
        """Send request body bytes upstream: first what is buffered, then ``data``."""
        if self.buf:
            if data:
                self.buf += data
            data = bytes(self.buf)
            self.buf.clear()
        if not data:
            return
        req = self.req
        if req.framing == LENGTH:
            n = min(self.req_left, len(data))
            self.req_left -= n
            done = self.req_left == 0
        else:
            try:
                n = self.req_scanner.feed(data)
            except ProtocolError as exc:
                self._count_error("client_bad_request")
                self.keep_alive = False
                if not self.head_sent or self.status == 0:
                    self._send_simple(400, "bad_request", exc.message)
                self._close()
                return
            done = self.req_scanner.done
        if n:
            chunk = data if n == len(data) else data[:n]
            self.bytes_up += n
            self.srv_stats.bytes_up += n
            self.ten_stats.bytes_up += n
            if self.up is not None:
                self.up.write(chunk)
            if self.shape_up:
                self._shape_client(n)
        if n < len(data):
            self.buf += data[n:]
        if done:
            self._request_sent()
            if len(self.buf) > MAX_PENDING:
                self._pause(PAUSE_BUFFER)

    def _request_sent(self) -> None:
        if self.state == CLOSED:
            return
        if self.resp is not None and self.status >= 200:
            # the response was complete before the body: nothing more to wait for
            self.state = RESPONSE
            return
        self.state = RESPONSE
        self.idle_window = 0.0
        if self.status == 0:
            self.deadline = time.monotonic() + self.conf.timeouts.upstream_response

    # ------------------------------------------------------------------ responses (Owner of UpstreamConnection)

    def upstream_data(self, data: bytes) -> None:
        if self.state == TUNNEL:
            n = len(data)
            self.bytes_down += n
            self.srv_stats.bytes_down += n
            self.ten_stats.bytes_down += n
            self.transport.write(data)
            if self.shape_down:
                self._shape_upstream(n)
            return
        if self.resp is not None and self.status >= 200:
            self._relay_body(data)
            return
        self.ubuf += data
        self._parse_response()

    def _parse_response(self) -> None:
        req = self.req
        while self.ubuf:
            try:
                parsed = http1.parse_response_head(self.ubuf, self.limits, req.method, scanned=self.uscanned)
            except ProtocolError as exc:
                self._upstream_failed(502, "upstream_bad_response", f"invalid response from upstream: {exc.message}", "upstream")
                return
            if parsed is None:
                self.uscanned = len(self.ubuf)
                return
            resp, used = parsed
            self.uscanned = 0
            if resp.status >= 200:
                rest = bytes(self.ubuf[used:])
                self.ubuf.clear()
                self._response_head(resp, rest)
                return
            del self.ubuf[:used]
            if resp.status < 200:
                if resp.status == 101 and req.upgrade:
                    self._switch_protocols(resp)
                    return
                if req.version == b"1.1" and resp.status != 101:
                    head = http1.build_response_head(resp.status, resp.reason, http1.forward_headers(resp.headers, resp.connection_tokens))
                    self.transport.write(head)

    def _response_head(self, resp: http1.ResponseHead, rest: bytes) -> None:
        req = self.req
        if resp.framing == CHUNKED and req.version == b"1.0":
            # we asked in HTTP/1.0, so the origin must not chunk; an HTTP/1.0 client could not decode it
            self._upstream_failed(
                502, "upstream_bad_response", "the upstream answered an HTTP/1.0 request with a chunked body", "upstream"
            )
            return
        self.resp = resp
        self.status = resp.status
        self.resp_left = resp.content_length
        self.resp_scanner = ChunkedScanner(self.limits, side="upstream", status=502) if resp.framing == CHUNKED else None
        if resp.framing == UNTIL_CLOSE or self.state == BODY:
            self.keep_alive = False
        headers = http1.forward_headers(resp.headers, resp.connection_tokens)
        if resp.framing == CHUNKED:
            headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
            headers.append((b"Transfer-Encoding", b"chunked"))
        headers.append((b"Via", VIA))
        if req.version == b"1.0":
            headers.append((b"Connection", b"keep-alive" if self.keep_alive else b"close"))
        elif not self.keep_alive:
            headers.append((b"Connection", b"close"))
        head = http1.build_response_head(resp.status, resp.reason, headers, req.version)
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
        resp = self.resp
        framing = resp.framing
        if framing == LENGTH:
            n = min(self.resp_left, len(data))
            self.resp_left -= n
            done = self.resp_left == 0
        elif framing == CHUNKED:
            try:
                n = self.resp_scanner.feed(data)
            except ProtocolError as exc:
                log.info("connection %s: invalid chunked body from %s: %s", self.id, self.target, exc.message)
                if head:  # nothing sent to the client yet: it can still get a proper 502
                    self.resp = None
                    self.status = 0
                    self._upstream_failed(502, "upstream_bad_response", f"invalid response from upstream: {exc.message}", "upstream")
                    return
                self._count_error("upstream_bad_response")
                self._close()
                return
            done = self.resp_scanner.done
        elif framing == UNTIL_CLOSE:
            n = len(data)
            done = False
        else:
            n = 0
            done = True
        if n:
            self.bytes_down += n
            self.resp_bytes += n
            self.srv_stats.bytes_down += n
            self.ten_stats.bytes_down += n
            body = data if n == len(data) else data[:n]
            self.transport.write(head + body if head else body)
            if self.shape_down:
                self._shape_upstream(n)
        elif head:
            self.transport.write(head)
        if done:
            self._response_done(data[n:])

    def _response_done(self, extra: bytes) -> None:
        up = self.up
        resp = self.resp
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
            if self.up_paused:
                self.up_paused = False
                if up.transport is not None:
                    up.transport.resume_reading()
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
        req = self.req
        if req is not None:
            self._account(req)
        self.req = None
        self.resp = None
        if not self.keep_alive or self.client_eof or self.state == CLOSED:
            self._close()
            return
        self.state = HEAD
        timeouts = self.conf.timeouts
        self.deadline = time.monotonic() + timeouts.client_idle
        self.idle_window = 0.0
        if self.paused & PAUSE_BUFFER:
            self._resume(PAUSE_BUFFER)
        if self.buf:
            self.deadline = time.monotonic() + timeouts.client_header
            self._process()

    def upstream_eof(self) -> None:
        self.up_eof = True
        if self.state == TUNNEL:
            if not self.transport.can_write_eof():
                self._close()  # a TLS client side cannot be half-closed: the tunnel is over
                return
            self.transport.write_eof()
            if self.client_eof:
                self._close()
            return
        resp = self.resp
        if resp is not None and self.status >= 200 and resp.framing == UNTIL_CLOSE:
            self._response_done(b"")
            return
        # EOF before the response ended: connection_lost follows and says what to do
        up = self.up
        if up is not None:
            up.close()

    def upstream_lost(self, exc: Exception | None) -> None:
        self.up = None
        if self.state in (CLOSED, HEAD):
            return
        if self.state == TUNNEL:
            self._close()
            return
        resp = self.resp
        if resp is not None and self.status >= 200:
            if resp.framing == UNTIL_CLOSE:
                self._response_done(b"")
            else:
                self._count_error("upstream_closed")
                self._close()  # cut in the middle of a body: the client must see it was cut
            return
        if self.retry_ok and self.req is not None:
            # a pooled connection the origin had closed under us: try once on a fresh one
            self.retry_ok = False
            self.state = CONNECTING
            self.deadline = 0.0
            key = self._pool_key(self.req.scheme)
            self.task = asyncio.get_running_loop().create_task(self._connect(key), name=f"arcus-connect-{self.id}")
            return
        reason = f": {exc}" if exc else ""
        self._upstream_failed(502, "upstream_closed", f"the upstream closed the connection before answering{reason}", "upstream")

    def upstream_pause(self) -> None:
        self._pause(PAUSE_UPSTREAM)

    def upstream_resume(self) -> None:
        self._resume(PAUSE_UPSTREAM)

    def _upstream_failed(self, status: int, code: str, message: str, side: str) -> None:
        up, self.up = self.up, None
        if up is not None:
            up.abort()
        if self.resp is not None and self.status >= 200:
            self._count_error(code)
            self._close()
            return
        if self.state == BODY or (self.req is not None and self.req.framing != NO_BODY):
            self.keep_alive = False
        self.state = RESPONSE
        self._count_error(code)
        self._send_simple(status, code, message)
        self._request_done()

    # ------------------------------------------------------------------ tunnels

    def _open_tunnel(self) -> None:
        self.state = CONNECTING
        self.deadline = 0.0
        key = ("tunnel",)
        self.task = asyncio.get_running_loop().create_task(self._connect(key), name=f"arcus-connect-{self.id}")

    def _tunnel_ready(self) -> None:
        self.status = 200
        self.transport.write(b"HTTP/1.1 200 Connection established\r\nVia: 1.1 arcus\r\n\r\n")
        self._enter_tunnel()

    def _switch_protocols(self, resp: http1.ResponseHead) -> None:
        self.status = 101
        self.resp = resp
        headers = [(n, v) for n, v in resp.headers if n.lower() not in (b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer")]
        headers.append((b"Via", VIA))
        self.transport.write(http1.build_response_head(101, resp.reason, headers, self.req.version))
        rest = bytes(self.ubuf)
        self.ubuf.clear()
        self._enter_tunnel()
        if rest:
            self.upstream_data(rest)

    def _enter_tunnel(self) -> None:
        self.state = TUNNEL
        timeouts = self.conf.timeouts
        self.deadline = time.monotonic() + timeouts.tunnel_idle
        self.idle_window = timeouts.tunnel_idle
        self.seen_activity = self.bytes_up + self.bytes_down
        if self.paused & PAUSE_BUFFER:
            self._resume(PAUSE_BUFFER)
        if self.buf:
            early = bytes(self.buf)
            self.buf.clear()
            self.data_received(early)
        if self.client_eof and self.up is not None and self.up.transport is not None:
            if self.up.transport.can_write_eof():
                self.up.transport.write_eof()

    # ------------------------------------------------------------------ plumbing

    def _pause(self, why: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= why

    def _resume(self, why: int) -> None:
        if not self.paused & why:
            return
        self.paused &= ~why
        if not self.paused and self.transport is not None and self.state != CLOSED:
            self.transport.resume_reading()

    def _count_error(self, code: str) -> None:
        self.error_code = code
        self.srv_stats.errors[code] += 1
        self.ten_stats.errors[code] += 1

    def _send_simple(
        self,
        status: int,
        code: str,
        message: str,
        *,
        body: bytes | None = None,
        content_type: bytes = b"text/plain; charset=utf-8",
        extra: list[tuple[bytes, bytes]] | None = None,
        error: bool = True,
    ) -> None:
        self.status = status
        if error:
            self.error_code = code
        if body is None:
            body = f"{status} {http1.REASONS.get(status, b'Error').decode()}\n{message}\nrequest id: {self.req_id}\n".encode()
        headers = [
            (b"Content-Type", content_type),
            (b"Content-Length", str(len(body)).encode()),
        ]
        if error:
            headers.append((b"X-Arcus-Error", code.encode()))
        headers.append((b"X-Arcus-Request-Id", self.req_id.encode()))
        headers.append((b"Via", VIA))
        if extra:
            headers.extend(extra)
        version = b"1.1"
        req = self.req
        if req is not None and req.version == b"1.0":
            version = b"1.0"
            headers.append((b"Connection", b"keep-alive" if self.keep_alive else b"close"))
        elif not self.keep_alive:
            headers.append((b"Connection", b"close"))
        head_only = req is not None and req.method == b"HEAD"
        out = http1.build_response_head(status, http1.REASONS.get(status, b"Error"), headers, version)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out if head_only else out + body)

    def _close(self) -> None:
        """Close after what was written has been sent."""
        if self.state == CLOSED:
            return
        self._teardown()
        if self.transport is not None:
            self.transport.close()

    def _account(self, req: http1.RequestHead) -> None:
        """Per-user counters and the record of one request (access log, audit)."""
        up = self.bytes_up - self.req_up0
        down = self.bytes_down - self.req_down0
        user = self.user
        if user is not None:
            c = self.shared.user_counters.get(user.key)
            c.requests += 1
            c.bytes_up += up
            c.bytes_down += down
            if self.error_code:
                c.errors[self.error_code] += 1
        records = self.shared.records
        if not records.enabled:
            return
        tunnel = req.form == "authority"
        path = None
        if not tunnel and req.path:
            raw = req.path.decode("latin-1")
            path = raw if self.tview is not None and self.tview.log_query else raw.split("?", 1)[0]
        code = self.error_code
        records.emit(
            AuditEvent(
                time=time.time(),
                kind="request",
                tenant=self.tenant,
                user=user.name if user is not None else None,
                client=self.client,
                server=self.server,
                escaper=self.conf.escaper,
                host=req.host or "",
                port=req.port or 0,
                method=req.method.decode("latin-1"),
                path=path,
                status=self.status,
                bytes_up=up,
                bytes_down=down,
                duration=time.monotonic() - self.req_started,
                decision=("report" if self.reports and self.decision == "allow" else self.decision) or None,
                rule=",".join(self.reports) if self.reports and self.decision == "allow" else self.rule_id,
                error_side=_SIDES.get(code) if code else None,
                error_code=code or None,
                request_id=self.req_id,
                conn_id=self.id,
            )
        )

    def _audit_connection(self) -> None:
        records = self.shared.records
        if not records.enabled or not hasattr(self, "conf"):
            return
        records.emit(
            AuditEvent(
                time=time.time(),
                kind="connection",
                tenant=self.tenant,
                user=self.user.name if self.user is not None else None,
                client=self.client,
                server=self.server,
                escaper=self.conf.escaper,
                host="",
                port=0,
                method=None,
                path=None,
                status=0,
                bytes_up=self.bytes_up,
                bytes_down=self.bytes_down,
                duration=time.monotonic() - self.started,
                decision=None,
                rule=None,
                error_side=None,
                error_code=None,
                request_id=None,
                conn_id=self.id,
                server_type=self.conf.type,
            )
        )

    def _teardown(self) -> None:
        self.state = CLOSED
        self.deadline = 0.0
        for lim in self.held:
            if lim.conns.active > 0:
                lim.conns.release()
        self.held = []
        if self.user_held:
            admission.release_user_slot(self.shared, self.user_held)
            self.user_held = ""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        up, self.up = self.up, None
        if up is not None:
            up.close()
        if self.shared.connections.pop(self.id, None) is not None:
            self.srv_stats.conns_active -= 1
            self.ten_stats.conns_active -= 1
            self._audit_connection()

    # ------------------------------------------------------------------ Tracked

    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    def on_timeout(self) -> None:
        state = self.state
        if state == HEAD:
            if self.buf:
                self._count_error("client_timeout")
                self.keep_alive = False
                self._send_simple(408, "client_timeout", "the request head did not arrive in time")
            self._close()
        elif state == BODY:
            self._count_error("client_timeout")
            self.keep_alive = False
            if self.status == 0:
                self._send_simple(408, "client_timeout", "the request body stalled")
            self._close()
        elif state == RESPONSE:
            if self.status >= 200:
                self._count_error("upstream_timeout")
                self._close()
            else:
                self.keep_alive = False
                self._upstream_failed(504, "upstream_timeout", "the upstream did not answer in time", "upstream")
        elif state == TUNNEL:
            self._count_error("tunnel_idle")
            self._close()
        else:
            self._close()

    def abort(self, reason: str) -> None:
        if self.state == CLOSED:
            return
        log.info("connection %s aborted: %s", self.id, reason)
        self._teardown()
        if self.transport is not None:
            self.transport.abort()

    def drain(self) -> None:
        self.keep_alive = False
        if self.state == HEAD and not self.buf:
            self._close()


def http_proxy_factory(shared: Shared, server: str):
    def factory() -> HttpProxyConnection:
        return HttpProxyConnection(shared, server)

    return factory
