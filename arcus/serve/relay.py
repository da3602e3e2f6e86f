"""The base of every tunnel server (socks_proxy, sni_proxy, tcp_stream, tls_stream, tcp_tproxy).

A tunnel server has a handshake of its own (a SOCKS request, a TLS ClientHello, nothing at all)
and then moves bytes both ways. ``RelayConnection`` does everything but the handshake, the way
``http_proxy`` does it for CONNECT: one callback-style ``asyncio.Protocol`` per client, the
connection registered for ``ctl conns``/``kill``/drain, box and tenant connection slots held
for its life, the admission steps of ``arcus.serve.admission`` (tenant, user, policy, rate,
shapers), the upstream opened through the server's escaper, bytes relayed with backpressure
and half-close, bandwidth shaping, deadlines checked by the sweeper (handshake, then
``tunnel_idle`` as an idle bound), stats per server, tenant and user, and one audit
``connection`` event naming the target.

A subclass implements only its handshake, with these hooks (all on the event loop)::

    def handshake_started(self) -> None      # accepted: may call open() at once (tcp_stream)
    def handshake_data(self) -> None         # client bytes are in self.buf: parse, consume
    def upstream_ready(self) -> None         # connected: write the protocol's success reply
    def refused(self, f: Failure) -> None    # write the protocol's refusal (the base closes)

and these calls::

    self.authenticate(username, password, then)  # admission steps 1-3; then(Failure | None)
    self.open(host, port, ssl=..., server_hostname=...)  # steps 1-4, then the escaper
    self.fail(code, message, side)           # a client protocol error: count it and close

Bytes the client sent after its handshake (pipelined, or a ClientHello the SNI proxy only
peeked at) stay in ``self.buf`` and go upstream first once the tunnel is up. Bytes the
upstream sends before the tunnel is up (server-first protocols: SSH, SMTP) are kept and
delivered after the subclass's success reply.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as ssl_module
import time
from dataclasses import dataclass
from typing import Any, Callable

from arcus.audit.events import AuditEvent
from arcus.errors import EscapeError
from arcus.limit import max_pause
from arcus.serve import admission
from arcus.serve.context import Shared, Snapshot, Tracked
from arcus.serve.tenancy import TenantView, UserView
from arcus.serve.upstream import UpstreamConnection

log = logging.getLogger("arcus.serve")

MAX_PENDING = 256 * 1024  # client (or upstream) bytes buffered while the tunnel is not up
WRITE_HIGH = 1024 * 1024  # transport write buffer high-water mark while relaying
WRITE_LOW = 256 * 1024

# connection states (a subclass may add its own from CUSTOM on and name them in state_name)
HANDSHAKE = 0  # reading the protocol's handshake
AUTH = 1  # credentials being verified off the loop
CONNECTING = 2  # admitted, the escaper is opening the upstream
RELAY = 3  # bytes both ways
CLOSED = 4
CUSTOM = 5
STATE_NAMES = ("handshake", "auth", "connecting", "relay", "closed")

# reasons to stop reading from the client (bit mask)
PAUSE_UPSTREAM = 1  # the upstream cannot take more
PAUSE_BUFFER = 2  # too much early data buffered while the tunnel is not up
PAUSE_SHAPER = 4  # over a bandwidth limit: reading resumes when the shaper says so

# whose fault an error was (STYLE: errors say whose fault it was); the code is the stats key
SIDES = {
    "client_bad_request": "client", "client_timeout": "client", "auth_required": "client",
    "auth_throttled": "client", "rate_limited": "client", "user_conn_limit": "client",
    "tenant_conn_limit": "client", "unsupported": "client",
    "denied": "forbidden", "tenant_suspended": "forbidden", "user_blocked": "forbidden",
    "user_expired": "forbidden", "unknown_tenant": "forbidden",
    "upstream_connect": "upstream", "upstream_timeout": "upstream", "upstream_closed": "upstream",
    "resolve_failed": "upstream", "resolve_timeout": "upstream", "tunnel_idle": "client",
    "server_busy": "internal", "box_conn_limit": "internal", "internal": "internal",
}


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a tunnel could not be opened, protocol-neutral: the subclass answers it in its own
    terms (``arcus.proto.socks.socks5_rep_for(code)`` or ``(status)``, an alert, a close)."""

    status: int  # HTTP meaning: 400 403 407 429 500 502 503 504
    code: str  # stable error code (stats, audit, X-Arcus-Error)
    message: str
    side: str  # client | upstream | forbidden | internal
    rule: str | None = None  # the policy rule that refused


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_takes_user: dict[type, bool] = {}


def _connect_kwargs(escaper: Any, user: UserView | None) -> dict:
    """``user=`` for escapers whose connect takes it (route_client / consistent hash by user)."""
    if user is None:
        return {}
    cls = type(escaper)
    ok = _takes_user.get(cls)
    if ok is None:
        try:
            ok = "user" in inspect.signature(cls.connect).parameters
        except (TypeError, ValueError):
            ok = False
        _takes_user[cls] = ok
    return {"user": user.name} if ok else {}


class _Early:
    """The owner of an upstream connection until the escaper hands it over: keeps what it says."""

    __slots__ = ("up", "data", "eof", "paused")

    def __init__(self, up: UpstreamConnection) -> None:
        self.up = up
        self.data = bytearray()
        self.eof = False
        self.paused = False

    def upstream_data(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > MAX_PENDING and not self.paused and self.up.transport is not None:
            self.paused = True
            self.up.transport.pause_reading()

    def upstream_eof(self) -> None:
        self.eof = True

    def upstream_lost(self, exc: Exception | None) -> None:
        pass

    def upstream_pause(self) -> None:
        pass

    def upstream_resume(self) -> None:
        pass


class RelayConnection(asyncio.Protocol, Tracked):
    """One client connection of a tunnel server. Subclasses implement the handshake hooks."""

    # Policy sees a tunnel as this method (http_proxy's CONNECT tunnels are "CONNECT" too).
    policy_method = "CONNECT"

    def __init__(self, shared: Shared, server: str) -> None:
        self.shared = shared
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()  # client bytes not yet consumed by the handshake or sent upstream
        self.ubuf = bytearray()  # upstream bytes that arrived before the tunnel was up
        self.state = HANDSHAKE
        self.up: UpstreamConnection | None = None
        self.upt: asyncio.Transport | None = None  # the upstream transport while relaying
        self.id = 0
        self.tenant = "default"
        self.conn_tenant = "default"
        self.client = ""
        self.client_ip = ""
        self.target = ""
        self.host = ""
        self.port = 0
        self.started = time.monotonic()
        self.bytes_up = 0
        self.bytes_down = 0
        self.deadline = 0.0
        self.idle_window = 0.0
        self.seen_activity = 0
        self.paused = 0
        self.up_paused = False  # we paused the upstream's reading (client cannot take more)
        self.up_shaped = False
        self.write_paused = False
        self.client_eof = False
        self.up_eof = False
        self.task: asyncio.Task | None = None
        self.tview: TenantView | None = None
        self.user: UserView | None = None
        self.identified = False
        self.held: list = []
        self.user_held = ""
        self.shape_up: tuple = ()
        self.shape_down: tuple = ()
        self.check = None
        self.decision = ""
        self.rule_id: str | None = None
        self.error_code = ""
        self.error_side = ""
        self.status = 0  # HTTP-like outcome for the audit log: 200 once relaying, else the refusal's
        self.peer = ""  # the upstream address actually connected to
        self.up_local: tuple = ("0.0.0.0", 0)  # our side of the upstream connection (SOCKS BND)
        self.opened = 0.0

    # ------------------------------------------------------------------ hooks (subclasses)

    def handshake_started(self) -> None:
        """The connection was accepted; ``self.buf`` is empty."""

    def handshake_data(self) -> None:
        """Client bytes arrived in ``self.buf`` during the handshake: parse and consume them."""

    def upstream_ready(self) -> None:
        """The upstream is connected: write the protocol's success reply (the relay starts next)."""

    def refused(self, failure: Failure) -> None:
        """Write the protocol's refusal; the base counts it and closes afterwards."""

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
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.client_ip = str(peer[0]).split("%", 1)[0]
        self.client = _host_port(self.client_ip, peer[1])
        self.tenant = conf.tenant if conf.tenant is not None else snap.tenants.lookup(self.client_ip).name
        self.conn_tenant = self.tenant
        self.tview = snap.tenancy.get(self.tenant)
        self.srv_stats = shared.server_counters.get(self.server)
        self.ten_stats = shared.tenant_counters.get(self.tenant)
        self.id = next(shared.ids)
        self.srv_stats.conns_total += 1
        self.ten_stats.conns_total += 1
        self.srv_stats.conns_active += 1
        self.ten_stats.conns_active += 1
        shared.connections[self.id] = self
        if self.srv_stats.conns_active > conf.max_connections or shared.draining:
            self.accept_refused(Failure(503, "server_busy", "the proxy is at its connection limit", "internal"))
            return
        refused = self._hold(shared.limits.get(""), "box_conn_limit")
        if refused is None:
            refused = self._hold(shared.limits.get("t:" + self.tenant), "tenant_conn_limit")
        if refused is not None:
            self.accept_refused(Failure(503, refused, f"too many connections ({refused.replace('_', ' ')})", SIDES[refused]))
            return
        self.deadline = time.monotonic() + conf.timeouts.client_header
        self.handshake_started()

    def accept_refused(self, failure: Failure) -> None:
        """The connection cannot be served (a connection limit at accept). By default it is refused
        at once; a protocol that can only answer the client's first message (SOCKS) may keep it
        until then (bounded by ``timeouts.client_header``) and call ``refuse`` itself."""
        self.refuse(failure)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == RELAY:
            n = len(data)
            self.bytes_up += n
            self.srv_stats.bytes_up += n
            self.ten_stats.bytes_up += n
            self.upt.write(data)
            if self.shape_up:
                self._shape_client(n)
            return
        if state == CLOSED:
            return
        self.buf += data
        if state == HANDSHAKE:
            self.handshake_data()
        elif state >= CUSTOM:
            self.custom_data()
        if self.state != CLOSED and len(self.buf) > MAX_PENDING:
            self._pause(PAUSE_BUFFER)

    def custom_data(self) -> None:
        """Client bytes in a subclass's own state (``CUSTOM`` and above); default: drop them."""
        self.buf.clear()

    def eof_received(self) -> bool | None:
        self.client_eof = True
        if self.state == RELAY:
            upt = self.upt
            if upt is not None and upt.can_write_eof():
                upt.write_eof()
            if self.up_eof:
                self.close()
            return True
        if self.state in (AUTH, CONNECTING):
            return True  # a request then a half-close: answer it, pass the EOF on once connected
        return False

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
        if self.up_paused:
            self.up_paused = False
            up = self.up
            if up is not None and up.transport is not None and not self.up_shaped:
                up.transport.resume_reading()

    # ------------------------------------------------------------------ Owner of the upstream

    def upstream_data(self, data: bytes) -> None:
        if self.state == RELAY:
            n = len(data)
            self.bytes_down += n
            self.srv_stats.bytes_down += n
            self.ten_stats.bytes_down += n
            self.transport.write(data)
            if self.shape_down:
                self._shape_upstream(n)
            return
        if self.state == CLOSED:
            return
        # attached but not relaying yet (the subclass is writing its reply): keep it, bounded
        self.ubuf += data
        if len(self.ubuf) > MAX_PENDING and self.up is not None and self.up.transport is not None and not self.up_paused:
            self.up_paused = True
            self.up.transport.pause_reading()

    def upstream_eof(self) -> None:
        self.up_eof = True
        if self.state == RELAY:
            if self.transport.can_write_eof():
                self.transport.write_eof()
            if self.client_eof:
                self.close()

    def upstream_lost(self, exc: Exception | None) -> None:
        self.up = None
        self.upt = None
        if self.state == RELAY:
            self.close()
        # while CONNECTING, the connect task sees the transport closed and fails the tunnel

    def upstream_pause(self) -> None:
        self._pause(PAUSE_UPSTREAM)

    def upstream_resume(self) -> None:
        self._resume(PAUSE_UPSTREAM)

    # ------------------------------------------------------------------ the gate

    def authenticate(self, username: str | None, password: str | None, then: Callable[[Failure | None], None]) -> None:
        """Admission steps 1-3 (tenant, credentials, user slot); ``then(None)`` once identified,
        ``then(failure)`` if not. ``then`` may run later (a key derivation runs off the loop)."""
        verdict = admission.identify(
            self.snap, self.conf.tenant, (), self.conn_tenant, self.client_ip, username, password
        )
        if isinstance(verdict, admission.Refusal):
            then(self._failure(verdict))
            return
        if isinstance(verdict, TenantView):
            self._set_tenant(verdict)
            self.identified = True
            then(None)
            return
        creds = verdict
        known = admission.credentials_known(self.shared, creds, self.client_ip)
        if known is None:
            self.state = AUTH
            self.deadline = 0.0  # the key derivation is bounded by its own cost
            self.task = asyncio.get_running_loop().create_task(self._verify(creds, then), name=f"arcus-auth-{self.id}")
            return
        self._authenticated(creds, known, then)

    async def _verify(self, creds: admission.Credentials, then: Callable[[Failure | None], None]) -> None:
        result = await admission.verify_credentials(self.shared, creds, self.client_ip)
        self.task = None
        if self.state == CLOSED:
            return
        if self.state == AUTH:
            self.state = HANDSHAKE
            self.deadline = time.monotonic() + self.conf.timeouts.client_header
        self._authenticated(creds, result, then)

    def _authenticated(self, creds: admission.Credentials, result: UserView | admission.Refusal, then) -> None:
        if isinstance(result, admission.Refusal):
            then(self._failure(result))
            return
        self._set_tenant(creds.tenant)
        if not admission.hold_user_slot(self.shared, result):
            then(Failure(503, "user_conn_limit", f"user {result.name} has too many connections open", "client"))
            return
        self.user = result
        self.user_held = result.key
        self.identified = True
        then(None)

    def _set_tenant(self, tv: TenantView) -> None:
        self.tview = tv
        if tv.name != self.tenant:
            self.ten_stats.conns_active -= 1
            self.tenant = tv.name
            self.ten_stats = self.shared.tenant_counters.get(tv.name)
            self.ten_stats.conns_active += 1
            self.ten_stats.conns_total += 1

    def open(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        """Admit a tunnel to ``host:port`` and open it through the server's escaper; then
        ``upstream_ready()`` and the relay, or ``refused(failure)`` and close. ``ssl``: TLS to
        the upstream (tls_stream), verified against ``host``."""
        self.host = host
        self.port = port
        self.target = _host_port(host, port)
        self.state = CONNECTING
        self.deadline = 0.0
        self.srv_stats.requests += 1
        if self.identified:
            self._admit(ssl)
            return
        self.authenticate(username, password, lambda f: self._admit(ssl) if f is None else self.refuse(f))

    def _admit(self, ssl: ssl_module.SSLContext | None) -> None:
        if self.state == CLOSED:
            return
        self.state = CONNECTING
        self.deadline = 0.0
        self.ten_stats.requests += 1
        verdict = admission.admit(
            self.shared,
            self.snap,
            self.tview,
            self.user,
            host=self.host,
            port=self.port,
            client_ip=self.client_ip,
            method=self.policy_method,
            path=None,
            is_tunnel=True,
        )
        if isinstance(verdict, admission.Refusal):
            self.refuse(self._failure(verdict))
            return
        self.decision = verdict.decision
        self.rule_id = verdict.rule or (",".join(verdict.reports) if verdict.reports else None)
        self.check = verdict.check
        self.shape_up = verdict.shape_up
        self.shape_down = verdict.shape_down
        self.task = asyncio.get_running_loop().create_task(self._connect(ssl), name=f"arcus-connect-{self.id}")

    def _failure(self, r: admission.Refusal) -> Failure:
        if r.status == 302:  # a policy redirect has no meaning in a tunnel: refused
            return Failure(403, "denied", r.message, "forbidden", r.rule)
        return Failure(r.status, r.code, r.message, SIDES.get(r.code, "client"), r.rule)

    def _make_upstream(self) -> UpstreamConnection:
        # Owned from the start by a buffer of its own: a server-first upstream may speak before
        # the escaper returns, and an escaper racing several addresses closes the losers.
        up = UpstreamConnection(("tunnel",))
        up.owner = _Early(up)
        return up

    async def _connect(self, ssl: ssl_module.SSLContext | None) -> None:
        escaper = self.snap.escapers[self.conf.escaper]
        self.opened = time.monotonic()
        try:
            conn = await escaper.connect(
                self.host,
                self.port,
                self.client_ip,
                self._make_upstream,
                timeout=self.conf.timeouts.upstream_connect,
                ssl=ssl,
                check=self.check,
                **_connect_kwargs(escaper, self.user),
            )
        except EscapeError as exc:
            self.task = None
            if self.state != CLOSED:
                self.refuse(Failure(exc.status, exc.code, exc.message, exc.side))
            return
        except Exception as exc:  # noqa: BLE001 - a bug must answer, not hang the client
            self.task = None
            log.exception("connect failed unexpectedly")
            if self.state != CLOSED:
                self.refuse(Failure(500, "internal", f"internal error: {type(exc).__name__}", "internal"))
            return
        self.task = None
        up: UpstreamConnection = conn.protocol  # type: ignore[assignment]
        if self.state == CLOSED:
            up.close()
            return
        if up.closed or up.transport is None:
            self.refuse(Failure(502, "upstream_closed", f"{self.target} closed the connection at once", "upstream"))
            return
        early = up.owner
        up.owner = self
        self.up = up
        self.upt = up.transport
        if isinstance(early, _Early):
            self.ubuf = early.data
            self.up_eof = early.eof
            self.up_paused = early.paused
        self.peer = conn.peer
        local = up.transport.get_extra_info("sockname")
        if local:
            self.up_local = (str(local[0]).split("%", 1)[0], local[1])
        self.status = 200
        self.upstream_ready()
        if self.state != CLOSED:
            self.start_relay()

    # ------------------------------------------------------------------ relaying

    def start_relay(self) -> None:
        """Bytes both ways from now on (the subclass has written its success reply)."""
        self.state = RELAY
        timeouts = self.conf.timeouts
        self.deadline = time.monotonic() + timeouts.tunnel_idle
        self.idle_window = timeouts.tunnel_idle
        self.seen_activity = self.bytes_up + self.bytes_down
        for t in (self.transport, self.upt):
            try:
                t.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
            except (AttributeError, NotImplementedError):
                pass
        if self.write_paused and not self.up_paused:
            self.up_paused = True
            self.upt.pause_reading()
        if self.paused & PAUSE_BUFFER:
            self._resume(PAUSE_BUFFER)
        if self.buf:
            early = bytes(self.buf)
            self.buf.clear()
            self.data_received(early)
        if self.ubuf and self.state == RELAY:
            first = bytes(self.ubuf)
            self.ubuf.clear()
            self.upstream_data(first)
            if self.up_paused and not self.write_paused and self.upt is not None:
                self.up_paused = False
                self.upt.resume_reading()
        if self.state != RELAY:
            return
        if self.client_eof and self.upt is not None and self.upt.can_write_eof():
            self.upt.write_eof()
        if self.up_eof:
            if self.transport.can_write_eof():
                self.transport.write_eof()
            if self.client_eof:
                self.close()
        elif self.up is None or self.up.closed:
            self.close()

    def _shape_client(self, n: int) -> None:
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

    def _hold(self, lim, code: str) -> str | None:
        if lim is None or lim.spec.max_conns is None:
            return None
        if not lim.conns.try_acquire():
            return code
        self.held.append(lim)
        return None

    def count_error(self, code: str, side: str | None = None) -> None:
        self.error_code = code
        self.error_side = side or SIDES.get(code, "client")
        self.srv_stats.errors[code] += 1
        self.ten_stats.errors[code] += 1

    def refuse(self, failure: Failure) -> None:
        if self.state == CLOSED:
            return
        self.count_error(failure.code, failure.side)
        self.status = failure.status
        if failure.side == "forbidden" or failure.status == 403:
            self.decision = "deny"
            self.rule_id = failure.rule or self.rule_id
        try:
            self.refused(failure)
        finally:
            self.close()

    def fail(self, code: str, message: str, side: str = "client") -> None:
        """A protocol error (the subclass has written whatever reply applies): count it and close."""
        if self.state == CLOSED:
            return
        log.debug("connection %s: %s", self.id, message)
        self.count_error(code, side)
        self.status = self.status or 400
        self.close()

    def close(self) -> None:
        """Close after what was written has been sent."""
        if self.state == CLOSED:
            return
        self._teardown()
        if self.transport is not None:
            self.transport.close()

    def _teardown(self) -> None:
        was = self.state
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
        self.upt = None
        if up is not None:
            up.close()
        self.closing()
        if self.shared.connections.pop(self.id, None) is not None:
            self.srv_stats.conns_active -= 1
            self.ten_stats.conns_active -= 1
            self._account(was)

    def closing(self) -> None:
        """Release what a subclass holds (a UDP relay socket); called once, on teardown."""

    def _account(self, was: int) -> None:
        user = self.user
        if user is not None:
            c = self.shared.user_counters.get(user.key)
            c.requests += 1 if self.host else 0
            c.bytes_up += self.bytes_up
            c.bytes_down += self.bytes_down
            if self.error_code:
                c.errors[self.error_code] += 1
        records = self.shared.records
        if not records.enabled or not hasattr(self, "conf"):
            return
        records.emit(
            AuditEvent(
                time=time.time(),
                kind="connection",
                tenant=self.tenant,
                user=user.name if user is not None else None,
                client=self.client,
                server=self.server,
                escaper=self.conf.escaper,
                host=self.host,
                port=self.port,
                method=self.audit_method(),
                path=None,
                status=self.status,
                bytes_up=self.bytes_up,
                bytes_down=self.bytes_down,
                duration=time.monotonic() - self.started,
                decision=("report" if self.decision == "report" else self.decision) or None,
                rule=self.rule_id,
                error_side=self.error_side or None,
                error_code=self.error_code or None,
                request_id=None,
                conn_id=self.id,
                server_type=self.conf.type,
            )
        )

    def audit_method(self) -> str | None:
        """What the audit log shows as the method of this tunnel (e.g. "SOCKS5 CONNECT")."""
        return None

    # ------------------------------------------------------------------ Tracked

    def state_name(self) -> str:
        return STATE_NAMES[self.state] if self.state < CUSTOM else "custom"

    def on_timeout(self) -> None:
        state = self.state
        if state == HANDSHAKE:
            if self.buf or self.bytes_up:
                self.count_error("client_timeout")
            self.handshake_timeout()
            self.close()
        elif state == RELAY:
            self.count_error("tunnel_idle")
            self.close()
        else:
            self.close()

    def handshake_timeout(self) -> None:
        """The handshake did not complete in time; the subclass may answer (the base closes)."""

    def abort(self, reason: str) -> None:
        if self.state == CLOSED:
            return
        log.info("connection %s aborted: %s", self.id, reason)
        self._teardown()
        if self.transport is not None:
            self.transport.abort()

    def drain(self) -> None:
        """Graceful shutdown: a connection still in its handshake with nothing sent is closed;
        tunnels run on until they end (bounded by the runtime's graceful timeout)."""
        if self.state == HANDSHAKE and not self.buf:
            self.close()


def relay_factory(cls: type[RelayConnection]) -> Callable[[Shared, str], Callable[[], RelayConnection]]:
    """A ``serve.registry`` factory for a RelayConnection subclass."""

    def factory(shared: Shared, server: str) -> Callable[[], RelayConnection]:
        def make() -> RelayConnection:
            return cls(shared, server)

        return make

    return factory
