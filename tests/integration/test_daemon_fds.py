"""The daemon and its file descriptors (issue 10, "also observed": under descriptor exhaustion
accepted connections were reset with nothing logged or counted).

The daemon runs under ``prlimit``: its soft limit is raised to the hard one at start, and when
it runs out anyway the warning is logged and ``ctl stats`` counts it.
"""

from __future__ import annotations

import socket
import time

import pytest

from arcus.control.protocol import ControlError
from arcus.testing.daemon import DaemonProcess
from tests.conftest import require_program
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration

WARNING = "file descriptors open: new connections are closed unanswered"


class LimitedDaemon(DaemonProcess):
    def __init__(self, workdir, nofile: str) -> None:
        super().__init__(workdir)
        self.prlimit = require_program("prlimit")
        self.nofile = nofile

    def command(self, *args: str) -> list[str]:
        cmd = super().command(*args)
        if args and args[0] == "serve":
            return [self.prlimit, f"--nofile={self.nofile}", "--", *cmd]
        return cmd


def poll(cond, what: str, bound: float = 10.0):
    deadline = time.monotonic() + bound
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stats_or_none(d):
    try:
        return d.ctl("stats")
    except ControlError:  # the control socket's connection was closed unanswered too
        return None


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(tmp_path):
    with LimitedDaemon(tmp_path / "arcus", "256:4096") as d:
        assert d.ctl("stats")["fds"]["limit"] == 4096


def test_running_out_of_descriptors_is_logged_and_counted_and_recovers(tmp_path, curl, origin):
    with LimitedDaemon(tmp_path / "arcus", "128:128") as d:
        host, port = d.proxy.rsplit(":", 1)
        before = d.ctl("stats")["fds"]
        assert before["limit"] == 128 and before["low"] == 0 and 0 < before["open"] < 96
        clients = []
        try:
            for _ in range(160):  # more than the daemon can hold: the last ones are reset unseen
                clients.append(socket.create_connection((host, int(port)), timeout=5))
            poll(lambda: WARNING in d.log(), "the daemon to say it is out of descriptors")
        finally:
            for c in clients:
                c.close()
        stats = poll(lambda: (s := stats_or_none(d)) and s["fds"]["open"] < 96 and s, "the descriptors to be freed")
        assert stats["fds"]["low"] >= 1
        assert d.log().count(WARNING) == 1  # at most once a minute
        r = run_curl(curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x", f"http://{d.proxy}", origin.url("/small"))
        assert r.stdout == b"200"
