"""The base of the proxy escapers: reach the upstream proxy, run a handshake, hand the tunnel over.

A subclass implements ``handshake(hs, host, port)``: it writes its protocol's requests with
``hs.write`` and reads answers with ``await hs.read(parser)`` (a sans-io parser from
``arcus.proto``: ``parser(buf) -> (value, consumed) | None``). Once it returns, the connection
is the tunnel: the caller's protocol is put on the transport and given the bytes that followed
the handshake; with ``ssl`` the TLS to the destination is started first, inside the tunnel.

The upstream proxy resolves the destination's name, not us: ``check`` (the tenant's
per-address policy) applies to IP-literal destinations only. Our egress guard does not apply
to the destination either (the proxy's loopback is not ours); the proxy's own address is the
operator's choice and is not checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl as ssl_module
from collections.abc import Callable
from typing import Any, TypeVar

from arcus.config.escaper._common import is_ip, split_upstream
from arcus.config.escaper.proxy_http import UpstreamProxyConfig
from arcus.errors import ErrorCode, EscapeError, ProtocolError
from arcus.escape.base import Connected, Escaper, describe_os_error, format_peer, set_nodelay
from arcus.escape.hops import LISTENING, create_connection
from arcus.escape.race import RaceFailed, staggered_race
from arcus.resolve.base import Resolver, ip_literal

T = TypeVar("T")

MAX_HANDSHAKE = 65536  # bytes of an upstream's handshake answer we buffer at most
PROXY_RACE_DELAY = 0.25  # happy eyeballs between the addresses of a proxy given by name


class HandshakeClosed(Exception):
    """The upstream proxy closed the connection during the handshake."""


class Handshake(asyncio.Protocol):
    """The protocol on the proxy connection until the tunnel is up: buffers what the proxy says."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.lost = False
        self.lost_exc: Exception | None = None
        self._waiter: asyncio.Future | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > MAX_HANDSHAKE and self.transport is not None:
            self.transport.pause_reading()  # read() reports it; bounded either way
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # keep the transport open: bytes before the EOF may still be the tunnel's

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_exc = exc
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def read(self, parser: Callable[[bytearray], tuple[T, int] | None]) -> T:
        """The next message the parser finds; raises HandshakeClosed or ProtocolError."""
        while True:
            parsed = parser(self.buf)
            if parsed is not None:
                value, used = parsed
                del self.buf[:used]
                return value
            if len(self.buf) > MAX_HANDSHAKE:
                raise ProtocolError(f"handshake answer larger than {MAX_HANDSHAKE} bytes", side="upstream", status=502)
            if self.eof or self.lost:
                raise HandshakeClosed()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter


class UpstreamProxyEscaper(Escaper):
    """Common to proxy_http, proxy_https and proxy_socks5."""

    protocol_name = ""  # "HTTP", "SOCKS5": for messages
    config: UpstreamProxyConfig

    def __init__(
        self,
        config: UpstreamProxyConfig,
        resolver: Resolver | None,
        tls: ssl_module.SSLContext | None = None,
        tls_name: str | None = None,
    ) -> None:
        """``tls``: TLS to the proxy itself (proxy_https), verified for ``tls_name`` (default: the proxy's host)."""
        super().__init__(config)
        self.resolver = resolver
        self.proxy = config.proxy
        self.proxy_host, self.proxy_port = split_upstream(self.proxy)
        self.username = config.username
        self.password = config.password
        self.tls = tls
        self.tls_name = tls_name or self.proxy_host

    def probe_address(self) -> tuple[str, int] | None:
        return (self.proxy_host, self.proxy_port)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "proxy": self.proxy, "auth": self.username is not None}

    async def handshake(self, hs: Handshake, host: str, port: int) -> None:
        raise NotImplementedError

    def _fail(
        self, message: str, code: ErrorCode = ErrorCode.UPSTREAM_CONNECT, *, hop: bool = False, socks5: int | None = None
    ) -> EscapeError:
        """``hop``: the failure is reaching the upstream proxy itself (``EscapeError.hop``)."""
        return EscapeError(message, code=code, hop=self.name if hop else None, socks5=socks5)

    async def connect(
        self, host, port, client_ip, protocol_factory, *, timeout, ssl=None, check=None, user=None
    ) -> Connected:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        literal = ip_literal(host)
        if literal is not None and check is not None:
            verdict = check(literal)
            if isinstance(verdict, str):
                raise self._fail(f"destination {host}:{port} refused: {verdict}", ErrorCode.DENIED)
        transport, hs, peer = await self._open(deadline, timeout)
        try:
            try:
                await asyncio.wait_for(self.handshake(hs, host, port), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise self._fail(
                    f"upstream proxy {self.proxy} ({self.name}) did not answer the {self.protocol_name} handshake "
                    f"within {timeout:g}s",
                    ErrorCode.UPSTREAM_TIMEOUT,
                    hop=True,
                ) from None
            except HandshakeClosed:
                raise self._fail(
                    f"upstream proxy {self.proxy} ({self.name}) closed the connection during the "
                    f"{self.protocol_name} handshake",
                    hop=True,
                ) from None
            except ProtocolError as exc:
                raise self._fail(
                    f"upstream proxy {self.proxy} ({self.name}) broke the {self.protocol_name} protocol: {exc.message}",
                    ErrorCode.UPSTREAM_PROTOCOL,
                    hop=True,
                ) from None
            if hs.lost:
                raise self._fail(f"upstream proxy {self.proxy} ({self.name}) closed the tunnel at once")
            return await self._hand_over(transport, hs, peer, host, protocol_factory, ssl, deadline, timeout)
        except BaseException:
            transport.abort()
            raise

    async def _open(self, deadline: float, timeout: float) -> tuple[asyncio.Transport, Handshake, str]:
        """Connect (and with TLS, handshake) to the upstream proxy; its addresses raced."""
        loop = asyncio.get_running_loop()
        if is_ip(self.proxy_host):
            addrs = [self.proxy_host]
        else:
            assert self.resolver is not None  # the loader requires one for a proxy given by name
            addrs = await self.resolver.resolve(self.proxy_host)

        def attempt(addr: str):
            async def run() -> tuple[asyncio.Transport, Handshake, str]:
                transport, hs = await create_connection(
                    Handshake, addr, self.proxy_port, ssl=self.tls,
                    counted=self.proxy_port in LISTENING and _is_loopback(addr),  # this daemon (arcus.escape.hops)
                    server_hostname=self.tls_name if self.tls is not None else None,
                    ssl_handshake_timeout=max(0.001, deadline - loop.time()) if self.tls is not None else None,
                )
                set_nodelay(transport)
                return transport, hs, format_peer(addr, self.proxy_port)

            return run

        try:
            _, opened = await staggered_race(
                [attempt(a) for a in addrs], PROXY_RACE_DELAY, deadline, lambda o: o[0].abort(),
                name=f"arcus-proxy-{self.name}",
            )
            return opened
        except RaceFailed as failed:
            errors = [e for e in failed.errors if e is not None and not isinstance(e, TimeoutError)]
            if failed.timed_out or not errors:
                raise self._fail(
                    f"connecting to upstream proxy {self.proxy} ({self.name}) timed out after {timeout:g}s",
                    ErrorCode.UPSTREAM_TIMEOUT,
                    hop=True,
                ) from None
            first = errors[0]
            if isinstance(first, ssl_module.SSLCertVerificationError):
                raise self._fail(
                    f"upstream proxy {self.proxy} ({self.name}): certificate not trusted: {first.verify_message}",
                    ErrorCode.UPSTREAM_TLS,
                    hop=True,
                ) from None
            if isinstance(first, ssl_module.SSLError):
                raise self._fail(
                    f"upstream proxy {self.proxy} ({self.name}): TLS failed: {first.reason or first}", ErrorCode.UPSTREAM_TLS, hop=True
                ) from None
            raise self._fail(
                f"cannot connect to upstream proxy {self.proxy} ({self.name}): {describe_os_error(first)}", hop=True
            ) from None

    async def _hand_over(
        self,
        transport: asyncio.Transport,
        hs: Handshake,
        peer: str,
        host: str,
        protocol_factory,
        ssl: ssl_module.SSLContext | None,
        deadline: float,
        timeout: float,
    ) -> Connected:
        loop = asyncio.get_running_loop()
        rest = bytes(hs.buf)
        protocol = protocol_factory()
        if ssl is not None:
            if rest:
                raise self._fail(
                    f"upstream proxy {self.proxy} ({self.name}) sent data before the TLS handshake with {host}",
                    ErrorCode.UPSTREAM_PROTOCOL,
                )
            try:
                tls_transport = await loop.start_tls(
                    transport,
                    protocol,
                    ssl,
                    server_side=False,
                    server_hostname=host,
                    ssl_handshake_timeout=max(0.001, deadline - loop.time()),
                )
            except TimeoutError:
                raise self._fail(f"TLS with {host} through {self.name} timed out", ErrorCode.UPSTREAM_TIMEOUT) from None
            except ssl_module.SSLCertVerificationError as exc:
                raise self._fail(f"{host}: certificate not trusted: {exc.verify_message}", ErrorCode.UPSTREAM_TLS) from None
            except (ssl_module.SSLError, OSError) as exc:
                raise self._fail(f"TLS with {host} through {self.name} failed: {describe_os_error(exc)}", ErrorCode.UPSTREAM_TLS) from None
            except TypeError:
                # CPython 3.11's asyncio, TLS inside TLS: a failed inner handshake aborts the outer
                # transport with SSLProtocol._abort(exc), which takes no argument, so the real
                # error (often a certificate refused) surfaces as this TypeError.
                raise self._fail(
                    f"TLS with {host} through {self.name} failed (the handshake inside the proxy's TLS; "
                    "certificate not trusted or not valid for the name?)",
                    ErrorCode.UPSTREAM_TLS,
                ) from None
            if tls_transport is None:
                raise self._fail(f"TLS with {host} through {self.name} failed: the tunnel closed")
            protocol.connection_made(tls_transport)
            return Connected(tls_transport, protocol, peer, self.name)  # type: ignore[arg-type]
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if rest:
            protocol.data_received(rest)
        if hs.eof and not transport.is_closing():
            if not protocol.eof_received():
                transport.close()
        return Connected(transport, protocol, peer, self.name)


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
