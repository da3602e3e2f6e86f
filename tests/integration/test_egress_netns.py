"""The egress guard against off-box clients, in network namespaces this test creates and removes.

    client ns (10.200.T.2) --veth-- box ns (10.200.T.1)

The box namespace runs the real daemon (an ``http_proxy`` on 10.200.T.1:3128) and an origin
on 0.0.0.0:8080, so it answers on the box's loopback and on any address the box gains. The
client namespace is an off-box client. An on-box client is curl in the box namespace reaching
the proxy at the box's LAN address 10.200.T.1 (so the proxy sees 10.200.T.1, not 127.0.0.1).
Needs root (namespaces) and the ``ip`` tool; under CI=true their absence fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_program
from tests.integration.test_tproxy import GatewayDaemon, sh

pytestmark = pytest.mark.integration

PROXY_PORT = 3128
ORIGIN_PORT = 8080
WAIT = 10.0  # bound on every poll

# the scriptable origin of arcus.testing, run inside a namespace
ORIGIN_MAIN = (
    "import sys, time\n"
    "from arcus.testing.origin import Origin\n"
    "with Origin(host=sys.argv[1], port=int(sys.argv[2])):\n"
    "    time.sleep(3600)\n"
)

PROFILE = f"""\
servers:
  - name: http
    type: http_proxy
    listen: {{box}}:{PROXY_PORT}
    escaper: direct
escapers:
  - name: direct
    type: direct_fixed
    resolver: system
resolvers:
  - name: system
    type: system
timeouts:
  upstream_connect: 3s
  upstream_idle: 60s
log:
  level: info
  target: stderr
"""


class Net:
    """Two namespaces wired as in the module docstring; ``close`` removes them (and so every
    address and route added in them) and kills what was started in them."""

    _count = 0

    def __init__(self, ip: str) -> None:
        Net._count += 1
        n = (os.getpid() * 7 + Net._count) % 200 + 20
        tag = f"{os.getpid() % 100000}x{Net._count}"
        self.ip = ip
        self.box, self.cl = f"egress-b-{tag}", f"egress-c-{tag}"
        self.box_if, self.cl_if = f"egb{tag}", f"egc{tag}"
        self.box_addr, self.cl_addr = f"10.200.{n}.1", f"10.200.{n}.2"
        self.spare = f"10.201.{n}.9"  # an address the box gains during a test
        self.gw = self.box  # what GatewayDaemon runs the daemon in
        self.procs: list[subprocess.Popen] = []

    def setup(self) -> None:
        ip = self.ip
        for ns in (self.box, self.cl):
            sh(ip, "netns", "add", ns)
            sh(ip, "-n", ns, "link", "set", "lo", "up")
        sh(ip, "link", "add", self.cl_if, "netns", self.cl, "type", "veth", "peer", "name", self.box_if, "netns", self.box)
        for ns, dev, addr in ((self.box, self.box_if, self.box_addr), (self.cl, self.cl_if, self.cl_addr)):
            sh(ip, "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh(ip, "-n", ns, "link", "set", dev, "up")

    def exec(self, ns: str, *args: str) -> list[str]:
        return [self.ip, "netns", "exec", ns, *args]

    def spawn(self, ns: str, *args: str, log: Path) -> subprocess.Popen:
        with open(log, "ab") as f:
            p = subprocess.Popen(self.exec(ns, *args), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def origin(self, ns: str, host: str, log: Path) -> None:
        """An origin in ``ns`` on host:ORIGIN_PORT, once it answers there."""
        self.spawn(ns, sys.executable, "-c", ORIGIN_MAIN, host, str(ORIGIN_PORT), log=log)
        target = "127.0.0.1" if host == "0.0.0.0" else host
        poll(lambda: curl(self, ns, f"http://{target}:{ORIGIN_PORT}/small") == "200", f"the origin in {ns} did not start")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for ns in (self.box, self.cl):
            sh(self.ip, "netns", "del", ns, check=False)


def poll(ok, message: str, bound: float = WAIT) -> None:  # noqa: ANN001 - a predicate
    deadline = time.monotonic() + bound
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"{message} (waited {bound:g}s)")
        time.sleep(0.05)


def curl(net: Net, ns: str, url: str, proxy: str | None = None) -> str:
    """The HTTP status curl in ``ns`` gets for ``url`` (through ``proxy``), "000" when none."""
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"]
    if proxy is not None:
        args += ["-x", f"http://{proxy}"]
    r = subprocess.run(net.exec(ns, *args, url), capture_output=True, text=True, timeout=30)
    return r.stdout.strip() or "000"


@pytest.fixture
def net(tmp_path):
    ip = require_program("ip")
    require_program("curl")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the egress namespace tests need root (network namespaces)")
        pytest.skip("the egress namespace tests need root")
    n = Net(ip)
    try:
        n.setup()
        n.origin(n.box, "0.0.0.0", tmp_path / "box-origin.log")
        yield n
    finally:
        n.close()
    assert not any(ns in sh(ip, "netns", "list").stdout for ns in (n.box, n.cl))


def pooled(d: GatewayDaemon) -> int:
    return d.ctl("stats")["pooled_upstreams"]


def test_pooled_loopback_connection_never_serves_an_off_box_client(net, tmp_path):
    """Issue 10, 1: a connection to the box's loopback, opened for an on-box client that came
    through the LAN address, is pooled; an off-box client asking for the same URL must get the
    guard's 403, never that connection."""
    d = GatewayDaemon(tmp_path / "arcus", PROFILE.format(box=net.box_addr), net).start()
    proxy = f"{net.box_addr}:{PROXY_PORT}"
    url = f"http://127.0.0.1:{ORIGIN_PORT}/small"
    try:
        assert curl(net, net.box, url, proxy) == "200"  # on the box: loopback is open to it
        poll(lambda: pooled(d) == 1, "the on-box client's origin connection was not pooled")
        codes = [curl(net, net.cl, url, proxy) for _ in range(8)]
        assert codes == ["403"] * 8
        assert curl(net, net.box, url, proxy) == "200"  # the on-box client still gets through
        assert d.ctl("stats")["servers"]["http"]["errors"].get("denied") == 8
    finally:
        d.stop()


def test_ipv6_forms_of_loopback_are_refused(net, tmp_path):
    """Issue 10, also observed: [::127.0.0.1] (IPv4-compatible) is another path to loopback and
    refused to every client; [::ffff:127.0.0.1] is loopback itself, open to on-box clients only."""
    d = GatewayDaemon(tmp_path / "arcus", PROFILE.format(box=net.box_addr), net).start()
    proxy = f"{net.box_addr}:{PROXY_PORT}"
    try:
        compat, mapped = f"http://[::127.0.0.1]:{ORIGIN_PORT}/small", f"http://[::ffff:127.0.0.1]:{ORIGIN_PORT}/small"
        assert curl(net, net.cl, compat, proxy) == "403"
        assert curl(net, net.box, compat, proxy) == "403"
        assert curl(net, net.cl, mapped, proxy) == "403"
        assert curl(net, net.box, mapped, proxy) == "200"
    finally:
        d.stop()


def test_address_gained_after_start_is_refused_without_reload(net, tmp_path):
    """Issue 10, 2: an address the box gains while the daemon runs is one of its own at once:
    an off-box client is refused it within a bounded poll, with no reload, and the pooled
    connection made to that address before the box had it is closed, not reused."""
    spare = net.spare
    # before: the spare address is the off-box side's, with an origin of its own there
    sh(net.ip, "-n", net.cl, "addr", "add", f"{spare}/32", "dev", net.cl_if)
    sh(net.ip, "-n", net.box, "route", "add", f"{spare}/32", "via", net.cl_addr)
    net.origin(net.cl, spare, tmp_path / "remote-origin.log")
    d = GatewayDaemon(tmp_path / "arcus", PROFILE.format(box=net.box_addr), net).start()
    proxy = f"{net.box_addr}:{PROXY_PORT}"
    url = f"http://{spare}:{ORIGIN_PORT}/small"
    try:
        assert curl(net, net.cl, url, proxy) == "200"  # an ordinary remote destination
        poll(lambda: pooled(d) == 1, "the connection to the remote origin was not pooled")

        sh(net.ip, "-n", net.box, "addr", "add", f"{spare}/32", "dev", net.box_if)  # now the box's own
        poll(lambda: pooled(d) == 0, "the idle connection to the address the box gained was kept")
        poll(lambda: curl(net, net.cl, url, proxy) == "403", "the address the box gained is still reachable")
        assert [curl(net, net.cl, url, proxy) for _ in range(8)] == ["403"] * 8
        assert curl(net, net.box, url, proxy) == "200"  # the box's own address, for an on-box client
        assert d.ctl("health")["generation"] == 1  # no reload was needed
    finally:
        d.stop()
