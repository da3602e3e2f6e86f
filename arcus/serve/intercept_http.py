"""The decrypted side of TLS interception: HTTP/1.1 through the same connection as plain HTTP.

:class:`InterceptedHttp` is ``HttpProxyConnection`` as it is (machine, exchange, admission,
block page, records, pool), run on the tunnel owner's session (tenant, user, gate, counters)
with a :class:`arcus.serve.tls_side.TlsSide` for a transport and the :class:`InterceptRouting`
strategy: every request goes to the intercepted origin, over TLS verified as the interception
was. ``arcus.serve.intercept`` makes one per intercepted tunnel.
"""

from __future__ import annotations

import ssl
import time
from html import escape
from typing import Any

from arcus.config.schema import ServerConfig
from arcus.errors import ErrorCode, Refusal
from arcus.proto import http1
from arcus.serve.http_exchange import Exchange
from arcus.serve.http_proxy import HttpProxyConnection
from arcus.serve.http_routing import ForwardRouting
from arcus.serve.session import host_port
from arcus.serve.tls_side import TlsSide
from arcus.serve.upstream import UpstreamConnection
from arcus.tenancy.admission import Destination


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

    local_hosts: frozenset[str] = frozenset()  # no page of the proxy's own inside an intercepted connection

    def local_page(self, conn: Any, req: http1.RequestHead) -> None:
        return None

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

    def retry_upstream(self, conn: Any, req: http1.RequestHead, failure: Refusal) -> bool:
        return False  # the one origin the client's TLS was for

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
                 failure: Refusal | None, detail: str | None, sni: str | None = None) -> None:
        super().__init__(owner.shared, owner.server, routing)
        self.name = routing.name  # the intercepted host: the client's SNI, else the tunnel's host
        self.sni = sni  # the server name the client sent (None: none), as the CONNECT's record has it
        self.owner = owner
        self.first_up = up  # the connection the interception opened: the first request's
        self.failure = failure  # every request the policy allows is answered with it (the upstream's TLS failed)
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
        ex.record(self, self.bytes_up, self.bytes_down, self.sni)

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
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Upstream certificate not trusted</title></head>"
        f"<body><h1>The site's certificate could not be verified</h1><p>{escape(host)}: {escape(message)}</p>"
        f"<p><code>{escape(detail)}</code></p><p>request id: {escape(request_id)}</p></body></html>\n"
    ).encode()
