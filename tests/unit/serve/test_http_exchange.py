"""One HTTP exchange without sockets: body framing, the upstream's heads, our own answers and
the refusal answers (block page, 407, 429, redirect)."""

from __future__ import annotations

import pytest

from arcus.errors import ErrorCode, ProtocolError, Refusal
from arcus.proto import http1
from arcus.serve.http_exchange import Exchange, answer_without_request

LIMITS = http1.Limits(8192, 65536, 100)


def exchange(raw: bytes) -> Exchange:
    parsed = http1.parse_request_head(bytearray(raw), LIMITS)
    assert parsed is not None
    return Exchange(parsed[0], "abc-1", LIMITS, 1000, 2000)


def test_a_length_framed_body_is_counted_to_its_end_and_no_further() -> None:
    ex = exchange(b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n")
    assert ex.unread
    assert ex.request_body(b"12345") == (5, False)
    assert ex.request_body(b"67890GET ") == (5, True)  # a pipelined request is not body
    assert not ex.unread


def test_a_chunked_body_ends_at_its_last_chunk_and_a_bad_one_is_the_clients_fault() -> None:
    ex = exchange(b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
    data = b"5\r\nhello\r\n0\r\n\r\n"
    assert ex.request_body(data) == (len(data), True)
    bad = exchange(b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        bad.request_body(b"zz\r\n")
    assert info.value.side == "client"


def test_interim_switch_and_final_heads_from_the_upstream() -> None:
    ex = exchange(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n")
    buf = bytearray(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching\r\nUpgrade: echo\r\n\r\nrest")
    kind, resp, data = ex.next_response(buf, LIMITS)
    assert (kind, resp.status) == ("interim", 100) and data.startswith(b"HTTP/1.1 100")
    kind, resp, data = ex.next_response(buf, LIMITS)
    assert (kind, resp.status, bytes(buf)) == ("switch", 101, b"rest")
    plain = exchange(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
    buf = bytearray(b"HTTP/1.1 200 OK\r\nContent-")
    assert plain.next_response(buf, LIMITS) is None  # incomplete: nothing consumed
    buf += b"Length: 3\r\n\r\nabcXYZ"
    kind, resp, rest = plain.next_response(buf, LIMITS)
    assert (kind, resp.status, rest, bytes(buf)) == ("final", 200, b"abcXYZ", b"")
    head = plain.response_head(resp, LIMITS, keep_alive=False)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Via: 1.1 arcus" in head and b"Connection: close" in head
    assert plain.response_body(rest) == (3, True) and plain.status == 200


def test_refusals_are_answered_with_their_page_headers_and_decision() -> None:
    ex = exchange(b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n")
    out = ex.refusal(Refusal(ErrorCode.DENIED, "no casinos", rule="r7"), True, None, "acme", "a.test:80")
    assert out.startswith(b"HTTP/1.1 403") and b"X-Arcus-Rule: r7" in out and b"text/html" in out
    assert b"X-Arcus-Error: denied" in out and b"X-Arcus-Request-Id: abc-1" in out
    assert (ex.decision, ex.rule, ex.error) == ("deny", "r7", ErrorCode.DENIED)
    ex = exchange(b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n")
    out = ex.refusal(Refusal(ErrorCode.AUTH_REQUIRED, "who?", realm=b'Basic realm="acme"'), True, None, "acme", "a.test:80")
    assert out.startswith(b"HTTP/1.1 407") and b'Proxy-Authenticate: Basic realm="acme"' in out and ex.decision == "deny"
    ex = exchange(b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n")
    out = ex.refusal(Refusal(ErrorCode.RATE_LIMITED, "slow down", retry_after=2.2), False, None, "acme", "a.test:80")
    assert out.startswith(b"HTTP/1.1 429") and b"Retry-After: 3" in out and b"Connection: close" in out
    ex = exchange(b"HEAD http://a.test/x HTTP/1.0\r\nHost: a.test\r\n\r\n")
    out = ex.refusal(Refusal(ErrorCode.REDIRECTED, "moved", rule="r2", redirect_to="https://b.test/"), True, None, "acme", "")
    assert out.startswith(b"HTTP/1.1 302") and b"Location: https://b.test/" in out and out.endswith(b"\r\n\r\n")
    assert b"X-Arcus-Rule: r2" in out  # the rule that redirected, as a deny's answer names it
    assert b"Connection: keep-alive" in out  # an HTTP/1.0 client is told it may keep the connection
    assert b"X-Arcus-Error" not in out and (ex.decision, ex.error) == ("redirect", "")


def test_an_answer_before_any_request_closes() -> None:
    out = answer_without_request(431, ErrorCode.HEADER_TOO_LARGE, "too big", "abc-2")
    assert out.startswith(b"HTTP/1.1 431") and b"Connection: close" in out and b"X-Arcus-Error: header_too_large" in out


def test_via_on_a_response_names_the_version_the_upstream_answered_in() -> None:
    """RFC 9110 7.6.3: Via's received-protocol is the version of the message received; an
    HTTP/1.0 origin's answer was relayed with 'Via: 1.1 arcus'."""
    for version in (b"1.0", b"1.1"):
        ex = exchange(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        kind, resp, _ = ex.next_response(bytearray(b"HTTP/" + version + b" 200 OK\r\nContent-Length: 1\r\n\r\nx"), LIMITS)
        head = ex.response_head(resp, LIMITS, keep_alive=True)
        assert b"\r\nVia: " + version + b" arcus\r\n" in head, head
