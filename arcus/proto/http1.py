"""Sans-io HTTP/1.x for the proxy's hot path: request and response heads, chunked bodies, builders.

Pure functions over bytes: no sockets, clocks or logging. A head is parsed whole once its final
CRLF CRLF is in the buffer: one ``find`` for the end, one regex for the start line, one
``findall`` that both validates and extracts every field line, and a short Python loop over the
fields that matter for framing and routing. While a head is still incomplete, the bytes seen so
far are checked too (a few C-level scans), so a peer sending garbage is refused at once rather
than after a timeout.

Errors are ProtocolError with side="client" and the status to answer (400, 414, 431, 505) for
requests, side="upstream" and status 502 for responses. What is accepted and refused, and why,
is in docs/http-conformance.md.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from arcus.names import ip_text
from arcus.proto.http1_build import (
    HOP_BY_HOP,
    REASONS,
    build_request_head,
    build_response_head,
    forward_headers,
)
from arcus.proto.http1_chunked import ChunkedScanner
from arcus.proto.http1_syntax import (
    CONTENT_LENGTH,
    CTL_BYTES,
    FIELD_BLOCK,
    FIELD_PREFIX,
    FIELDS,
    HOST_PORT,
    IPV4_DOTTED,
    NUMERIC_LAST_LABEL,
    REQUEST_LINE,
    REQUEST_LINE_PREFIX,
    STATUS_LINE,
    STATUS_LINE_PREFIX,
    Limits,
    describe_bad_block,
    describe_field_line,
    describe_start_line,
    error,
)

__all__ = [
    "CHUNKED",
    "HOP_BY_HOP",
    "LENGTH",
    "NO_BODY",
    "REASONS",
    "UNTIL_CLOSE",
    "ChunkedScanner",
    "Limits",
    "RequestHead",
    "ResponseHead",
    "build_request_head",
    "build_response_head",
    "forward_headers",
    "parse_request_head",
    "parse_response_head",
]

# Framing of a body (RFC 9112 6.3)
NO_BODY = 0
LENGTH = 1
CHUNKED = 2
UNTIL_CLOSE = 3

# RFC 9112 2.2: ignore at least one empty line before a request-line (old clients send a CRLF
# after a POST body). A few, not an unbounded stream of them.
MAX_LEADING_EMPTY_LINES = 4

_CLIENT = "client"
_UPSTREAM = "upstream"
_EMPTY: frozenset[bytes] = frozenset()

# Field names the parsers look at, lowercased -> a small code.
_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _EXPECT, _UPGRADE = range(6)
_REQUEST_FIELDS = {
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"expect": _EXPECT,
    b"upgrade": _UPGRADE,
}
_RESPONSE_FIELDS = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
}


@dataclass(slots=True)
class RequestHead:
    method: bytes  # b"GET" (case-sensitive token, as sent)
    target: bytes  # raw request-target
    version: bytes  # b"1.1" or b"1.0"
    headers: list[tuple[bytes, bytes]]  # (name as sent, value with OWS stripped), order and duplicates kept
    form: str  # "absolute" | "authority" | "origin" | "asterisk"
    scheme: bytes | None  # b"http" / b"https" for absolute-form (lowercased), else None
    host: str | None  # destination host (URI, authority or Host header); IPv6 unbracketed; lowercased
    port: int | None  # explicit port or scheme default (80/443)
    path: bytes  # origin-form path+query to send upstream; b"" for authority-form, b"*" for asterisk
    framing: int  # NO_BODY | LENGTH | CHUNKED
    content_length: int  # for LENGTH, else 0
    keep_alive: bool
    expect_continue: bool
    connection_tokens: frozenset[bytes]  # lowercase tokens of all Connection headers
    upgrade: bool  # "upgrade" in connection tokens and an Upgrade header present


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    framing: int  # NO_BODY | LENGTH | CHUNKED | UNTIL_CLOSE
    content_length: int  # for LENGTH, else 0
    keep_alive: bool
    connection_tokens: frozenset[bytes]


# --- requests ---------------------------------------------------------------------------------


def parse_request_head(
    buf: bytes | bytearray, limits: Limits, *, scanned: int = 0
) -> tuple[RequestHead, int] | None:
    """(head, bytes consumed) once ``buf`` holds a whole request head, None while more is needed.

    Raises ProtocolError(side="client") as soon as the input cannot become valid: 400 malformed,
    414 request line too long, 431 head too large or too many fields, 505 other HTTP version.
    Leading empty lines (a few) are skipped and counted in the bytes consumed.

    ``scanned`` (optional): ``len(buf)`` at the previous call that returned None for this same
    head. Bytes before it are not searched or checked again, so a peer sending its head a byte
    at a time costs work in proportion to the bytes, not to their square. A complete head is
    always validated whole.
    """
    start = _skip_empty_lines(buf, _CLIENT, 400) if buf.startswith(b"\r") else 0
    end = buf.find(b"\r\n\r\n", max(start, scanned - 3) if scanned <= len(buf) else start)
    if end < 0:
        _check_incomplete(buf, start, limits, True, scanned)
        return None
    line_end = buf.find(b"\r\n", start)
    if line_end - start > limits.max_request_line:
        raise error(f"request line longer than {limits.max_request_line} bytes", _CLIENT, 414)
    if end + 4 - start > limits.max_header_bytes:
        raise error(f"request head larger than {limits.max_header_bytes} bytes", _CLIENT, 431)
    method, target, scheme, authority, rest, version = _request_line(buf, start, line_end)
    headers = _fields(buf, line_end, end, limits, _CLIENT, 400, 431)

    host_value: bytes | None = None
    host_count = 0
    content_length: bytes | None = None
    chunked = False
    tokens = _EMPTY
    expect_continue = False
    has_upgrade = False
    for name, value in headers:
        kind = _REQUEST_FIELDS.get(name.lower())
        if kind is None:
            continue
        if kind == _HOST:
            host_count += 1
            host_value = value
        elif kind == _CONTENT_LENGTH:
            if content_length is not None:
                raise error("more than one Content-Length header", _CLIENT, 400)
            if CONTENT_LENGTH.fullmatch(value) is None:
                raise error(f"invalid Content-Length {value[:40]!r}", _CLIENT, 400)
            content_length = value
        elif kind == _TRANSFER_ENCODING:
            if chunked:
                raise error("more than one Transfer-Encoding header", _CLIENT, 400)
            if value.lower() != b"chunked":
                raise error(f"unsupported Transfer-Encoding {value[:40]!r} (only 'chunked')", _CLIENT, 400)
            chunked = True
        elif kind == _CONNECTION:
            tokens = tokens | _connection_tokens(value) if tokens else _connection_tokens(value)
        elif kind == _EXPECT:
            # RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
            expect_continue = expect_continue or (value.lower() == b"100-continue" and version == b"1.1")
        else:  # _UPGRADE
            has_upgrade = True

    if host_count > 1:
        raise error("more than one Host header", _CLIENT, 400)
    if host_count == 0 and version == b"1.1":
        raise error("HTTP/1.1 request without a Host header", _CLIENT, 400)
    header_host: tuple[str | None, int | None] = (None, None)
    if host_value:  # an empty Host is valid syntax (a target without authority)
        header_host = _host_port(host_value, 80, False)

    host: str | None
    port: int | None
    if scheme is not None and method != b"CONNECT":  # absolute-form, the proxy's usual case
        form = "absolute"
        scheme, host, port = _scheme_authority(scheme, authority)
        if not rest:
            # RFC 9112 3.2.4: the last proxy sends an OPTIONS without a path as "OPTIONS *"
            path = b"*" if method == b"OPTIONS" else b"/"
        elif rest[:1] == b"?":
            path = b"/" + rest
        else:
            path = rest
    else:
        form, host, port, path = _other_target(method, target)
        if host is None:  # origin- and asterisk-form: the Host header names the destination
            host, port = header_host

    if form == "authority" and (chunked or (content_length is not None and int(content_length) != 0)):
        # RFC 9110 9.3.6: a CONNECT has no content; one framed with a body would be read as
        # tunnel bytes here and as a body by a proxy in front
        raise error("CONNECT with a body (Content-Length or Transfer-Encoding)", _CLIENT, 400)
    if chunked:
        if content_length is not None:
            raise error("both Content-Length and Transfer-Encoding in a request", _CLIENT, 400)
        if version == b"1.0":
            raise error("Transfer-Encoding in an HTTP/1.0 request", _CLIENT, 400)
        framing = CHUNKED
        length = 0
    elif content_length is not None:
        framing = LENGTH
        length = int(content_length)
    else:
        framing = NO_BODY
        length = 0

    if version == b"1.1":
        keep_alive = b"close" not in tokens
    else:
        keep_alive = b"keep-alive" in tokens and b"close" not in tokens

    head = RequestHead(
        method,
        target,
        version,
        headers,
        form,
        scheme,
        host,
        port,
        path,
        framing,
        length,
        keep_alive,
        expect_continue,
        tokens,
        has_upgrade and b"upgrade" in tokens,
    )
    return head, end + 4


def _request_line(
    buf: bytes | bytearray, start: int, end: int
) -> tuple[bytes, bytes, bytes | None, bytes | None, bytes | None, bytes]:
    """(method, target, scheme, authority, rest, version); the middle three for an absolute URI."""
    m = REQUEST_LINE.fullmatch(buf, start, end)
    if m is None:
        raise error(describe_start_line(bytes(buf[start:end]), "request line"), _CLIENT, 400)
    groups = m.groups()
    version = groups[5]
    if version != b"1.1" and version != b"1.0":
        raise error(f"HTTP/{version.decode()} is not supported (only HTTP/1.0 and HTTP/1.1)", _CLIENT, 505)
    return groups  # type: ignore[return-value]


def _check_target(method: bytes, target: bytes, scheme: bytes | None, authority: bytes | None) -> None:
    """Raise unless the request target is valid for the method (the incomplete-head check)."""
    if scheme is not None and method != b"CONNECT":
        _scheme_authority(scheme, authority or b"")
    else:
        _other_target(method, target)


def _other_target(method: bytes, target: bytes) -> tuple[str, str | None, int | None, bytes]:
    """(form, host, port, path) of a target that is not an absolute http(s) URI; host None for
    origin- and asterisk-form, whose destination is in the Host header."""
    if method == b"CONNECT":
        if target[:1] == b"/" or b"://" in target or target == b"*":
            raise error("CONNECT needs an authority-form target (host:port)", _CLIENT, 400)
        if b"@" in target:
            raise error("userinfo in a CONNECT target", _CLIENT, 400)
        host, port = _host_port(target, None, True)
        return "authority", host, port, b""
    if target[:1] == b"/":
        return "origin", None, None, target
    if target == b"*":
        if method != b"OPTIONS":
            raise error("asterisk-form request target is only valid with OPTIONS", _CLIENT, 400)
        return "asterisk", None, None, b"*"
    raise error(f"invalid request target {target[:60]!r}", _CLIENT, 400)


@lru_cache(maxsize=4096)
def _scheme_authority(scheme: bytes, authority: bytes) -> tuple[bytes, str, int]:
    """(lowercased scheme, host, port) of an absolute URI's scheme and authority. Cached: the
    same few origins come again and again, and failures (which raise) are not cached."""
    scheme = scheme.lower()
    if scheme == b"http":
        default = 80
    elif scheme == b"https":
        default = 443
    else:
        raise error(f"unsupported URI scheme {scheme[:20]!r} (only http and https)", _CLIENT, 400)
    if b"@" in authority:
        raise error("userinfo in the request URI is not accepted", _CLIENT, 400)
    if not authority:
        raise error("request URI without a host", _CLIENT, 400)
    host, port = _host_port(authority, default, False)
    return scheme, host, port  # type: ignore[return-value]  # never None with a default port


@lru_cache(maxsize=4096)
def _host_port(raw: bytes, default_port: int | None, need_port: bool) -> tuple[str, int | None]:
    """``host [":" port]`` -> (lowercased host, IPv6 unbracketed and compressed; port).

    Cached: the same few hosts come again and again, and failures (which raise) are not cached.
    """
    m = HOST_PORT.fullmatch(raw)
    if m is None:
        raise error(f"invalid host {raw[:80]!r}", _CLIENT, 400)
    v6, name, port_raw = m.groups()
    if v6 is not None:
        try:
            host = ip_text(ipaddress.IPv6Address(v6.decode("ascii")))
        except ValueError:
            raise error(f"invalid IPv6 literal {raw[:80]!r}", _CLIENT, 400) from None
    else:
        if len(name) > 255:
            raise error("host name longer than 255 bytes", _CLIENT, 400)
        if NUMERIC_LAST_LABEL.fullmatch(name) and IPV4_DOTTED.fullmatch(name) is None:
            raise error(f"ambiguous numeric host {name[:80]!r} (only dotted-quad IPv4)", _CLIENT, 400)
        host = name.decode("ascii").lower()
    if port_raw:
        port = int(port_raw) if len(port_raw) <= 5 else 0
        if not 0 < port <= 65535:
            raise error(f"invalid port in {raw[:80]!r}", _CLIENT, 400)
        return host, port
    if need_port:
        raise error(f"CONNECT target without a port: {raw[:80]!r}", _CLIENT, 400)
    return host, default_port


@lru_cache(maxsize=256)
def _connection_tokens(value: bytes) -> frozenset[bytes]:
    """Lowercase tokens of one Connection value; cached, as the same few values repeat."""
    if b"," not in value:
        return frozenset((value.lower(),)) if value else _EMPTY
    return frozenset(t for t in (p.strip(b" \t").lower() for p in value.split(b",")) if t)


# --- responses --------------------------------------------------------------------------------


def parse_response_head(
    buf: bytes | bytearray, limits: Limits, request_method: bytes, *, scanned: int = 0
) -> tuple[ResponseHead, int] | None:
    """(head, bytes consumed) once ``buf`` holds a whole response head, None while more is needed.

    Framing per RFC 9112 6.3. 1xx heads are returned too (status < 200); the caller loops.
    Raises ProtocolError(side="upstream", status=502). ``scanned`` as for parse_request_head.
    """
    start = _skip_empty_lines(buf, _UPSTREAM, 502) if buf.startswith(b"\r") else 0
    end = buf.find(b"\r\n\r\n", max(start, scanned - 3) if scanned <= len(buf) else start)
    if end < 0:
        _check_incomplete(buf, start, limits, False, scanned)
        return None
    line_end = buf.find(b"\r\n", start)
    if line_end - start > limits.max_request_line:
        raise error(f"status line longer than {limits.max_request_line} bytes", _UPSTREAM, 502)
    if end + 4 - start > limits.max_header_bytes:
        raise error(f"response head larger than {limits.max_header_bytes} bytes", _UPSTREAM, 502)
    version, status, reason = _status_line(buf, start, line_end)
    headers = _fields(buf, line_end, end, limits, _UPSTREAM, 502, 502)

    length = -1
    codings: list[bytes] | None = None
    tokens = _EMPTY
    repeated_length = False
    for name, value in headers:
        kind = _RESPONSE_FIELDS.get(name.lower())
        if kind is None:
            continue
        if kind == _CONTENT_LENGTH:
            if length < 0 and CONTENT_LENGTH.fullmatch(value) is not None:
                length = int(value)  # the usual case: one field, one number
            else:
                length = _response_content_length(value, length)
                repeated_length = True
        elif kind == _TRANSFER_ENCODING:
            if codings is None:
                codings = []
            codings.extend(c for c in (p.strip(b" \t").lower() for p in value.split(b",")) if c)
        else:  # _CONNECTION
            tokens = tokens | _connection_tokens(value) if tokens else _connection_tokens(value)

    if codings is not None:
        if not codings:
            raise error("empty Transfer-Encoding in a response", _UPSTREAM, 502)
        if version == b"1.0":
            raise error("Transfer-Encoding in an HTTP/1.0 response", _UPSTREAM, 502)

    if version == b"1.1":
        keep_alive = b"close" not in tokens
    else:
        keep_alive = b"keep-alive" in tokens and b"close" not in tokens
    if codings is not None and length >= 0:
        keep_alive = False  # both framings sent: answer this one, then trust the connection no more

    if (
        status < 200
        or status == 204
        or status == 304
        or request_method == b"HEAD"
        or (request_method == b"CONNECT" and status < 300)
    ):
        framing = NO_BODY
        length = 0
    elif codings is not None:
        if codings[-1] == b"chunked":
            framing = CHUNKED
        else:  # RFC 9112 6.3 (4): the final coding is not chunked -> read until the server closes
            framing = UNTIL_CLOSE
            keep_alive = False
        length = 0
    elif length >= 0:
        framing = LENGTH
    else:
        framing = UNTIL_CLOSE
        keep_alive = False
        length = 0

    if repeated_length and framing == LENGTH:
        # RFC 9110 8.6: equal values repeated (in fields or a list) stand for one; what is passed
        # on is that one field, not a repetition the next recipient may refuse
        headers = [h for h in headers if h[0].lower() != b"content-length"] + [(b"Content-Length", b"%d" % length)]
    head = ResponseHead(status, reason, version, headers, framing, length, keep_alive, tokens)
    return head, end + 4


def _status_line(buf: bytes | bytearray, start: int, end: int) -> tuple[bytes, int, bytes]:
    m = STATUS_LINE.fullmatch(buf, start, end)
    if m is None:
        raise error(describe_start_line(bytes(buf[start:end]), "status line"), _UPSTREAM, 502)
    version, code, reason = m.groups()
    if version != b"1.1" and version != b"1.0":
        raise error(f"HTTP/{version.decode()} response to an HTTP/1.1 request", _UPSTREAM, 502)
    status = int(code)
    if status < 100:
        raise error(f"invalid status code {code.decode()}", _UPSTREAM, 502)
    return version, status, reason or b""


def _response_content_length(value: bytes, previous: int) -> int:
    """Identical repeated values (in one list or several fields) are accepted (RFC 9110 8.6);
    anything else that could frame the body two ways is refused."""
    if b"," in value:
        parts = [p.strip(b" \t") for p in value.split(b",")]
    else:
        parts = [value]
    length = previous
    for part in parts:
        if CONTENT_LENGTH.fullmatch(part) is None:
            raise error(f"invalid Content-Length {value[:40]!r} in a response", _UPSTREAM, 502)
        n = int(part)
        if length >= 0 and n != length:
            raise error("conflicting Content-Length values in a response", _UPSTREAM, 502)
        length = n
    return length


# --- shared -----------------------------------------------------------------------------------


def _fields(
    buf: bytes | bytearray, line_end: int, end: int, limits: Limits, side: str, status: int, too_many: int
) -> list[tuple[bytes, bytes]]:
    """The field lines between the start line's CRLF (at ``line_end``) and the head's final
    CRLF CRLF (at ``end``), validated, as (name, OWS-stripped value) in order."""
    if line_end == end:
        return []
    fields = FIELDS.findall(buf, line_end + 2, end + 2)
    lines = buf.count(b"\r\n", line_end + 2, end + 2)
    if len(fields) != lines:
        raise error(describe_bad_block(bytes(buf[line_end + 2 : end])), side, status)
    if lines > limits.max_headers:
        raise error(f"more than {limits.max_headers} header fields", side, too_many)
    if buf.find(b" \r\n", line_end, end + 2) >= 0 or buf.find(b"\t\r\n", line_end, end + 2) >= 0:
        return [(name, value.rstrip(b" \t")) for name, value in fields]
    return fields


def _skip_empty_lines(buf: bytes | bytearray, side: str, status: int) -> int:
    start = 0
    while buf.startswith(b"\r\n", start):
        start += 2
        if start > 2 * MAX_LEADING_EMPTY_LINES:
            raise error(f"more than {MAX_LEADING_EMPTY_LINES} empty lines before the start line", side, status)
    return start


def _check_incomplete(buf: bytes | bytearray, start: int, limits: Limits, request: bool, scanned: int) -> None:
    """Raise if an incomplete head can no longer become valid; return if more bytes may fix it.

    Every step is a C-level scan: bytes that never belong in a head (bare CR or LF, CTLs but
    HTAB) by counting; the start line against its pattern, or a pattern of its prefixes while
    its CRLF is missing; the field lines completed since ``scanned`` against the field-line
    pattern; a field line begun since then against a pattern of its prefixes. Bytes before
    ``scanned`` were checked by an earlier call and are not scanned again (a line is looked at
    whole once, when its CRLF arrives), so a peer dribbling a head costs work in proportion to
    what it sends, plus the start line (at most max_request_line) per call.
    """
    if request:
        side, status, what = _CLIENT, 400, "request line"
        too_long, too_big = 414, 431
        prefix = REQUEST_LINE_PREFIX
    else:
        side, status, what = _UPSTREAM, 502, "status line"
        too_long = too_big = 502
        prefix = STATUS_LINE_PREFIX
    n = len(buf)
    if n <= start:
        return
    if not start < scanned <= n:
        scanned = start
    # The first byte not checked yet; a CR the last call saw at its end is looked at again.
    new = scanned - 1 if scanned > start and buf[scanned - 1] == 13 else scanned
    crlf = buf.count(b"\r\n", new)
    if buf.count(b"\n", new) != crlf:
        raise error("bare LF in a head (lines must end with CRLF)", side, status)
    if buf.count(b"\r", new) != crlf + (buf[-1] == 13):
        raise error("bare CR in a head", side, status)
    fresh = buf[new:] if new else buf
    if len(fresh.translate(None, CTL_BYTES)) != len(fresh):
        raise error(("NUL byte" if b"\x00" in fresh else "control character") + " in a head", side, status)

    line_end = buf.find(b"\r\n", start)
    if line_end < 0:
        line_len = n - start - (buf[-1] == 13)
        if line_len > limits.max_request_line:
            raise error(f"{what} longer than {limits.max_request_line} bytes", side, too_long)
        if new > start:  # the line's start was a valid prefix: is this only more of the same part?
            spaces = buf.count(b" ", start, new)
            if request and spaces == 1 and buf.find(b" ", new) < 0 and buf.find(b"\t", new) < 0:
                return  # more of the request target
            if not request and spaces >= 2:
                return  # more of the reason phrase (any byte the byte checks let through)
        if prefix.fullmatch(buf, start) is None:
            raise error(describe_start_line(bytes(buf[start:]).rstrip(b"\r"), what), side, status)
        return
    if line_end - start > limits.max_request_line:
        raise error(f"{what} longer than {limits.max_request_line} bytes", side, too_long)
    if n - start >= limits.max_header_bytes:
        raise error(f"head larger than {limits.max_header_bytes} bytes", side, too_big)
    if line_end + 2 > scanned:  # the start line is new
        if request:
            method, target, scheme, authority, _, _ = _request_line(buf, start, line_end)
            _check_target(method, target, scheme, authority)
        else:
            _status_line(buf, start, line_end)
    last = buf.rfind(b"\r\n", max(new, line_end))
    if last < 0:
        # No line ended since the last call: the new bytes continue the field line that was
        # arriving then. If that line began nearby and has no colon yet (so far all name), the
        # new bytes must continue a valid line; a longer line is checked whole at its CRLF.
        begun = buf.rfind(b"\r\n", max(line_end, new - 256), new)
        if begun >= 0 and buf.find(b":", begun + 2, new) < 0 and FIELD_PREFIX.fullmatch(buf, new) is None:
            raise error(describe_field_line(bytes(buf[begun + 2 :]).rstrip(b"\r")), side, status)
        return
    checked = max(buf.rfind(b"\r\n", line_end, scanned), line_end)  # end of the last line checked whole
    if last > checked:
        if buf.count(b"\r\n", line_end + 2) > limits.max_headers:
            raise error(f"more than {limits.max_headers} header fields", side, too_big)
        if FIELD_BLOCK.fullmatch(buf, checked + 2, last + 2) is None:
            raise error(describe_bad_block(bytes(buf[checked + 2 : last])), side, status)
    if FIELD_PREFIX.fullmatch(buf, last + 2) is None:  # the field line now arriving
        raise error(describe_field_line(bytes(buf[last + 2 :]).rstrip(b"\r")), side, status)
