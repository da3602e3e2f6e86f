"""The base of every tunnel server (socks_proxy, sni_proxy, tcp_stream, tls_stream, tcp_tproxy).

A tunnel server has a handshake of its own (a SOCKS request, a TLS ClientHello, nothing at all)
and then moves bytes both ways. ``RelayConnection`` is a ``Session`` (accept, tenant, slots,
registration, teardown: ``arcus.serve.session``) that runs the admission gate
(``arcus.tenancy.admission``) for its one destination, opens the upstream through the server's
escaper and hands the bytes to the one ``Tunnel`` relay. It leaves one record per connection
(kind ``connection``): destination, decision and rule, bytes, duration, error side and code.

A subclass implements only its handshake, with these hooks (all on the event loop)::

    def handshake_started(self) -> None      # accepted: may call open() at once (tcp_stream)
    def handshake_data(self) -> None         # client bytes are in self.buf: parse, consume
    def upstream_ready(self) -> None         # connected: write the protocol's success reply
    def refused(self, r: Refusal) -> None    # write the protocol's refusal (the base closes)

and these calls::

    self.authenticate(username, password, then)  # admission steps 1-4; then(Refusal | None)
    self.open(host, port, ssl=...)           # admission, then the escaper, then the tunnel
    self.fail(code, message)                 # a client protocol error: count it and close

Bytes the client sent after its handshake (pipelined, or a ClientHello the SNI proxy only
peeked at) stay in ``self.buf`` and go upstream first once the tunnel is up. Bytes the
upstream sends before the tunnel is up (server-first protocols: SSH, SMTP) are kept and
delivered after the subclass's success reply.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import time
from typing import Callable

from arcus.errors import ErrorCode, Refusal
from arcus.serve import records
from arcus.serve.context import Shared
from arcus.serve.flow import BUFFER
from arcus.serve.session import Session, host_port
from arcus.serve.upstream import UpstreamConnection, take_early, tunnel_upstream
from arcus.tenancy.admission import Destination
from arcus.tenancy.identify import Claims

log = logging.getLogger("arcus.serve")

MAX_PENDING = 256 * 1024  # client (or upstream) bytes buffered while the tunnel is not up

# connection states (a subclass may add its own from CUSTOM on and name them in state_name)
HANDSHAKE = 0  # reading the protocol's handshake
AUTH = 1  # credentials being verified off the loop
CONNECTING = 2  # admitted, the escaper is opening the upstream
RELAY = 3  # bytes both ways
CLOSED = 4
CUSTOM = 5
STATE_NAMES = ("handshake", "auth", "connecting", "relay", "closed")


class RelayConnection(Session):
    """One client connection of a tunnel server. Subclasses implement the handshake hooks."""

    # Policy sees a tunnel as this method (http_proxy's CONNECT tunnels are "CONNECT" too).
    policy_method = "CONNECT"

    def __init__(self, shared: Shared, server: str) -> None:
        super().__init__(shared, server)
        self.buf = bytearray()  # client bytes not yet consumed by the handshake or sent upstream
        self.state = HANDSHAKE
        self.host = ""
        self.port = 0
        self.client_eof = False
        self.identified = False
        self.decision = ""
        self.rule_id: str | None = None
        self.error_code: ErrorCode | str = ""
        self.status = 0  # HTTP-like outcome for the record: 200 once relaying, else the refusal's
        self.peer = ""  # the upstream address actually connected to
        self.up_local: tuple = ("0.0.0.0", 0)  # our side of the upstream connection (SOCKS BND)
        self.opened = 0.0
        self.heard = False  # the client sent something during the handshake

    # ------------------------------------------------------------------ hooks (subclasses)

    def handshake_started(self) -> None:
        """The connection was accepted; ``self.buf`` is empty."""

    def handshake_data(self) -> None:
        """Client bytes arrived in ``self.buf`` during the handshake: parse and consume them."""

    def upstream_ready(self) -> None:
        """The upstream is connected: write the protocol's success reply (the relay starts next)."""

    def refused(self, failure: Refusal) -> None:
        """Write the protocol's refusal; the base counts it and closes afterwards."""

    # ------------------------------------------------------------------ Session

    def closed_at_accept(self) -> None:
        self.state = CLOSED

    def accepted(self) -> None:
        self.handshake_started()

    def rejected(self, refusal: Refusal) -> None:
        """The connection cannot be served (a connection limit at accept). By default it is refused
        at once; a protocol that can only answer the client's first message (SOCKS) may keep it
        until then (bounded by ``timeouts.client_header``) and call ``refuse`` itself."""
        self.accept_refused(refusal)

    def accept_refused(self, failure: Refusal) -> None:
        # closed gracefully: a client already sending (a stream has no handshake to wait for)
        # reads an end, not a reset for the bytes the kernel holds unread
        self.refuse(failure, linger=True)

    # ------------------------------------------------------------------ asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == RELAY:
            tunnel = self.tunnel
            assert tunnel is not None  # RELAY starts with the tunnel
            tunnel.from_client(data)
            return
        if state == CLOSED:
            self.linger_data(data)
            return
        self.buf += data
        if state == HANDSHAKE:
            self.heard = True
            self.handshake_data()
        elif state >= CUSTOM:
            self.custom_data()
        if self.state != CLOSED and len(self.buf) > MAX_PENDING:
            self.flow.pause_client(BUFFER)

    def custom_data(self) -> None:
        """Client bytes in a subclass's own state (``CUSTOM`` and above); default: drop them."""
        self.buf.clear()

    def eof_received(self) -> bool | None:
        self.client_eof = True
        if self.state == RELAY:
            tunnel = self.tunnel
            assert tunnel is not None  # RELAY starts with the tunnel
            tunnel.from_client_eof()
            return True
        if self.state in (AUTH, CONNECTING):
            return True  # a request then a half-close: answer it, pass the EOF on once connected
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != CLOSED:
            if self.state == HANDSHAKE and self.heard and not self.error_code:
                self.count_error(ErrorCode.CLIENT_ABORTED)  # it began a handshake and went away
                self.status = self.status or ErrorCode.CLIENT_ABORTED.status
            self._teardown()

    # ------------------------------------------------------------------ the gate

    def authenticate(self, username: str | None, password: str | None, then: Callable[[Refusal | None], None]) -> None:
        """Admission steps 1-4 (tenant, credentials, user and tenant slots); ``then(None)`` once
        identified, ``then(refusal)`` if not. ``then`` may run later (a key derivation runs off
        the loop; the connection is in state AUTH meanwhile)."""
        gate = self.gate
        claims = Claims(self.client_ip, self.conf.tenant, (), self.proxy_sni, username, password)

        def done(refusal: Refusal | None) -> None:
            if self.state == CLOSED:
                return
            if self.state == AUTH:
                self.state = HANDSHAKE
                self.deadline = time.monotonic() + self.conf.timeouts.client_header
            self.set_tenant(gate.tenant)
            self.set_user(gate.user)
            if refusal is not None:
                then(self._failure(refusal))
                return
            self.identified = True
            then(None)

        gate.authenticate(self.snap, claims, done)
        if gate.task is not None and self.state != CLOSED:
            self.state = AUTH
            self.deadline = 0.0  # the key derivation is bounded by its own cost

    def open(self, host: str, port: int, *, ssl: ssl_module.SSLContext | None = None, retry: bool = False) -> None:
        """Admit a tunnel to ``host:port`` and open it through the server's escaper; then
        ``upstream_ready()`` and the relay, or ``refused(failure)`` and close. ``ssl``: TLS to
        the upstream (tls_stream), verified against ``host``. ``retry``: the same tunnel on
        another upstream (a stream's failover): not counted nor rate-limited again, the policy
        decides again for the new destination."""
        self.host = host
        self.port = port
        self.target = host_port(host, port)
        self.state = CONNECTING
        self.deadline = 0.0
        if not retry:
            self.srv_stats.requests += 1
        if self.identified:
            self._admit(ssl, retry)
            return
        self.authenticate(None, None, lambda f: self._admit(ssl, retry) if f is None else self.refuse(f))

    def _admit(self, ssl: ssl_module.SSLContext | None, retry: bool = False) -> None:
        if self.state == CLOSED:
            return
        self.state = CONNECTING
        self.deadline = 0.0
        if not retry:
            self.ten_stats.requests += 1
        verdict = self.gate.admit(
            self.snap, Destination(self.host, self.port, self.policy_method, None, True), self.client_ip, charge=not retry
        )
        if isinstance(verdict, Refusal):
            self.refuse(self._failure(verdict))
            return
        self.decision = verdict.decision
        self.rule_id = verdict.rule or (",".join(verdict.reports) if verdict.reports else None)
        self.check = verdict.check
        self.tunnel_check = verdict.tunnel_check
        self.flow.shape_up = verdict.shape_up
        self.flow.shape_down = verdict.shape_down
        self.task = asyncio.get_running_loop().create_task(self._connect(ssl), name=f"arcus-connect-{self.id}")

    def _failure(self, r: Refusal) -> Refusal:
        if r.code is ErrorCode.REDIRECTED:  # a policy redirect has no meaning in a tunnel: refused
            return Refusal(ErrorCode.DENIED, r.message, rule=r.rule)
        return r

    async def _connect(self, ssl: ssl_module.SSLContext | None) -> None:
        self.opened = time.monotonic()
        conn = await self.connect_upstream(self.host, self.port, tunnel_upstream, ssl)
        self.task = None
        if isinstance(conn, Refusal):
            if self.state != CLOSED:
                self.refuse(conn)
            return
        up: UpstreamConnection = conn.protocol  # type: ignore[assignment]
        if self.state == CLOSED:
            up.close()
            return
        if up.closed or up.transport is None:
            self.refuse(Refusal(ErrorCode.UPSTREAM_CLOSED, f"{self.target} closed the connection at once"))
            return
        self.up = up
        self.peer = conn.peer
        local = up.transport.get_extra_info("sockname")
        if local:
            self.up_local = (str(local[0]).split("%", 1)[0], local[1])
        self.status = 200
        self.upstream_ready()
        if self.state != CLOSED:
            self.start_relay()

    def start_relay(self) -> None:
        """Bytes both ways from now on (the subclass has written its success reply)."""
        up, self.up = self.up, None
        assert up is not None  # upstream_connected keeps the upstream for this
        down, eof, paused = take_early(up)
        self.state = RELAY
        self.flow.resume_client(BUFFER)
        data, self.buf = bytes(self.buf), bytearray()
        self.start_tunnel(up, data, down, self.client_eof, eof)
        if paused and self.tunnel is not None and not self.flow.upstream_paused and up.transport is not None:
            up.transport.resume_reading()

    # ------------------------------------------------------------------ the end

    def count_error(self, code: ErrorCode) -> None:
        self.error_code = code
        self.srv_stats.errors[code] += 1
        self.ten_stats.errors[code] += 1

    def refuse(self, failure: Refusal, linger: bool | None = None) -> None:
        """Count and answer ``failure``, then close (``linger``: gracefully; by default when the
        client may still be sending)."""
        if self.state == CLOSED:
            return
        self.count_error(failure.code)
        self.status = failure.status
        if failure.side == "forbidden" or failure.status == 403:
            self.decision = "deny"
            self.rule_id = failure.rule or self.rule_id
        try:
            self.refused(failure)
        finally:
            self.close(linger=(bool(self.buf) if linger is None else linger) and not self.client_eof)

    def fail(self, code: ErrorCode, message: str) -> None:
        """A protocol error (the subclass has written whatever reply applies): count it and close."""
        if self.state == CLOSED:
            return
        log.debug("connection %s: %s", self.id, message)
        self.count_error(code)
        self.status = self.status or 400
        self.close(linger=not self.client_eof)

    def close(self, linger: bool = False) -> None:
        """Close after what was written has been sent."""
        if self.state == CLOSED and self.ended:
            return
        self._teardown()
        super().close(linger)

    def _teardown(self) -> None:
        self.state = CLOSED
        self.teardown()

    def record_connection(self) -> None:
        records.record(  # positional up to sni: see records.record
            self, "connection", self.host, self.port, self.audit_method(), None, self.status, self.bytes_up,
            self.bytes_down, time.monotonic() - self.started, self.decision, self.rule_id, self.error_code, None,
            sni=self.sni_seen, inspection=self.inspection, detail=self.tunnel_detail,
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
            if self.heard or self.bytes_up:  # a handshake begun and not finished; silence is no error
                self.count_error(ErrorCode.CLIENT_TIMEOUT)
                self.status = self.status or ErrorCode.CLIENT_TIMEOUT.status
            self.handshake_timeout()
            self.close()
        elif state == RELAY:
            self.count_error(ErrorCode.TUNNEL_IDLE)
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
