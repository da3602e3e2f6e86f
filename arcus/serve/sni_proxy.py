"""`sni_proxy`: routes each connection by the name its client asks for, without decrypting.

A TLS client's ClientHello is read with the sans-io ``arcus.proto.tls`` reader (fragmented
records and hellos spread over several records are fine) and the connection goes to
``SNI:tls_port``; a plain HTTP client on the same listener is told apart by its first byte and
goes to its ``Host`` (the port the Host names, else ``http_port``). Nothing read is consumed:
the hello is forwarded first, byte for byte, and the rest is relayed. A plain HTTP request head
is forwarded with ``Connection: close`` in place of its own connection fields (and no proxy
credentials): the destination is fixed for the life of the connection and later requests on
it would be relayed unseen, so the upstream is asked to end the connection after its answer
and the client's next request comes on a new connection, decided on its own Host. A request
asking for an ``Upgrade`` says ``Connection: Upgrade, close``: a 101 is no final answer, so
the upgraded connection goes on; one the upstream declines ends after its answer too.

Admission runs on the destination name (tenant by the server's ``tenant:`` or the source
address, policy, limits). A refusal is answered in the client's protocol before the close: a
fatal TLS alert (``access_denied`` for a policy refusal, ``unrecognized_name`` for a missing
SNI or an unresolvable name, ``decode_error`` for a malformed hello, ``internal_error``
otherwise), or a short HTTP response with the status and ``X-Arcus-Error``.
"""

from __future__ import annotations

from arcus.config.server.sni_proxy import SniProxyConfig
from arcus.errors import ErrorCode, ProtocolError, Refusal
from arcus.proto import http1
from arcus.proto.tls import looks_like_tls, parse_client_hello
from arcus.serve.relay import RelayConnection

# TLS alert descriptions (RFC 8446 6.2)
ALERT_INTERNAL_ERROR = 80
ALERT_ACCESS_DENIED = 49
ALERT_DECODE_ERROR = 50
ALERT_UNRECOGNIZED_NAME = 112


def alert_record(description: int) -> bytes:
    """A fatal alert in a plaintext record: what a TLS server may send before any key exists."""
    return bytes((0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description))


def alert_for(failure: Refusal) -> int:
    if failure.status == 403 or failure.side == "forbidden":
        return ALERT_ACCESS_DENIED
    if failure.code in (ErrorCode.RESOLVE_FAILED, ErrorCode.RESOLVE_TIMEOUT, ErrorCode.NO_SNI):
        return ALERT_UNRECOGNIZED_NAME
    if failure.status == 400:
        return ALERT_DECODE_ERROR
    return ALERT_INTERNAL_ERROR


def _explicit_port(req: http1.RequestHead) -> bool:
    host = next((v for n, v in req.headers if len(n) == 4 and n.lower() == b"host"), b"")
    return host.rsplit(b"]", 1)[-1].find(b":") >= 0


# Fields that describe the client's connection to us, not the request: replaced by our own
# "Connection: close" (Proxy-Authorization: proxy credentials never go upstream). Content-Length,
# Host and Transfer-Encoding frame and route the request, whatever a Connection header names.
_PER_CONNECTION = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization"})
_KEPT = frozenset({b"content-length", b"host", b"transfer-encoding"})


def closing_head(req: http1.RequestHead) -> bytes:
    """``req``'s head as it goes upstream from an sni_proxy: as sent (target, field order, case
    and values), with ``Connection: close`` in place of its own connection fields and of those
    its Connection header named, so that the upstream ends the connection after its answer
    (``Connection: Upgrade, close`` and its ``Upgrade`` field for a request asking to upgrade:
    WebSocket servers read the Connection header as a list of tokens; a 101 is no final
    answer, so an upgraded connection goes on)."""
    drop = _PER_CONNECTION | (req.connection_tokens - _KEPT)
    if req.upgrade:
        drop -= {b"upgrade"}
    fields = [f for f in req.headers if f[0].lower() not in drop]
    fields.append((b"Connection", b"Upgrade, close" if req.upgrade else b"close"))
    return http1.build_request_head(req.method, req.target, fields, req.version)


class SniProxyConnection(RelayConnection):
    config_type = SniProxyConfig
    conf: SniProxyConfig
    kind = ""  # "tls" or "http" once the first bytes told
    scanned = 0
    sni: str | None = None

    def handshake_data(self) -> None:
        buf = self.buf
        if not self.kind:
            tls = looks_like_tls(buf)
            if tls is None:
                return
            self.kind = "tls" if tls else "http"
        if self.kind == "tls":
            self._hello()
        else:
            self._http_head()

    def _hello(self) -> None:
        try:
            hello = parse_client_hello(self.buf)
        except ProtocolError as exc:
            self.refuse(Refusal(ErrorCode.CLIENT_BAD_REQUEST, exc.message))
            return
        if hello is None:
            return
        if hello.sni is None:
            self.refuse(Refusal(ErrorCode.NO_SNI, "the ClientHello names no server (no SNI extension)"))
            return
        self.sni = hello.sni
        self.open(hello.sni, self.conf.tls_port)

    def _http_head(self) -> None:
        lim = self.conf.limits
        try:
            parsed = http1.parse_request_head(
                self.buf, http1.Limits(lim.max_request_line, lim.max_header_bytes, lim.max_headers), scanned=self.scanned
            )
        except ProtocolError as exc:
            self.refuse(Refusal(ErrorCode.CLIENT_BAD_REQUEST, exc.message, http_status=exc.status))
            return
        if parsed is None:
            self.scanned = len(self.buf)
            return
        req, end = parsed
        if req.form == "authority" or not req.host:
            why = "CONNECT is not served here" if req.form == "authority" else "the request names no Host"
            self.refuse(Refusal(ErrorCode.CLIENT_BAD_REQUEST, why))
            return
        port = req.port if (req.form == "absolute" or _explicit_port(req)) and req.port else self.conf.http_port
        self.buf[:end] = closing_head(req)
        self.open(req.host, port)

    def refused(self, failure: Refusal) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if self.kind == "tls":
            t.write(alert_record(alert_for(failure)))
        elif self.kind == "http":
            reason = http1.REASONS.get(failure.status, b"Error")
            body = f"{failure.status} {reason.decode()}\n{failure.message}\n".encode()
            t.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
                b"X-Arcus-Error: %s\r\nConnection: close\r\n\r\n%s"
                % (failure.status, reason, len(body), failure.code.encode(), body)
            )

    def audit_method(self) -> str | None:
        return "TLS" if self.kind == "tls" else ("HTTP" if self.kind == "http" else None)


def sni_proxy_factory(shared, server: str):
    def make() -> SniProxyConnection:
        return SniProxyConnection(shared, server)

    return make
