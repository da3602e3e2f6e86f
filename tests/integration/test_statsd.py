"""StatsD from a real daemon to a real UDP socket: the counters of real curl traffic arrive as
increases that add up, gauges each interval, and a reload that drops the section stops them."""

from __future__ import annotations

import socket
import time

import pytest

from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration


class Listener:
    """A UDP socket on loopback collecting StatsD lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self.datagrams = 0

    def collect(self) -> None:
        """Read what has arrived by now."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            self.datagrams += 1
            assert len(data) <= 1432
            self.lines.extend(data.decode().split("\n"))

    def total(self, name: str, tags: str = "") -> float:
        """The sum of a counter's increases received so far."""
        suffix = f"|c|#{tags}" if tags else "|c"
        return sum(float(x[len(name) + 1:-len(suffix)]) for x in self.lines if x.startswith(name + ":") and x.endswith(suffix))

    def gauges(self, name: str) -> list[float]:
        return [float(x.split(":", 1)[1].split("|", 1)[0]) for x in self.lines if x.startswith(name + ":") and "|g" in x]


@pytest.fixture
def listener():
    lst = Listener()
    try:
        yield lst
    finally:
        lst.sock.close()


def test_statsd_counts_real_traffic(curl, origin, tmp_path, listener):
    statsd = f"metrics:\n  statsd:\n    target: 127.0.0.1:{listener.port}\n    interval: 100ms\n    prefix: arcus.test\n"
    d = DaemonProcess(tmp_path / "arcus", render_profile() + statsd)
    d.start()
    try:
        for _ in range(3):
            r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small"))
            assert r.returncode == 0 and len(r.stdout) == 100, r.stderr

        def counted() -> bool:
            listener.collect()
            return listener.total("arcus.test.request.duration.seconds.count", "server:http") >= 3

        wait_until(counted, timeout=10)
        assert listener.total("arcus.test.server.requests.total", "server:http") == 3
        assert listener.total("arcus.test.server.traffic.out.bytes.total", "server:http") == 300
        assert listener.total("arcus.test.escaper.requests.total", "escaper:direct") == 3
        assert listener.total("arcus.test.tenant.requests.total", "tenant:default") == 3
        uptimes = listener.gauges("arcus.test.uptime.seconds")
        assert len(uptimes) >= 2 and uptimes == sorted(uptimes)
        # more traffic: only the increase is sent, so the sums keep matching the daemon's counters
        r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small"))
        assert r.returncode == 0

        def four() -> bool:
            listener.collect()
            return listener.total("arcus.test.server.requests.total", "server:http") >= 4

        wait_until(four, timeout=10)
        assert listener.total("arcus.test.server.requests.total", "server:http") == d.ctl("stats")["servers"]["http"]["requests"] == 4

        # a reload without the section stops the pushes
        d.profile_path.write_text(render_profile())
        d.ctl("reload")
        listener.collect()
        before = listener.datagrams
        deadline = time.monotonic() + 1.0  # ten intervals: none may arrive
        while time.monotonic() < deadline:
            listener.collect()
            time.sleep(0.05)
        assert listener.datagrams == before
    finally:
        d.stop()
    assert "statsd flush failed" not in d.log()
