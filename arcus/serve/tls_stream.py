"""`tls_stream`: TCP from the client, TLS to a fixed upstream, the upstream's certificate verified.

Also the upstream-TLS helpers other servers use (``http_rproxy`` with ``upstream_tls``): a
client context per CA file (``arcus.tls.contexts.upstream_context``), built off the event loop (loading the system's roots takes tens
of milliseconds), and the upgrade of an escaper's connection to TLS with our own server name.
The TLS layer is added after the escaper connected, so it works through any escaper chain
and verifies the name the profile says, not the address connected to.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from arcus.config.server.tls_stream import TlsStreamConfig
from arcus.errors import ErrorCode, EscapeError, Refusal
from arcus.serve.relay import CLOSED, CONNECTING, RELAY
from arcus.serve.tcp_stream import TcpStreamConnection
from arcus.tls.contexts import upstream_context


class UpstreamTls:
    """How to speak TLS to one upstream: trusted CAs and the name to verify. The context is
    built on first use in a worker thread and kept for the life of the config that made it
    (a reload re-reads the CA file)."""

    __slots__ = ("cafile", "name", "_ctx", "alpn")

    def __init__(self, cafile: str | None, name: str | None, alpn: tuple[str, ...] = ()) -> None:
        self.cafile = cafile
        self.name = name
        self.alpn = alpn
        self._ctx: ssl.SSLContext | None = None

    async def context(self) -> ssl.SSLContext:
        ctx = self._ctx
        if ctx is None:
            ctx = await asyncio.to_thread(upstream_context, self.cafile, self.name, alpn=self.alpn)
            self._ctx = ctx
        return ctx

    async def wrap(self, transport: asyncio.Transport, protocol: asyncio.Protocol, host: str, timeout: float) -> asyncio.Transport:
        """Upgrade ``transport`` (already connected by an escaper) to TLS; the new transport.

        Raises EscapeError(code=ErrorCode.UPSTREAM_TLS) when the handshake or the
        verification fails, or "upstream_timeout" (504) when it does not finish in ``timeout``.
        """
        name = self.name or host
        try:
            ctx = await self.context()
        except (OSError, ssl.SSLError) as exc:
            transport.abort()
            raise EscapeError(f"cannot load the CA file {self.cafile}: {exc}", code=ErrorCode.INTERNAL) from None
        loop = asyncio.get_running_loop()
        try:
            tls = await asyncio.wait_for(
                loop.start_tls(transport, protocol, ctx, server_side=False, server_hostname=name, ssl_handshake_timeout=timeout),
                timeout,
            )
        except TimeoutError:
            transport.abort()
            raise EscapeError(f"TLS handshake with {name} timed out after {timeout:g}s", code=ErrorCode.UPSTREAM_TIMEOUT) from None
        except (ssl.SSLError, ssl.CertificateError, OSError, ConnectionError) as exc:
            transport.abort()
            reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            raise EscapeError(f"TLS with the upstream {name} failed: {reason}", code=ErrorCode.UPSTREAM_TLS) from None
        if tls is None:  # start_tls gives None when the connection is already closing
            raise EscapeError(f"TLS with the upstream {name} failed: the connection closed", code=ErrorCode.UPSTREAM_TLS)
        return tls


# ------------------------------------------------------------------------------------ the server

_contexts: dict[int, tuple[object, UpstreamTls]] = {}


def _tls_of(conf) -> UpstreamTls:
    """The UpstreamTls of this config object (a reload makes a new one: the CA file is re-read)."""
    entry = _contexts.get(id(conf))
    if entry is None or entry[0] is not conf:
        if len(_contexts) > 32:
            _contexts.clear()
        entry = _contexts[id(conf)] = (conf, UpstreamTls(conf.tls_ca, conf.tls_name))
    return entry[1]


EOF_GRACE = 2.0  # after the client's EOF, how long a quiet TLS upstream is kept for its answer


class TlsStreamConnection(TcpStreamConnection):
    """``tcp_stream`` whose upstream connections are TLS, verified (``tls_ca`` or the system's
    roots, name ``tls_name`` or the upstream's host). A failed verification is a failed
    upstream: the next one is tried.

    An asyncio TLS transport cannot be half-closed (no ``write_eof``), so the client's EOF
    cannot be passed on: instead the upstream is given EOF_GRACE seconds of silence to finish
    its answer (each byte it sends restarts the wait), then both sides are closed.
    """

    config_type = TlsStreamConfig
    conf: TlsStreamConfig

    ctx = None

    def handshake_started(self) -> None:
        tls = _tls_of(self.conf)
        if tls._ctx is not None:
            self.ctx = tls._ctx
            super().handshake_started()
            return
        # first connection of this config: the context is built off the loop (CA files)
        self.state = CONNECTING
        self.deadline = 0.0
        self.task = asyncio.get_running_loop().create_task(self._prepare(tls), name=f"arcus-tls-{self.id}")

    async def _prepare(self, tls: UpstreamTls) -> None:
        try:
            ctx = await tls.context()
        except (OSError, ssl.SSLError) as exc:
            self.task = None
            self.refuse(Refusal(ErrorCode.INTERNAL, f"cannot load the CA file {tls.cafile}: {exc}"))
            return
        self.task = None
        if self.state == CLOSED:
            return
        self.ctx = ctx
        TcpStreamConnection.handshake_started(self)

    def upstream_ssl(self):
        return self.ctx

    def eof_received(self) -> bool | None:
        keep = super().eof_received()
        self._eof_grace()
        return keep

    def start_relay(self) -> None:
        super().start_relay()
        if self.client_eof:
            self._eof_grace()

    def _eof_grace(self) -> None:
        upt = self.tunnel.upt if self.tunnel is not None else None
        if self.state == RELAY and upt is not None and not upt.can_write_eof():
            self.idle_window = min(self.idle_window or EOF_GRACE, EOF_GRACE)
            self.deadline = time.monotonic() + self.idle_window
            # the bytes that came before the EOF are not activity within the grace: only the
            # upstream's answer moves the deadline on (it waited a second window: 5 s, not 2)
            self.seen_activity = self.bytes_up + self.bytes_down

    def on_timeout(self) -> None:
        if self.state == RELAY and self.client_eof:
            self.close()  # the grace after the client's EOF is over: not an error
            return
        super().on_timeout()

    def audit_method(self) -> str | None:
        return "TLS STREAM"


def tls_stream_factory(shared, server: str):
    def make() -> TlsStreamConnection:
        return TlsStreamConnection(shared, server)

    return make
