"""The HTTP forward proxy, driven by real curl through the real daemon to a real origin."""

from __future__ import annotations

import json
import select
import socket
import time

import pytest

from arcus.config.schema import HttpLimits
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


def test_an_origin_that_never_says_100_continue_is_said_it_for(daemon, origin):
    """timeouts.expect_continue: a client that waits for "100 Continue" before its body (as it
    may, RFC 9110 10.1.1) is not left waiting on an origin that never sends one."""
    h, p = daemon.proxy.rsplit(":", 1)
    with socket.create_connection((h, int(p)), timeout=15) as s:
        s.sendall(f"POST {origin.url('/echo')} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n"
                  "Expect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n".encode())
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(1024)
            assert chunk, got
            got += chunk
        assert got == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        while chunk := s.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 ")
    assert got.endswith(b"hello")


def test_max_forwards_zero_is_answered_by_the_proxy_and_otherwise_decremented(daemon, origin):
    """RFC 9110 7.6.2: an OPTIONS or TRACE with Max-Forwards 0 is answered by this hop (TRACE is
    not echoed: 405), any other value goes upstream one lower."""
    before = len(origin.requests)
    h = f"127.0.0.1:{origin.port}"
    out = raw_exchange(daemon.proxy, f"OPTIONS http://{h}/headers HTTP/1.1\r\nHost: {h}\r\nMax-Forwards: 0\r\n\r\n".encode(),
                       read_until_close=False)
    assert out.startswith(b"HTTP/1.1 200") and b"Allow: GET, HEAD" in out, out[:300]
    out = raw_exchange(daemon.proxy, f"TRACE http://{h}/ HTTP/1.1\r\nHost: {h}\r\nMax-Forwards: 0\r\n\r\n".encode(),
                       read_until_close=False)
    assert out.startswith(b"HTTP/1.1 405") and b"Allow:" in out, out[:300]
    assert len(origin.requests) == before  # neither reached the origin
    out = raw_exchange(daemon.proxy, f"OPTIONS http://{h}/headers HTTP/1.1\r\nHost: {h}\r\nMax-Forwards: 3\r\n"
                                     "Connection: close\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    assert origin.requests[-1].header("max-forwards") == "2"


def test_chunked_response_with_trailers_passes_raw(curl, daemon, origin):
    r = run_curl(curl, "--raw", "-i", "-x", f"http://{daemon.proxy}", origin.url("/chunked"))
    assert r.returncode == 0, r.stderr
    assert b"Transfer-Encoding: chunked" in r.stdout
    assert b"\r\nTrailer: X-Sum\r\n" in r.stdout  # end-to-end (RFC 9110 6.6.2): it announces the trailer
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
    assert r.stdout.startswith(b"HTTP/1.1 200")  # the version we speak (RFC 9110 2.5), as squid and nginx answer
    assert b"Transfer-Encoding" not in r.stdout and r.stdout.endswith(b"x" * 100)
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
    assert b"X-Arcus-Rule: builtin:special-destination" in r.stdout


def test_origin_form_to_proxy_is_400(daemon):
    out = raw_exchange(daemon.proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", read_until_close=False)
    assert out.startswith(b"HTTP/1.1 400")
    assert b"X-Arcus-Error: not_a_proxy_request" in out


LIMITS = HttpLimits()  # the test profile sets none: the daemon runs with these

# (id, status, X-Arcus-Error, the reason the error body gives, what the client sends first,
#  what it sends only if no answer came yet). "{h}" is the origin's host:port; every case
# is a well-formed request except for the one defect its id names. The first part is all
# the proxy needs to refuse: the client reads the answer before it would send the rest, so
# the proxy never closes on unread bytes (which a client sees as a reset, not an answer).
MALFORMED = [
    ("content-length-and-transfer-encoding", 400, "bad_request", "both Content-Length and Transfer-Encoding",
     b"POST http://{h}/echo HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"3\r\nabc\r\n0\r\n\r\n"),
    ("two-content-lengths", 400, "bad_request", "more than one Content-Length header",
     b"POST http://{h}/echo HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
     b"abcd" + b"z" * 200 * 1024),
    ("unknown-transfer-coding", 400, "bad_request", "unsupported Transfer-Encoding b'xchunked'",
     b"POST http://{h}/echo HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: xchunked\r\n\r\n", b"abc"),
    ("chunked-not-the-last-coding", 400, "bad_request", "unsupported Transfer-Encoding b'chunked, identity'",
     b"POST http://{h}/echo HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked, identity\r\n\r\n", b"abc"),
    ("chunk-size-not-hexadecimal", 400, "bad_request", "chunk size is not hexadecimal",
     b"POST http://{h}/echo HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b""),
    ("bare-lf-in-chunked-body", 400, "bad_request", "bare LF in chunked body",
     b"POST http://{h}/echo HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", b""),
    ("bare-lf-in-head", 400, "bad_request", "bare LF in a head",
     b"GET http://{h}/ HTTP/1.1\nHost: {h}\n\n", b""),
    ("nul-in-field-value", 400, "bad_request", "NUL byte in value of header b'X'",
     b"GET http://{h}/ HTTP/1.1\r\nHost: {h}\r\nX: a\x00b\r\n\r\n", b""),
    ("obs-fold", 400, "bad_request", "obs-fold",
     b"GET http://{h}/ HTTP/1.1\r\nHost: {h}\r\nX: a\r\n  folded\r\n\r\n", b""),
    ("negative-content-length", 400, "bad_request", "invalid Content-Length b'-1'",
     b"POST http://{h}/echo HTTP/1.1\r\nHost: {h}\r\nContent-Length: -1\r\n\r\n", b"x"),
    ("content-length-not-digits", 400, "bad_request", "invalid Content-Length b'1e3'",
     b"POST http://{h}/echo HTTP/1.1\r\nHost: {h}\r\nContent-Length: 1e3\r\n\r\n", b"x" * 1000),
    ("space-before-colon", 400, "bad_request", "whitespace between header field name and colon: b'Host '",
     b"GET http://{h}/ HTTP/1.1\r\nHost : {h}\r\n\r\n", b""),
    ("two-spaces-in-request-line", 400, "bad_request", "malformed request line",
     b"GET  http://{h}/ HTTP/1.1\r\nHost: {h}\r\n\r\n", b""),
    ("http-2.0-request-line", 505, "version_not_supported", "HTTP/2.0 is not supported",
     b"GET http://{h}/ HTTP/2.0\r\nHost: {h}\r\n\r\n", b""),
    ("request-line-too-long", 414, "uri_too_long", f"request line longer than {LIMITS.max_request_line} bytes",
     b"GET http://{h}/" + b"a" * (LIMITS.max_request_line + 1), b" HTTP/1.1\r\nHost: {h}\r\n\r\n"),
    # A 70,000-byte head: the proxy refuses once it holds max_header_bytes of it, having read every
    # byte sent so far (the first part is padded with "v" to exactly that size).
    ("head-too-large", 431, "header_too_large", f"head larger than {LIMITS.max_header_bytes} bytes",
     (b"GET http://{h}/ HTTP/1.1\r\nHost: {h}\r\nX-Big: ", LIMITS.max_header_bytes),
     b"v" * (70000 - LIMITS.max_header_bytes) + b"\r\n\r\n"),
    ("too-many-header-fields", 431, "header_too_large", f"more than {LIMITS.max_headers} header fields",
     b"GET http://{h}/ HTTP/1.1\r\nHost: {h}\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(500)) + b"\r\n", b""),
    ("tls-client-hello-to-the-plain-port", 400, "bad_request", "NUL byte in a head",
     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), b""),
]


def fill(part: bytes | tuple[bytes, int], host: bytes) -> bytes:
    """A case's bytes with the origin's address in; ``(prefix, size)`` is prefix padded to size."""
    if isinstance(part, tuple):
        prefix, size = part[0].replace(b"{h}", host), part[1]
        return prefix + b"v" * (size - len(prefix))
    return part.replace(b"{h}", host)


def refusal(addr: str, first: bytes, rest: bytes, *, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``first``; send ``rest`` only if no answer came within ``timeout``; read until the proxy
    closes (bounded). Returns what was read and whether ``rest`` had to be sent."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(first)
        answered, _, _ = select.select([s], [], [], timeout)
        if not answered and rest:
            s.sendall(rest)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks), not answered
            chunks.append(data)
        raise AssertionError(f"the proxy did not close within {timeout}s: {b''.join(chunks)[:200]!r}")


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory):
    from arcus.testing.daemon import DaemonProcess

    with DaemonProcess(tmp_path_factory.mktemp("malformed")) as d:
        yield d


@pytest.mark.parametrize(("status", "code", "reason", "first", "rest"), [c[1:] for c in MALFORMED],
                         ids=[c[0] for c in MALFORMED])
def test_malformed_requests_get_4xx_and_close(shared_daemon, origin, status, code, reason, first, rest):
    d, host = shared_daemon, f"127.0.0.1:{origin.port}".encode()  # an origin of its own: it saw nothing else
    bad_before = d.ctl("stats")["servers"]["http"]["errors"].get("client_bad_request", 0)
    first, rest = fill(first, host), fill(rest, host)
    assert (first + rest).count(host) == (2 if first.startswith((b"GET", b"POST")) else 0)  # target and Host:
    out, sent_rest = refusal(d.proxy, first, rest)
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 %d " % status), out[:300]
    assert f"X-Arcus-Error: {code}".encode() in lines, head
    assert b"Connection: close" in lines, head
    assert reason.encode() in body.split(b"\n")[1], body  # the body's second line gives the reason
    assert not sent_rest or not rest, "the proxy waited for more than it needed to refuse"
    if not first.partition(b"\r\n\r\n")[2]:  # a bad head is never forwarded (a bad body may follow a good head)
        assert origin.requests == []
    # the daemon is still healthy and counted the bad request once; the connection is gone
    deadline = time.monotonic() + 5
    while True:
        stats = d.ctl("stats")["servers"]["http"]
        done = stats["errors"].get("client_bad_request", 0) == bad_before + 1 and stats["conns_active"] == 0
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert stats["errors"]["client_bad_request"] == bad_before + 1, stats
    assert stats["conns_active"] == 0, stats


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
