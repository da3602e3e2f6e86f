"""The HTTP forward proxy, driven by real curl through the real daemon to a real origin."""

from __future__ import annotations

import json
import socket

from tests.integration.conftest import free_port, raw_exchange, run_curl


def test_get_through_proxy_forwards_end_to_end_headers_only(curl, daemon, origin):
    r = run_curl(
        curl,
        "-x", f"http://{daemon.proxy}",
        "-H", "X-Keep: yes",
        "-H", "Connection: X-Drop",
        "-H", "X-Drop: secret",
        "-H", "Keep-Alive: timeout=5",
        "-H", "Proxy-Authorization: Basic dXNlcjpwYXNz",
        origin.url("/headers"),
    )
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    names = {k.lower(): v for k, v in seen["headers"]}
    assert seen["target"] == "/headers"  # origin-form upstream
    assert names["host"] == f"127.0.0.1:{origin.port}"
    assert names["x-keep"] == "yes"
    assert "x-drop" not in names
    assert "keep-alive" not in names
    assert "proxy-authorization" not in names
    assert names["via"] == "1.1 arcus"


def test_response_gets_via_and_body_intact(curl, daemon, origin):
    r = run_curl(curl, "-i", "-x", f"http://{daemon.proxy}", origin.url("/bytes/70000"))
    assert r.returncode == 0, r.stderr
    head, body = r.stdout.split(b"\r\n\r\n", 1)
    assert b"Via: 1.1 arcus" in head
    assert body == b"b" * 70000


def test_keep_alive_client_and_pooled_upstream(curl, daemon, origin):
    urls = [origin.url("/small")] * 5
    r = run_curl(curl, "-v", "-x", f"http://{daemon.proxy}", *urls)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"x" * 100 * 5
    assert r.stderr.count(b"Re-using existing connection") + r.stderr.count(b"Reusing existing") >= 4
    # one client connection, one upstream connection, five requests each accounted
    assert {s.conn_id for s in origin.requests} == {1}
    stats = daemon.ctl("stats")
    assert stats["servers"]["http"]["requests"] == 5
    assert stats["servers"]["http"]["conns_total"] == 1


def test_request_bodies_content_length_and_chunked(curl, daemon, origin):
    payload = bytes(range(256)) * 4000  # ~1 MB, binary
    body_file = daemon.workdir / "body.bin"
    body_file.write_bytes(payload)
    r = run_curl(curl, "-x", f"http://{daemon.proxy}", "--data-binary", f"@{body_file}", origin.url("/echo"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == payload
    r = run_curl(
        curl, "-x", f"http://{daemon.proxy}", "-H", "Transfer-Encoding: chunked",
        "--data-binary", f"@{body_file}", origin.url("/echo"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == payload
    assert origin.requests[-1].header("transfer-encoding") == "chunked"


def test_expect_100_continue(curl, daemon, origin):
    r = run_curl(
        curl, "-v", "-x", f"http://{daemon.proxy}", "-H", "Expect: 100-continue",
        "--data-binary", "hello-continue", origin.url("/continue"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello-continue"
    assert b"HTTP/1.1 100 Continue" in r.stderr


def test_chunked_response_with_trailers_passes_raw(curl, daemon, origin):
    r = run_curl(curl, "--raw", "-i", "-x", f"http://{daemon.proxy}", origin.url("/chunked"))
    assert r.returncode == 0, r.stderr
    assert b"Transfer-Encoding: chunked" in r.stdout
    assert r.stdout.endswith(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n")


def test_head_204_304_have_no_body_and_keep_alive(curl, daemon, origin):
    r = run_curl(
        curl, "-v", "-x", f"http://{daemon.proxy}",
        origin.url("/status/204"), origin.url("/status/304"), origin.url("/small"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"x" * 100
    r = run_curl(curl, "-I", "-x", f"http://{daemon.proxy}", origin.url("/bytes/500"))
    assert r.returncode == 0, r.stderr
    assert b"Content-Length: 500" in r.stdout


def test_http10_client(curl, daemon, origin):
    r = run_curl(curl, "-0", "-i", "-x", f"http://{daemon.proxy}", origin.url("/small"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"HTTP/1.0 200")
    assert r.stdout.endswith(b"x" * 100)
    assert origin.requests[-1].version == "HTTP/1.0"


def test_body_until_close(curl, daemon, origin):
    r = run_curl(curl, "-x", f"http://{daemon.proxy}", origin.url("/close"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"until close"


def test_connect_tunnel(curl, daemon, origin):
    r = run_curl(curl, "-p", "-x", f"http://{daemon.proxy}", origin.url("/bytes/200000"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"b" * 200000
    # through a tunnel the origin sees origin-form and no Via from us
    assert origin.requests[-1].header("via") is None


def test_upstream_refused_is_502_with_error_header(curl, daemon):
    port = free_port()
    r = run_curl(curl, "-i", "-x", f"http://{daemon.proxy}", f"http://127.0.0.1:{port}/")
    assert r.stdout.startswith(b"HTTP/1.1 502")
    assert b"X-Arcus-Error: upstream_connect" in r.stdout
    assert b"X-Arcus-Request-Id:" in r.stdout
    assert daemon.ctl("stats")["servers"]["http"]["errors"]["upstream_connect"] == 1


def test_connect_refused_is_502(curl, daemon):
    port = free_port()
    r = run_curl(curl, "-p", "-x", f"http://{daemon.proxy}", f"http://127.0.0.1:{port}/")
    assert r.returncode != 0
    assert b"502" in r.stderr


def test_unresolvable_host_is_502(curl, daemon):
    r = run_curl(curl, "-i", "-x", f"http://{daemon.proxy}", "http://no-such-host.invalid/")
    assert r.stdout.startswith(b"HTTP/1.1 502")
    assert b"X-Arcus-Error: resolve_failed" in r.stdout


def test_upstream_timeout_is_504(tmp_path, curl, origin):
    from arcus.testing.daemon import DaemonProcess, render_profile

    with DaemonProcess(tmp_path / "a", render_profile({"upstream_response": "1s"})) as d:
        r = run_curl(curl, "-i", "-x", f"http://{d.proxy}", origin.url("/slow/4"))
        assert r.stdout.startswith(b"HTTP/1.1 504"), r.stdout
        assert b"X-Arcus-Error: upstream_timeout" in r.stdout


def test_metadata_and_link_local_refused_by_default(curl, daemon):
    r = run_curl(curl, "-i", "-x", f"http://{daemon.proxy}", "http://169.254.169.254/latest/meta-data/")
    assert r.stdout.startswith(b"HTTP/1.1 403"), r.stdout
    assert b"X-Arcus-Error: denied" in r.stdout


def test_origin_form_to_proxy_is_400(daemon):
    out = raw_exchange(daemon.proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", read_until_close=False)
    assert out.startswith(b"HTTP/1.1 400")
    assert b"X-Arcus-Error: not_a_proxy_request" in out


MALFORMED = [
    b"GET http://H/ HTTP/1.1\r\nHost: H\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET http://H/ HTTP/1.1\r\nHost: H\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST http://H/ HTTP/1.1\r\nHost: H\r\nTransfer-Encoding: xchunked\r\n\r\n",
    b"POST http://H/ HTTP/1.1\r\nHost: H\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    b"POST http://H/echo HTTP/1.1\r\nHost: H\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST http://H/echo HTTP/1.1\r\nHost: H\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
    b"GET http://H/ HTTP/1.1\nHost: H\n\n",
    b"GET http://H/ HTTP/1.1\r\nHost: H\r\nX: a\x00b\r\n\r\n",
    b"GET http://H/ HTTP/1.1\r\nHost: H\r\nX: a\r\n  folded\r\n\r\n",
    b"GET http://H/ HTTP/1.1\r\nHost: H\r\nContent-Length: -1\r\n\r\n",
    b"GET http://H/ HTTP/1.1\r\nHost: H\r\nContent-Length: 1e3\r\n\r\n",
    b"GET http://H/ HTTP/1.1\r\nHost : H\r\n\r\n",
    b"GET  http://H/ HTTP/1.1\r\nHost: H\r\n\r\n",
    b"GET http://H/ HTTP/2.0\r\nHost: H\r\n\r\n",
    b"GET http://H/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: H\r\n\r\n",
    b"GET http://H/ HTTP/1.1\r\nHost: H\r\nX-Big: " + b"v" * 70000 + b"\r\n\r\n",
    b"GET http://H/ HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(500)) + b"\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),
]


def test_malformed_requests_get_4xx_and_close(daemon, origin):
    host = f"127.0.0.1:{origin.port}".encode()
    for payload in MALFORMED:
        payload = payload.replace(b"H", host) if payload.startswith((b"GET", b"POST")) else payload
        out = raw_exchange(daemon.proxy, payload)
        assert b"<timeout>" not in out, payload[:80]
        assert int(out[9:12]) in (400, 414, 431, 505), (payload[:80], out[:200])
        assert b"Connection: close" in out.split(b"\r\n\r\n")[0]
    # the daemon is still healthy and counted every bad request
    stats = daemon.ctl("stats")["servers"]["http"]
    assert stats["errors"]["client_bad_request"] == len(MALFORMED)
    assert stats["conns_active"] == 0


def test_pipelined_requests_answered_in_order(daemon, origin):
    host = f"127.0.0.1:{origin.port}"
    req = f"GET http://{host}/bytes/3 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    last = f"GET http://{host}/small HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    out = raw_exchange(daemon.proxy, req * 3 + last)
    assert out.count(b"HTTP/1.1 200 OK") == 4
    assert out.endswith(b"x" * 100)
    assert daemon.ctl("stats")["servers"]["http"]["requests"] == 4


def test_client_idle_keepalive_connection_is_closed_after_timeout(tmp_path, origin):
    from arcus.testing.daemon import DaemonProcess, render_profile

    with DaemonProcess(tmp_path / "a", render_profile({"client_idle": "1s"})) as d:
        host, port = d.proxy.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            t = f"127.0.0.1:{origin.port}"
            s.sendall(f"GET http://{t}/small HTTP/1.1\r\nHost: {t}\r\n\r\n".encode())
            data = b""
            while not data.endswith(b"x" * 100):
                data += s.recv(65536)
            # now idle: the proxy closes within the idle bound plus the sweep interval
            s.settimeout(5)
            assert s.recv(100) == b""


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_reader_backpressure_bounds_proxy_memory(daemon, origin):
    """A client that does not read must stall the origin, not fill the proxy's memory."""
    import time

    size = 40 * 1024 * 1024
    host, port = daemon.proxy.rsplit(":", 1)
    before = _rss_kib(daemon.proc.pid)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        t = f"127.0.0.1:{origin.port}"
        s.sendall(f"GET http://{t}/bytes/{size} HTTP/1.1\r\nHost: {t}\r\n\r\n".encode())
        time.sleep(2)  # the origin writes as fast as it can; we read nothing
        peak = _rss_kib(daemon.proc.pid)
        got = 0
        deadline = time.monotonic() + 60
        while got < size and time.monotonic() < deadline:
            data = s.recv(1 << 20)
            if not data:
                break
            got += len(data)
    assert peak - before < 16 * 1024, f"proxy grew by {peak - before} KiB while the client was not reading"
    assert got > size  # head + whole body arrived once the client read


def test_origin_answering_before_the_body_closes_cleanly(curl, daemon, origin):
    body_file = daemon.workdir / "big.bin"
    body_file.write_bytes(b"z" * (4 * 1024 * 1024))
    r = run_curl(curl, "-i", "-x", f"http://{daemon.proxy}", "--data-binary", f"@{body_file}", origin.url("/early"))
    assert r.stdout.startswith(b"HTTP/1.1 413"), r.stdout[:200]
    assert daemon.ctl("health")["status"] == "ok"


def test_connect_tunnel_half_close(daemon, origin):
    host, port = daemon.proxy.rsplit(":", 1)
    t = f"127.0.0.1:{origin.port}"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"CONNECT {t} HTTP/1.1\r\nHost: {t}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        s.sendall(f"GET /close HTTP/1.1\r\nHost: {t}\r\n\r\n".encode())
        s.shutdown(socket.SHUT_WR)  # our side is done; the answer must still come back
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.endswith(b"until close")


def test_protocol_upgrade_through_the_forward_proxy(daemon, origin):
    host, port = daemon.proxy.rsplit(":", 1)
    t = f"127.0.0.1:{origin.port}"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET http://{t}/upgrade HTTP/1.1\r\nHost: {t}\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        s.sendall(b"ping through the switched protocol")
        got = b""
        while len(got) < 33:
            got += s.recv(4096)
        assert got == b"ping through the switched protocol"
    seen = origin.requests[-1]
    assert seen.header("upgrade") == "echo" and "upgrade" in (seen.header("connection") or "").lower()
