"""Issue 10 #6: a response the origin cuts mid-body still leaves its request record (and its
access-log line), with error side upstream and code upstream_closed."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration


class CuttingOrigin:
    """Answers every request with 10 bytes of a promised 1000, then closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"c" * 10)

    def close(self) -> None:
        self.sock.close()


def test_a_response_cut_by_the_origin_is_recorded(curl, daemon):
    origin = CuttingOrigin()
    try:
        r = run_curl(curl, "-x", f"http://{daemon.proxy}", f"http://127.0.0.1:{origin.port}/cut")
        assert r.returncode == 18, r.stderr  # curl: transfer closed with bytes remaining
    finally:
        origin.close()
    rows = _audit_rows(daemon, lambda e: e["kind"] == "request")
    assert [(e["path"], e["status"], e["error_side"], e["error_code"]) for e in rows] == [
        ("/cut", 200, "upstream", "upstream_closed")
    ], rows
    assert rows[0]["bytes_down"] == 10
    # the access-log line: written off the loop after the audit row, within flush_interval
    wait_until(lambda: "/cut 200" in daemon.log() and "upstream_closed" in daemon.log(), what="the access-log line")


def _audit_rows(daemon, want, timeout: float = 10.0) -> list:
    """The audit events ``want`` accepts, once there is one (bounded poll)."""

    def rows() -> list:
        out = daemon.arcus("audit", "search", "--json")
        return [e for e in map(json.loads, out.stdout.splitlines()) if want(e)]

    return wait_until(rows, timeout=timeout, interval=0.1, what="the audit record")


def test_a_tls_tunnel_records_the_server_name_its_client_sent(curl, daemon, tmp_path):
    from tests.integration.tls_peers import LocalCA, TlsOrigin

    ca = LocalCA(tmp_path / "ca")
    with TlsOrigin(ca, "localhost") as origin:
        r = run_curl(curl, "--cacert", str(ca.cert_path), "-p", "-x", f"http://{daemon.proxy}",
                     f"https://localhost:{origin.port}/small")
        assert r.returncode == 0, r.stderr
    rows = _audit_rows(daemon, lambda e: e["method"] == "CONNECT")
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["host"], row["port"], row["sni"], row["decision"]) == ("localhost", origin.port, "localhost", "allow")
    assert row["bytes_down"] > 0 and row["bytes_up"] > 0


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        (b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         400, "bad_request"),
        (b"GET http://a.test/" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a.test\r\n\r\n", 414, "uri_too_long"),
    ],
)
def test_a_head_refused_before_it_was_a_request_is_in_the_connections_record(daemon, head, status, code):
    """Smuggling and oversized heads are answered without a request: the connection's record (and
    its access-log line) carries the status, the error and the request id the answer showed."""
    from tests.integration.conftest import raw_exchange

    out = raw_exchange(daemon.proxy, head)
    assert out.startswith(b"HTTP/1.1 %d" % status), out[:200]
    request_id = out.split(b"X-Arcus-Request-Id: ", 1)[1].split(b"\r\n", 1)[0].decode()
    (row,) = _audit_rows(daemon, lambda e: e["request_id"] == request_id)
    assert (row["kind"], row["status"], row["error_side"], row["error_code"]) == ("connection", status, "client", code)
    wait_until(lambda: f" {status} " in daemon.log() and code in daemon.log(), what="the access-log line")
