"""Protocol inspection through the proxy (arcus.proto.sniff, arcus.serve.inspection): the
protocol a tunnel carries is recorded (audit row and access-log line), a ``protocols`` rule
closes an SSH tunnel through http_proxy's CONNECT and socks_proxy alike, whichever side speaks
first, and host rules apply to the
TLS server name of a CONNECT to an address (curl ``--connect-to``: CONNECT 127.0.0.1:PORT with
the SNI of the URL's name)."""

from __future__ import annotations

import json
import socket

import pytest

from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.oneconn import OneConnection
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl
from tests.unit.proto.sniff_captures import CAPTURED

pytestmark = pytest.mark.integration

SSH_CLIENT = CAPTURED["ssh_client"]  # the OpenSSH 9.2 client's identification, as captured
SSH_SERVER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"


class BannerOrigin(OneConnection):
    """A TCP origin that greets with ``banner`` (b"": silent) and keeps what it receives;
    ``finished`` is set when its connection is over."""

    def __init__(self, banner: bytes) -> None:
        self.banner = banner
        self.received: list[bytes] = []
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        if self.banner:
            conn.sendall(self.banner)
        try:
            while data := conn.recv(65536):
                self.received.append(data)
                if not self.banner:
                    conn.sendall(SSH_SERVER)  # answers once the client spoke
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()  # not joined: a test may leave its connection open


def socks_connect(proxy: str, target: str) -> socket.socket:
    """A SOCKS5 CONNECT tunnel through ``proxy``, its success reply read."""
    from tests.integration.test_socks_proxy import socks5_open

    host, port = target.rsplit(":", 1)
    s, reply = socks5_open(proxy, host, int(port))
    assert reply.rep == 0, reply
    return s


def connect(proxy: str, target: str) -> socket.socket:
    """A CONNECT tunnel through ``proxy``, its 200 read."""
    host, port = proxy.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def read_to_close(s: socket.socket) -> bytes:
    out = b""
    while data := s.recv(65536):
        out += data
    return out


def audit_rows(d: DaemonProcess, want, count: int = 1) -> list:
    """The audit events ``want`` accepts, once there are ``count`` (bounded poll)."""

    def rows() -> list | None:
        out = d.arcus("audit", "search", "--json")
        found = [e for e in map(json.loads, out.stdout.splitlines()) if want(e)]
        return found if len(found) >= count else None

    return wait_until(rows, timeout=10, interval=0.1, what="the audit record")


@pytest.fixture
def acme(tmp_path):
    """A daemon whose http_proxy ("http") and socks_proxy ("socks") serve tenant acme."""
    profile = render_profile().replace("    escaper: direct\n", "    escaper: direct\n    tenant: acme\n", 1)
    socks_server = "  - name: socks\n    type: socks_proxy\n    listen: 127.0.0.1:0\n    escaper: direct\n    tenant: acme\n"
    profile = profile.replace("servers:\n", "servers:\n" + socks_server, 1)
    d = DaemonProcess(tmp_path / "arcus", profile)
    d.start()
    try:
        assert d.arcus("tenant", "add", "acme").returncode == 0
        yield d
    finally:
        d.stop()


def add_rule(d: DaemonProcess, *args: str) -> None:
    r = d.arcus("policy", "add", "acme", *args)
    assert r.returncode == 0, r.stderr


SERVERS = {  # server type: (listener name, how a tunnel is opened, what its record looks like)
    "http_proxy": ("http", connect, lambda e: e["method"] == "CONNECT"),
    "socks_proxy": ("socks", socks_connect, lambda e: e["kind"] == "connection" and e["host"] == "127.0.0.1"),
}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("server_first", [True, False], ids=["server-greets-first", "client-speaks-first"])
def test_ssh_through_a_tunnel_is_closed_by_a_protocols_rule_and_recorded(acme, server, server_first):
    listener, opener, is_record = SERVERS[server]
    origin = BannerOrigin(SSH_SERVER if server_first else b"")
    try:
        add_rule(acme, "no-ssh", "--deny", "--protocol", "ssh", "--port", str(origin.port))
        s = opener(acme.listen(listener), f"127.0.0.1:{origin.port}")
        with s:
            if server_first:
                assert origin.finished.wait(10)  # the proxy closed the upstream on its greeting
            s.sendall(SSH_CLIENT)
            assert read_to_close(s) == b""  # the greeting never reached the client: a clean FIN
        assert origin.finished.wait(10)
        assert origin.received == []  # nor did the client's identification reach the origin
    finally:
        origin.close()
    rows = audit_rows(acme, is_record)
    assert [(e["port"], e["protocol"], e["decision"], e["rule"], e["error_code"]) for e in rows] == [
        (origin.port, "ssh", "deny", "no-ssh", "denied")
    ], rows
    wait_until(lambda: "protocol=ssh" in acme.log(), what="the access-log line")
    assert acme.ctl("stats")["tenants"]["acme"]["errors"]["denied"] == 1


def test_the_same_bytes_elsewhere_pass_and_are_recorded_as_ssh(acme):
    origin = BannerOrigin(SSH_SERVER)
    try:
        add_rule(acme, "no-ssh", "--deny", "--protocol", "ssh", "--port", "443")
        with connect(acme.proxy, f"127.0.0.1:{origin.port}") as s:
            got = b""
            while SSH_SERVER not in got:
                chunk = s.recv(65536)
                assert chunk, got
                got += chunk
            s.sendall(SSH_CLIENT)
            wait_until(lambda: origin.received, what="the client's identification at the origin")
        assert b"".join(origin.received) == SSH_CLIENT
    finally:
        origin.close()
    rows = audit_rows(acme, lambda e: e["method"] == "CONNECT")
    assert [(e["protocol"], e["decision"], e["rule"]) for e in rows] == [("ssh", "allow", None)], rows


def test_host_rules_apply_to_the_sni_of_a_connect_to_an_address(acme, curl, tmp_path):
    from tests.integration.tls_peers import LocalCA, TlsOrigin

    ca = LocalCA(tmp_path / "ca")
    add_rule(acme, "no-casino", "--deny-host", "*.casino.example")
    with TlsOrigin(ca, "localhost", "www.casino.example") as origin:
        target = f"127.0.0.1:{origin.port}"
        base = ("--cacert", str(ca.cert_path), "-p", "-x", f"http://{acme.proxy}")
        r = run_curl(curl, *base, "--connect-to", f"localhost:{origin.port}:{target}",
                     f"https://localhost:{origin.port}/small")
        assert r.returncode == 0, r.stderr
        r = run_curl(curl, *base, "--connect-to", f"www.casino.example:{origin.port}:{target}",
                     f"https://www.casino.example:{origin.port}/small")
        assert r.returncode == 35, r.stderr  # the tunnel closed on the ClientHello: a TLS connect error
        assert origin.server_names == ["localhost"]  # the casino's hello never reached the origin
    rows = audit_rows(acme, lambda e: e["method"] == "CONNECT", count=2)
    got = sorted((e["host"], e["sni"], e["protocol"], e["decision"], e["rule"]) for e in rows)
    assert got == [
        ("127.0.0.1", "localhost", "tls", "allow", None),
        ("127.0.0.1", "www.casino.example", "tls", "deny", "no-casino"),
    ], rows
    wait_until(lambda: "protocol=tls sni=www.casino.example" in acme.log(), what="the access-log line")


def test_a_server_that_greets_at_once_is_heard_through_connect_every_time(acme):
    """The greeting can reach the proxy before its connect has returned: it is kept for the
    tunnel (arcus.serve.upstream.Early), never taken for an origin speaking unasked."""
    for _ in range(30):
        origin = BannerOrigin(SSH_SERVER)
        try:
            with connect(acme.proxy, f"127.0.0.1:{origin.port}") as s:
                got = b""
                while SSH_SERVER not in got:
                    chunk = s.recv(65536)
                    assert chunk, got  # closed without the greeting
                    got += chunk
                assert got == SSH_SERVER
        finally:
            origin.close()
