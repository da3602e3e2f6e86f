"""A burst of control clients all get answers (issue 10, "also observed": a listen backlog of
about 100 refused a burst of 300 clients).

To make the burst certain rather than a race with the daemon's accept loop, the daemon is
stopped (SIGSTOP) while the 300 clients connect and send ``health``, then continued: every
connection the kernel queued must be answered, and none may have been refused.
"""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

pytestmark = pytest.mark.integration

BURST = 300


def test_a_burst_of_300_control_clients_is_queued_and_answered(daemon):
    socks: list[socket.socket] = []
    refused: list[str] = []
    daemon.signal(signal.SIGSTOP)
    try:
        for i in range(BURST):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5.0)
            try:
                s.connect(str(daemon.socket))  # not accepted yet: only the backlog holds it
                s.sendall(json.dumps({"v": 1, "id": i, "cmd": "health"}).encode() + b"\n")
                socks.append(s)
            except OSError as exc:
                refused.append(exc.strerror or str(exc))
                s.close()
    finally:
        daemon.signal(signal.SIGCONT)
    try:
        assert not refused, f"{len(refused)} of {BURST} refused, first: {refused[0]}"
        answered = 0
        deadline = time.monotonic() + 30
        for s in socks:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            reply = json.loads(s.makefile("rb").readline())
            assert reply["ok"] is True and reply["result"]["status"] == "ok", reply
            answered += 1
        assert answered == BURST
    finally:
        for s in socks:
            s.close()
