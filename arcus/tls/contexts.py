"""Every TLS context Arcus uses, one function per purpose.

Pure construction: a function builds an ``ssl.SSLContext`` from what it is given and reads no
file but the certificate, key or CA bundle named in its arguments (blocking: callers on the
event loop run it in a worker thread). Nothing here opens a connection or knows a config type;
the callers pass the paths and names out of their profile objects.

- :func:`listener_context`: a listener's side (HTTPS-to-proxy, http_rproxy sites): the
  profile's certificate and key, and an optional SNI callback. :func:`check_pair` is the same
  load, used by the profile loader to refuse a pair that does not load.
- :func:`proxy_context`: to an upstream proxy (``proxy_https``): its CA file or the system's
  roots; the proxy's name is checked (the caller passes it as ``server_hostname``).
- :func:`origin_context`: to an origin (an ``https://`` request through ``http_proxy``): the
  system's roots or a CA bundle, the host name checked.
- :func:`upstream_context`: to a fixed upstream (``tls_stream``, http_rproxy's
  ``upstream_tls``): like :func:`origin_context`, but a configured name is sent and verified
  whatever host the connection was opened to (often an IP).

- :func:`intercept_client_context`: TLS interception's side towards its client: a leaf signed
  by the tenant's CA; ALPN offers http/1.1 only, so a client offering h2 gets HTTP/1.1.
- :func:`intercept_upstream_context`: interception's side towards the origin: verified like
  :func:`origin_context` (the client's SNI is the name sent and checked), or, for a rule marked
  ``insecure``, not verified at all.

Every context: TLS 1.2 at least (1.3 where the peer has it); clients verify (CERT_REQUIRED,
host name checked) unless an operator's ``insecure`` rule says otherwise.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from typing import Any

HTTP11 = ("http/1.1",)

# The SSLContext.sni_callback signature: (the TLS object, the name sent or None, its context).
SniCallback = Callable[[ssl.SSLObject, "str | None", ssl.SSLContext], "int | None"]


class NamedContext(ssl.SSLContext):
    """A client context that sends and verifies one configured name, whatever name the code
    opening the connection passes (an escaper passes the host it connects to, often an IP).
    asyncio and uvloop both create the TLS object with ``wrap_bio``, so this holds through
    every escaper, ``create_connection(ssl=...)`` and ``start_tls`` alike."""

    tls_name: str = ""

    def wrap_bio(  # type: ignore[override]  # same parameters as ssl.SSLContext.wrap_bio, passed through
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: Any = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.tls_name or server_hostname, session)


def listener_context(
    certificate: str, private_key: str, *, alpn: Sequence[str] = HTTP11, sni_callback: SniCallback | None = None
) -> ssl.SSLContext:
    """A listener's context: TLS 1.2 or later, no compression or renegotiation, ``alpn``
    offered, the PEM chain ``certificate`` with ``private_key``; ``sni_callback`` runs on each
    ClientHello (to record the name, or to swap in another context).

    Raises ``ssl.SSLError`` or ``OSError`` for a pair that does not load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    ctx.load_cert_chain(certificate, private_key)
    if sni_callback is not None:
        ctx.sni_callback = sni_callback
    return ctx


def check_pair(certificate: str, private_key: str) -> None:
    """Load the pair as a listener would; raises ``ssl.SSLError`` or ``OSError`` if it does not load."""
    listener_context(certificate, private_key, alpn=())


def pair_error(exc: ssl.SSLError | OSError) -> str:
    """The reason a pair did not load, for an operator ("the private key does not belong to ...")."""
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    if reason == "KEY_VALUES_MISMATCH":
        return "the private key does not belong to the certificate"
    return str(reason)


def _client(ctx: ssl.SSLContext, ca_file: str | None, alpn: Sequence[str]) -> ssl.SSLContext:
    """Verification on (PROTOCOL_TLS_CLIENT: CERT_REQUIRED, host name checked), TLS 1.2 or
    later; only ``ca_file``'s CAs when given, else the system's roots."""
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def proxy_context(ca_file: str | None) -> ssl.SSLContext:
    """To an upstream proxy over TLS: ``ca_file`` (or the system's roots), HTTP/1.1 by ALPN."""
    return _client(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), ca_file, HTTP11)


def origin_context(ca_file: str | None = None, *, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """To an origin: verified against ``ca_file`` or the system's roots for the host connected to."""
    return _client(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), ca_file, alpn)


def upstream_context(ca_file: str | None, name: str | None, *, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """To a configured upstream (tls_stream, http_rproxy ``upstream_tls``): as
    :func:`origin_context`, and ``name``, when given, is the name sent (SNI) and verified."""
    ctx = NamedContext(ssl.PROTOCOL_TLS_CLIENT)
    if name:
        ctx.tls_name = name
    return _client(ctx, ca_file, alpn)


def intercept_client_context(chain_file: str, key_file: str) -> ssl.SSLContext:
    """Serve an intercepted client: the leaf chain and the CA's leaf key; ALPN http/1.1 only."""
    return listener_context(chain_file, key_file, alpn=HTTP11)


def intercept_upstream_context(ca_file: str | None, name: str | None, *, insecure: bool = False) -> ssl.SSLContext:
    """Dial an intercepted client's origin: ``name`` (the client's SNI) sent and verified against
    ``ca_file`` or the system's roots; ``insecure``: no verification (a lab rule, logged by the caller)."""
    if not insecure:
        return upstream_context(ca_file, name, alpn=HTTP11)
    ctx = NamedContext(ssl.PROTOCOL_TLS_CLIENT)
    if name:
        ctx.tls_name = name
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(list(HTTP11))
    return ctx
