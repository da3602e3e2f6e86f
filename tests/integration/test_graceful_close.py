"""Issue 11: a client refused mid-request reads its answer, not a reset (RFC 9112 9.6)."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.integration


def _exchange(addr: str, payload: bytes) -> bytes:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the answer may already be on its way: read it
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return data + b"<reset>"
            if not chunk:
                return data
            data += chunk


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
        (
            b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"
            + b"b" * (200 * 1024),
            b"400",
        ),
    ],
    ids=["70KB-header", "two-content-lengths-and-a-body"],
)
def test_a_refused_request_gets_its_answer_every_time(daemon, payload, status):
    for _ in range(20):
        answer = _exchange(daemon.proxy, payload)
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
        assert not answer.endswith(b"<reset>"), answer[-200:]
