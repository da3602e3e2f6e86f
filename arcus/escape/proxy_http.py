"""`proxy_http`: every connection is a CONNECT tunnel through an upstream HTTP proxy.

Plain HTTP requests go through the tunnel too (the http_proxy server then sends them in origin
form, as to the origin itself): one way through for every method, and the upstream proxy never
sees our clients' headers in a form it could rewrite. ``Proxy-Authorization: Basic`` carries
the escaper's own credentials (profile ``username``/``password``) when set; a client's
credentials never reach the upstream (the server strips them before any escaper runs).
"""

from __future__ import annotations

import base64

from arcus.errors import ErrorCode, EscapeError
from arcus.escape.tunnel import Handshake, UpstreamProxyEscaper
from arcus.proto import http1
from arcus.proto.http1_syntax import Limits

_LIMITS = Limits(max_request_line=8192, max_header_bytes=32768, max_headers=100)
MAX_INTERIM = 8  # 1xx answers to a CONNECT we skip at most


def connect_request(host: str, port: int, username: str | None, password: str | None) -> bytes:
    authority = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode("ascii")
    headers = [(b"Host", authority)]
    if username is not None and password is not None:
        token = base64.b64encode(f"{username}:{password}".encode("utf-8", "surrogateescape"))
        headers.append((b"Proxy-Authorization", b"Basic " + token))
    return http1.build_request_head(b"CONNECT", authority, headers)


class ProxyHttpEscaper(UpstreamProxyEscaper):
    type_name = "proxy_http"
    protocol_name = "HTTP CONNECT"

    async def handshake(self, hs: Handshake, host: str, port: int) -> None:
        hs.write(connect_request(host, port, self.username, self.password))
        for _ in range(MAX_INTERIM + 1):
            head = await hs.read(lambda buf: http1.parse_response_head(buf, _LIMITS, b"CONNECT"))
            if head.status >= 200:
                break
        else:
            raise self._fail(f"upstream proxy {self.proxy} ({self.name}) sent too many 1xx answers", ErrorCode.UPSTREAM_PROTOCOL)
        if 200 <= head.status < 300:
            return
        raise self._refusal(head.status, head.reason.decode("latin-1", "replace"), host, port)

    def _refusal(self, status: int, reason: str, host: str, port: int) -> EscapeError:
        said = f"upstream proxy {self.proxy} ({self.name}) answered {status} {reason}".rstrip()
        target = f"{host}:{port}"
        if status in (401, 407):  # tinyproxy answers a failed Basic login with 401
            why = "our credentials were refused" if self.username else "it wants credentials (set username and password)"
            return self._fail(f"{said} to CONNECT {target}: {why}", ErrorCode.UPSTREAM_AUTH, hop=True)
        if status == 403:
            return self._fail(f"{said} to CONNECT {target}", ErrorCode.UPSTREAM_DENIED)
        if status == 504:
            return self._fail(f"{said} to CONNECT {target}", ErrorCode.UPSTREAM_TIMEOUT)
        return self._fail(f"{said} to CONNECT {target}", ErrorCode.UPSTREAM_CONNECT)
