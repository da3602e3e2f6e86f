"""TLS to the client on a listener (HTTPS-to-proxy: ``curl --proxy https://...``).

``tls_listen`` is the ``serve.registry`` listener of ``http_proxy``: a server with ``tls:``
(``arcus.config.server.tls``) gets a listening socket whose clients speak TLS with the
certificate and key of its profile; one without gets a plain one. ``http_rproxy`` with ``tls``
listens through the same :func:`tls_server`.

Arcus ends the client's TLS itself (:class:`TlsTermination`, on the memory BIOs of
``arcus.serve.tls_side``) rather than through asyncio's TLS transport, which cannot half-close:
on the client's close_notify it shuts the connection down at once, so what is still on its way
to the client (the answer of a CONNECT tunnel's origin, a response to a request sent just before)
is dropped. Here close_notify is the client's EOF, given to the session as a TCP FIN is: the
session decides, as over plain TCP, what still goes to the client before the end. The handshake
is bounded by the server's ``timeouts.client_header``; the protocol above (``http_proxy``) sees
a transport (a ``TlsSide``) once it is done. A handshake that does not complete is the
session's too (``Session.handshake_failed``): one connection record, its error counted and
logged, as any connection that ended in a client error.

Certificate rotation: the files are looked at again (their modification times, at most once a
second, on a handshake) and a changed pair is loaded for the next handshakes, so a renewed
certificate needs neither a reload nor a restart. Changing the *paths* in the profile takes
effect when the listener is created again (a restart, or a new listen address).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable

from arcus.config.schema import ServerConfig
from arcus.config.server.http_proxy import HttpProxyServerConfig
from arcus.config.server.tls import TlsListenConfig
from arcus.errors import ErrorCode
from arcus.serve.session import Session
from arcus.serve.tls_side import TlsSide
from arcus.tls.contexts import listener_context

log = logging.getLogger("arcus.serve")

RECHECK = 1.0  # seconds between looks at the certificate files

# TlsTermination states
HANDSHAKE = 0
OPEN = 1  # the session has the connection
CLOSED = 2


class CertificateHolder:
    """The current context of one listener, swapped when the certificate files change."""

    def __init__(self, tls: TlsListenConfig) -> None:
        self.tls = tls
        self.stamp = self._stamp()
        self.context = listener_context(tls.certificate, tls.private_key, sni_callback=self._on_hello)
        self.checked = time.monotonic()

    def _stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        out: list[tuple[int, int, int] | None] = []
        for path in (self.tls.certificate, self.tls.private_key):
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def _on_hello(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        # the name the client used for the proxy itself: tenants can be told apart by it
        sslobj.arcus_sni = name  # type: ignore[attr-defined]
        now = time.monotonic()
        if now - self.checked >= RECHECK:
            self.checked = now
            stamp = self._stamp()
            if stamp != self.stamp and None not in stamp:
                try:
                    fresh = listener_context(self.tls.certificate, self.tls.private_key, sni_callback=self._on_hello)
                except (ssl.SSLError, OSError) as exc:  # a half-written renewal: keep the old pair
                    log.warning("TLS certificate %s not reloaded: %s", self.tls.certificate, exc)
                else:
                    self.context = fresh
                    self.stamp = stamp
                    log.info("TLS certificate %s reloaded", self.tls.certificate)
        if self.context is not ctx:
            sslobj.context = self.context
        return None


class TlsTermination(asyncio.Protocol):
    """The protocol of one connection to a TLS listener: Arcus' end of the client's TLS, with the
    server's protocol (``session``, made at accept) above it.

    The handshake is fed from the socket into a ``TlsSide`` and bounded by ``timeout`` (one
    timer, for the handshake only, as asyncio's own ``ssl_handshake_timeout`` was: the session is
    not a live connection before it). Once it is done the session gets ``connection_made`` with
    the ``TlsSide`` for a transport, then the decrypted bytes. The client's close_notify (or a TCP
    FIN before one) is the session's ``eof_received``, once: a true answer keeps the connection
    open for what is still to be sent, as over TCP; a false one closes it (our close_notify).

    A handshake that does not complete goes to ``session.handshake_failed`` with the code of
    the ``ErrorCode`` table that says how, as for the handshake of any other server: TLS refused
    (plain HTTP, a client that does not trust the certificate and says so, a broken hello):
    ``client_tls``; the client closed after it began: ``client_aborted``; it began and did not
    finish within ``timeout``: ``client_timeout``. A client that sent nothing is no error.
    """

    __slots__ = ("context", "session", "timeout", "raw", "side", "timer", "state", "eof", "heard")

    def __init__(self, context: Callable[[], ssl.SSLContext], session: Session, timeout: float) -> None:
        self.context = context  # the listener's current context (a renewal swaps it)
        self.session = session
        self.timeout = timeout
        self.raw: asyncio.Transport | None = None
        self.side: TlsSide | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.state = HANDSHAKE
        self.eof = False  # the client's EOF went to the session
        self.heard = False  # the client sent handshake bytes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = raw = transport  # type: ignore[assignment]  # a stream transport
        self.side = TlsSide(raw, self.context())  # type: ignore[arg-type]
        self.timer = asyncio.get_running_loop().call_later(self.timeout, self._stalled)

    def data_received(self, data: bytes) -> None:
        side = self.side
        assert side is not None  # connection_made came first
        if self.state == OPEN:
            try:
                plain = side.feed(data)
            except ssl.SSLError as exc:  # a broken record after the handshake: as asyncio, an abort
                self._broken(exc)
                return
            if plain:
                self.session.data_received(plain)
            if side.eof and not self.eof:
                self._client_eof()
            return
        if self.state == HANDSHAKE:
            self.heard = True
            try:
                done = side.handshake(data)
            except ssl.SSLError as exc:
                self._failed(ErrorCode.CLIENT_TLS, getattr(exc, "reason", None) or str(exc))
                return
            if done:
                self._established()

    def _established(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.state = OPEN
        self.session.connection_made(self.side)  # type: ignore[arg-type]  # transport-shaped
        raw = self.raw
        if self.state == OPEN and raw is not None and not raw.is_closing():
            self.data_received(b"")  # what came with the client's last handshake bytes

    def _client_eof(self) -> None:
        self.eof = True
        if not self.session.eof_received() and self.side is not None:
            self.side.close()

    def eof_received(self) -> bool | None:
        if self.state == OPEN:
            if not self.eof:
                self._client_eof()  # a TCP FIN with no close_notify before it: an EOF all the same
            return True  # the session (or _client_eof) closes
        if self.state == HANDSHAKE:
            self._gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == HANDSHAKE:
            self._gone()  # reset by the client
        state, self.state = self.state, CLOSED
        if state == OPEN:
            self.session.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.state == OPEN:
            self.session.pause_writing()

    def resume_writing(self) -> None:
        if self.state == OPEN:
            self.session.resume_writing()

    def _stalled(self) -> None:
        self.timer = None
        if self.state == HANDSHAKE:
            self._failed(ErrorCode.CLIENT_TIMEOUT if self.heard else None,
                         f"the handshake did not complete within {self.timeout:g}s")

    def _gone(self) -> None:
        self._failed(ErrorCode.CLIENT_ABORTED if self.heard else None, "the client closed the connection during the handshake")

    def _failed(self, code: ErrorCode | None, detail: str) -> None:
        """The handshake did not complete: the session records it, the connection is closed (an
        alert TLS wrote is sent first)."""
        self.state = CLOSED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.session.handshake_failed(self.side, code, detail)
        if self.raw is not None:
            self.raw.close()

    def _broken(self, exc: ssl.SSLError) -> None:
        log.debug("TLS from %s broken: %s", self.raw.get_extra_info("peername") if self.raw else "?", exc)
        if self.raw is not None:
            self.raw.abort()


async def tls_server(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], Session],
    host: str,
    port: int,
    context: Callable[[], ssl.SSLContext],
    handshake_timeout: float,
) -> asyncio.AbstractServer:
    """A not-yet-serving listener whose clients speak TLS (``context()``: the context for the
    next handshake) to Arcus (:class:`TlsTermination`) and, inside it, ``factory``'s protocol."""

    def accept() -> TlsTermination:
        return TlsTermination(context, factory(), handshake_timeout)

    return await loop.create_server(accept, host, port, backlog=1024, reuse_address=True, start_serving=False)


async def tls_listen(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], Session], host: str, port: int, config: ServerConfig
) -> asyncio.AbstractServer:
    tls = config.tls if isinstance(config, HttpProxyServerConfig) else None
    if tls is None:
        return await loop.create_server(factory, host, port, backlog=1024, reuse_address=True, start_serving=False)
    holder = await asyncio.to_thread(CertificateHolder, tls)  # reads files: off the loop
    return await tls_server(loop, factory, host, port, lambda: holder.context, config.timeouts.client_header)
