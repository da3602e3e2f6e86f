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
   the socket, ``arcus.serve.tls_side``): ALPN offers http/1.1 only, so a client offering h2
   speaks HTTP/1.1;
5. runs the decrypted bytes through an ``InterceptedHttp`` (``arcus.serve.intercept_http``): an
   ``HttpProxyConnection`` with the ``InterceptRouting`` strategy: the same machine, exchange,
   admission (rate limits, method and path rules), block page, records and pool as plain HTTP, its first request
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

from arcus.errors import ErrorCode, OperatorError, Refusal
from arcus.proto.tls import ClientHello, parse_client_hello
from arcus.serve.flow import BUFFER
from arcus.serve.http_proxy import HttpProxyConnection
from arcus.serve.intercept_http import InterceptedHttp, InterceptRouting
from arcus.serve.tls_side import TlsSide
from arcus.serve.upstream import UpstreamConnection
from arcus.tls.castore import CAStore
from arcus.tls.certcache import Leaf, LeafFactory
from arcus.tls.contexts import intercept_client_context, intercept_upstream_context
from arcus.tls.leaf import Upstream

log = logging.getLogger("arcus.serve")

MAX_HELLO = 64 * 1024  # a ClientHello longer than this is not waited for: spliced
CA_TTL = 30.0  # seconds a tenant's CA stays loaded (a rotation is seen within this)
CA_CHECK_INTERVAL = 30.0  # seconds between two reads of every CA in use (Interception.watch_cas)


class Interception:
    """The daemon's interception state: the CA store, the leaf factory, TLS contexts."""

    def __init__(self, data_dir: Path, *, workers: int = 2) -> None:
        self.cas = CAStore(data_dir)
        self.leaves = LeafFactory(workers=workers)
        self._ca: dict[str, tuple[float, Any]] = {}
        self._server: OrderedDict[Path, ssl.SSLContext] = OrderedDict()
        self._upstream: OrderedDict[tuple, ssl.SSLContext] = OrderedDict()
        self.ca_failures = 0  # CAs that could not be read (``ctl health`` says so for a minute)

    async def ca(self, tenant: str) -> Any:
        """The CA that signs ``tenant``'s leaves (its own, else the box's); OperatorError if none.

        Read again every CA_TTL seconds (a rotation is seen then). A CA that can no longer be
        read (its key file damaged or gone) does not stop interception: the one already loaded
        stays in use, and the failure is logged once per CA_TTL until the files are mended."""
        now = time.monotonic()
        hit = self._ca.get(tenant)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            ca, _ = await asyncio.to_thread(self.cas.resolve, tenant)
        except OperatorError as exc:
            self.ca_failures += 1
            if hit is None:
                raise
            log.error("the CA of tenant %s cannot be read again (%s); still signing with the one loaded before",
                      tenant, exc.message)
            self._ca[tenant] = (now + CA_TTL, hit[1])
            return hit[1]
        self._ca[tenant] = (now + CA_TTL, ca)
        return ca

    def check_cas(self) -> dict[str, str]:
        """Read every CA in use -- the box's and each tenant's own -- as a tunnel would; the ones
        that cannot be read: ``{who: why}`` (``who``: "" for the box, else the tenant). A home
        without a CA is no problem here (a tunnel to intercept then says so). Blocking: run it
        in a thread."""
        bad: dict[str, str] = {}
        try:
            tenants = self.cas.tenants_with_own()
        except OSError as exc:
            return {"": f"the CA directory {self.cas.root} cannot be listed: {exc.strerror or exc}"}
        for tenant in (None, *tenants):
            try:
                self.cas.current(tenant)
            except OperatorError as exc:
                bad[tenant or ""] = exc.message
        return bad

    async def watch_cas(self, interval: float = CA_CHECK_INTERVAL) -> None:
        """Read every CA at once and then every ``interval`` seconds, so a CA damaged while the
        daemon was down, or while no tunnel was intercepted, is known before a client meets it:
        logged once when it turns unreadable (and once when it is readable again), and counted
        in ``ca_failures`` at every look while it stays so (``ctl health``: ``ca_unreadable``)."""
        broken: dict[str, str] = {}
        while True:
            bad = await asyncio.to_thread(self.check_cas)
            self.ca_failures += len(bad)
            for owner, why in bad.items():
                if broken.get(owner) != why:
                    log.error("the CA of %s cannot be read: %s; its tunnels to intercept use the CA loaded before, "
                              "if any, or are refused", _whose(owner), why)
            for owner in broken.keys() - bad.keys():
                log.info("the CA of %s can be read again", _whose(owner))
            broken = bad
            await asyncio.sleep(interval)

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


def _whose(owner: str) -> str:
    return f"tenant {owner!r}" if owner else "the box"


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


# ---------------------------------------------------------------------------------- the hand-over


class Interceptor:
    """Takes a tunnel's place on its owner from the ClientHello on (same interface as ``Tunnel``)."""

    def __init__(self, tunnel: Any, icpt: Any) -> None:
        self.tunnel = tunnel
        self.owner = tunnel.owner
        self.icpt = icpt
        self.buf = bytearray()
        self.sni: str | None = tunnel.sni
        self.inspection = tunnel.inspection  # what the owner's record reads at teardown (protocol, sni)
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

    def from_client_eof(self) -> bool:
        self.client_eof = True
        if self.inner is not None:
            self._client_ended()
        elif self.task is None:
            self._end()
        return True  # taken care of here

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
        # the tunnel's record says what became of its TLS: a CONNECT's exchange, or the
        # connection record of a SOCKS or SNI tunnel (RelayConnection.record_connection)
        owner.tunnel_detail = f"{'intercepted' if decision.intercept else 'spliced'} by {decision.rule}"
        if isinstance(owner, HttpProxyConnection) and owner.m.ex is not None:
            owner.m.ex.detail = owner.tunnel_detail
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
            self._fail(ErrorCode.INTERNAL, f"no CA to sign with: {exc.message}")
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
        routing = InterceptRouting(name, port, ctx, ("intercept", name, self.icpt.upstream_ca, decision.insecure))
        self.side = TlsSide(owner.transport, server_ctx, owner)
        self.tunnel.up = UpstreamConnection()  # the tunnel no longer owns the upstream
        self.inner = InterceptedHttp(owner, self.side, routing, up, failure, detail, sni)
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

    def _fail(self, code: ErrorCode, detail: str | None = None) -> None:
        self.task = None  # called from the setup task itself, or after it: nothing to cancel
        owner = self.owner
        owner.count_error(code)  # every intercepting server has it (HttpProxyConnection, RelayConnection)
        if isinstance(owner, HttpProxyConnection) and owner.m.ex is not None:
            owner.m.ex.error = code  # the CONNECT's record says why the tunnel ended
            if detail is not None:
                owner.m.ex.detail = detail
        self._end()

    def _end(self) -> None:
        if self.inner is not None and not self.inner.ended:
            self.inner.abort("interception ended")
        self.owner.close()
