"""TLS to the client on a listener (HTTPS-to-proxy: ``curl --proxy https://...``).

``tls_listen`` is the ``serve.registry`` listener of ``http_proxy``: a server with ``tls:``
(``arcus.config.server.tls``) gets a TLS listening socket with the certificate and key of its
profile; one without gets a plain one. The handshake is bounded by the server's
``timeouts.client_header``; the protocol above it (``http_proxy``) sees a normal transport.

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
from arcus.tls.contexts import listener_context

log = logging.getLogger("arcus.serve")

RECHECK = 1.0  # seconds between looks at the certificate files


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


async def tls_listen(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol], host: str, port: int, config: ServerConfig
) -> asyncio.AbstractServer:
    tls = config.tls if isinstance(config, HttpProxyServerConfig) else None
    if tls is None:
        return await loop.create_server(factory, host, port, backlog=1024, reuse_address=True, start_serving=False)
    holder = await asyncio.to_thread(CertificateHolder, tls)  # reads files: off the loop
    return await loop.create_server(
        factory,
        host,
        port,
        backlog=1024,
        reuse_address=True,
        start_serving=False,
        ssl=holder.context,
        ssl_handshake_timeout=config.timeouts.client_header,
    )
