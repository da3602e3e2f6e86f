"""TLS interception: a tunnel's ClientHello terminated with a leaf of the tenant's CA, and the
decrypted HTTP/1.1 run through the same HTTP connection as plain HTTP.

Where it starts: ``Tunnel._first`` (``arcus.serve.tunnel``) sees the first client bytes of every
tunnel. A tunnel whose tenant intercepts (``Snapshot.intercept``, compiled from the profile's
``intercept:`` by ``arcus.policy.intercept``) and whose first bytes are a TLS ClientHello is
handed to an :class:`Interceptor`, which takes the tunnel's place on its owner (the server's
session: ``http_proxy`` after CONNECT, ``socks_proxy``, ``sni_proxy``, ``intelli_proxy``).
Anything else (no TLS, a tenant that does not intercept, a host a rule splices) stays a spliced
tunnel: a tunnel that is not intercepted pays one attribute test, once.

The interceptor, once the ClientHello is complete:

1. decides by the tenant's rules on the client's SNI (else the tunnel's host): splice (the
   bytes go on, the tunnel relays as always) or intercept;
2. starts TLS with the origin on the tunnel's upstream connection (``loop.start_tls``), with
   the client's SNI, verified against the tenant's CA bundle or the system's roots (not at all
   for an ``insecure`` rule: logged each time). A certificate that fails verification is
   fetched once more, unverified, for the record (subject, issuer, error);
3. gets a leaf for the SNI from the tenant's CA (the box's when the tenant has none) through
   the daemon's ``LeafFactory`` (worker threads, coalesced, cached), mirroring the upstream
   certificate's names;
4. answers the client's handshake from memory BIOs (the ClientHello has already been read from
   the socket): ALPN offers http/1.1 only, so a client offering h2 speaks HTTP/1.1;
5. runs the decrypted bytes through an :class:`InterceptedHttp`, an ``HttpProxyConnection``
   with the :class:`InterceptRouting` strategy: the same machine, exchange, admission (rate
   limits, method and path rules), block page, records and pool as plain HTTP, its first request
   on the upstream connection made in step 2. A failed upstream verification answers every
   request with an error page over the intercepted TLS.

Ownership: the owner session stays the ``asyncio.Protocol`` of the client socket and keeps its
record (the CONNECT, the tunnel), its slots and its teardown; the decrypted connection takes the
owner's place in the live-connection registry while it runs (timeouts, ``ctl conns``,
drain) and gives it back at its end.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from cryptography import x509

from arcus.config.schema import ServerConfig
from arcus.errors import ErrorCode, OperatorError, Refusal
from arcus.proto import http1
from arcus.proto.tls import ClientHello, parse_client_hello
from arcus.serve.flow import BUFFER
from arcus.serve.http_exchange import Exchange
from arcus.serve.http_proxy import HttpProxyConnection
from arcus.serve.http_routing import ForwardRouting
from arcus.serve.session import host_port
from arcus.serve.upstream import UpstreamConnection
from arcus.tenancy.admission import Destination
from arcus.tls.castore import CAStore
from arcus.tls.certcache import Leaf, LeafFactory
from arcus.tls.contexts import intercept_client_context, intercept_upstream_context
from arcus.tls.leaf import Upstream

log = logging.getLogger("arcus.serve")

MAX_HELLO = 64 * 1024  # a ClientHello longer than this is not waited for: spliced
CA_TTL = 30.0  # seconds a tenant's CA stays loaded (a rotation is seen within this)
READ = 256 * 1024


class Interception:
    """The daemon's interception state: the CA store, the leaf factory, TLS contexts."""

    def __init__(self, data_dir: Path, *, workers: int = 2) -> None:
        self.cas = CAStore(data_dir)
        self.leaves = LeafFactory(workers=workers)
        self._ca: dict[str, tuple[float, Any]] = {}
        self._server: OrderedDict[Path, ssl.SSLContext] = OrderedDict()
        self._upstream: OrderedDict[tuple, ssl.SSLContext] = OrderedDict()

    async def ca(self, tenant: str) -> Any:
        """The CA that signs ``tenant``'s leaves (its own, else the box's); OperatorError if none."""
        now = time.monotonic()
        hit = self._ca.get(tenant)
        if hit is not None and hit[0] > now:
            return hit[1]
        ca, _ = await asyncio.to_thread(self.cas.resolve, tenant)
        self._ca[tenant] = (now + CA_TTL, ca)
        return ca

    async def server_context(self, leaf: Leaf) -> ssl.SSLContext:
        ctx = self._server.get(leaf.chain_file)
        if ctx is not None:
            self._server.move_to_end(leaf.chain_file)
            return ctx
        ctx = await asyncio.to_thread(intercept_client_context, str(leaf.chain_file), str(leaf.key_file))
        self._server[leaf.chain_file] = ctx
        if len(self._server) > 4096:
            self._server.popitem(last=False)
        return ctx

    async def upstream_context(self, ca_file: str | None, name: str | None, insecure: bool) -> ssl.SSLContext:
        key = (ca_file, name, insecure)
        ctx = self._upstream.get(key)
        if ctx is not None:
            self._upstream.move_to_end(key)
            return ctx
        ctx = await asyncio.to_thread(intercept_upstream_context, ca_file, name, insecure=insecure)
        self._upstream[key] = ctx
        if len(self._upstream) > 4096:
            self._upstream.popitem(last=False)
        return ctx

    def close(self) -> None:
        self.leaves.close()


def split_target(target: str) -> tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` (``Tracked.target``) -> (host, port)."""
    host, _, port = target.rpartition(":")
    if host.startswith("["):
        host = host[1:-1]
    return host, int(port) if port.isdigit() else 443


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def describe_cert(der: bytes | None) -> str:
    if not der:
        return "certificate unavailable"
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return "certificate unreadable"
    return f"subject={cert.subject.rfc4514_string()} issuer={cert.issuer.rfc4514_string()}"


# ---------------------------------------------------------------------------------- TLS side


class TlsSide:
    """The client's TLS, terminated in memory over the raw client transport; transport-shaped,
    so the decrypted HTTP connection writes to it as to a socket."""

    __slots__ = ("raw", "obj", "inc", "out", "owner", "closing", "eof")

    def __init__(self, raw: asyncio.Transport, ctx: ssl.SSLContext, owner: Any) -> None:
        self.raw = raw
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)
        self.owner = owner  # bytes on the wire are counted on the owner's record
        self.closing = False
        self.eof = False  # the client sent close_notify

    def _flush(self) -> None:
        data = self.out.read()
        if data:
            self.owner.bytes_down += len(data)
            self.raw.write(data)

    def handshake(self, data: bytes) -> bool:
        """Feed handshake bytes; True once it is done (raises ssl.SSLError if it failed)."""
        if data:
            self.inc.write(data)
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        finally:
            if self.out.pending:
                self._flush()
        return True

    def feed(self, data: bytes) -> bytes:
        """Decrypt what arrived (raises ssl.SSLError for broken TLS)."""
        if data:
            self.inc.write(data)
        chunks = []
        obj = self.obj
        while True:
            try:
                chunk = obj.read(READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
        if self.out.pending:  # TLS 1.3 key updates
            self._flush()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- asyncio.Transport, as far as the HTTP connection and the tunnel use it

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing or self.raw.is_closing():
            return
        self.obj.write(data)
        self._flush()

    def writelines(self, chunks: Any) -> None:
        for c in chunks:
            self.write(c)

    def is_closing(self) -> bool:
        return self.closing or self.raw.is_closing()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            try:
                self.obj.unwrap()
            except ssl.SSLError:
                pass
            try:
                self._flush()
            except Exception:  # noqa: BLE001 - the raw transport may be gone already
                pass
        self.raw.close()

    def abort(self) -> None:
        self.closing = True
        self.raw.abort()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS cannot be half-closed")

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.raw.set_write_buffer_limits(high=high, low=low)

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.obj
        if name == "arcus_intercepted":
            return True
        return self.raw.get_extra_info(name, default)


# ---------------------------------------------------------------------------------- routing


class InterceptRouting:
    """The routing strategy of a decrypted connection: every request goes to the intercepted
    origin (the client's SNI, or the tunnel's host), over TLS verified as the interception was."""

    def __init__(self, name: str, port: int, ctx: ssl.SSLContext, pool_extra: tuple) -> None:
        self.name = name
        self.port = port
        self.ctx = ctx
        self.extra = pool_extra
        self.forward = ForwardRouting()  # the head that goes upstream is built as for any proxied request

    def configure(self, conn: Any) -> bool:
        return True

    def route(self, conn: Any, req: http1.RequestHead) -> Refusal | None:
        if req.form not in ("origin", "absolute"):
            return Refusal(ErrorCode.BAD_REQUEST, "only origin-form requests are served inside an intercepted connection")
        req.form = "absolute"
        req.scheme = b"https"
        req.host, req.port = self.name, self.port
        return None

    def claims(self, conn: Any, req: http1.RequestHead) -> Any:  # pragma: no cover - admission is the CONNECT's
        raise NotImplementedError

    def destination(self, conn: Any, req: http1.RequestHead) -> Destination:
        return Destination(self.name, self.port, req.method.decode("latin-1"), req.path.decode("latin-1"), False)

    def refusal(self, conn: Any, r: Refusal) -> Refusal:
        return r

    def pool_key_extra(self, conn: Any) -> tuple:
        return self.extra

    def upstream_ssl(self, req: http1.RequestHead) -> ssl.SSLContext:
        return self.ctx

    async def connected(self, conn: Any, connected: Any) -> None:
        """Nothing more: the escaper's TLS is the upstream TLS."""

    def request_headers(self, conn: Any, req: http1.RequestHead) -> list[tuple[bytes, bytes]]:
        return self.forward.request_headers(conn, req)


# ---------------------------------------------------------------------------------- decrypted HTTP


class InterceptedHttp(HttpProxyConnection):
    """The decrypted HTTP/1.1 of one intercepted tunnel: ``HttpProxyConnection`` as it is, on
    the owner's session (tenant, user, gate, counters) and with a TLS side for a transport."""

    config_type = ServerConfig  # the owner's server, whatever its type

    def __init__(self, owner: Any, side: TlsSide, routing: InterceptRouting, up: UpstreamConnection | None,
                 failure: Refusal | None, detail: str | None) -> None:
        super().__init__(owner.shared, owner.server, routing)
        self.name = routing.name  # the intercepted host: the client's SNI, else the tunnel's host
        self.owner = owner
        self.first_up = up  # the connection the interception opened: the first request's
        self.failure = failure  # every request is answered with it (the upstream's TLS failed)
        self.detail = detail  # what the records say besides (a bad certificate, an insecure rule)
        self.transport = side  # type: ignore[assignment]
        self.flow.client = side  # type: ignore[assignment]
        for name in ("snap", "conf", "gate", "tview", "tenant", "conn_tenant", "client_ip", "client", "proxy_sni",
                     "srv_stats", "ten_stats", "id", "user", "started"):
            setattr(self, name, getattr(owner, name))
        self.target = host_port(routing.name, routing.port)
        self._configure()
        owner.flow = self.flow  # the client socket's write backpressure now throttles this pair
        self.deadline = time.monotonic() + self.conf.timeouts.client_idle
        self.shared.connections[self.id] = self  # timeouts, `ctl conns`, drain: ours while we run

    def admit(self, ex: Exchange) -> None:
        """Admission for a decrypted request: who it is was settled at the tunnel (tenant, user,
        slots); the rest (suspension, rate, shapers, policy with method and path) runs per request
        against the current Snapshot."""
        req = ex.req
        refused = self.routing.route(self, req)
        if refused is None:
            refused = self.failure
        if refused is not None:
            self.m.admitted(refused)
            return
        gate = self.gate
        tv = self.snap.tenancy.get(gate.tenant.name)
        gate.tenant = tv
        if gate.user is not None:
            gate.user = tv.users.get(gate.user.name, gate.user)
        self._verdict(gate.admit(self.snap, self.routing.destination(self, req), self.client_ip))

    def refuse(self, ex: Exchange, r: Refusal, keep_alive: bool) -> None:
        if r is self.failure:
            ex.detail = self.detail
            body = _tls_error_page(self.name, r.message, self.detail or "", ex.id)
            self.write_client(ex.answer(502, r.code, r.message, keep_alive, body=body, content_type=b"text/html; charset=utf-8"))
            return
        super().refuse(ex, r, keep_alive)

    def record(self, ex: Exchange) -> None:
        if ex.detail is None and self.detail is not None:
            ex.detail = self.detail
        ex.record(self, self.bytes_up, self.bytes_down, self.name)

    def open_upstream(self, tunnel: bool, reuse: bool) -> bool:
        up, self.first_up = self.first_up, None
        if up is not None and not tunnel:
            if up.usable():
                self._attach(up)
                return True
            up.close()
        return super().open_upstream(tunnel, reuse)

    # -- the end: the owner keeps its record and its registration

    def teardown(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.deadline = 0.0
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.close()
        self.closing()
        up, self.first_up = self.first_up, None
        if up is not None:
            up.close()
        if self.shared.connections.get(self.id) is self:
            self.shared.connections[self.id] = self.owner

    def close(self, linger: bool = False) -> None:
        super().close(False)  # TLS cannot be half-closed: the close_notify goes with the close


def _tls_error_page(host: str, message: str, detail: str, request_id: str) -> bytes:
    from html import escape

    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Upstream certificate not trusted</title></head>"
        f"<body><h1>The site's certificate could not be verified</h1><p>{escape(host)}: {escape(message)}</p>"
        f"<p><code>{escape(detail)}</code></p><p>request id: {escape(request_id)}</p></body></html>\n"
    ).encode()


# ---------------------------------------------------------------------------------- the hand-over


class Interceptor:
    """Takes a tunnel's place on its owner from the ClientHello on (same interface as ``Tunnel``)."""

    def __init__(self, tunnel: Any, icpt: Any) -> None:
        self.tunnel = tunnel
        self.owner = tunnel.owner
        self.icpt = icpt
        self.buf = bytearray()
        self.sni: str | None = tunnel.sni
        self.side: TlsSide | None = None
        self.inner: InterceptedHttp | None = None
        self.task: asyncio.Task | None = None
        self.done = False
        self.client_eof = False
        self.up_lost = False

    @staticmethod
    def take(tunnel: Any, data: bytes, hello: ClientHello | None) -> bool:
        """Called by ``Tunnel._first``: True when the interceptor took the tunnel over."""
        if tunnel.owner.shared.interception is None:
            return False
        me = Interceptor(tunnel, tunnel.icpt)
        me.buf += data
        tunnel.owner.tunnel = me
        tunnel.up.owner = me
        if hello is None:
            tunnel.owner.deadline = time.monotonic() + tunnel.owner.conf.timeouts.client_header
            return True  # the rest of the hello is on its way
        me._hello(hello)
        return True

    # -- the tunnel's interface (the owner calls these)

    def from_client(self, data: bytes) -> None:
        owner = self.owner
        owner.bytes_up += len(data)
        side = self.side
        if side is None or self.inner is None:
            self.buf += data
            if side is not None:
                self._handshake(b"")
            elif self.task is None and self.inner is None:
                self._more_hello()
            return
        try:
            plain = side.feed(data)
        except ssl.SSLError as exc:
            self._client_tls_failed(exc)
            return
        if plain:
            self.inner.data_received(plain)
        if side.eof and not self.inner.ended:
            self._client_ended()

    def from_client_eof(self) -> None:
        self.client_eof = True
        if self.inner is not None:
            self._client_ended()
        elif self.task is None:
            self._end()

    def upstream_data(self, data: bytes) -> None:
        pass  # an origin speaks first only after our request: nothing to keep before the hand-over

    def upstream_eof(self) -> None:
        self.up_lost = True

    def upstream_lost(self, exc: Exception | None) -> None:
        self.up_lost = True

    def upstream_pause(self) -> None:
        pass

    def upstream_resume(self) -> None:
        pass

    def close(self) -> None:
        """The owner is tearing down."""
        self.done = True
        if self.task is not None:
            self.task.cancel()
            self.task = None
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.teardown()
        self.tunnel.close()

    # -- the hello

    def _more_hello(self) -> None:
        try:
            hello = parse_client_hello(self.buf)
        except Exception:  # noqa: BLE001 - a broken hello is the origin's to answer: splice
            hello = None
            self._splice()
            return
        if hello is not None:
            self.sni = self.tunnel.sni = hello.sni
            self._hello(hello)
        elif len(self.buf) > MAX_HELLO:
            self._splice()

    def _hello(self, hello: ClientHello) -> None:
        owner = self.owner
        host, port = split_target(owner.target)
        name = hello.sni or host
        decision = self.icpt.decide(name)
        if not decision.intercept:
            self._splice()
            return
        owner.flow.pause_client(BUFFER)
        t = owner.conf.timeouts
        owner.deadline = time.monotonic() + t.upstream_connect + t.client_header
        owner.idle_window = 0.0
        self.task = asyncio.get_running_loop().create_task(
            self._guarded_setup(host, port, hello.sni, decision), name=f"arcus-intercept-{owner.id}"
        )

    def _splice(self) -> None:
        """Not intercepted: the tunnel relays from here, the hello first."""
        tunnel = self.tunnel
        owner = self.owner
        owner.tunnel = tunnel
        tunnel.up.owner = tunnel
        data, self.buf = bytes(self.buf), bytearray()
        owner.bytes_up -= len(data)  # the tunnel counts them
        tunnel.from_client(data)
        if self.up_lost and not tunnel.done:
            tunnel.upstream_lost(None)
        elif self.client_eof and not tunnel.done:
            tunnel.from_client_eof()

    # -- setting up both sides

    async def _guarded_setup(self, host: str, port: int, sni: str | None, decision: Any) -> None:
        try:
            await self._setup(host, port, sni, decision)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a bug must close the tunnel, not leave the client hanging
            log.exception("interception of %s failed unexpectedly", sni or host)
            self.task = None
            if not self.done:
                self._fail(ErrorCode.INTERNAL)

    async def _setup(self, host: str, port: int, sni: str | None, decision: Any) -> None:
        owner = self.owner
        svc = owner.shared.interception
        name = sni or host
        up: UpstreamConnection = self.tunnel.up
        failure: Refusal | None = None
        detail: str | None = None
        upstream_cert: x509.Certificate | None = None
        try:
            ca = await svc.ca(owner.tenant)
        except OperatorError as exc:
            log.error("cannot intercept %s for tenant %s: %s", name, owner.tenant, exc.message)
            self._fail(ErrorCode.INTERNAL)
            return
        verify_name = None if _is_ip(name) and sni is None else name
        ctx = await svc.upstream_context(self.icpt.upstream_ca, verify_name, decision.insecure)
        if decision.insecure:
            detail = f"insecure: upstream certificate not verified (intercept rule {decision.rule})"
            log.warning("intercepting %s for tenant %s WITHOUT verifying its certificate (rule %s)", name, owner.tenant, decision.rule)
        loop = asyncio.get_running_loop()
        try:
            if self.up_lost or up.transport is None:
                raise ConnectionError("the upstream closed the connection")
            transport = await loop.start_tls(
                up.transport, up, ctx, server_hostname=verify_name or host,
                ssl_handshake_timeout=owner.conf.timeouts.upstream_connect,
            )
            if transport is None:
                raise ConnectionError("the upstream closed the connection during the TLS handshake")
            up.transport = transport  # type: ignore[assignment]
            der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
            upstream_cert = x509.load_der_x509_certificate(der) if der else None
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or str(exc)
            der = await self._fetch_certificate(host, port, verify_name, svc)
            detail = f"{describe_cert(der)} error={reason}"
            failure = Refusal(ErrorCode.UPSTREAM_TLS, f"the certificate of {name} failed verification: {reason}")
            log.info("intercepted %s for tenant %s: upstream certificate refused: %s", name, owner.tenant, detail)
            up.close()
            up = None  # type: ignore[assignment]
        except (ssl.SSLError, OSError, asyncio.TimeoutError, ConnectionError) as exc:
            failure = Refusal(ErrorCode.UPSTREAM_TLS, f"TLS with {name} failed: {exc}")
            detail = f"error={exc}"
            up.close()
            up = None  # type: ignore[assignment]
        if self.done:
            return
        upstream = None
        if upstream_cert is not None:
            try:
                upstream = Upstream.from_certificate(upstream_cert)
            except ValueError:
                upstream = None
        try:
            leaf = await svc.leaves.get(ca, sni, upstream, [host] if _is_ip(host) else ())
        except ValueError:  # an expired upstream certificate (the insecure case): a leaf for the name alone
            leaf = await svc.leaves.get(ca, sni, None, [host] if _is_ip(host) else ())
        server_ctx = await svc.server_context(leaf)
        if self.done:
            return
        self.task = None
        up_ctx = ctx
        routing = InterceptRouting(name, port, up_ctx, ("intercept", name, self.icpt.upstream_ca, decision.insecure))
        self.side = TlsSide(owner.transport, server_ctx, owner)
        self.tunnel.up = UpstreamConnection()  # the tunnel no longer owns the upstream
        self.inner = InterceptedHttp(owner, self.side, routing, up, failure, detail)
        self.inner.flow.resume_client(BUFFER)
        owner.transport.resume_reading()
        self._handshake(b"")

    async def _fetch_certificate(self, host: str, port: int, name: str | None, svc: Interception) -> bytes | None:
        """The certificate an upstream presented and we refused, fetched again unverified."""
        ctx = await svc.upstream_context(None, name, True)
        conn = await self.owner.connect_upstream(host, port, UpstreamConnection, ctx)
        if isinstance(conn, Refusal):
            return None
        try:
            obj = conn.transport.get_extra_info("ssl_object")
            return obj.getpeercert(binary_form=True) if obj is not None else None
        finally:
            conn.transport.close()

    def _handshake(self, data: bytes) -> None:
        side = self.side
        assert side is not None and self.inner is not None
        pending, self.buf = bytes(self.buf) + data, bytearray()
        try:
            if not side.handshake(pending):
                return
        except ssl.SSLError as exc:
            self._client_tls_failed(exc)
            return
        try:
            plain = side.feed(b"")
        except ssl.SSLError as exc:
            self._client_tls_failed(exc)
            return
        self.from_client_plain(plain)

    def from_client_plain(self, plain: bytes) -> None:
        inner = self.inner
        assert inner is not None
        self.tunnel.first = False
        if plain:
            inner.data_received(plain)
        if self.client_eof and not inner.ended:
            self._client_ended()

    def _client_ended(self) -> None:
        inner = self.inner
        assert inner is not None
        if not inner.eof_received():
            inner.close()

    def _client_tls_failed(self, exc: ssl.SSLError) -> None:
        reason = getattr(exc, "reason", None) or str(exc)
        log.info("intercepted client %s refused TLS with our certificate: %s", self.owner.client, reason)
        self._fail(ErrorCode.CLIENT_TLS)

    def _fail(self, code: ErrorCode) -> None:
        owner = self.owner
        owner.count_error(code)  # every intercepting server has it (HttpProxyConnection, RelayConnection)
        if isinstance(owner, HttpProxyConnection) and owner.m.ex is not None:
            owner.m.ex.error = code  # the CONNECT's record says why the tunnel ended
        self._end()

    def _end(self) -> None:
        if self.inner is not None and not self.inner.ended:
            self.inner.abort("interception ended")
        self.owner.close()
