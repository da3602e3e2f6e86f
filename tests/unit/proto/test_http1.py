"""HTTP/1.x head parsing, building and header forwarding (arcus.proto.http1).

Every valid head is parsed three ways (whole, one byte at a time, with trailing bytes); every
malformed one is its own case asserting the status the proxy will answer; hypothesis feeds
arbitrary bytes and round-trips built heads.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arcus.errors import ProtocolError
from arcus.proto.http1 import (
    CHUNKED,
    HOP_BY_HOP,
    LENGTH,
    NO_BODY,
    REASONS,
    UNTIL_CLOSE,
    Limits,
    RequestHead,
    ResponseHead,
    build_request_head,
    build_response_head,
    forward_headers,
    parse_request_head,
    parse_response_head,
)

LIMITS = Limits()
TRAILING = b"BODY-OR-NEXT-REQUEST\r\n\r\n"


def parse_req(buf: bytes | bytearray, scanned: int = 0) -> tuple[RequestHead, int] | None:
    return parse_request_head(buf, LIMITS, scanned=scanned)


def parser_for_response(method: bytes):
    return lambda buf, scanned=0: parse_response_head(buf, LIMITS, method, scanned=scanned)


def parse_three_ways(parse, data: bytes):
    """The whole input, one byte at a time (None until the last byte; both without and with
    ``scanned``), and with trailing bytes (consumed points at the body start); all agree.
    Returns the head."""
    whole = parse(data)
    assert whole is not None
    head, consumed = whole
    assert consumed == len(data)
    for i in range(len(data)):
        assert parse(data[:i]) is None, f"complete after {i} of {len(data)} bytes"
        assert parse(data[:i], max(i - 1, 0)) is None, f"complete after {i} of {len(data)} bytes (scanned)"
    assert parse(data, len(data) - 1) == whole
    assert parse(bytearray(data)) == whole
    assert parse(data + TRAILING) == whole
    return head


def raises_status(parse, data: bytes, status: int, side: str = "client") -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(data)
    assert info.value.status == status, info.value.message
    assert info.value.side == side
    return info.value


def first_failing_prefix(parse, data: bytes, incremental: bool = False) -> int:
    """Length of the shortest prefix that raises, the input fed one byte at a time (with
    ``scanned`` set to the previous length when ``incremental``)."""
    for i in range(1, len(data) + 1):
        try:
            result = parse(data[:i], i - 1 if incremental else 0)
        except ProtocolError:
            return i
        assert result is None, "a malformed head was accepted"
    raise AssertionError("never raised")


# --- valid requests ----------------------------------------------------------------------------

REQ = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"


def test_absolute_form_get() -> None:
    head = parse_three_ways(parse_req, REQ)
    assert (head.method, head.target, head.version) == (b"GET", b"http://example.com/", b"1.1")
    assert head.headers == [(b"Host", b"example.com")]
    assert (head.form, head.scheme, head.host, head.port, head.path) == ("absolute", b"http", "example.com", 80, b"/")
    assert (head.framing, head.content_length) == (NO_BODY, 0)
    assert head.keep_alive and not head.expect_continue and not head.upgrade
    assert head.connection_tokens == frozenset()


@pytest.mark.parametrize(
    ("target", "scheme", "host", "port", "path"),
    [
        (b"http://example.com", b"http", "example.com", 80, b"/"),
        (b"http://example.com?q=1", b"http", "example.com", 80, b"/?q=1"),
        (b"http://example.com:8080/a/b?c=d&e", b"http", "example.com", 8080, b"/a/b?c=d&e"),
        (b"https://example.com/x", b"https", "example.com", 443, b"/x"),
        (b"HTTP://Example.COM/Path", b"http", "example.com", 80, b"/Path"),
        (b"http://example.com:/", b"http", "example.com", 80, b"/"),
        (b"http://127.0.0.1:3128/", b"http", "127.0.0.1", 3128, b"/"),
        (b"http://[::1]:8080/x", b"http", "::1", 8080, b"/x"),
        (b"http://[2001:DB8:0:0::1]/", b"http", "2001:db8::1", 80, b"/"),
        (b"http://[::ffff:127.0.0.1]/", b"http", "::ffff:127.0.0.1", 80, b"/"),  # mapped: shown dotted, as written
        (b"http://[::FFFF:7f00:1]/", b"http", "::ffff:127.0.0.1", 80, b"/"),
        (b"http://example.com./", b"http", "example.com.", 80, b"/"),
        (b"http://xn--bcher-kva.example/", b"http", "xn--bcher-kva.example", 80, b"/"),
        (b"http://a.example/%7Euser/\xc3\xa9", b"http", "a.example", 80, b"/%7Euser/\xc3\xa9"),
        (b"http://example.com:65535//x", b"http", "example.com", 65535, b"//x"),
    ],
)
def test_absolute_form_targets(target: bytes, scheme: bytes, host: str, port: int, path: bytes) -> None:
    data = b"GET " + target + b" HTTP/1.1\r\nHost: other.example:81\r\n\r\n"
    head = parse_three_ways(parse_req, data)
    assert (head.form, head.scheme, head.host, head.port, head.path) == ("absolute", scheme, host, port, path)
    assert head.target == target


@pytest.mark.parametrize(
    ("host_header", "host", "port"),
    [
        (b"example.com", "example.com", 80),
        (b"Example.com:8080", "example.com", 8080),
        (b"[::1]:3128", "::1", 3128),
        (b"10.0.0.1", "10.0.0.1", 80),
        (b"", None, None),
    ],
)
def test_origin_form_takes_host_header(host_header: bytes, host: str | None, port: int | None) -> None:
    data = b"GET /index.html?x=1 HTTP/1.1\r\nHost: " + host_header + b"\r\n\r\n"
    head = parse_three_ways(parse_req, data)
    assert (head.form, head.scheme, head.host, head.port, head.path) == ("origin", None, host, port, b"/index.html?x=1")


@pytest.mark.parametrize(
    ("target", "host", "port"),
    [
        (b"example.com:443", "example.com", 443),
        (b"EXAMPLE.com:8443", "example.com", 8443),
        (b"[2001:db8::1]:443", "2001:db8::1", 443),
        (b"192.0.2.1:22", "192.0.2.1", 22),
    ],
)
def test_connect_authority_form(target: bytes, host: str, port: int) -> None:
    data = b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n"
    head = parse_three_ways(parse_req, data)
    assert (head.method, head.form, head.scheme, head.host, head.port, head.path) == (
        b"CONNECT", "authority", None, host, port, b""
    )


def test_connect_with_content_length_zero_is_no_body() -> None:
    head = parse_three_ways(parse_req, b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nContent-Length: 0\r\n\r\n")
    assert (head.form, head.content_length) == ("authority", 0)


def test_options_of_an_absolute_uri_without_a_path_goes_on_as_asterisk() -> None:
    head = parse_three_ways(parse_req, b"OPTIONS http://example.com:8001 HTTP/1.1\r\nHost: example.com:8001\r\n\r\n")
    assert (head.form, head.host, head.port, head.path) == ("absolute", "example.com", 8001, b"*")
    head = parse_three_ways(parse_req, b"OPTIONS http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert head.path == b"/"


def test_options_asterisk_form() -> None:
    head = parse_three_ways(parse_req, b"OPTIONS * HTTP/1.1\r\nHost: example.com:8000\r\n\r\n")
    assert (head.form, head.host, head.port, head.path) == ("asterisk", "example.com", 8000, b"*")


def test_content_length_body() -> None:
    data = b"POST http://a.example/upload HTTP/1.1\r\nHost: a.example\r\nContent-Length: 12\r\n\r\n"
    head = parse_three_ways(parse_req, data)
    assert (head.framing, head.content_length) == (LENGTH, 12)


def test_content_length_zero_is_length_framing() -> None:
    head = parse_three_ways(parse_req, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    assert (head.framing, head.content_length) == (LENGTH, 0)


def test_content_length_eighteen_digits() -> None:
    head = parse_three_ways(parse_req, b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n")
    assert head.content_length == 999_999_999_999_999_999


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"CHUNKED", b"chunked  ", b"\tchunked"])
def test_chunked_request(value: bytes) -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + value + b"\r\n\r\n"
    head = parse_three_ways(parse_req, data)
    assert (head.framing, head.content_length) == (CHUNKED, 0)


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Keep-Alive, CLOSE", False),
        (b"1.1", b"keep-alive", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"Keep-Alive", True),
        (b"1.0", b"close", False),
    ],
)
def test_keep_alive(version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    data = b"GET / HTTP/" + version + b"\r\nHost: a\r\n"
    if connection is not None:
        data += b"Connection: " + connection + b"\r\n"
    head = parse_three_ways(parse_req, data + b"\r\n")
    assert head.keep_alive is keep_alive


def test_http10_without_host() -> None:
    head = parse_three_ways(parse_req, b"GET http://a.example/ HTTP/1.0\r\nUser-Agent: old\r\n\r\n")
    assert (head.version, head.host, head.keep_alive) == (b"1.0", "a.example", False)


def test_http10_origin_form_without_host_has_no_destination() -> None:
    head = parse_three_ways(parse_req, b"GET / HTTP/1.0\r\n\r\n")
    assert (head.host, head.port, head.headers) == (None, None, [])


@pytest.mark.parametrize(
    ("version", "value", "expect"),
    [(b"1.1", b"100-continue", True), (b"1.1", b"100-Continue", True), (b"1.1", b"something", False),
     (b"1.0", b"100-continue", False)],
)
def test_expect_continue(version: bytes, value: bytes, expect: bool) -> None:
    data = b"PUT / HTTP/" + version + b"\r\nHost: a\r\nContent-Length: 3\r\nExpect: " + value + b"\r\n\r\n"
    assert parse_three_ways(parse_req, data).expect_continue is expect


def test_connection_tokens_from_all_connection_headers() -> None:
    data = (
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, ,keep-alive\r\nconnection: X-BAR\r\n"
        b"X-Foo: 1\r\nUpgrade: websocket\r\n\r\n"
    )
    head = parse_three_ways(parse_req, data)
    assert head.connection_tokens == frozenset({b"x-foo", b"keep-alive", b"x-bar"})
    assert head.upgrade is False  # Upgrade present but not listed in Connection


def test_upgrade() -> None:
    data = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    assert parse_three_ways(parse_req, data).upgrade is True


def test_headers_keep_order_duplicates_and_case_with_ows_stripped() -> None:
    data = (
        b"GET / HTTP/1.1\r\nhost: a\r\nX-Dup: 1\r\nx-dup:2\r\nX-Spaces: \t a  b \t \r\n"
        b"X-Empty:\r\nX-Blank:   \r\nX-Obs: caf\xc3\xa9\xff\r\nX-Tab: a\tb\r\n\r\n"
    )
    head = parse_three_ways(parse_req, data)
    assert head.headers == [
        (b"host", b"a"),
        (b"X-Dup", b"1"),
        (b"x-dup", b"2"),
        (b"X-Spaces", b"a  b"),
        (b"X-Empty", b""),
        (b"X-Blank", b""),
        (b"X-Obs", b"caf\xc3\xa9\xff"),
        (b"X-Tab", b"a\tb"),
    ]


def test_methods_are_case_sensitive_tokens() -> None:
    head = parse_three_ways(parse_req, b"get / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert head.method == b"get"
    head = parse_three_ways(parse_req, b"M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n".replace(b"*", b"/"))
    assert head.method == b"M-SEARCH"


@pytest.mark.parametrize("empty_lines", [1, 4])
def test_leading_empty_lines_are_consumed(empty_lines: int) -> None:
    data = b"\r\n" * empty_lines + REQ
    head = parse_three_ways(parse_req, data)
    assert head.host == "example.com"


def test_scanned_beyond_the_buffer_is_ignored() -> None:
    """A caller's wrong ``scanned`` never hides a complete head."""
    assert parse_request_head(REQ, LIMITS, scanned=len(REQ) + 100) == parse_req(REQ)


def test_pipelined_requests_parse_one_after_the_other() -> None:
    two = REQ + b"GET http://b.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n"
    first, n = parse_req(two)
    second, m = parse_req(two[n:])
    assert (first.host, second.host, n + m) == ("example.com", "b.example", len(two))


def test_limits_are_inclusive() -> None:
    """A request line, head and field count exactly at their limits pass; one more is refused."""
    line = b"GET /" + b"a" * 16 + b" HTTP/1.1"  # 30 bytes
    data = line + b"\r\nHost: a\r\nX: b\r\n\r\n"
    at_limit = Limits(max_request_line=30, max_header_bytes=len(data), max_headers=2)
    parse = lambda b, scanned=0: parse_request_head(b, at_limit, scanned=scanned)  # noqa: E731
    assert parse_three_ways(parse, data).path == b"/" + b"a" * 16
    for limits, status in (
        (Limits(max_request_line=29, max_header_bytes=len(data), max_headers=2), 414),
        (Limits(max_request_line=30, max_header_bytes=len(data) - 1, max_headers=2), 431),
        (Limits(max_request_line=30, max_header_bytes=len(data), max_headers=1), 431),
    ):
        raises_status(lambda b, limits=limits: parse_request_head(b, limits), data, status)


# --- malformed requests ----------------------------------------------------------------------

H = b"Host: a\r\n"
BAD_REQUESTS = {
    # line endings
    "bare LF line ends": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    "bare LF after request line": (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    "bare LF in header section": (b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
    "bare LF ending header section": (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    "bare LF before final CRLF": (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
    "bare CR in header section": (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    "bare CR in request line": (b"GET /\r HTTP/1.1\r\n" + H + b"\r\n", 400),
    "bare CR before CRLF": (b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400),
    "leading bare LF": (b"\nGET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    # NUL and CTL
    "NUL in request target": (b"GET /\x00 HTTP/1.1\r\n" + H + b"\r\n", 400),
    "NUL in method": (b"G\x00T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "NUL in header value": (b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    "NUL in header name": (b"GET / HTTP/1.1\r\n" + H + b"X\x00: ab\r\n\r\n", 400),
    "CTL in header value": (b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n", 400),
    "DEL in header value": (b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400),
    "ESC in header value": (b"GET / HTTP/1.1\r\n" + H + b"X: \x1b[31m\r\n\r\n", 400),
    "HTAB in request target": (b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n", 400),
    "TLS handshake on the HTTP port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    # field syntax
    "obs-fold with SP": (b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    "obs-fold with HTAB": (b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n\tb\r\n\r\n", 400),
    "obs-fold first line": (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    "space before colon": (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    "tab before colon": (b"GET / HTTP/1.1\r\n" + H + b"X\t: a\r\n\r\n", 400),
    "empty field name": (b"GET / HTTP/1.1\r\n" + H + b": a\r\n\r\n", 400),
    "non-token field name": (b"GET / HTTP/1.1\r\n" + H + b"X(y): a\r\n\r\n", 400),
    "space in field name": (b"GET / HTTP/1.1\r\n" + H + b"X y: a\r\n\r\n", 400),
    "non-ASCII field name": (b"GET / HTTP/1.1\r\n" + H + b"X\xc3\xa9: a\r\n\r\n", 400),
    "line without colon": (b"GET / HTTP/1.1\r\n" + H + b"Xyz\r\n\r\n", 400),
    # request line
    "two spaces after method": (b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "two spaces before version": (b"GET /  HTTP/1.1\r\n" + H + b"\r\n", 400),
    "leading space": (b" GET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "trailing space": (b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400),
    "tab separators": (b"GET\t/\tHTTP/1.1\r\n" + H + b"\r\n", 400),
    "missing version": (b"GET /\r\n" + H + b"\r\n", 400),
    "missing target": (b"GET HTTP/1.1\r\n" + H + b"\r\n", 400),
    "lowercase protocol": (b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    "two-digit minor version": (b"GET / HTTP/1.10\r\n" + H + b"\r\n", 400),
    "no dot in version": (b"GET / HTTP/11\r\n" + H + b"\r\n", 400),
    "non-token method": (b"GE(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "empty request line": (b"\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "HTTP/2.0": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    "HTTP/0.9": (b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
    "HTTP/1.2": (b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    # targets
    "ftp scheme": (b"GET ftp://a.example/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "ws scheme": (b"GET ws://a.example/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "userinfo": (b"GET http://user:pw@a.example/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "userinfo without password": (b"GET http://user@a.example/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "absolute URI without host": (b"GET http:///path HTTP/1.1\r\n" + H + b"\r\n", 400),
    "absolute URI without slashes": (b"GET http:a.example/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "port zero": (b"GET http://a.example:0/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "port 65536": (b"GET http://a.example:65536/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "port six digits": (b"GET http://a.example:000080/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "port not numeric": (b"GET http://a.example:http/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "fragment": (b"GET http://a.example/#frag HTTP/1.1\r\n" + H + b"\r\n", 400),
    "unbracketed IPv6": (b"GET http://::1/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "invalid IPv6": (b"GET http://[::g]/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "IPv6 zone id": (b"GET http://[fe80::1%25eth0]/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "short numeric IPv4": (b"GET http://127.1/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "hex IPv4": (b"GET http://0x7f.0.0.1/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "decimal IPv4": (b"GET http://2130706433/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "octal IPv4": (b"GET http://010.0.0.1/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "out of range IPv4": (b"GET http://1.2.3.256/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "sub-delims in host": (b"GET http://a,b.example/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "pct-encoded host": (b"GET http://a%2eexample/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "host longer than 255": (b"GET http://" + b"a" * 256 + b"/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "relative target": (b"GET a.example/x HTTP/1.1\r\n" + H + b"\r\n", 400),
    "authority-form with GET": (b"GET a.example:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    "asterisk with GET": (b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    "CONNECT origin-form": (b"CONNECT / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "CONNECT absolute-form": (b"CONNECT http://a.example:443/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "CONNECT asterisk": (b"CONNECT * HTTP/1.1\r\n" + H + b"\r\n", 400),
    "CONNECT without port": (b"CONNECT a.example HTTP/1.1\r\n" + H + b"\r\n", 400),
    "CONNECT empty port": (b"CONNECT a.example: HTTP/1.1\r\n" + H + b"\r\n", 400),
    "CONNECT userinfo": (b"CONNECT u:p@a.example:443 HTTP/1.1\r\n" + H + b"\r\n", 400),
    "CONNECT path": (b"CONNECT a.example:443/x HTTP/1.1\r\n" + H + b"\r\n", 400),
    # Host
    "HTTP/1.1 without Host": (b"GET http://a.example/ HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    "two Host headers in HTTP/1.0": (b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400),
    "Host with space": (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "Host with path": (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    "Host with userinfo": (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    "Host with bad port": (b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400),
    "Host with open bracket": (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    "invalid Host beside absolute URI": (b"GET http://a.example/ HTTP/1.1\r\nHost: a,b\r\n\r\n", 400),
    # Content-Length
    "CL not a number": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", 400),
    "CL negative": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    "CL plus sign": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\n", 400),
    "CL hex": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\n", 400),
    "CL empty": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n", 400),
    "CL two numbers": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5 5\r\n\r\n", 400),
    "CL comma list same": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\n", 400),
    "CL comma list different": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5,6\r\n\r\n", 400),
    "CL 19 digits": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1000000000000000000\r\n\r\n", 400),
    "CL duplicate same": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
    "CL duplicate different": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\ncontent-length: 6\r\n\r\n", 400),
    "CL and TE": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "TE and CL": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400),
    # Transfer-Encoding
    "TE chunked, identity": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n", 400),
    "TE identity, chunked": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity, chunked\r\n\r\n", 400),
    "TE gzip, chunked": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 400),
    "TE xchunked": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    "TE chunkedx": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunkedx\r\n\r\n", 400),
    "TE chunked with VT": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\x0b\r\n\r\n", 400),
    "TE chunked with FF": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \x0cchunked\r\n\r\n", 400),
    "TE via obs-fold": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n", 400),
    "TE with space before colon": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n", 400),
    "TE duplicate": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "TE identity": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 400),
    "TE gzip": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    "TE empty": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \r\n\r\n", 400),
    "TE quoted": (b'POST / HTTP/1.1\r\n' + H + b'Transfer-Encoding: "chunked"\r\n\r\n', 400),
    "TE with parameter": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    "TE in HTTP/1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    # a CONNECT has no content (RFC 9110 9.3.6)
    "connect with content-length": (b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nContent-Length: 5\r\n\r\n", 400),
    "connect chunked": (b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    # limits
    "request line too long": (b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    "head too large": (b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 65536 + b"\r\n\r\n", 431),
    "too many headers": (b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n" * 100 + b"\r\n", 431),
}


@pytest.mark.parametrize(("data", "status"), list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_malformed_request_is_refused(data: bytes, status: int) -> None:
    raises_status(parse_req, data, status)
    raises_status(parse_req, bytearray(data), status)
    raises_status(parse_req, data + TRAILING, status)


BYTE_BY_BYTE = [
    pytest.param(data, status, incremental, id=f"{name}-{'scanned' if incremental else 'rescan'}")
    for name, (data, status) in BAD_REQUESTS.items()
    for incremental in (True, False)
    if incremental or len(data) < 10_000  # re-scanning a 64 KiB head per byte is what ``scanned`` avoids
]


@pytest.mark.parametrize(("data", "status", "incremental"), BYTE_BY_BYTE)
def test_malformed_request_fed_byte_by_byte_is_refused(data: bytes, status: int, incremental: bool) -> None:
    """Never accepted at any split, and refused by the time the head is complete."""
    n = first_failing_prefix(parse_req, data, incremental)
    raises_status(lambda b: parse_req(b, n - 1 if incremental else 0), data[:n], status)


@pytest.mark.parametrize(
    ("data", "at"),
    [
        (b"\x16\x03\x01\x02\x00", 1),  # a TLS ClientHello: refused on its first byte
        (b"GET /\x00", 6),
        (b"GET / HTTP/1.1\n", 15),
        (b"GET / HTTP/1.1\r\nHost: a\n", 24),
        (b"GET / HTTP/1.1\r\nHost: a\rX", 25),
        (b"GET  ", 5),
        (b"GET / HTTP/1.1 ", 15),
        (b"GET / HTTP/1.1x", 15),
        (b"GET / HTTP/1.x", 14),
        (b"GET / HTTP/2.0\r\n", 16),  # 505 as soon as the request line is complete
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded", 26),
        (b"GET / HTTP/1.1\r\nHost : a", 21),
        (b"GET / HTTP/1.1\r\nX\x01", 18),
        (b"GET / HTTP/1.1\r\nHost: a\x00", 24),
        (b"GET ftp://a/ HTTP/1.1\r\n", 23),
        (b"\r\n\r\n\r\n\r\n\r\n", 10),
    ],
)
def test_garbage_is_refused_before_the_head_ends(data: bytes, at: int) -> None:
    assert first_failing_prefix(parse_req, data) == at
    assert first_failing_prefix(parse_req, data, incremental=True) == at


def test_over_long_request_line_refused_before_its_crlf() -> None:
    limits = Limits(max_request_line=100)
    line = b"GET /" + b"a" * 95
    assert parse_request_head(line, limits) is None  # 100 bytes: may still end here
    assert parse_request_head(line + b"\r", limits) is None
    with pytest.raises(ProtocolError) as info:
        parse_request_head(line + b"a", limits)
    assert info.value.status == 414


def test_over_large_head_refused_before_its_end() -> None:
    limits = Limits(max_header_bytes=200)
    partial = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 160
    assert parse_request_head(partial, limits) is None
    with pytest.raises(ProtocolError) as info:
        parse_request_head(partial + b"a" * (200 - len(partial)), limits)
    assert info.value.status == 431


def test_too_many_headers_refused_before_the_head_ends() -> None:
    limits = Limits(max_headers=3)
    partial = b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 3
    assert parse_request_head(partial, limits) is None
    with pytest.raises(ProtocolError) as info:
        parse_request_head(partial + b"X: a\r\n", limits)
    assert info.value.status == 431


def test_error_message_says_what_is_wrong() -> None:
    cases = {
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n": "obs-fold",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n": "whitespace between header field name and colon",
        b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n": "bare LF",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n": "NUL",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n": "more than one Content-Length",
    }
    for data, words in cases.items():
        with pytest.raises(ProtocolError, match=words):
            parse_req(data)


# --- responses ---------------------------------------------------------------------------------

RESP_CASES = {
    # name: (request method, raw head, status, framing, content_length, keep_alive)
    "200 with length": (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, LENGTH, 5, True),
    "200 chunked": (b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, CHUNKED, 0, True),
    "chunked wins over CL": (
        b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 200, CHUNKED, 0, False),
    "gzip then chunked": (b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", 200, CHUNKED, 0, True),
    "TE over two fields": (
        b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 200, CHUNKED, 0, True),
    "chunked not last": (
        b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 200, UNTIL_CLOSE, 0, False),
    "unknown coding": (b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n", 200, UNTIL_CLOSE, 0, False),
    "no framing": (b"GET", b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", 200, UNTIL_CLOSE, 0, False),
    "HEAD with CL": (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", 200, NO_BODY, 0, True),
    "HEAD chunked": (b"HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, NO_BODY, 0, True),
    "204": (b"GET", b"HTTP/1.1 204 No Content\r\n\r\n", 204, NO_BODY, 0, True),
    "304 with CL": (b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", 304, NO_BODY, 0, True),
    "100 continue": (b"POST", b"HTTP/1.1 100 Continue\r\n\r\n", 100, NO_BODY, 0, True),
    "103 early hints": (b"GET", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", 103, NO_BODY, 0, True),
    "101 switching": (
        b"GET", b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        101, NO_BODY, 0, True),
    "CONNECT 200": (b"CONNECT", b"HTTP/1.1 200 Connection established\r\n\r\n", 200, NO_BODY, 0, True),
    "CONNECT 407 with body": (
        b"CONNECT", b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 3\r\n\r\n", 407, LENGTH, 3, True),
    "identical CL twice": (
        b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n", 200, LENGTH, 7, True),
    "identical CL list": (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7,7\r\n\r\n", 200, LENGTH, 7, True),
    "close": (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 200, LENGTH, 0, False),
    "1.0 keep-alive": (
        b"GET", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: Keep-Alive\r\n\r\n", 200, LENGTH, 2, True),
    "1.0 default close": (b"GET", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", 200, LENGTH, 2, False),
    "no reason": (b"GET", b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 200, LENGTH, 0, True),
    "empty reason": (b"GET", b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", 404, LENGTH, 0, True),
    "999": (b"GET", b"HTTP/1.1 999 Request denied\r\nContent-Length: 0\r\n\r\n", 999, LENGTH, 0, True),
    "leading CRLF": (b"GET", b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, LENGTH, 0, True),
}


@pytest.mark.parametrize(
    ("method", "data", "status", "framing", "length", "keep_alive"), list(RESP_CASES.values()), ids=list(RESP_CASES)
)
def test_response_framing(method: bytes, data: bytes, status: int, framing: int, length: int, keep_alive: bool) -> None:
    head = parse_three_ways(parser_for_response(method), data)
    assert (head.status, head.framing, head.content_length, head.keep_alive) == (status, framing, length, keep_alive)


def test_response_fields() -> None:
    data = b"HTTP/1.1 404 Not \xe9 Found\t!\r\nServer:  x y \r\nConnection: close, X-Hop\r\nContent-Length: 3\r\n\r\n"
    head = parse_three_ways(parser_for_response(b"GET"), data)
    assert (head.version, head.status, head.reason) == (b"1.1", 404, b"Not \xe9 Found\t!")
    assert head.headers == [(b"Server", b"x y"), (b"Connection", b"close, X-Hop"), (b"Content-Length", b"3")]
    assert head.connection_tokens == frozenset({b"close", b"x-hop"})


@pytest.mark.parametrize("fields", [b"Content-Length: 7\r\nX: a\r\ncontent-length: 7\r\n", b"Content-Length: 7, 7,7\r\nX: a\r\n"])
def test_a_repeated_equal_content_length_is_passed_on_as_one_field(fields: bytes) -> None:
    head = parse_three_ways(parser_for_response(b"GET"), b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n")
    assert head.headers == [(b"X", b"a"), (b"Content-Length", b"7")]


def test_response_status_without_reason_has_empty_reason() -> None:
    head, _ = parse_response_head(b"HTTP/1.1 200\r\n\r\n", LIMITS, b"GET")
    assert head.reason == b""


RB = b"HTTP/1.1 200 OK\r\n"
BAD_RESPONSES = {
    "bare LF": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "bare LF in fields": RB + b"Content-Length: 0\nX: y\r\n\r\n",
    "bare CR": RB + b"X: a\rb\r\n\r\n",
    "NUL in value": RB + b"X: a\x00\r\n\r\n",
    "CTL in value": RB + b"X: a\x08\r\n\r\n",
    "CTL in reason": b"HTTP/1.1 200 O\x01K\r\n\r\n",
    "obs-fold": RB + b"Content-Length: 0\r\nX: a\r\n b\r\n\r\n",
    "space before colon": RB + b"Content-Length : 0\r\n\r\n",
    "CL conflicting fields": RB + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "CL conflicting list": RB + b"Content-Length: 5, 6\r\n\r\n",
    "CL list with empty element": RB + b"Content-Length: 5,\r\n\r\n",
    "CL not a number": RB + b"Content-Length: five\r\n\r\n",
    "CL negative": RB + b"Content-Length: -5\r\n\r\n",
    "CL 19 digits": RB + b"Content-Length: 1000000000000000000\r\n\r\n",
    "CL bad even for HEAD": RB + b"Content-Length: x\r\n\r\n",
    "TE in HTTP/1.0": b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "TE empty": RB + b"Transfer-Encoding: ,\r\n\r\n",
    "HTTP/2.0 status line": b"HTTP/2.0 200 OK\r\n\r\n",
    "HTTP/1.2 status line": b"HTTP/1.2 200 OK\r\n\r\n",
    "lowercase protocol": b"http/1.1 200 OK\r\n\r\n",
    "two-digit status": b"HTTP/1.1 20 OK\r\n\r\n",
    "four-digit status": b"HTTP/1.1 2000 OK\r\n\r\n",
    "status below 100": b"HTTP/1.1 099 Odd\r\n\r\n",
    "two spaces": b"HTTP/1.1  200 OK\r\n\r\n",
    "not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "status line too long": b"HTTP/1.1 200 " + b"O" * 8192 + b"\r\n\r\n",
    "head too large": RB + b"X: " + b"a" * 65536 + b"\r\n\r\n",
    "too many headers": RB + b"X: a\r\n" * 101 + b"\r\n",
}


@pytest.mark.parametrize("data", list(BAD_RESPONSES.values()), ids=list(BAD_RESPONSES))
def test_malformed_response_is_502(data: bytes) -> None:
    parse = parser_for_response(b"HEAD" if b"Content-Length: x" in data else b"GET")
    raises_status(parse, data, 502, side="upstream")
    n = first_failing_prefix(parse, data, incremental=True)
    raises_status(lambda b: parse(b, n - 1), data[:n], 502, side="upstream")
    if len(data) < 10_000:
        n = first_failing_prefix(parse, data)
        raises_status(parse, data[:n], 502, side="upstream")


# --- builders and forwarding ----------------------------------------------------------------


def test_build_request_head() -> None:
    out = build_request_head(b"GET", b"/a?b", [(b"Host", b"a.example"), (b"X", b"")])
    assert out == b"GET /a?b HTTP/1.1\r\nHost: a.example\r\nX: \r\n\r\n"
    assert build_request_head(b"GET", b"/", [], version=b"1.0") == b"GET / HTTP/1.0\r\n\r\n"


def test_build_response_head() -> None:
    out = build_response_head(502, REASONS[502], [(b"Content-Length", b"0")])
    assert out == b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
    assert build_response_head(200, b"OK", iter([]), version=b"1.0") == b"HTTP/1.0 200 OK\r\n\r\n"


@pytest.mark.parametrize(
    "headers",
    [[(b"X", b"a\r\nInjected: 1")], [(b"X", b"a\nb")], [(b"X\r\n", b"a")], [(b"X", b"a\rb")]],
)
def test_builders_refuse_line_injection(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ValueError):
        build_request_head(b"GET", b"/", headers)
    with pytest.raises(ValueError):
        build_response_head(200, b"OK", headers)
    with pytest.raises(ValueError):
        build_response_head(200, b"OK\r\nX: y", [])


def test_reasons_cover_every_status_the_proxy_answers_with() -> None:
    for status in (100, 200, 400, 403, 407, 414, 429, 431, 501, 502, 503, 504, 505):
        assert REASONS[status]


def test_hop_by_hop_set() -> None:
    assert HOP_BY_HOP == frozenset({
        b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
        b"te", b"transfer-encoding", b"upgrade",
    })


def test_forward_headers_drops_hop_by_hop_and_connection_named() -> None:
    headers = [
        (b"Host", b"a"),
        (b"Connection", b"keep-alive, X-Secret"),
        (b"Proxy-Authorization", b"Basic dXNlcjpwdw=="),
        (b"X-Secret", b"1"),
        (b"Accept", b"*/*"),
        (b"Keep-Alive", b"timeout=5"),
        (b"TE", b"trailers"),
        (b"Transfer-Encoding", b"chunked"),
        (b"x-secret", b"2"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"Upgrade", b"h2c"),
        (b"Trailer", b"X-T"),
        (b"Proxy-Authenticate", b"Basic"),
        (b"Accept", b"text/html"),
    ]
    kept = forward_headers(headers, frozenset({b"keep-alive", b"x-secret"}))
    assert kept == [(b"Host", b"a"), (b"Accept", b"*/*"), (b"Trailer", b"X-T"), (b"Accept", b"text/html")]
    assert headers[1] == (b"Connection", b"keep-alive, X-Secret")  # input untouched


def test_forward_headers_never_drops_framing_or_host_for_connection() -> None:
    headers = [(b"Host", b"a"), (b"Content-Length", b"5"), (b"X", b"y")]
    assert forward_headers(headers, frozenset({b"content-length", b"host", b"x"})) == headers[:2]


def test_forward_headers_of_parsed_request() -> None:
    data = (
        b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nProxy-Authorization: Basic eA==\r\n"
        b"Connection: close, X-Drop\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n"
    )
    head, _ = parse_req(data)
    assert forward_headers(head.headers, head.connection_tokens) == [(b"Host", b"a.example"), (b"X-Keep", b"2")]


# --- hypothesis ---------------------------------------------------------------------------------

TCHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
token = st.text(alphabet=TCHARS, min_size=1, max_size=20).map(str.encode)
field_value = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=40).map(
        lambda b: bytes(c for c in b if c == 9 or 32 <= c < 127 or c >= 128).strip(b" \t")
    ),
)
SPECIAL = {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade"}
plain_name = token.filter(lambda n: n.lower() not in SPECIAL)
origin_path = st.text(alphabet=string.ascii_letters + string.digits + "/-._~%!$&'()*+,;=:@?", max_size=60).map(
    lambda s: b"/" + s.encode()
)
host_name = st.from_regex(r"\A[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,15}){0,3}\Z", fullmatch=True)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(method=token, path=origin_path, host=host_name, port=st.integers(1, 65535), version=st.sampled_from([b"1.0", b"1.1"]),
       fields=st.lists(st.tuples(plain_name, field_value), max_size=12), length=st.none() | st.integers(0, 10**18 - 1))
def test_round_trip_request(method, path, host, port, version, fields, length) -> None:
    headers = [(b"Host", f"{host}:{port}".encode())] + fields
    if length is not None:
        headers.append((b"Content-Length", str(length).encode()))
    data = build_request_head(method if method != b"CONNECT" else b"GET", path, headers, version)
    head, consumed = parse_request_head(data, LIMITS)
    assert consumed == len(data)
    assert (head.method, head.target, head.version, head.headers) == (
        method if method != b"CONNECT" else b"GET", path, version, headers
    )
    assert (head.form, head.host, head.port, head.path) == ("origin", host, port, path)
    assert (head.framing, head.content_length) == ((NO_BODY, 0) if length is None else (LENGTH, length))


@FUZZ
@given(host=host_name, port=st.integers(1, 65535), scheme=st.sampled_from(["http", "https"]), path=origin_path)
def test_round_trip_absolute_target(host, port, scheme, path) -> None:
    target = f"{scheme}://{host}:{port}".encode() + path
    data = build_request_head(b"GET", target, [(b"Host", host.encode())])
    head, _ = parse_request_head(data, LIMITS)
    assert (head.form, head.scheme, head.host, head.port, head.path) == ("absolute", scheme.encode(), host, port, path)


@FUZZ
@given(status=st.integers(100, 999), reason=field_value, fields=st.lists(st.tuples(plain_name, field_value), max_size=12),
       version=st.sampled_from([b"1.0", b"1.1"]))
def test_round_trip_response(status, reason, fields, version) -> None:
    data = build_response_head(status, reason, fields, version)
    head, consumed = parse_response_head(data, LIMITS, b"GET")
    assert consumed == len(data)
    assert (head.status, head.reason, head.version, head.headers) == (status, reason, version, fields)


def _parse_or_protocol_error(parse, data: bytes) -> None:
    try:
        result = parse(data)
    except ProtocolError as exc:
        assert exc.status in (400, 414, 431, 502, 505)
        return
    if result is not None:
        head, consumed = result
        assert 0 < consumed <= len(data)


HEAD_PREFIXES = [
    b"",
    b"GET / HTTP/1.1\r\n",
    b"GET http://a.example/ HTTP/1.1\r\nHost: a\r\n",
    b"CONNECT a:443 HTTP/1.1\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: ",
]
head_bytes = st.builds(
    lambda p, b: p + b,
    st.sampled_from(HEAD_PREFIXES),
    st.one_of(st.binary(max_size=300), st.lists(st.sampled_from(
        [b"\r\n", b"\n", b"\r", b":", b" ", b"\t", b"a", b"Host", b"chunked", b"1", b",", b"\x00", b"\xff", b"[::1]", b"/"]
    ), max_size=40).map(b"".join)),
)


@FUZZ
@given(data=head_bytes)
def test_arbitrary_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    _parse_or_protocol_error(parse_req, data)
    _parse_or_protocol_error(parser_for_response(b"GET"), data)
    _parse_or_protocol_error(parser_for_response(b"HEAD"), data)


@FUZZ
@given(data=head_bytes, limits=st.builds(Limits, st.integers(1, 64), st.integers(1, 128), st.integers(0, 4)))
def test_arbitrary_bytes_with_tight_limits(data: bytes, limits: Limits) -> None:
    _parse_or_protocol_error(lambda b: parse_request_head(b, limits), data)
    _parse_or_protocol_error(lambda b: parse_response_head(b, limits, b"GET"), data)


@FUZZ
@given(data=head_bytes)
def test_a_prefix_that_raised_keeps_raising(data: bytes) -> None:
    """Refusal is monotone: once a prefix cannot become valid, no longer input makes it valid."""
    for parse in (parse_req, parser_for_response(b"GET")):
        raised = False
        for i in range(len(data) + 1):
            try:
                parse(data[:i])
            except ProtocolError:
                raised = True
            else:
                assert not raised, f"prefix refused, then {i} bytes accepted"


def _outcome(parse, data: bytes, scanned: int = 0):
    try:
        return parse(data, scanned)
    except ProtocolError:
        return "refused"


@FUZZ
@given(data=head_bytes, cuts=st.lists(st.integers(0, 400), max_size=8))
def test_incremental_parse_agrees_with_whole_parse(data: bytes, cuts: list[int]) -> None:
    """Fed in pieces with ``scanned``, a head is accepted iff it is accepted whole, and equal."""
    points = sorted({c for c in cuts if c < len(data)}) + [len(data)]
    for parse in (parse_req, parser_for_response(b"GET")):
        whole = _outcome(parse, data)
        previous = 0
        for point in points:
            result = _outcome(parse, data[:point], previous)
            if result is not None:
                break
            previous = point
        if result == "refused" or whole == "refused":
            assert not isinstance(whole, tuple) and not isinstance(result, tuple)
        else:
            assert result == whole


def test_response_head_type() -> None:
    head, _ = parse_response_head(b"HTTP/1.1 200 OK\r\n\r\n", LIMITS, b"GET")
    assert isinstance(head, ResponseHead)
