"""`tcp_tproxy`: transparent proxying in network namespaces this test creates and removes.

    client ns (10.77.1.2) --veth-- gateway ns (10.77.1.1 | 10.77.2.1) --veth-- server ns (10.77.2.2)

The gateway runs the real daemon with a ``tcp_tproxy`` server on 10.77.1.1:15001 and an
nftables ``tproxy`` rule steering every TCP connection arriving from the client to it (plus
the usual policy route delivering marked packets locally). curl in the client namespace asks
for http://10.77.2.2:8080/ as if there were no proxy; a real HTTP server answers in the server
namespace. Needs root (namespaces, nftables, IP_TRANSPARENT) and the ``ip`` and ``nft`` tools.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arcus.testing.daemon import DaemonProcess
from tests.conftest import IN_CI, require_program

PORT = 15001
ORIGIN = "10.77.2.2"
ORIGIN_PORT = 8080


def sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


class Net:
    """Three namespaces wired as in the module docstring, removed by ``close``."""

    def __init__(self, ip: str, nft: str) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ip = ip
        self.cl, self.gw, self.sv = f"arcus-tpc-{tag}", f"arcus-tpg-{tag}", f"arcus-tps-{tag}"
        self.cl_if, self.gw_in, self.gw_out, self.sv_if = f"tpc{tag}", f"tpg{tag}", f"tpo{tag}", f"tps{tag}"
        self.nft = nft
        self.procs: list[subprocess.Popen] = []

    def setup(self) -> None:
        ip = self.ip
        for ns in (self.cl, self.gw, self.sv):
            sh(ip, "netns", "add", ns)
            sh(ip, "-n", ns, "link", "set", "lo", "up")
        sh(ip, "link", "add", self.cl_if, "netns", self.cl, "type", "veth", "peer", "name", self.gw_in, "netns", self.gw)
        sh(ip, "link", "add", self.sv_if, "netns", self.sv, "type", "veth", "peer", "name", self.gw_out, "netns", self.gw)
        for ns, dev, addr in (
            (self.cl, self.cl_if, "10.77.1.2/24"),
            (self.gw, self.gw_in, "10.77.1.1/24"),
            (self.gw, self.gw_out, "10.77.2.1/24"),
            (self.sv, self.sv_if, f"{ORIGIN}/24"),
        ):
            sh(ip, "-n", ns, "addr", "add", addr, "dev", dev)
            sh(ip, "-n", ns, "link", "set", dev, "up")
        sh(ip, "-n", self.cl, "route", "add", "default", "via", "10.77.1.1")
        rules = f"""
table inet arcus_tproxy {{
  chain prerouting {{
    type filter hook prerouting priority mangle; policy accept;
    iifname "{self.gw_in}" meta l4proto tcp tproxy ip to 10.77.1.1:{PORT} meta mark set 1 accept
  }}
}}
"""
        subprocess.run([ip, "netns", "exec", self.gw, self.nft, "-f", "-"], input=rules, text=True, check=True,
                       capture_output=True, timeout=20)
        sh(ip, "-n", self.gw, "rule", "add", "fwmark", "1", "lookup", "100")
        sh(ip, "-n", self.gw, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")

    def exec(self, ns: str, *args: str) -> list[str]:
        return [self.ip, "netns", "exec", ns, *args]

    def spawn(self, ns: str, *args: str, log: Path) -> subprocess.Popen:
        f = open(log, "ab")
        p = subprocess.Popen(self.exec(ns, *args), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        f.close()
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for ns in (self.cl, self.gw, self.sv):
            sh(self.ip, "netns", "del", ns, check=False)


class GatewayDaemon(DaemonProcess):
    """The real daemon, started inside the gateway namespace (its control socket is a file: the
    test reaches it from outside)."""

    def __init__(self, workdir: Path, profile: str, net: Net) -> None:
        super().__init__(workdir, profile)
        self.net = net

    def command(self, *args: str) -> list[str]:
        return self.net.exec(self.net.gw, sys.executable, "-m", "arcus", *args)


PROFILE = f"""\
servers:
  - name: tproxy
    type: tcp_tproxy
    listen: 10.77.1.1:{PORT}
    escaper: direct
{{extra}}
escapers:
  - name: direct
    type: direct_fixed
    resolver: system
resolvers:
  - name: system
    type: system
timeouts:
  upstream_connect: 3s
  tunnel_idle: 10s
"""


@pytest.fixture
def net(tmp_path):
    ip = require_program("ip")
    nft = require_program("nft")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("tcp_tproxy tests need root (network namespaces, nftables, IP_TRANSPARENT)")
        pytest.skip("tcp_tproxy tests need root")
    n = Net(ip, nft)
    try:
        n.setup()
        www = tmp_path / "www"
        www.mkdir()
        (www / "hello.txt").write_text("hello through tproxy\n")
        (www / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
        n.spawn(n.sv, sys.executable, "-m", "http.server", "--bind", ORIGIN, str(ORIGIN_PORT), "--directory", str(www),
                log=tmp_path / "origin.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the origin answers from the gateway (no proxy on that path)
            r = subprocess.run(n.exec(n.gw, "curl", "-s", "-o", "/dev/null", f"http://{ORIGIN}:{ORIGIN_PORT}/hello.txt"),
                               capture_output=True, timeout=10)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the origin in the server namespace did not start")
        yield n
    finally:
        n.close()
    assert not any(ns in sh(ip, "netns", "list").stdout for ns in (n.cl, n.gw, n.sv))


def client_curl(net: Net, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(net.exec(net.cl, "curl", "-sS", "--max-time", "10", *args), capture_output=True, timeout=30)


def test_transparent_connection_reaches_its_original_destination(curl, net, tmp_path):
    d = GatewayDaemon(tmp_path / "arcus", PROFILE.format(extra=""), net).start()
    try:
        r = client_curl(net, f"http://{ORIGIN}:{ORIGIN_PORT}/hello.txt")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"hello through tproxy\n"
        r = client_curl(net, f"http://{ORIGIN}:{ORIGIN_PORT}/big.bin")
        assert r.returncode == 0, r.stderr
        assert r.stdout == bytes(range(256)) * 4096
        stats = d.ctl("stats")["servers"]["tproxy"]
        assert stats["conns_total"] == 2  # both went through Arcus, not around it
        assert stats["bytes_down"] > 1 << 20
        log = (tmp_path / "origin.log").read_text()
        assert log.count("10.77.2.1 - -") >= 2  # the origin saw the gateway's address: Arcus connected
        # a client connecting to the listener itself (not redirected) is refused, not looped
        r = client_curl(net, f"http://10.77.1.1:{PORT}/")
        assert r.returncode in (52, 56), r
        assert d.ctl("stats")["servers"]["tproxy"]["errors"]["client_bad_request"] == 1
    finally:
        d.stop()


def test_policy_applies_to_the_original_destination(curl, net, tmp_path):
    d = GatewayDaemon(tmp_path / "arcus", PROFILE.format(extra="    tenant: acme\n"), net).start()
    try:
        for args in (("tenant", "add", "acme"), ("policy", "add", "acme", "no-web", "--deny", "--port", str(ORIGIN_PORT))):
            res = d.arcus(*args)
            assert res.returncode == 0, res.stderr
        r = client_curl(net, f"http://{ORIGIN}:{ORIGIN_PORT}/hello.txt")
        assert r.returncode in (52, 56), r
        assert d.ctl("stats")["tenants"]["acme"]["errors"]["denied"] == 1
    finally:
        d.stop()
