"""Serialising HTTP/1.x heads and choosing which fields travel on to the next hop.

Why the builders check CR/LF at all: they are fed fields the parser already validated plus a
few the proxy adds (Via, error headers); one count over the finished head (C speed) makes sure
no value ever injects a line, whoever built it.
"""

from __future__ import annotations

from collections.abc import Iterable

# RFC 9110 7.6.1 plus the de-facto Proxy-Connection and Keep-Alive. Proxy-Authorization is in
# the set: proxy credentials never reach an upstream. Trailer is not (RFC 9110 6.6.2: it is
# end-to-end, and trailers themselves are relayed with the chunked body they end).
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"transfer-encoding",
        b"upgrade",
    }
)

# A Connection header may name any field as hop-by-hop; these are never dropped for it, because
# removing them would change how the next hop frames the message or routes it (a client saying
# "Connection: content-length" must not turn its body into a second request upstream).
_NEVER_DROPPED_BY_CONNECTION: frozenset[bytes] = frozenset({b"content-length", b"host"})

REASONS: dict[int, bytes] = {
    100: b"Continue",
    101: b"Switching Protocols",
    103: b"Early Hints",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    203: b"Non-Authoritative Information",
    204: b"No Content",
    205: b"Reset Content",
    206: b"Partial Content",
    300: b"Multiple Choices",
    301: b"Moved Permanently",
    302: b"Found",
    303: b"See Other",
    304: b"Not Modified",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    407: b"Proxy Authentication Required",
    408: b"Request Timeout",
    409: b"Conflict",
    411: b"Length Required",
    413: b"Content Too Large",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    421: b"Misdirected Request",
    426: b"Upgrade Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}


def build_request_head(
    method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]], version: bytes = b"1.1"
) -> bytes:
    """``method SP target SP HTTP/version CRLF *(name ": " value CRLF) CRLF``.

    Raises ValueError (a bug of ours, not a peer's) if any part holds a CR or LF.
    """
    return _finish((method, b" ", target, b" HTTP/", version), headers)


def build_response_head(
    status: int, reason: bytes, headers: Iterable[tuple[bytes, bytes]], version: bytes = b"1.1"
) -> bytes:
    """``HTTP/version SP status SP reason CRLF *(name ": " value CRLF) CRLF``."""
    return _finish((b"HTTP/", version, b" %d " % status, reason), headers)


_name_colon_value = b": ".join


def _finish(start: tuple[bytes, ...], headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    if not isinstance(headers, list):
        headers = list(headers)
    if headers:  # the field lines are joined in C: no Python work per field
        out = b"".join((*start, b"\r\n", b"\r\n".join(map(_name_colon_value, headers)), b"\r\n\r\n"))
    else:
        out = b"".join((*start, b"\r\n\r\n"))
    lines = len(headers) + 2  # start line, fields, empty line: one CR and one LF each
    if out.count(b"\n") != lines or out.count(b"\r") != lines:
        raise ValueError("CR or LF inside an HTTP start line, header name or header value")
    return out


def forward_headers(
    headers: list[tuple[bytes, bytes]], connection_tokens: frozenset[bytes]
) -> list[tuple[bytes, bytes]]:
    """The fields to send to the next hop: order kept, hop-by-hop ones and those named in
    Connection removed (RFC 9110 7.6.1), Proxy-Authorization always removed.

    Transfer-Encoding is hop-by-hop too: a caller that relays a chunked body as-is must add
    ``Transfer-Encoding: chunked`` back itself.
    """
    drop = HOP_BY_HOP
    if connection_tokens:
        drop = drop | (connection_tokens - _NEVER_DROPPED_BY_CONNECTION)
    return [field for field in headers if field[0].lower() not in drop]
