"""`sni_proxy`: curl (``--resolve``) and hand-driven TLS clients through the real daemon to real
origins: routing by SNI, the ClientHello forwarded byte for byte (fragmented across records
too), plain HTTP on the same port by Host, refusals as TLS alerts or HTTP statuses."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from arcus.serve.sni_proxy import alert_record
from arcus.testing.daemon import DaemonProcess
from arcus.testing.origin import Origin
from tests.integration.conftest import raw_exchange, run_curl
from tests.integration.tls_peers import LocalCA, TlsOrigin

PROFILE = """\
servers:
  - name: sni
    type: sni_proxy
    listen: 127.0.0.1:0
    escaper: direct
    tls_port: {tls_port}
    http_port: {http_port}
{extra}
escapers:
  - name: direct
    type: direct_fixed
    resolver: system
resolvers:
  - name: system
    type: system
timeouts:
  client_header: 3s
  upstream_connect: 5s
"""


@pytest.fixture
def peers(tmp_path):
    ca = LocalCA(tmp_path / "ca")
    with TlsOrigin(ca, "localhost") as tls_origin, Origin() as plain:
        yield ca, tls_origin, plain


def start(tmp_path, tls_origin, plain, extra: str = "") -> DaemonProcess:
    text = PROFILE.format(tls_port=tls_origin.port, http_port=plain.port, extra=extra)
    return DaemonProcess(tmp_path / "arcus", text).start()


class HandTls:
    """A TLS client over a plain socket, driven by hand: the ClientHello bytes can be reshaped."""

    def __init__(self, ca: LocalCA, server_name: str | None) -> None:
        ctx = ssl.create_default_context(cafile=str(ca.cert_path))
        if server_name is None:
            ctx.check_hostname = False
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_name)

    def hello(self) -> bytes:
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.out.read()

    def finish(self, sock: socket.socket, deadline: float) -> None:
        """Complete the handshake over ``sock`` (bounded by ``deadline``)."""
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the handshake")
            self.inc.write(data)
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                sock.sendall(self.out.read())
                continue
            sock.sendall(self.out.read())
            return
        raise TimeoutError("handshake")

    def request(self, sock: socket.socket, raw: bytes, deadline: float) -> bytes:
        self.obj.write(raw)
        sock.sendall(self.out.read())
        got = bytearray()
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            self.inc.write(data)
            try:
                while True:
                    got += self.obj.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
            if got.endswith(b"x" * 100):
                break
        return bytes(got)


def refragment(hello: bytes, size: int) -> list[bytes]:
    """The handshake message of a one-record ClientHello spread over records of ``size`` bytes."""
    assert hello[0] == 0x16
    length = int.from_bytes(hello[3:5], "big")
    assert len(hello) == 5 + length  # one record
    message = hello[5:]
    return [b"\x16\x03\x01" + len(message[i : i + size]).to_bytes(2, "big") + message[i : i + size] for i in range(0, len(message), size)]


def addr(d: DaemonProcess) -> tuple[str, int]:
    host, port = d.listen("sni").rsplit(":", 1)
    return host, int(port)


def test_curl_is_routed_by_sni_and_verifies_the_origin_end_to_end(curl, tmp_path, peers):
    ca, tls_origin, plain = peers
    d = start(tmp_path, tls_origin, plain)
    try:
        _, port = addr(d)
        r = run_curl(curl, "--cacert", str(ca.cert_path), "--resolve", f"localhost:{port}:127.0.0.1",
                     f"https://localhost:{port}/bytes/100000")
        assert r.returncode == 0, r.stderr  # the origin's own certificate, verified by curl: nothing decrypted
        assert r.stdout == b"b" * 100000
        assert tls_origin.server_names == ["localhost"]
        assert not plain.requests
        stats = d.ctl("stats")["servers"]["sni"]
        assert stats["conns_total"] == 1
        assert stats["bytes_down"] > 100000
    finally:
        d.stop()


def test_plain_http_on_the_same_port_is_routed_by_host(curl, tmp_path, peers):
    ca, tls_origin, plain = peers
    d = start(tmp_path, tls_origin, plain)
    try:
        host, port = addr(d)
        # Host without a port: http_port; the request head goes upstream unchanged
        r = run_curl(curl, "-H", "Host: localhost", f"http://{host}:{port}/headers")
        assert r.returncode == 0, r.stderr
        assert plain.requests[-1].header("host") == "localhost"
        assert plain.requests[-1].target == "/headers"
        # Host with a port: that port
        r = run_curl(curl, "-H", f"Host: localhost:{plain.port}", f"http://{host}:{port}/small")
        assert r.stdout == b"x" * 100
        assert len(plain.requests) == 2
        # no Host at all: 400 from the proxy, in HTTP
        out = raw_exchange(f"{host}:{port}", b"GET / HTTP/1.0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400"), out
        assert b"X-Arcus-Error: client_bad_request" in out
    finally:
        d.stop()


def test_plain_http_gets_one_request_per_connection_so_each_host_is_decided(tmp_path, peers):
    """A keep-alive client's next request would be relayed unseen to the first request's
    upstream (``Host: denied.example`` after an allowed one, to an address serving both): the
    head goes up with ``Connection: close`` in place of the client's connection fields, the
    upstream ends the connection after its answer, and a request pipelined behind the first is
    never served. The rest of the head goes as sent; proxy credentials do not."""
    ca, tls_origin, plain = peers
    d = start(tmp_path, tls_origin, plain)
    try:
        host, port = addr(d)
        first = (b"GET /headers?q=1 HTTP/1.1\r\nHost: localhost\r\nX-Keep: 1\r\nConnection: keep-alive, X-Hop\r\n"
                 b"X-Hop: gone\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n")
        second = b"GET /small HTTP/1.1\r\nHost: denied.example\r\n\r\n"
        out = raw_exchange(f"{host}:{port}", first + second)  # read until the connection closes
        assert out.count(b"HTTP/1.1 ") == 1 and out.startswith(b"HTTP/1.1 200"), out
        assert [r.target for r in plain.requests] == ["/headers?q=1"]
        seen = plain.requests[0]
        assert [(n.lower(), v) for n, v in seen.headers] == [("host", "localhost"), ("x-keep", "1"), ("connection", "close")]
        # an upgrade the upstream declines ends after its answer too (a bare "Upgrade" asked
        # for to keep the connection open gets the client nowhere)
        out = raw_exchange(f"{host}:{port}", b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                                             b"Upgrade: nothing\r\n\r\n" + second)
        assert out.count(b"HTTP/1.1 ") == 1 and out.startswith(b"HTTP/1.1 200"), out
        assert [r.target for r in plain.requests] == ["/headers?q=1", "/small"]
        # one it accepts goes on: a 101 is no final answer (WebSocket servers read the tokens)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"GET /upgrade HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got:
                got += s.recv(4096)
            assert got.startswith(b"HTTP/1.1 101"), got
            s.sendall(b"ping")
            rest = got.split(b"\r\n\r\n", 1)[1]
            while len(rest) < 4:
                rest += s.recv(4096)
            assert rest == b"ping"
        assert plain.requests[-1].header("connection") == "Upgrade, close"
        assert plain.requests[-1].header("upgrade") == "echo"
    finally:
        d.stop()


def test_fragmented_multi_record_hello_is_forwarded_and_the_handshake_completes(tmp_path, peers):
    ca, tls_origin, plain = peers
    d = start(tmp_path, tls_origin, plain)
    try:
        client = HandTls(ca, "localhost")
        records = refragment(client.hello(), 40)
        assert len(records) > 5
        deadline = time.monotonic() + 15
        with socket.create_connection(addr(d), timeout=10) as s:
            for rec in records:  # every record in two writes, with pauses: the proxy must wait for all
                s.sendall(rec[:3])
                time.sleep(0.005)  # a dribbling client: the behaviour under test
                s.sendall(rec[3:])
            client.finish(s, deadline)
            out = client.request(s, b"GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n", deadline)
        assert out.startswith(b"HTTP/1.1 200"), out
        assert out.endswith(b"x" * 100)
        assert tls_origin.server_names == ["localhost"]
    finally:
        d.stop()


def test_refusals_are_tls_alerts(curl, tmp_path, peers):
    ca, tls_origin, plain = peers
    d = start(tmp_path, tls_origin, plain)
    try:
        host, port = addr(d)
        # no SNI: unrecognized_name, nothing reaches an origin
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(HandTls(ca, None).hello())
            assert s.recv(100) == alert_record(112)
            assert s.recv(100) == b""
        # a malformed hello (not a ClientHello message): decode_error
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00")
            assert s.recv(100) == alert_record(50)
        # a name that does not resolve: unrecognized_name, as curl reports it
        r = run_curl(curl, "--cacert", str(ca.cert_path), "--resolve", f"nx.invalid:{port}:127.0.0.1", f"https://nx.invalid:{port}/")
        assert r.returncode == 35, r.stderr
        assert b"unrecognized name" in r.stderr.lower(), r.stderr
        assert tls_origin.server_names == []
        errors = d.ctl("stats")["servers"]["sni"]["errors"]
        assert errors.get("no_sni") == 1 and errors.get("client_bad_request") == 1 and errors.get("resolve_failed") == 1
    finally:
        d.stop()


def test_policy_on_the_sni_host(curl, tmp_path, peers):
    ca, tls_origin, plain = peers
    d = start(tmp_path, tls_origin, plain, extra="    tenant: acme\n")
    try:
        for args in (("tenant", "add", "acme"), ("policy", "add", "acme", "no-localhost", "--deny-host", "localhost")):
            res = d.arcus(*args)
            assert res.returncode == 0, res.stderr
        host, port = addr(d)
        r = run_curl(curl, "--cacert", str(ca.cert_path), "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/small")
        assert r.returncode == 35, r.stderr
        assert b"access denied" in r.stderr.lower(), r.stderr
        r = run_curl(curl, "-i", "-H", "Host: localhost", f"http://{host}:{port}/small")
        assert r.stdout.startswith(b"HTTP/1.1 403"), r.stdout
        assert b"X-Arcus-Error: denied" in r.stdout
        assert tls_origin.server_names == [] and not plain.requests
        assert d.ctl("stats")["tenants"]["acme"]["errors"]["denied"] == 2
    finally:
        d.stop()


def test_profile_errors(tmp_path):
    from arcus.config import check_profile

    path = tmp_path / "p.yaml"
    path.write_text(PROFILE.format(tls_port=70000, http_port="eighty", extra=""))
    found = [str(i).replace(str(path), "P", 1) for i in check_profile(str(path))]
    assert found == [
        'P:6: server "sni": tls_port: port 70000 out of range 1-65535',
        'P:7: server "sni": http_port: expected a whole number, got "eighty"',
    ]


def test_a_request_for_the_proxy_itself_ends_as_a_loop_not_a_flood(curl, tmp_path, peers):
    """Host naming the sni_proxy's own port: each hop would connect to itself again (one curl
    made 9,988 nested connections and ran the daemon out of descriptors). The hops are counted:
    the connection that has come through MAX_HOPS times is refused 508 loop_detected, and the
    answer travels back to the client."""
    import json

    from arcus.escape.hops import MAX_HOPS
    from arcus.testing.wait import wait_until

    ca, tls_origin, plain = peers
    d = start(tmp_path, tls_origin, plain)
    try:
        host, port = addr(d)
        r = run_curl(curl, "-i", "-H", f"Host: 127.0.0.1:{port}", f"http://{host}:{port}/")
        assert r.stdout.startswith(b"HTTP/1.1 508"), r.stdout[:300]
        assert b"X-Arcus-Error: loop_detected" in r.stdout
        sni = wait_until(lambda: (s := d.ctl("stats")["servers"]["sni"])["conns_active"] == 0 and s,
                         timeout=10, interval=0.05, what="the hops to close")
        assert sni["conns_total"] == MAX_HOPS + 1  # the client's connection and MAX_HOPS passes
        assert sni["errors"] == {"loop_detected": 1}

        def refused():
            out = d.arcus("audit", "search", "--json")
            rows = [e for e in map(json.loads, out.stdout.splitlines()) if e["error_code"] == "loop_detected"]
            return rows or None

        [row] = wait_until(refused, timeout=10, interval=0.1, what="the loop's record")
        assert (row["error_side"], row["status"], row["port"]) == ("forbidden", 508, port)
        assert not plain.requests
    finally:
        d.stop()
