"""`http_rproxy`: a reverse proxy. The request's Host picks a site; the site names its upstream.

The HTTP machinery is the one HTTP connection's (``arcus.serve.http_proxy``: keep-alive, bodies
forwarded as they come, chunked scanning, the upstream pool, Upgrade/WebSocket tunnels, shaping,
deadlines, stats, records, the accept-time limits and the per-request Snapshot); this module
gives it ``ReverseRouting``, the strategy that says what a reverse proxy does differently:

- an origin-form request (absolute-form accepted too) is routed by its Host to a site (exact
  name, then the longest ``*.domain``, then ``*``); unknown host 404; CONNECT and
  ``OPTIONS *`` 400. Over TLS, a request for a site whose certificate is not the one the
  connection was set up with gets 421 (RFC 9110 15.5.20: a connection reused for another host);
- the tenant comes from the server's ``tenant:`` or the source address (or a trusted proxy's
  X-Tenant-ID); there are no proxy credentials in front of a web site, so a tenant that
  requires them is refused with 403;
- the policy sees the host the client asked for, not the upstream;
- a site with ``redirect`` has no upstream: its requests are answered with ``redirect_status``
  (301 by default) to the redirect's URL, ``{host}`` in it replaced by the host the client
  asked for and the request's path and query appended (nginx's ``return 301
  https://$host$request_uri``), before the tenant's admission, as nginx answers before access;
- with ``upstream_tls`` the escaper's connection is upgraded to TLS and the upstream's
  certificate verified;
- the client's Host goes upstream unchanged (an absolute-form request's URI authority instead,
  RFC 9112 3.2.2: what the site and the policy were chosen by), with X-Forwarded-For and
  X-Forwarded-Proto; an
  Upgrade request (WebSocket) keeps its Upgrade, and the upstream's 101 turns the connection
  into a tunnel.

TLS termination: Arcus' own, as for ``http_proxy`` (``arcus.serve.tls_listen.tls_server``: a
client's close_notify is a half-close). The listener's SSLContext has an ``sni_callback`` that
looks up the server's config in the *current* Snapshot and switches the handshake to the site's
context, so certificates follow reloads (a reload re-reads the files, once, on the first
handshake after it). Turning ``tls`` on or off needs a new listener (change the port in the
same reload).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from arcus.config.schema import ServerConfig
from arcus.config.server.http_rproxy import HOST_FIELD, HttpRproxyConfig, RproxyHost, upstream_list
from arcus.config.server.tcp_stream import split_upstream
from arcus.errors import ErrorCode, Refusal, Side
from arcus.escape.base import Connected
from arcus.proto import http1
from arcus.proto.http1 import CHUNKED
from arcus.serve.http_proxy import HttpProxyConnection
from arcus.serve.http_routing import via
from arcus.serve.session import host_port
from arcus.serve.tls_listen import tls_server
from arcus.serve.tls_stream import UpstreamTls
from arcus.serve.upstream import UpstreamConnection
from arcus.tenancy.admission import Destination
from arcus.tenancy.identify import X_TENANT_ID, Claims, in_ranges, scan_headers
from arcus.tls.contexts import listener_context

log = logging.getLogger("arcus.serve")

X_FORWARDED_FOR = b"x-forwarded-for"
_DROPPED = frozenset({b"host", X_TENANT_ID, X_FORWARDED_FOR, b"x-forwarded-proto"})
# What a client may claim about itself or the site in front (its address, scheme, host): from a
# client that is not a trusted proxy these are dropped, so an upstream never takes them as ours.
_CLAIMS = frozenset({b"forwarded", b"x-forwarded-host", b"x-real-ip"})


# ---------------------------------------------------------------------------------------- sites


FAIL_TIMEOUT = 10.0
"""Seconds an upstream that failed to connect is passed over when its site has others (nginx's
``max_fails=1 fail_timeout=10s``)."""


class Site:
    """One ``hosts:`` entry, ready to serve: upstreams split, TLS contexts built.

    A site with several upstreams takes them in turn, one per request (keep-alive connections
    are pooled per upstream). One that fails to connect (refused, timed out, its name not
    resolved, its TLS failed) is passed over for :data:`FAIL_TIMEOUT` seconds and the request
    goes to the next (it was not sent yet: any method may go); when every one has failed
    lately, the one failed longest ago is tried. Shared by the server's connections; a reload
    starts afresh.
    """

    __slots__ = ("conf", "targets", "down_until", "turn", "server_ctx", "upstream_tls", "tls_key")

    def __init__(self, conf: RproxyHost, server_ctx: ssl.SSLContext | None) -> None:
        self.conf = conf
        self.targets = [split_upstream(u) for u in upstream_list(conf.upstream)]  # none for a redirect
        self.down_until = [0.0] * len(self.targets)
        self.turn = 0
        self.server_ctx = server_ctx
        self.upstream_tls = UpstreamTls(conf.upstream_ca, conf.upstream_tls_name, ("http/1.1",)) if conf.upstream_tls else None
        self.tls_key = (conf.upstream_ca, conf.upstream_tls_name) if conf.upstream_tls else None

    def pick(self, now: float, tried: frozenset[int] = frozenset()) -> int | None:
        """The upstream (its index) for a request, in turn among those not failed lately and
        not ``tried`` for it; None when every one was tried."""
        n = len(self.targets)
        if n == 1:
            return None if tried else 0
        fallback = None
        for step in range(n):
            i = (self.turn + step) % n
            if i in tried:
                continue
            if self.down_until[i] <= now:
                self.turn = i + 1
                return i
            if fallback is None or self.down_until[i] < self.down_until[fallback]:
                fallback = i
        return fallback

    def failed(self, index: int, now: float) -> None:
        """The upstream ``index`` failed to connect: passed over for a while."""
        self.down_until[index] = now + FAIL_TIMEOUT


class SiteTable:
    """Host name -> Site for one server config. Built once per config object (so once per reload)."""

    __slots__ = ("exact", "wild", "catch_all", "cert_default")

    def __init__(self, conf: HttpRproxyConfig) -> None:
        self.exact: dict[str, Site] = {}
        self.wild: dict[str, Site] = {}  # "example.com" for "*.example.com"
        self.catch_all: Site | None = None
        contexts: dict[tuple[str, str], ssl.SSLContext] = {}  # hosts sharing a pair share a context
        sites = []
        for host in conf.hosts:
            ctx = None
            if conf.tls and host.certificate and host.private_key:
                pair = (host.certificate, host.private_key)
                ctx = contexts.get(pair)
                if ctx is None:
                    ctx = contexts[pair] = listener_context(*pair)
            site = Site(host, ctx)
            sites.append(site)
            for name in host.names:
                if name == "*":
                    self.catch_all = site
                elif name.startswith("*."):
                    self.wild[name[2:]] = site
                else:
                    self.exact[name] = site
        # the certificate for a client without SNI, or naming no site: the catch-all's, else the first's
        self.cert_default = self.catch_all or (sites[0] if sites else None)

    def match(self, host: str) -> Site | None:
        site = self.exact.get(host)
        if site is not None:
            return site
        if self.wild:
            dot = host.find(".")
            while dot >= 0:  # the longest (most specific) parent domain first
                site = self.wild.get(host[dot + 1 :])
                if site is not None:
                    return site
                dot = host.find(".", dot + 1)
        return self.catch_all


_TABLES: OrderedDict[int, tuple[HttpRproxyConfig, SiteTable]] = OrderedDict()
_MAX_TABLES = 32


def sites_for(conf: HttpRproxyConfig) -> SiteTable:
    """The SiteTable of this config object (cached by identity: a reload parses a new object,
    so certificates and CA files are read again)."""
    entry = _TABLES.get(id(conf))
    if entry is not None and entry[0] is conf:
        return entry[1]
    table = SiteTable(conf)
    _TABLES[id(conf)] = (conf, table)
    while len(_TABLES) > _MAX_TABLES:
        _TABLES.popitem(last=False)
    return table


# -------------------------------------------------------------------------------------- routing


class ReverseRouting:
    """``http_rproxy``'s routing (``arcus.serve.http_routing``): the Host picks a site, the site
    names its upstream; the tenant comes from the server's ``tenant:``, the source address or a
    trusted proxy's X-Tenant-ID (no proxy credentials in front of a web site); the policy sees
    the host the client asked for."""

    __slots__ = ("sites", "site", "site_host", "site_port", "authority", "served_ctx", "tls_in", "target", "tried", "failures")

    def __init__(self) -> None:
        self.sites: SiteTable | None = None
        self.site: Site | None = None
        self.target = 0  # the site's upstream the request goes to (Site.targets)
        self.tried: frozenset[int] = frozenset()  # those tried for it and failed
        self.failures: list[str] = []  # what they said
        self.site_host = ""
        self.site_port = 0
        self.authority: bytes | None = None  # an absolute-form request's host[:port]: its Host upstream
        self.served_ctx: ssl.SSLContext | None = None
        self.tls_in = False

    def configure(self, conn: Any) -> bool:
        sslobj = conn.transport.get_extra_info("ssl_object")
        self.tls_in = sslobj is not None
        if self.tls_in != bool(conn.conf.tls):
            # a reload switched tls on or off under a listener made for the other setting
            conn.abort("tls setting changed; the listener must be re-created")
            return False
        try:
            self.sites = sites_for(conn.conf)
        except (OSError, ssl.SSLError) as exc:
            log.error("server %s: cannot load its certificates: %s", conn.server, exc)
            conn.abort("certificates unreadable")
            return False
        if sslobj is not None:
            self.served_ctx = sslobj.context
        return True

    def route(self, conn: Any, req: http1.RequestHead) -> Refusal | None:
        self.site = None
        self.tried = frozenset()
        self.failures = []
        self.site_host = req.host or ""
        self.site_port = req.port or (443 if self.tls_in else 80)
        if self.tls_in and req.form == "origin" and req.port == 80 and not _explicit_port(req):
            self.site_port = 443
        conn.target = host_port(self.site_host, self.site_port) if self.site_host else ""
        if self.site_host:
            conn.ex.asked = (self.site_host, self.site_port)  # the record names the site asked for, refused or not
        self.authority = None
        if req.form == "absolute" and req.host:
            # RFC 9112 3.2.2: the URI's authority replaces the Host header, which the site and
            # the policy were not chosen by
            name = f"[{req.host}]" if ":" in req.host else req.host
            default = 443 if req.scheme == b"https" else 80
            self.authority = (name if req.port in (None, default) else f"{name}:{req.port}").encode()
        if req.form not in ("origin", "absolute"):
            return Refusal(ErrorCode.BAD_REQUEST, "this is a web server (a reverse proxy): CONNECT and OPTIONS * are not served here")
        if not req.host and req.version != b"1.0":
            # an HTTP/1.1 request must name its host (an empty Host names none): no site is guessed
            return Refusal(ErrorCode.BAD_REQUEST, "the request names no host (an empty Host header)")
        sites = self.sites
        assert sites is not None  # configure() ran when the connection was accepted
        site = sites.match(req.host) if req.host else sites.catch_all
        if site is None:
            return Refusal(ErrorCode.UNKNOWN_HOST, f"no site here answers for host {self.site_host or '(none)'}")
        if self.served_ctx is not None and site.server_ctx is not self.served_ctx:
            return Refusal(ErrorCode.MISDIRECTED, f"this connection was not set up for host {self.site_host}; open a new one")
        if site.conf.redirect is not None:
            if not self.site_host and HOST_FIELD in site.conf.redirect:
                return Refusal(ErrorCode.BAD_REQUEST, "the request names no host (an HTTP/1.0 request without Host): there is nowhere to redirect it")
            to = redirect_location(site.conf.redirect, self.site_host, req.path)
            return Refusal(ErrorCode.REDIRECTED, f"moved to {to}", redirect_to=to, http_status=site.conf.redirect_status)
        self.site = site
        self.target = site.pick(time.monotonic()) or 0
        # From here on the request travels as if the client had asked for the upstream itself.
        req.form = "absolute"
        req.scheme = b"https" if site.upstream_tls is not None else b"http"
        req.host, req.port = site.targets[self.target]
        return None

    def retry_upstream(self, conn: Any, req: http1.RequestHead, failure: Refusal) -> bool:
        """The request's upstream failed to connect (``failure``; the request was not sent):
        that upstream is passed over for a while, and the request pointed at another of the
        site's, if one is left to try (True)."""
        site = self.site
        if site is None or failure.side is not Side.UPSTREAM:
            return False
        now = time.monotonic()
        failed = site.targets[self.target]
        site.failed(self.target, now)
        self.tried |= {self.target}
        following = site.pick(now, self.tried)
        if following is None:
            return False
        self.failures.append(f"{host_port(*failed)}: {failure.message}")
        ex = conn.ex
        if ex is not None:  # the request's record says it went elsewhere, and why
            ex.detail = "failed over from " + "; ".join(self.failures)
        log.info("server %s: upstream %s of site %s failed (%s); trying %s", conn.server, host_port(*failed),
                 self.site_host or "*", failure.message, host_port(*site.targets[following]))
        self.target = following
        req.host, req.port = site.targets[following]
        return True

    local_hosts: frozenset[str] = frozenset()  # a reverse proxy's names are its sites'

    def local_page(self, conn: Any, req: http1.RequestHead) -> None:
        return None

    def claims(self, conn: Any, req: http1.RequestHead) -> tuple[Claims, Refusal | None]:
        header = None
        if conn.conf.trusted_proxies:
            _, tenant_hdr = scan_headers(req.headers)
            if tenant_hdr is not None:
                header = tenant_hdr.decode("latin-1")
        return Claims(conn.client_ip, conn.conf.tenant, conn.conf.trusted_proxies, conn.proxy_sni, None, None, header), None

    def destination(self, conn: Any, req: http1.RequestHead) -> Destination:
        return Destination(self.site_host, self.site_port, req.method.decode("latin-1"), req.path.decode("latin-1"), False)

    def refusal(self, conn: Any, r: Refusal) -> Refusal:
        if r.side is Side.UPSTREAM or r.code is ErrorCode.INTERNAL:
            # a site's visitors are not told where its upstream is nor why it failed (an address,
            # an internal name, a certificate): the request's record keeps the reason
            ex = conn.ex
            if ex is not None:
                last = r.message
                if self.failures and self.site is not None:  # every upstream tried, and why each failed
                    last = "; ".join([*self.failures, f"{host_port(*self.site.targets[self.target])}: {last}"])
                ex.detail = last
            said = "the site's upstream did not answer in time" if r.status == 504 else "the site's upstream failed"
            return replace(r, message=said)
        if r.status == 407:
            # a tenant that requires credentials cannot be served: a web client is never asked for them
            return Refusal(
                ErrorCode.AUTH_REQUIRED,
                f"tenant {conn.tenant} requires user credentials, which a reverse proxy cannot ask for",
                http_status=403,
            )
        return r

    def pool_key_extra(self, conn: Any) -> tuple:
        return (self.site.tls_key if self.site is not None else None,)

    def upstream_ssl(self, req: http1.RequestHead) -> None:
        return None  # TLS to a site's upstream is started after the escaper (``connected``)

    async def connected(self, conn: Any, connected: Connected) -> None:
        site = self.site
        if site is not None and site.upstream_tls is not None:
            up = connected.protocol
            assert isinstance(up, UpstreamConnection)  # the factory the exchange gave the escaper
            up.transport = await site.upstream_tls.wrap(connected.transport, up, conn.ex.req.host, conn.conf.timeouts.upstream_connect)

    def request_headers(self, conn: Any, req: http1.RequestHead) -> list[tuple[bytes, bytes]]:
        headers = http1.forward_headers(req.headers, req.connection_tokens)
        host_value = self.authority or next((v for n, v in req.headers if len(n) == 4 and n.lower() == b"host"), None)
        if host_value is None:  # an HTTP/1.0 request without Host, served by the catch-all site
            host = req.host or ""  # route() set it to the site's upstream host
            host_value = (f"[{host}]" if ":" in host else host).encode()
        out = [(b"Host", host_value)]
        forwarded_for = conn.client_ip.encode()
        trusted: bool | None = None  # asked once, when a header needs it
        for name, value in headers:
            lname = name.lower()
            if b"_" in lname:
                # CGI and WSGI read X-Forwarded_For as HTTP_X_FORWARDED_FOR: judged as that name
                lname = lname.replace(b"_", b"-")
            if lname in _DROPPED or lname in _CLAIMS:
                if trusted is None:
                    trusted = in_ranges(conn.client_ip, conn.conf.trusted_proxies)
                if lname == X_FORWARDED_FOR and trusted:
                    forwarded_for = value + b", " + forwarded_for  # a trusted proxy in front: keep its chain
                elif lname in _CLAIMS and trusted:
                    out.append((name, value))
                continue
            out.append((name, value))
        if req.upgrade:  # WebSocket and friends: the upgrade is asked of the upstream, 101 turns the exchange into a tunnel
            upgrade = next((v for n, v in req.headers if len(n) == 7 and n.lower() == b"upgrade"), None)
            if upgrade is not None:
                out.append((b"Upgrade", upgrade))
                out.append((b"Connection", b"upgrade"))
        out.append((b"X-Forwarded-For", forwarded_for))
        out.append((b"X-Forwarded-Proto", b"https" if self.tls_in else b"http"))
        out.append((b"Via", via(req)))
        if req.framing == CHUNKED:
            out.append((b"Transfer-Encoding", b"chunked"))
        if req.version == b"1.0":
            out.append((b"Connection", b"close"))
        return out


def redirect_location(redirect: str, host: str, path: bytes) -> str:
    """Where a redirecting site sends a request: ``redirect`` with ``{host}`` replaced by the host
    the client asked for (its port left out, an IPv6 literal in brackets), then the request's
    path and query (bytes beyond ASCII percent-encoded: a Location is ASCII). The host and
    the path are as the parser accepted them: no space, quote or control character."""
    if HOST_FIELD in redirect:
        redirect = redirect.replace(HOST_FIELD, f"[{host}]" if ":" in host else host)
    if redirect.endswith("/") and path.startswith(b"/"):
        redirect = redirect[:-1]
    tail = path.decode("latin-1")
    if not tail.isascii():
        tail = "".join(c if c < "\x80" else f"%{ord(c):02X}" for c in tail)
    return redirect + tail


def _explicit_port(req: http1.RequestHead) -> bool:
    host = next((v for n, v in req.headers if len(n) == 4 and n.lower() == b"host"), b"")
    return host.rsplit(b"]", 1)[-1].find(b":") >= 0


# ------------------------------------------------------------------------------- factory, listen


class RproxyFactory:
    """The protocol factory; also what the TLS listener's SNI callback reads the live config through."""

    __slots__ = ("shared", "server")

    def __init__(self, shared: Any, server: str) -> None:
        self.shared = shared
        self.server = server

    def __call__(self) -> HttpProxyConnection:
        return HttpProxyConnection(self.shared, self.server, ReverseRouting())

    def sni_callback(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> int | None:
        sslobj.arcus_sni = name  # type: ignore[attr-defined]  # tenants can be told apart by it
        try:
            conf = self.shared.snapshot.servers.get(self.server)
            if not isinstance(conf, HttpRproxyConfig) or not conf.tls:
                return None
            table = sites_for(conf)
            site = table.match(name) if name else None
            if site is None or site.server_ctx is None:
                site = table.cert_default
            if site is not None and site.server_ctx is not None:
                sslobj.context = site.server_ctx
        except Exception:  # noqa: BLE001 - a failed lookup must fail this handshake only
            log.exception("server %s: choosing a certificate for %r failed", self.server, name)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None


def http_rproxy_factory(shared: Any, server: str) -> RproxyFactory:
    return RproxyFactory(shared, server)


def _listen_context(factory: RproxyFactory, config: HttpRproxyConfig) -> ssl.SSLContext:
    table = sites_for(config)
    default = table.cert_default
    assert default is not None and default.conf.certificate and default.conf.private_key  # the config check guarantees it
    return listener_context(default.conf.certificate, default.conf.private_key, sni_callback=factory.sni_callback)


async def rproxy_listen(
    loop: asyncio.AbstractEventLoop, factory: RproxyFactory, host: str, port: int, config: ServerConfig
) -> asyncio.AbstractServer:
    if isinstance(config, HttpRproxyConfig) and config.tls:
        ctx = await asyncio.to_thread(_listen_context, factory, config)  # reads certificate files
        return await tls_server(loop, factory, host, port, lambda: ctx, config.timeouts.client_header)
    return await loop.create_server(factory, host, port, backlog=1024, reuse_address=True, start_serving=False)
