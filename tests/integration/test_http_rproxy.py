"""`http_rproxy`: curl to the real daemon's reverse proxy, per-host upstreams, TLS with per-host
certificates chosen by SNI (``--resolve`` + ``--cacert``), upstream TLS, admission."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from arcus.testing.daemon import DaemonProcess
from arcus.testing.oneconn import OneConnection
from arcus.testing.origin import Origin
from arcus.testing.wait import wait_until
from tests.integration.conftest import free_port, raw_exchange, run_curl
from tests.integration.tls_peers import LocalCA, TlsOrigin

PROFILE = """\
servers:
  - name: web
    type: http_rproxy
    listen: 127.0.0.1:0
    escaper: direct
{extra}    hosts:
{hosts}
escapers:
  - name: direct
    type: direct_fixed
    resolver: system
resolvers:
  - name: system
    type: system
timeouts:
  client_header: 5s
  upstream_connect: 5s
  upstream_response: 10s
"""


def host_entry(names: list[str], upstream: str, **keys: object) -> str:
    lines = [f"      - names: {json.dumps(names)}", f"        upstream: {upstream}"]
    lines += [f"        {k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in keys.items()]
    return "\n".join(lines)


def start(tmp_path, hosts: list[str], extra: str = "") -> DaemonProcess:
    d = DaemonProcess(tmp_path / "arcus", PROFILE.format(hosts="\n".join(hosts), extra=extra))
    return d.start()


@pytest.fixture
def two_origins():
    with Origin() as a, Origin() as b:
        yield a, b


def test_plain_routes_by_host_to_per_host_upstreams(curl, tmp_path, two_origins):
    a, b = two_origins
    d = start(
        tmp_path,
        [
            host_entry(["a.test"], f"127.0.0.1:{a.port}"),
            host_entry(["*.b.test"], f"127.0.0.1:{b.port}"),
        ],
    )
    try:
        web = d.listen("web")
        port = web.rsplit(":", 1)[1]
        r = run_curl(curl, "--resolve", f"a.test:{port}:127.0.0.1", f"http://a.test:{port}/headers", "-H", "X-Keep: 1")
        assert r.returncode == 0, r.stderr
        seen = json.loads(r.stdout)
        names = {k.lower(): v for k, v in seen["headers"]}
        assert seen["target"] == "/headers"
        assert names["host"] == f"a.test:{port}"  # the client's Host goes upstream unchanged
        assert names["x-forwarded-for"] == "127.0.0.1"
        assert names["x-forwarded-proto"] == "http"
        assert names["via"] == "1.1 arcus"
        assert names["x-keep"] == "1"
        assert len(a.requests) == 1 and not b.requests
        # a child of *.b.test goes to b; keep-alive: two requests on one client connection
        r = run_curl(curl, "-v", "--resolve", f"x.y.b.test:{port}:127.0.0.1",
                     f"http://x.y.b.test:{port}/small", f"http://x.y.b.test:{port}/bytes/5000")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"x" * 100 + b"b" * 5000
        assert len(b.requests) == 2 and len(a.requests) == 1
        assert {s.conn_id for s in b.requests} == {1}  # the upstream connection was pooled
        # the apex of a wildcard and an unknown host: 404 from the proxy, nothing upstream
        for host in ("b.test", "c.test"):
            r = run_curl(curl, "-i", "-H", f"Host: {host}", f"http://{web}/small")
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith(b"HTTP/1.1 404"), r.stdout
            assert b"X-Arcus-Error: unknown_host" in r.stdout
        # a request body, and CONNECT (not served by a reverse proxy)
        r = run_curl(curl, "--resolve", f"a.test:{port}:127.0.0.1", "--data-binary", "hello body", f"http://a.test:{port}/echo")
        assert r.stdout == b"hello body"
        out = raw_exchange(web, b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400"), out
        stats = d.ctl("stats")["servers"]["web"]
        assert stats["requests"] >= 6
    finally:
        d.stop()


def test_tls_termination_with_per_host_certificates(curl, tmp_path, two_origins):
    a, b = two_origins
    ca = LocalCA(tmp_path / "ca")
    a_cert, a_key = ca.issue("a.test")
    b_cert, b_key = ca.issue("*.b.test", stem="b")
    d = start(
        tmp_path,
        [
            host_entry(["a.test"], f"127.0.0.1:{a.port}", certificate=str(a_cert), private_key=str(a_key)),
            host_entry(["*.b.test"], f"127.0.0.1:{b.port}", certificate=str(b_cert), private_key=str(b_key)),
        ],
        extra="    tls: true\n",
    )
    try:
        port = d.listen("web").rsplit(":", 1)[1]
        for host, origin, body in (("a.test", a, b"x" * 100), ("www.b.test", b, b"b" * 70000)):
            path = "/small" if origin is a else "/bytes/70000"
            r = run_curl(
                curl, "-v", "--cacert", str(ca.cert_path), "--resolve", f"{host}:{port}:127.0.0.1", f"https://{host}:{port}{path}"
            )
            assert r.returncode == 0, r.stderr  # curl verified the certificate for this very name
            assert r.stdout == body
            assert f"subject: CN={'a.test' if origin is a else '*.b.test'}".encode() in r.stderr
        r = run_curl(curl, "--cacert", str(ca.cert_path), "--resolve", f"a.test:{port}:127.0.0.1", f"https://a.test:{port}/headers")
        names = {k.lower(): v for k, v in json.loads(r.stdout)["headers"]}
        assert names["x-forwarded-proto"] == "https"
        assert names["host"] == f"a.test:{port}"
        # SNI a.test, Host www.b.test: the connection was set up for another site -> 421
        r = run_curl(
            curl, "-i", "--cacert", str(ca.cert_path), "--resolve", f"a.test:{port}:127.0.0.1",
            "-H", "Host: www.b.test", f"https://a.test:{port}/small",
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(b"HTTP/1.1 421"), r.stdout

        def refused():
            out = d.arcus("audit", "search", "--json")
            rows = [e for e in map(json.loads, out.stdout.splitlines()) if e["status"] == 421]
            return rows[0] if rows else None

        row = wait_until(refused, timeout=10, what="the 421's record")
        assert (row["host"], row["port"]) == ("www.b.test", 443)  # the site asked for over https (it said port 80)
        # a name with no site gets the first host's certificate: curl refuses it
        r = run_curl(curl, "--cacert", str(ca.cert_path), "--resolve", f"other.test:{port}:127.0.0.1", f"https://other.test:{port}/small")
        assert r.returncode == 60, r.stderr  # CURLE_PEER_FAILED_VERIFICATION
        # plain HTTP to the TLS listener gets no answer but a closed connection
        assert b"200" not in raw_exchange(f"127.0.0.1:{port}", b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        # a client without our CA refuses the certificate within the handshake (curl checks the
        # name only after it, so other.test above completed its handshake)
        r = run_curl(curl, "--resolve", f"a.test:{port}:127.0.0.1", f"https://a.test:{port}/small")
        assert r.returncode == 60, r.stderr
        # both failed handshakes (that refusal, the plain HTTP) are counted, as on http_proxy over
        # TLS (test_https_proxy.py has their records)
        wait_until(lambda: d.ctl("stats")["servers"]["web"]["errors"].get("client_tls") == 2, what="the failed handshakes counted")
    finally:
        d.stop()


def test_certificates_follow_a_reload(curl, tmp_path, two_origins):
    a, _ = two_origins
    ca = LocalCA(tmp_path / "ca")
    cert, key = ca.issue("a.test")
    d = start(
        tmp_path,
        [host_entry(["a.test"], f"127.0.0.1:{a.port}", certificate=str(cert), private_key=str(key))],
        extra="    tls: true\n",
    )
    try:
        port = d.listen("web").rsplit(":", 1)[1]
        r = run_curl(curl, "--cacert", str(ca.cert_path), "--resolve", f"a.test:{port}:127.0.0.1", f"https://a.test:{port}/small")
        assert r.returncode == 0, r.stderr
        # the operator adds a site with its own certificate: served after a reload, same listener
        new_cert, new_key = ca.issue("new.test")
        profile = d.profile_path.read_text()
        profile = profile.replace(
            "escapers:",
            host_entry(["new.test"], f"127.0.0.1:{a.port}", certificate=str(new_cert), private_key=str(new_key)) + "\nescapers:",
        )
        d.profile_path.write_text(profile)
        d.ctl("reload")
        r = run_curl(curl, "-v", "--cacert", str(ca.cert_path), "--resolve", f"new.test:{port}:127.0.0.1", f"https://new.test:{port}/small")
        assert r.returncode == 0, r.stderr
        assert b"subject: CN=new.test" in r.stderr
    finally:
        d.stop()


def test_upstream_tls_verified_against_the_configured_ca(curl, tmp_path):
    ca = LocalCA(tmp_path / "ca")
    other = LocalCA(tmp_path / "other")
    with TlsOrigin(ca, "backend.internal") as origin:
        d = start(
            tmp_path,
            [
                host_entry(["good.test"], f"127.0.0.1:{origin.port}", upstream_tls=True,
                           upstream_ca=str(ca.cert_path), upstream_tls_name="backend.internal"),
                host_entry(["wrongca.test"], f"127.0.0.1:{origin.port}", upstream_tls=True,
                           upstream_ca=str(other.cert_path), upstream_tls_name="backend.internal"),
                host_entry(["wrongname.test"], f"127.0.0.1:{origin.port}", upstream_tls=True, upstream_ca=str(ca.cert_path)),
            ],
        )
        try:
            web = d.listen("web")
            r = run_curl(curl, "-H", "Host: good.test", f"http://{web}/headers")
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["target"] == "/headers"
            assert origin.server_names[-1] == "backend.internal"  # our SNI is the configured name
            for host in ("wrongca.test", "wrongname.test"):
                r = run_curl(curl, "-i", "-H", f"Host: {host}", f"http://{web}/small")
                assert r.stdout.startswith(b"HTTP/1.1 502"), r.stdout
                assert b"X-Arcus-Error: upstream_tls" in r.stdout, r.stdout
                # the visitor is not told why; the request's record is
                res = wait_until(lambda h=host: d.arcus("audit", "search", "--json", "--host", h).stdout.strip(),
                                 interval=0.3, what=f"the record of {host}")
                assert json.loads(res)["detail"].startswith("TLS with the upstream "), res
            assert len(origin.requests) == 1
        finally:
            d.stop()


def test_admission_policy_on_the_requested_host(curl, tmp_path, two_origins):
    a, _ = two_origins
    d = start(
        tmp_path,
        [host_entry(["a.test", "blocked.test"], f"127.0.0.1:{a.port}")],
        extra="    tenant: acme\n",
    )
    try:
        for args in (("tenant", "add", "acme"), ("policy", "add", "acme", "no-blocked", "--deny-host", "blocked.test")):
            res = d.arcus(*args)
            assert res.returncode == 0, res.stderr
        web = d.listen("web")
        r = run_curl(curl, "-i", "-H", "Host: blocked.test", f"http://{web}/small")
        assert r.stdout.startswith(b"HTTP/1.1 403"), r.stdout
        assert b"X-Arcus-Rule: no-blocked" in r.stdout
        r = run_curl(curl, "-i", "-H", "Host: a.test", f"http://{web}/small")
        assert r.stdout.startswith(b"HTTP/1.1 200"), r.stdout
        assert len(a.requests) == 1
        res = d.arcus("tenant", "suspend", "acme")
        assert res.returncode == 0, res.stderr
        r = run_curl(curl, "-i", "-H", "Host: a.test", f"http://{web}/small")
        assert r.stdout.startswith(b"HTTP/1.1 403"), r.stdout
        assert b"tenant_suspended" in r.stdout
        assert len(a.requests) == 1
    finally:
        d.stop()


def test_absolute_form_host_and_the_record_name_the_site_asked_for(tmp_path, two_origins):
    """An absolute-form request is routed and judged by its URI, so its URI's authority is the
    Host that goes upstream (RFC 9112 3.2.2), not a Host header naming a denied site; the
    record names the site the client asked for, not the upstream's address; what a client
    claims about itself (Forwarded, X-Forwarded-Host, X-Real-IP) does not reach the upstream."""
    a, b = two_origins
    d = start(tmp_path, [host_entry(["admin.test"], f"127.0.0.1:{b.port}"), host_entry(["*"], f"127.0.0.1:{a.port}")])
    try:
        res = d.arcus("policy", "add", "default", "no-admin", "--deny-host", "admin.test")
        assert res.returncode == 0, res.stderr
        web = d.listen("web")
        out = raw_exchange(web, b"GET http://www.test/headers HTTP/1.1\r\nHost: admin.test\r\n"
                                b"Forwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-Host: evil.test\r\n"
                                b"X-Real-IP: 6.6.6.6\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200"), out
        seen = json.loads(out.split(b"\r\n\r\n", 1)[1])
        names = {k.lower(): v for k, v in seen["headers"]}
        assert names["host"] == "www.test"
        assert not {"forwarded", "x-forwarded-host", "x-real-ip"} & set(names)
        assert not b.requests  # admin.test's upstream never saw it
        out = raw_exchange(web, b"GET /small HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 403"), out
        # an empty Host names no site: refused, not served by the catch-all
        out = raw_exchange(web, b"GET /small HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400") and b"names no host" in out, out

        def events() -> list:
            res = d.arcus("audit", "search", "--json", "--host", "admin.test")
            assert res.returncode == 0, res.stderr
            return [json.loads(line) for line in res.stdout.splitlines()]

        (denied,) = wait_until(events, interval=0.3, what="the denied request's record")
        assert (denied["port"], denied["decision"], denied["rule"]) == (80, "deny", "no-admin")
        res = d.arcus("audit", "search", "--json", "--host", "www.test")
        (served,) = [json.loads(line) for line in res.stdout.splitlines()]
        assert (served["port"], served["status"], served["decision"]) == (80, 200, "allow")
    finally:
        d.stop()


def test_config_check_reports_bad_certificate_pairs(tmp_path):
    ca = LocalCA(tmp_path / "ca")
    a_cert, _ = ca.issue("a.test")
    _, b_key = ca.issue("b.test")
    profile = tmp_path / "p.yaml"
    profile.write_text(
        PROFILE.format(
            extra="    tls: true\n",
            hosts=host_entry(["a.test"], "127.0.0.1:1", certificate=str(a_cert), private_key=str(b_key))
            + "\n"
            + host_entry(["c.test"], "127.0.0.1:1"),
        )
    )
    d = DaemonProcess(tmp_path / "arcus", profile.read_text())
    res = d.arcus("config", "check", str(profile))
    assert res.returncode == 1
    out = res.stdout + res.stderr
    assert f"{profile}:10: server \"web\": hosts[0]: cannot load the certificate" in out, out
    assert "the private key does not belong to the certificate" in out
    assert f"{profile}:12: server \"web\": hosts[1]: missing key \"certificate\"" in out, out


def test_profile_errors_in_hosts(tmp_path):
    from arcus.config import check_profile

    ca = LocalCA(tmp_path / "ca")
    cert, key = ca.issue("a.test")
    hosts = "\n".join(
        [
            host_entry(["a.test", "*.b.test"], "127.0.0.1:1", certificate=str(cert), private_key=str(key)),
            host_entry(["A.test", "bad name"], "127.0.0.1:1", upstream_ca=str(ca.cert_path)),
        ]
    )
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE.format(extra="", hosts=hosts))
    found = [str(i).replace(str(path), "P", 1) for i in check_profile(str(path))]
    assert found == [
        'P:9: server "web": hosts[0]: certificate: only used when the server has tls: true',
        'P:11: server "web": hosts[1]: names: "bad name" is not a host name, "*.domain" or "*"',
        'P:13: server "web": hosts[1]: upstream_ca: only used with upstream_tls: true',
    ]
    path.write_text(PROFILE.format(extra="", hosts=host_entry(["a.test"], "127.0.0.1:1") + "\n" + host_entry(["A.TEST"], "127.0.0.1:2")))
    found = [str(i).replace(str(path), "P", 1) for i in check_profile(str(path))]
    assert found == ['P:9: server "web": host name "a.test" is already served by the host at line 7']


class UpgradeOrigin(OneConnection):
    """A minimal upgrading origin: answers an Upgrade request with 101, then echoes bytes."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(4096)
            if not data:
                return
            head += data
        self.heads.append(head)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        for _ in range(100):
            data = conn.recv(4096)
            if not data:
                return
            conn.sendall(b"echo:" + data)


def test_upgrade_becomes_a_tunnel(tmp_path):
    origin = UpgradeOrigin()
    d = start(tmp_path, [host_entry(["ws.test"], f"127.0.0.1:{origin.port}")])
    try:
        host, port = d.listen("web").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            assert head.startswith(b"HTTP/1.1 101"), head
            s.sendall(b"hello")
            assert s.recv(100) == b"echo:hello"
        sent = origin.heads[0].lower()
        assert b"upgrade: websocket" in sent and b"connection: upgrade" in sent and b"sec-websocket-key" in sent
    finally:
        d.stop()
        origin.close()


def test_claims_spelled_with_underscores_are_dropped_too(tmp_path, two_origins):
    """A CGI or WSGI application reads X-Forwarded_For and X_Real_IP as HTTP_X_FORWARDED_FOR and
    HTTP_X_REAL_IP, the very variables of the headers we set or drop: an untrusted client's
    underscore spelling must not reach the upstream either (nginx drops every such header)."""
    a, _ = two_origins
    d = start(tmp_path, [host_entry(["*"], f"127.0.0.1:{a.port}")])
    try:
        out = raw_exchange(d.listen("web"), b"GET /headers HTTP/1.1\r\nHost: www.test\r\n"
                                           b"X-Forwarded_For: 6.6.6.6\r\nX_Forwarded_Proto: https\r\n"
                                           b"X-Real_IP: 6.6.6.6\r\nX_Forwarded_Host: evil.test\r\n"
                                           b"X-Tenant_ID: acme\r\nX-Keep_Me: 1\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200"), out
        names = {k.lower(): v for k, v in json.loads(out.split(b"\r\n\r\n", 1)[1])["headers"]}
        assert names["x-forwarded-for"] == "127.0.0.1"
        assert names["x-forwarded-proto"] == "http"
        assert names["x-keep_me"] == "1"  # other names with an underscore are not ours to judge
        assert not {"x-forwarded_for", "x_forwarded_proto", "x-real_ip", "x_forwarded_host", "x-tenant_id"} & set(names), names
    finally:
        d.stop()


def test_upstream_failures_do_not_show_the_upstream_to_visitors(tmp_path, two_origins):
    """A site's visitors get a 502/504 that names neither the upstream's address nor the
    reason (an internal name, a port, a certificate's subject); the request's record keeps the
    reason in its detail, found by the request id the page shows."""
    a, _ = two_origins
    down = free_port()
    d = start(tmp_path, [host_entry(["down.test"], f"127.0.0.1:{down}"), host_entry(["slow.test"], f"127.0.0.1:{a.port}")],
              extra="    timeouts:\n      upstream_response: 1s\n")
    try:
        web = d.listen("web")
        pages = {}
        for host, path, status in (("down.test", "/small", 502), ("slow.test", "/slow/3", 504)):
            out = raw_exchange(web, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            assert out.startswith(f"HTTP/1.1 {status}".encode()), out
            assert b"127.0.0.1" not in out and str(down).encode() not in out and str(a.port).encode() not in out, out
            pages[host] = out
        assert b"X-Arcus-Error: upstream_connect" in pages["down.test"]

        def record() -> list:
            res = d.arcus("audit", "search", "--json", "--host", "down.test")
            assert res.returncode == 0, res.stderr
            return [json.loads(line) for line in res.stdout.splitlines()]

        (event,) = wait_until(record, interval=0.3, what="the failed request's record")
        assert event["request_id"].encode() in pages["down.test"]
        assert event["error_code"] == "upstream_connect"
        assert f"127.0.0.1:{down}" in (event["detail"] or ""), event
    finally:
        d.stop()


def test_a_slow_reader_keeps_its_download(tmp_path, two_origins):
    """A client reading 80 KB/s stops the proxy's reading of the upstream (its buffers are full):
    the upstream's silence is then no timeout. It was cut after upstream_body (`upstream_timeout`,
    blaming the upstream), where nginx serves the same reader to the end. (On loopback the kernel
    sends to a client with a 64 KB window in bursts of about 95 KB: about every 1.2 s at this
    pace, within each 3 s window.)"""
    a, _ = two_origins
    d = start(tmp_path, [host_entry(["*"], f"127.0.0.1:{a.port}")], extra="    timeouts:\n      upstream_body: 3s\n")
    try:
        host, port = d.listen("web").rsplit(":", 1)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connect: the window it offers
            s.settimeout(10)
            s.connect((host, int(port)))
            s.sendall(b"GET /bytes/50000000 HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n")
            got, started = 0, time.monotonic()
            while time.monotonic() - started < 10:  # three windows of upstream_body and more, reading slowly
                data = s.recv(8192)
                assert data, f"cut after {time.monotonic() - started:.1f} s and {got} bytes"
                got += len(data)
                time.sleep(0.1)  # the reader's pace, not a wait for anything
        errors = d.ctl("stats")["servers"]["web"]["errors"]
        assert "upstream_timeout" not in errors, (errors, got)
    finally:
        d.stop()


def test_a_redirecting_site_sends_visitors_on_with_their_path(curl, tmp_path, two_origins):
    """A site with ``redirect`` answers every request itself (nginx's ``return 301
    https://$host$request_uri``): the path and query kept, ``{host}`` the host asked for, the
    status as configured; nothing goes upstream, keep-alive goes on, the record says redirect."""
    a, _ = two_origins
    d = start(tmp_path, [
        host_entry(["a.test"], f"127.0.0.1:{a.port}"),
        '      - names: ["old.test"]\n        redirect: https://a.test',
        '      - names: ["*"]\n        redirect: https://{host}:8443/\n        redirect_status: 308',
    ])
    try:
        web = d.listen("web")
        r = run_curl(curl, "-i", "-H", "Host: old.test", f"http://{web}/x/y?z=1")
        assert r.returncode == 0, r.stderr
        head = r.stdout.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        assert head.startswith(b"HTTP/1.1 301 "), head
        assert b"\r\nLocation: https://a.test/x/y?z=1\r\n" in head, head
        r = run_curl(curl, "-I", "-H", "Host: Shop.Test:81", f"http://{web}/cart")  # HEAD; the host without its port
        assert r.stdout.startswith(b"HTTP/1.1 308 "), r.stdout
        assert b"\r\nLocation: https://shop.test:8443/cart\r\n" in r.stdout, r.stdout
        # a request with a body is answered too (its body goes nowhere), and the next one served
        r = run_curl(curl, "-i", "--data-binary", "payload", "-H", "Host: old.test", f"http://{web}/form",
                     "--next", "-H", "Host: a.test", f"http://{web}/small")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(b"HTTP/1.1 301 ") and r.stdout.endswith(b"x" * 100), r.stdout
        assert [s.target for s in a.requests] == ["/small"]  # nothing of the redirects went upstream
        # an HTTP/1.0 request without Host has no host to put in {host}: refused, not a broken URL
        out = raw_exchange(web, b"GET /p HTTP/1.0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400 "), out
        rows = wait_until(
            lambda: [e for e in map(json.loads, d.arcus("audit", "search", "--json").stdout.splitlines())
                     if e["kind"] == "request" and e["host"] in ("old.test", "shop.test")],
            interval=0.3, what="the redirects' records")
        got = sorted((e["host"], e["path"], e["status"], e["decision"], e["error_code"]) for e in rows)
        assert got == [("old.test", "/form", 301, "redirect", None), ("old.test", "/x/y", 301, "redirect", None),
                       ("shop.test", "/cart", 308, "redirect", None)], got
    finally:
        d.stop()


def test_a_site_with_several_upstreams_takes_them_in_turn_and_passes_over_a_dead_one(curl, tmp_path, two_origins):
    """``upstream: [dead, a, b]``: every request is served, a and b in turn; the dead one is tried
    once, then passed over (the request that met it went on to the next, its record says so);
    a site whose upstreams are all dead answers 502 naming none of them, its record all."""
    a, b = two_origins
    dead, dead2 = free_port(), free_port()
    d = start(tmp_path, [
        f'      - names: ["app.test"]\n        upstream: [127.0.0.1:{dead}, 127.0.0.1:{a.port}, 127.0.0.1:{b.port}]',
        f'      - names: ["gone.test"]\n        upstream: [127.0.0.1:{dead2}, "[::1]:{dead2}"]',
    ])
    try:
        web = d.listen("web")
        for i in range(6):
            r = run_curl(curl, "-H", "Host: app.test", f"http://{web}/small?n={i}")
            assert (r.returncode, r.stdout) == (0, b"x" * 100), r.stderr
        assert (len(a.requests), len(b.requests)) == (3, 3)
        tried = re.findall(rf"upstream 127\.0\.0\.1:{dead} of site app\.test failed \(([^)]*)\); trying 127\.0\.0\.1:{a.port}", d.log())
        assert len(tried) == 1, d.log()  # passed over afterwards
        r = run_curl(curl, "-i", "-H", "Host: gone.test", f"http://{web}/")
        assert r.stdout.startswith(b"HTTP/1.1 502 "), r.stdout
        assert str(dead2).encode() not in r.stdout  # a visitor is not shown the upstreams
        rows = wait_until(
            lambda: (got := [e for e in map(json.loads, d.arcus("audit", "search", "--json").stdout.splitlines())
                             if e["kind"] == "request"]) and len(got) == 7 and got,
            interval=0.3, what="the requests' records")
        over = [e for e in rows if e["host"] == "app.test" and e["detail"]]
        assert len(over) == 1 and over[0]["status"] == 200, rows
        assert over[0]["detail"].startswith(f"failed over from 127.0.0.1:{dead}: "), over
        (gone,) = [e for e in rows if e["host"] == "gone.test"]
        assert (gone["status"], gone["error_code"]) == (502, "upstream_connect"), gone
        assert f"127.0.0.1:{dead2}: " in gone["detail"] and f"[::1]:{dead2}" in gone["detail"], gone
    finally:
        d.stop()
