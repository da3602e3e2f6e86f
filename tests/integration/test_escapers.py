"""Upstream chains with real peers on loopback: Arcus -> tinyproxy -> origin, Arcus -> dante
(SOCKS5) -> origin, Arcus -> another Arcus over HTTPS (proxy_https) -> origin; direct_float's
egress set changed live through the control socket.

The peers run in the foreground with private configurations in the test's directory and are
stopped by their PID at the end.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from arcus.testing.daemon import DaemonProcess
from tests.conftest import require_program
from tests.integration.conftest import free_port, run_curl
from tests.integration.tls_peers import LocalCA

TIMEOUTS = """\
timeouts:
  client_header: 5s
  upstream_connect: 3s
  upstream_response: 10s
  tunnel_idle: 30s
"""


def profile(escapers: str, entry: str, extra_servers: str = "") -> str:
    return f"""\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: {entry}
{extra_servers}
resolvers:
  - name: system
    type: system
    timeout: 3s

escapers:
  - name: direct
    type: direct_fixed
{escapers}
{TIMEOUTS}
log:
  level: info
runtime:
  graceful_timeout: 2s
"""


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_closed(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                time.sleep(0.05)
        except OSError:
            return
    raise RuntimeError(f"{host}:{port} still accepts after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Peer:
    """A peer process on ``port``; ``start()``/``stop()`` may be called again (same port)."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.argv = argv
        self.port = port
        self.log_path = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Peer:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            wait_closed(self.port)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@contextmanager
def tinyproxy(directory: Path, auth: tuple[str, str] | None = None):
    exe = require_program("tinyproxy")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "tinyproxy.conf"
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 50", "Allow 127.0.0.1", "LogLevel Connect"]
    if auth is not None:
        lines.append(f"BasicAuth {auth[0]} {auth[1]}")
    conf.write_text("\n".join(lines) + "\n")
    peer = Peer([exe, "-d", "-c", str(conf)], port, directory / "tinyproxy.log").start()
    try:
        yield peer
    finally:
        peer.stop()


@contextmanager
def dante(directory: Path):
    exe = require_program("danted")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "danted.log"
    conf = directory / "danted.conf"
    conf.write_text(
        f"logoutput: {log}\n"
        f"internal: 127.0.0.1 port = {port}\n"
        "external: 127.0.0.1\n"
        "clientmethod: none\n"
        "socksmethod: none\n"
        "user.privileged: root\n"
        "user.unprivileged: nobody\n"
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
        "socks pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  command: connect\n  log: connect error\n}\n"
    )
    peer = Peer([exe, "-f", str(conf), "-N", "1"], port, directory / "danted.out")
    peer.log_path = log
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@contextmanager
def arcus(workdir: Path, text: str):
    d = DaemonProcess(workdir, text)
    d.start()
    try:
        yield d
    finally:
        d.stop()
        if d._log is not None:
            d._log.close()


# --- Arcus -> tinyproxy -> origin -------------------------------------------------------------


def test_chain_through_tinyproxy_with_basic_credentials(tmp_path, curl, origin):
    with tinyproxy(tmp_path / "tp", auth=("arcus", "s3cret")) as tp:
        escapers = f"""\
  - name: up
    type: proxy_http
    proxy: 127.0.0.1:{tp.port}
    username: arcus
    password: s3cret
"""
        with arcus(tmp_path / "arcus", profile(escapers, "up")) as d:
            # plain HTTP: CONNECT through tinyproxy, then the request in origin form
            r = run_curl(curl, "-x", f"http://{d.proxy}", "-H", "Proxy-Authorization: Basic Y2xpZW50OnNlY3JldA==",
                         origin.url("/headers"))
            assert r.returncode == 0, r.stderr + d.log().encode()
            seen = json.loads(r.stdout)
            assert seen["target"] == "/headers"
            names = {k.lower() for k, _ in seen["headers"]}
            assert "proxy-authorization" not in names  # the client's credentials went nowhere
            # HTTPS-style tunnel: CONNECT from curl, CONNECT again from Arcus to tinyproxy
            r = run_curl(curl, "-p", "-x", f"http://{d.proxy}", origin.url("/bytes/100000"))
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"b" * 100000
    log = tp.log()
    assert log.count(f"CONNECT 127.0.0.1:{origin.port}") >= 2, log


def test_tinyproxy_refusing_our_credentials_is_a_502_that_says_so(tmp_path, curl, origin):
    with tinyproxy(tmp_path / "tp", auth=("arcus", "s3cret")) as tp:
        escapers = f"""\
  - name: up
    type: proxy_http
    proxy: 127.0.0.1:{tp.port}
    username: arcus
    password: wrong
"""
        with arcus(tmp_path / "arcus", profile(escapers, "up")) as d:
            r = run_curl(curl, "-i", "-x", f"http://{d.proxy}", origin.url("/small"))
            head = r.stdout.split(b"\r\n\r\n", 1)[0]
            assert head.startswith(b"HTTP/1.1 502"), r.stdout
            assert b"X-Arcus-Error: upstream_auth" in head
            assert b"our credentials were refused" in r.stdout


def test_upstream_proxy_down_is_a_502_naming_it(tmp_path, curl, origin):
    port = free_port()
    escapers = f"""\
  - name: up
    type: proxy_http
    proxy: 127.0.0.1:{port}
"""
    with arcus(tmp_path / "arcus", profile(escapers, "up")) as d:
        r = run_curl(curl, "-i", "-x", f"http://{d.proxy}", origin.url("/small"))
        assert r.stdout.startswith(b"HTTP/1.1 502"), r.stdout
        assert f"cannot connect to upstream proxy 127.0.0.1:{port} (up)".encode() in r.stdout


# --- Arcus -> dante (SOCKS5) -> origin --------------------------------------------------------


def test_chain_through_dante_socks5(tmp_path, curl, origin):
    with dante(tmp_path / "dante") as dn:
        escapers = f"""\
  - name: socks
    type: proxy_socks5
    proxy: 127.0.0.1:{dn.port}
"""
        with arcus(tmp_path / "arcus", profile(escapers, "socks")) as d:
            r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/bytes/50000"))
            assert r.returncode == 0, r.stderr + d.log().encode()
            assert r.stdout == b"b" * 50000
            r = run_curl(curl, "-p", "-x", f"http://{d.proxy}", f"http://localhost:{origin.port}/small")
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"x" * 100
            # dante refuses what its rules do not pass: the client learns it was the upstream
            r = run_curl(curl, "-i", "-x", f"http://{d.proxy}", "http://192.0.2.1:9/")
            assert r.stdout.split(b"\r\n", 1)[0] in (b"HTTP/1.1 502 Bad Gateway", b"HTTP/1.1 504 Gateway Timeout"), r.stdout
    log = dn.log()
    assert "connect" in log.lower() and f".{origin.port}" in log, log


# --- Arcus -> Arcus over HTTPS -> origin ------------------------------------------------------


def test_chain_to_a_second_arcus_over_proxy_https(tmp_path, curl, origin):
    ca = LocalCA(tmp_path / "ca")
    cert, key = ca.issue("upstream.arcus.test", "127.0.0.1", stem="upstream")
    upstream_port = free_port()
    upstream_profile = profile(
        "", "direct"
    ).replace(
        "    listen: 127.0.0.1:0\n    escaper: direct\n",
        f"    listen: 127.0.0.1:{upstream_port}\n    escaper: direct\n    tls:\n"
        f"      certificate: {cert}\n      private_key: {key}\n",
        1,
    )
    with arcus(tmp_path / "upstream", upstream_profile) as up:
        good = f"""\
  - name: chain
    type: proxy_https
    proxy: 127.0.0.1:{upstream_port}
    ca_file: {ca.cert_path}
    tls_name: upstream.arcus.test
  - name: untrusted
    type: proxy_https
    proxy: 127.0.0.1:{upstream_port}
  - name: wrong_name
    type: proxy_https
    proxy: 127.0.0.1:{upstream_port}
    ca_file: {ca.cert_path}
    tls_name: other.arcus.test
"""
        extra = "\n".join(
            f"  - name: {n}\n    type: http_proxy\n    listen: 127.0.0.1:0\n    escaper: {n}" for n in ("untrusted", "wrong_name")
        )
        with arcus(tmp_path / "downstream", profile(good, "chain", extra)) as d:
            r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/bytes/70000"))
            assert r.returncode == 0, r.stderr + d.log().encode()
            assert r.stdout == b"b" * 70000
            r = run_curl(curl, "-p", "-x", f"http://{d.proxy}", origin.url("/small"))
            assert r.returncode == 0 and r.stdout == b"x" * 100, r.stderr
            stats = up.ctl("stats")["servers"]["http"]
            assert stats["conns_total"] >= 2  # both went through the upstream Arcus
            for server, why in (("untrusted", b"certificate not trusted"), ("wrong_name", b"certificate not trusted")):
                r = run_curl(curl, "-i", "-x", f"http://{d.listen(server)}", origin.url("/small"))
                assert r.stdout.startswith(b"HTTP/1.1 502"), r.stdout
                assert b"X-Arcus-Error: upstream_tls" in r.stdout and why in r.stdout, r.stdout


# --- direct_float, set live -------------------------------------------------------------------


def test_direct_float_egress_set_changes_live_and_survives_a_reload(tmp_path, curl):
    from tests.integration.test_routing import PeerEcho

    escapers = """\
  - name: float
    type: direct_float
    addresses: [127.0.0.71]
"""
    with PeerEcho() as echo, arcus(tmp_path / "arcus", profile(escapers, "float")) as d:
        def peer() -> str:
            r = run_curl(curl, "-x", f"http://{d.proxy}", echo.url)
            assert r.returncode == 0, r.stderr
            return r.stdout.decode()

        assert peer() == "127.0.0.71"
        result = d.ctl("escaper.float.set", {"escaper": "float", "addresses": ["127.0.0.72"]})
        assert result == {"escaper": "float", "addresses": ["127.0.0.72"]}
        assert peer() == "127.0.0.72"
        d.ctl("reload")
        assert peer() == "127.0.0.72"  # the published set outlives a reload of the same profile
        info = d.ctl("escaper.show", {"escaper": "float"})
        assert info["addresses"] == ["127.0.0.72"] and info["published"] is True
        from arcus.control.protocol import ControlError

        with pytest.raises(ControlError) as err:
            d.ctl("escaper.float.set", {"escaper": "direct", "addresses": ["127.0.0.73"]})
        assert "not direct_float" in str(err.value)
        # the same through the CLI an operator types
        r = d.arcus("ctl", "float-set", "float", "127.0.0.74")
        assert r.returncode == 0, r.stderr
        assert "127.0.0.74" in r.stdout and peer() == "127.0.0.74"
        r = d.arcus("ctl", "escapers")
        assert r.returncode == 0 and "direct_float" in r.stdout
        r = d.arcus("ctl", "float-set", "direct", "127.0.0.75")
        assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
