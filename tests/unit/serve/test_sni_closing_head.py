"""What an sni_proxy sends upstream of a plain HTTP request: the head as sent, asking for the
connection to end after the answer (``closing_head``; pure logic)."""

from __future__ import annotations

from arcus.proto import http1
from arcus.serve.sni_proxy import closing_head

LIMITS = http1.Limits(8192, 65536, 100)


def head(raw: bytes) -> http1.RequestHead:
    parsed = http1.parse_request_head(raw, LIMITS)
    assert parsed is not None
    return parsed[0]


def test_the_clients_connection_fields_give_way_to_close() -> None:
    req = head(b"POST /a?b=1 HTTP/1.1\r\nHost: Example.COM\r\nX-One: 1\r\nConnection: keep-alive, X-Hop, Content-Length\r\n"
               b"X-Hop: x\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
               b"Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\nContent-Length: 3\r\nx-two: 2\r\n\r\n")
    assert closing_head(req) == (
        b"POST /a?b=1 HTTP/1.1\r\nHost: Example.COM\r\nX-One: 1\r\nContent-Length: 3\r\nx-two: 2\r\n"
        b"Connection: close\r\n\r\n"
    )  # a field the Connection header names goes, but never the ones that frame the request


def test_an_absolute_form_and_an_http_10_request_keep_their_start_line() -> None:
    req = head(b"GET http://a.test:8080/x HTTP/1.0\r\nHost: a.test:8080\r\n\r\n")
    assert closing_head(req) == b"GET http://a.test:8080/x HTTP/1.0\r\nHost: a.test:8080\r\nConnection: close\r\n\r\n"


def test_an_upgrade_keeps_its_upgrade_and_asks_for_the_close_too() -> None:
    req = head(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert closing_head(req) == (
        b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nConnection: Upgrade, close\r\n\r\n"
    )
