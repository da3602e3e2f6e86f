"""How an HTTP request finds its destination: forward or reverse proxying, as a strategy object.

The HTTP connection (``arcus.serve.http_machine.HttpMachine``, run by the asyncio adapter
``arcus.serve.http_proxy.HttpProxyConnection``) runs every request the same way (parse, admit,
connect or reuse, forward, relay, record); where forward and reverse proxying differ the adapter
asks its ``Routing``:

- ``configure(conn)``: once per connection (a reverse proxy checks its TLS setting, loads its
  sites); False: the connection was aborted;
- ``route(conn, req)``: accept the request's form and turn it into the request that leaves
  (a reverse proxy picks the site by Host and points the request at its upstream), or refuse;
- ``claims(conn, req)``: what the request says about who it is (a reverse proxy has no proxy
  credentials); a refusal when what it says is malformed;
- ``destination(conn, req)``: what the policy sees (a reverse proxy: the host the client asked
  for, not the upstream);
- ``refusal(conn, r)``: a last word on a refusal (a reverse proxy cannot ask for credentials);
- ``local_page(conn, req)``: a page the proxy answers itself instead of routing the request
  (``http_proxy``: the CA onboarding page, ``arcus.serve.onboard``), or None; asked only for
  a request to one of the names in ``local_hosts`` (so other requests pay a set lookup);
- ``retry_upstream(conn, req, refusal)``: the upstream failed to connect (the request was not
  sent): point ``req`` at another one and say True, or False (a reverse proxy site with several
  upstreams fails over; a forward proxy's client chose its destination);
- ``pool_key_extra(conn)`` (or None: nothing), ``upstream_ssl(req)``, ``connected(conn, conn)``,
  ``request_headers(conn, req)``: what else keys a pooled upstream, TLS the escaper starts,
  what to do with a fresh connection (TLS to a site's upstream, after the escaper), and the
  head that goes upstream.

``ForwardRouting`` is ``http_proxy``'s; ``ReverseRouting`` (``arcus.serve.http_rproxy``) is
``http_rproxy``'s. A routing object is made per connection and may keep per-connection state.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from arcus.errors import ErrorCode, Refusal
from arcus.escape.base import Connected
from arcus.proto import http1
from arcus.proto.http1 import CHUNKED
from arcus.serve import onboard
from arcus.tenancy.admission import Destination
from arcus.tenancy.identify import X_TENANT_ID, Claims, parse_basic, scan_headers
from arcus.tls.contexts import origin_context

VIA = b"1.1 arcus"
VIA_10 = b"1.0 arcus"  # to an HTTP/1.0 request

_client_ssl: ssl.SSLContext | None = None


def origin_ssl() -> ssl.SSLContext:
    """TLS to an origin for an https:// request: the system's roots, the name verified."""
    global _client_ssl
    if _client_ssl is None:
        _client_ssl = origin_context()
    return _client_ssl


def via(req: http1.RequestHead) -> bytes:
    return VIA_10 if req.version == b"1.0" else VIA


class ForwardRouting:
    """``http_proxy``: absolute-form requests and CONNECT; the client names the destination."""

    def configure(self, conn: Any) -> bool:
        return True

    def route(self, conn: Any, req: http1.RequestHead) -> Refusal | None:
        if req.form not in ("authority", "absolute"):
            return Refusal(
                ErrorCode.NOT_A_PROXY_REQUEST, "this is a proxy: send an absolute URI (http://host/path) or CONNECT host:port"
            )
        return None

    local_hosts = onboard.ONBOARD_NAMES

    def local_page(self, conn: Any, req: http1.RequestHead) -> Callable[[Any, Any], None] | None:
        return onboard.serve if onboard.wanted(req) else None

    def claims(self, conn: Any, req: http1.RequestHead) -> tuple[Claims, Refusal | None]:
        conf = conn.conf
        if not (conn.snap.tenancy.any_users or conf.trusted_proxies):
            # nothing in the request can change who it is: the connection's own claims, made once per config
            known = conn.own_claims
            if known is None or known[0] is not conf:
                known = conn.own_claims = (conf, Claims(conn.client_ip, conf.tenant, conf.trusted_proxies, conn.proxy_sni))
            return known[1], None
        username = password = header = None
        refusal = None
        auth_value, tenant_hdr = scan_headers(req.headers)
        if tenant_hdr is not None:
            header = tenant_hdr.decode("latin-1")
        if auth_value is not None:
            creds = parse_basic(auth_value)
            if creds is None:
                refusal = Refusal(ErrorCode.AUTH_REQUIRED, "malformed Proxy-Authorization (expected Basic credentials)")
            else:
                username, password = creds
        claims = Claims(conn.client_ip, conf.tenant, conf.trusted_proxies, conn.proxy_sni, username, password, header)
        return claims, refusal

    def destination(self, conn: Any, req: http1.RequestHead) -> Destination:
        assert req.host is not None and req.port is not None  # route() admits only forms that name them
        tunnel = req.form == "authority"
        return Destination(req.host, req.port, req.method.decode("latin-1"), None if tunnel else req.path.decode("latin-1"), tunnel)

    def refusal(self, conn: Any, r: Refusal) -> Refusal:
        return r

    pool_key_extra = None  # the pool key says it all

    def retry_upstream(self, conn: Any, req: http1.RequestHead, failure: Refusal) -> bool:
        return False

    def upstream_ssl(self, req: http1.RequestHead) -> ssl.SSLContext | None:
        """TLS the escaper starts with the origin (an https:// request), verified for its host."""
        return origin_ssl() if req.scheme == b"https" else None

    async def connected(self, conn: Any, connected: Connected) -> None:
        """A fresh upstream connection, before the request goes on it (raises EscapeError)."""

    def request_headers(self, conn: Any, req: http1.RequestHead) -> list[tuple[bytes, bytes]]:
        assert req.host is not None
        headers = http1.forward_headers(req.headers, req.connection_tokens)
        host = f"[{req.host}]" if ":" in req.host else req.host
        if req.port != (443 if req.scheme == b"https" else 80):
            host = f"{host}:{req.port}"
        out = [(b"Host", host.encode())]
        for name, value in headers:
            n = len(name)
            if (n == 4 and name.lower() == b"host") or (n == 11 and name.lower() == X_TENANT_ID):
                continue
            out.append((name, value))
        out.append((b"Via", VIA_10 if req.version == b"1.0" else VIA))  # via(req), inline on the hot path
        if req.framing == CHUNKED:
            out.append((b"Transfer-Encoding", b"chunked"))
        if req.upgrade:
            # a protocol switch (WebSocket) must reach the origin: Upgrade is hop-by-hop, so it is re-added
            out.extend((n, v) for n, v in req.headers if len(n) == 7 and n.lower() == b"upgrade")
            out.append((b"Connection", b"upgrade"))
        elif req.version == b"1.0":
            out.append((b"Connection", b"close"))
        return out
