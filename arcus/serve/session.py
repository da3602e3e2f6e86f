"""One client session, whatever the server's protocol: the part every server shares.

A ``Session`` is the ``asyncio.Protocol`` of one accepted client connection. It

- pins the Snapshot current at accept (an HTTP connection refreshes it per request:
  ``refresh_snapshot``), and the server's config in it;
- identifies the connection's tenant (``arcus.tenancy``: server binding, source address, the
  name a TLS client gave the proxy) and holds its admission ``Gate`` (box, tenant and user
  connection slots, released once at teardown);
- registers in ``Shared.connections`` for ``ctl conns``/``kill``/drain and the deadline
  sweeper, and keeps the per-server and per-tenant connection counters;
- refuses at accept a connection the server or a limit cannot take (``rejected``: by default
  at once; a protocol that can only answer the client's first message overrides it);
- owns the pair's ``Flow`` and, once a tunnel is up, its ``Tunnel``;
- tears down once (``teardown``), emitting the connection record (``record_connection``);
- records a client whose TLS handshake with the proxy failed (``handshake_failed``): counted,
  logged and recorded as any connection that ended in a client error;
- closes gracefully after a refusal (RFC 9112 9.6): the answer is written, the write side is
  half-closed, what the client still sends is read and dropped for a bounded time and size,
  then the connection is closed, so a client that was refused mid-request reads why instead
  of meeting a reset.

A server type implements ``accepted`` (its protocol starts) and the ``asyncio.Protocol`` data
callbacks; everything else is here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import logging
import struct
import termios
import time
from typing import Any, ClassVar

from arcus.config.schema import ServerConfig
from arcus.errors import ErrorCode, EscapeError, Refusal
from arcus.escape.base import Connected
from arcus.escape.hops import HOPS, LINKS, MAX_HOPS
from arcus.serve import records
from arcus.serve.context import Shared, Snapshot, Tracked, client_sni
from arcus.serve.flow import Flow
from arcus.serve.tunnel import Tunnel
from arcus.serve.upstream import UpstreamConnection
from arcus.tenancy.admission import AddressCheck, Gate
from arcus.tenancy.identify import Claims, identify
from arcus.tenancy.views import TenantView, UserView

log = logging.getLogger("arcus.serve")

LINGER = 2.0  # seconds a refused client's remaining input is read and dropped before the close
LINGER_BYTES = 4 * 1024 * 1024  # and at most this much of it


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Session(asyncio.Protocol, Tracked):
    # Set by connection_made before any other callback can run (the first two before anything
    # can fail; a connection whose server is gone ends there, before the gate exists).
    transport: asyncio.Transport
    snap: Snapshot
    conf: ServerConfig  # the server's config in ``snap``; a subclass narrows it with config_type
    tview: TenantView  # the tenant of the current request (identified at accept, then per request)
    gate: Gate
    config_type: ClassVar[type[ServerConfig]] = ServerConfig  # the config class this server type reads

    def __init__(self, shared: Shared, server: str) -> None:
        self.track(shared, server, "default")
        self.conn_tenant = "default"  # the tenant found at accept
        # the connection's own failure, outside any request, for its record: an HTTP head refused
        # before it was a request (400, 414, 431, 408) with the request id its answer showed, or
        # a TLS handshake with the proxy that did not complete (no answer, no id): status, code, id
        self.conn_error: tuple[int, ErrorCode, str | None] | None = None
        self.conn_detail: str | None = None  # what TLS said of a failed handshake, for the record
        self.user: UserView | None = None
        self.client_ip = ""
        self.hops = 0  # times this connection came through the daemon before (arcus.escape.hops)
        self.proxy_sni: str | None = None  # over TLS, the name the client gave the proxy
        self.flow = Flow()
        self.tunnel: Tunnel | None = None
        self.task: asyncio.Task | None = None  # a connect (or TLS setup) in flight
        self.up: UpstreamConnection | None = None  # an upstream not yet (or no longer) in a tunnel
        self.sni_seen: str | None = None  # the server name of a ClientHello seen in the tunnel
        self.check: Any = None  # the per-address policy check handed to the escaper
        self.tunnel_check: Any = None  # the policy on a tunnel's first bytes (admission.TunnelCheck)
        self.inspection: Any = None  # the ended tunnel's Inspection (protocol, sni, refusal), for the record
        self.tunnel_detail: str | None = None  # what interception made of the tunnel's TLS, for the record
        self.ended = False  # torn down
        self.lingering = 0  # bytes dropped while closing gracefully

    # ------------------------------------------------------------------ accept

    def connection_made(self, transport: asyncio.BaseTransport, held: tuple[Gate, Refusal | None] | None = None) -> None:
        """Accepted. ``held``: the gate (with its slots) and the accept-time verdict of a sniffer
        that accepted the connection first and hands it over (``intelli_proxy``)."""
        if not self._register(transport, held):
            return
        conf = self.conf
        if self.srv_stats.conns_active > conf.max_connections or self.shared.draining:
            refused: Refusal | None = Refusal(ErrorCode.SERVER_BUSY, "the proxy is at its connection limit; try again later")
        else:
            refused = self.gate.hold_connection() if held is None else held[1]
        if refused is not None:
            self.rejected(refused)
            return
        self.deadline = time.monotonic() + conf.timeouts.client_header
        self.accepted()

    def handshake_failed(self, transport: Any, code: ErrorCode | None, detail: str) -> None:
        """The client's TLS handshake with the proxy did not complete (``arcus.serve.tls_listen``;
        ``transport``: its ``TlsSide``). The connection is accounted as any accepted one (the
        server's and the tenant's connection counters; the tenant by the client's address, or by
        the name it asked the proxy for if it got that far) and ends at once: its error is
        counted and logged, and its record says why (``code``, ``detail``: what TLS said).
        ``code`` None: the client left without a word, which is no error (as on any server)."""
        if not self._register(transport, None):
            return
        if code is not None:
            log.info("connection %s from %s: TLS handshake with server %s failed (%s): %s", self.id, self.client, self.server, code, detail)
            self.srv_stats.errors[code] += 1
            self.ten_stats.errors[code] += 1
            self.conn_error = (code.status, code, None)
            self.conn_detail = detail
        self.teardown()

    def ended_unheard(self, transport: asyncio.BaseTransport, gate: Gate) -> None:
        """A sniffer's connection (``intelli_proxy``) ended before its first byte told which
        protocol it speaks: the client left, or was timed out after ``client_header``. It is
        accounted and recorded as a connection of this protocol that said nothing (no error,
        as on any server); ``gate``: the one taken at accept, whose slots are released."""
        if self._register(transport, (gate, None)):
            self.teardown()

    def _register(self, transport: asyncio.BaseTransport, held: tuple[Gate, Refusal | None] | None) -> bool:
        """The accept-time bookkeeping: the Snapshot, the server's config, the client, its tenant
        and gate, the counters, the registration. False: the server is gone (aborted at once)."""
        self.transport = transport  # type: ignore[assignment]
        self.flow.client = transport  # type: ignore[assignment]
        shared = self.shared
        snap = shared.snapshot
        self.snap = snap
        conf = snap.servers.get(self.server)
        if not isinstance(conf, self.config_type):
            # the listener outlived its server (or its type) in a reload: refuse rather than hang
            self.ended = True
            self.closed_at_accept()
            transport.abort()  # type: ignore[attr-defined]  # a stream transport
            return False
        self.conf = conf
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.client_ip = str(peer[0]).split("%", 1)[0]
        self.client = host_port(self.client_ip, peer[1])
        if len(LINKS) and shared.host.is_local(self.client_ip):
            self.hops = LINKS.take(peer[1])  # one of our own connections, back: it counts its passes
        self.proxy_sni = client_sni(transport)
        if held is None:
            tv = identify(snap.tenancy, Claims(self.client_ip, conf.tenant, sni=self.proxy_sni)).tenant
            self.gate = Gate(shared, tv, self.client)
        else:
            self.gate = held[0]
            tv = self.gate.tenant
        self.tenant = self.conn_tenant = tv.name
        self.tview = tv
        self.srv_stats = shared.server_counters.get(self.server)
        self.ten_stats = shared.tenant_counters.get(self.tenant)
        self.id = next(shared.ids)
        self.srv_stats.conns_total += 1
        # the tenant's total counts the connection once it is known whose it is (set_tenant), or
        # at its end: one a user@tenant login moves must not count for the tenant it left too
        self.ten_counted = False
        self.srv_stats.conns_active += 1
        self.ten_stats.conns_active += 1
        shared.connections[self.id] = self
        return True

    def closed_at_accept(self) -> None:
        """The connection is dropped before anything (its server is gone); subclasses mark their state."""

    def accepted(self) -> None:
        """The connection may be served: the protocol starts."""

    def rejected(self, refusal: Refusal) -> None:
        """The connection cannot be served (a connection limit). Subclasses answer it."""

    def refresh_snapshot(self) -> None:
        """Take the current Snapshot for what starts now (a new request on a kept-alive
        connection): store changes reach kept-alive connections; what is in flight keeps its own."""
        snap = self.shared.snapshot
        if snap is not self.snap:
            conf = snap.servers.get(self.server)
            if isinstance(conf, self.config_type):  # a reload may have given the name another type
                self.snap = snap
                self.conf = conf

    # ------------------------------------------------------------------ who

    def set_tenant(self, tv: TenantView) -> None:
        """The current request is ``tv``'s: the connection counters follow it (its total counts
        once in each tenant the connection served)."""
        self.tview = tv
        if tv.name != self.tenant:
            self.ten_stats.conns_active -= 1
            self.tenant = tv.name
            self.ten_stats = self.shared.tenant_counters.get(tv.name)
            self.ten_stats.conns_active += 1
            self.ten_stats.conns_total += 1
            self.ten_counted = True
        elif not self.ten_counted:
            self.ten_stats.conns_total += 1
            self.ten_counted = True

    def set_user(self, user: UserView | None) -> None:
        """The current request is ``user``'s (None: nobody's): the user's connection counters
        (``user show``'s usage) follow it, as the tenant's follow ``set_tenant``."""
        old, self.user = self.user, user
        if (old.key if old is not None else None) == (user.key if user is not None else None):
            return
        counters = self.shared.user_counters
        if old is not None:
            counters.get(old.key).conns_active -= 1
        if user is not None:
            c = counters.get(user.key)
            c.conns_active += 1
            c.conns_total += 1

    # ------------------------------------------------------------------ upstream

    async def connect_upstream(self, host: str, port: int, factory: Any, ssl: Any = None) -> Connected | Refusal:
        """Open ``host:port`` through the server's escaper: the one call into the escapers."""
        if self.hops >= MAX_HOPS:
            return Refusal(ErrorCode.LOOP_DETECTED, f"{host_port(host, port)} leads back into this proxy: the connection "
                                                    f"came through it {self.hops} times (a loop)")
        escaper = self.snap.escapers[self.conf.escaper]
        token = HOPS.set(self.hops)  # what the connections opened for this one carry (arcus.escape.hops)
        try:
            return await escaper.connect(
                host,
                port,
                self.client_ip,
                factory,
                timeout=self.conf.timeouts.upstream_connect,
                ssl=ssl,
                check=self.check,
                user=self.user.name if self.user is not None else None,
            )
        except EscapeError as exc:
            refusal = Refusal.of(exc)
            if refusal.code is ErrorCode.DENIED and isinstance(self.check, AddressCheck) and self.check.rule:
                # refused on a resolved address by a policy rule: reported with that rule
                refusal = dataclasses.replace(refusal, rule=self.check.rule)
            return refusal
        except Exception as exc:  # noqa: BLE001 - a bug must answer, not hang the client
            log.exception("connect failed unexpectedly")
            return Refusal(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")
        finally:
            HOPS.reset(token)

    # ------------------------------------------------------------------ tunnel

    def start_tunnel(self, up: UpstreamConnection, early_up: bytes, early_down: bytes, client_eof: bool, up_eof: bool) -> None:
        """Relay bytes both ways from now on (the success reply is written)."""
        tunnel = self.tunnel = Tunnel(self, self.flow, up)
        tunnel.start(self.conf.timeouts.tunnel_idle, early_up, early_down, client_eof, up_eof)

    def tunnel_ended(self) -> None:
        self.close()

    # ------------------------------------------------------------------ backpressure

    def unsent(self) -> int:
        """Bytes written for the client that it has not taken: the transport's buffer and the
        kernel's send queue (Linux SIOCOUTQ), which a slow reader drains however slowly."""
        t = self.transport
        n = 0
        try:
            n = t.get_write_buffer_size()
            sock = t.get_extra_info("socket")
            if sock is not None:
                n += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except (OSError, AttributeError, ValueError, TypeError):  # closed, or a transport without a socket
            pass
        return n

    def pause_writing(self) -> None:
        self.flow.client_full()

    def resume_writing(self) -> None:
        self.flow.client_drained()

    # ------------------------------------------------------------------ the end

    def teardown(self) -> None:
        """Once: release the slots, the upstream, the registration; emit the connection record."""
        if self.ended:
            return
        self.ended = True
        self.deadline = 0.0
        self.flow.closed = True
        self.gate.close()
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            self.sni_seen = tunnel.sni
            self.inspection = tunnel.inspection
            tunnel.close()
        self.closing()
        if self.shared.connections.pop(self.id, None) is not None:
            self.srv_stats.conns_active -= 1
            self.ten_stats.conns_active -= 1
            if not self.ten_counted:  # never served a request: counted where it was accepted
                self.ten_stats.conns_total += 1
                self.ten_counted = True
            if self.user is not None:
                self.shared.user_counters.get(self.user.key).conns_active -= 1
            self.record_connection()

    def closing(self) -> None:
        """Release the task in flight and the upstream; a subclass releases what else it holds
        (a UDP socket) and records what was in flight. Called once, at teardown."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        up, self.up = self.up, None
        if up is not None:
            up.close()

    def record_connection(self) -> None:
        """Emit the connection's record; called once, at teardown. By default the connection as
        such (its requests have records of their own); a tunnel server names its destination."""
        status, error, request_id = self.conn_error or (0, "", None)
        records.record(
            self, kind="connection", host="", port=0, method=None, path=None, status=status, up=self.bytes_up,
            down=self.bytes_down, duration=time.monotonic() - self.started, decision=None, rule=None, error=error,
            request_id=request_id, detail=self.conn_detail,
        )

    def close(self, linger: bool = False) -> None:
        """Close after what was written has been sent. ``linger``: the client may still be
        sending a request we refused: close gracefully (see the module's docstring)."""
        self.teardown()
        t = self.transport
        if t.is_closing():
            return
        if not linger:
            t.close()
            return
        t.resume_reading()
        if t.can_write_eof():
            t.write_eof()
        asyncio.get_running_loop().call_later(LINGER, self._linger_over)

    def linger_data(self, data: bytes) -> None:
        """Client bytes after the end: dropped, bounded."""
        self.lingering += len(data)
        if self.lingering > LINGER_BYTES:
            self.transport.abort()

    def _linger_over(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def abort(self, reason: str) -> None:
        if self.ended:
            return
        log.info("connection %s aborted: %s", self.id, reason)
        self.teardown()
        self.transport.abort()
