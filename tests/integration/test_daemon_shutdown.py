"""Shutdown as an operator and a service manager do it: SIGTERM, Ctrl-C (SIGINT), `arcus ctl
shutdown [--graceful]`, with requests in flight. Graceful means: stop accepting, let live
connections finish within the profile's bound, exit 0."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time

import pytest

from arcus.testing.daemon import DaemonProcess, render_profile
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration


class Background:
    """curl through the proxy in a thread; .result once it is done."""

    def __init__(self, curl: str, proxy: str, url: str) -> None:
        self.result: subprocess.CompletedProcess | None = None
        self.finished_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(curl, proxy, url), daemon=True)
        self._thread.start()

    def _run(self, curl: str, proxy: str, url: str) -> None:
        self.result = run_curl(curl, "-x", f"http://{proxy}", url, timeout=40)
        self.finished_at = time.monotonic()

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 30.0) -> subprocess.CompletedProcess:
        self._thread.join(timeout)
        assert self.result is not None, "curl did not finish"
        return self.result


def wait_in_flight(d: DaemonProcess, n: int = 1, timeout: float = 10.0) -> None:
    """Until the daemon has ``n`` requests waiting on the origin."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(c["state"] == "response" for c in d.ctl("conns")) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"no request in flight: {d.ctl('conns')}")


def refused(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_refused(addr: str, timeout: float = 3.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if refused(addr):
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"{addr} still accepts connections {timeout}s after the stop")


def exit_status(d: DaemonProcess, within: float) -> tuple[int, float]:
    started = time.monotonic()
    code = d.wait(within)
    return code, time.monotonic() - started


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_lets_the_request_in_flight_finish_refuses_new_ones_and_exits_0(curl, daemon, origin, sig):
    proxy = daemon.proxy
    slow = Background(curl, proxy, origin.url("/slow/2"))
    wait_in_flight(daemon)
    daemon.signal(sig)
    closed_at = wait_refused(proxy)
    assert slow.running()  # the listener closed while the request was still in flight
    assert daemon.ctl("health")["status"] == "draining"  # the control socket still answers
    assert [c["state"] for c in daemon.ctl("conns")] == ["response"]
    r = slow.join()
    assert (r.returncode, r.stdout) == (0, b"slow"), r.stderr
    assert slow.finished_at > closed_at
    code, _ = exit_status(daemon, 10)
    assert code == 0, daemon.log()
    assert not daemon.socket.exists()  # the control socket is cleaned up
    assert "Traceback" not in daemon.log()


def test_ctl_shutdown_graceful_lets_the_request_finish(curl, daemon, origin):
    proxy = daemon.proxy
    slow = Background(curl, proxy, origin.url("/slow/2"))
    wait_in_flight(daemon)
    r = daemon.arcus("ctl", "shutdown", "--graceful")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "daemon is shutting down gracefully: live connections may finish\n"
    wait_refused(proxy)
    r = slow.join()
    assert (r.returncode, r.stdout) == (0, b"slow"), r.stderr
    code, _ = exit_status(daemon, 10)
    assert code == 0, daemon.log()


def test_ctl_shutdown_graceful_json(daemon):
    r = daemon.arcus("ctl", "shutdown", "--graceful", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"graceful": True, "shutting_down": True}
    assert exit_status(daemon, 10)[0] == 0


def test_ctl_shutdown_without_graceful_stops_now(curl, daemon, origin):
    slow = Background(curl, daemon.proxy, origin.url("/slow/10"))
    wait_in_flight(daemon)
    r = daemon.arcus("ctl", "shutdown", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"graceful": False, "shutting_down": True}
    code, took = exit_status(daemon, 10)
    assert code == 0, daemon.log()
    assert took < 3, took
    r = slow.join()
    assert r.returncode != 0 and r.stdout == b""  # cut, and curl can tell


def test_ctl_shutdown_text(daemon):
    # a graceful that is not a boolean ("false" is a true string) stops nothing
    with pytest.raises(Exception) as info:
        daemon.ctl("shutdown", {"graceful": "false"})
    assert "graceful must be true or false" in str(info.value)
    with pytest.raises(Exception) as info:  # a misspelt argument stops nothing either
        daemon.ctl("shutdown", {"gracefull": True})
    assert "shutdown: unknown argument 'gracefull'" in str(info.value)
    assert daemon.ctl("health")["generation"] >= 1
    r = daemon.arcus("ctl", "shutdown")
    assert (r.returncode, r.stdout) == (0, "daemon is shutting down now\n"), r.stderr
    assert exit_status(daemon, 10)[0] == 0


def test_the_graceful_bound_comes_from_the_profile(curl, tmp_path, origin):
    with DaemonProcess(tmp_path / "arcus", render_profile(graceful="1s")) as d:
        slow = Background(curl, d.proxy, origin.url("/slow/10"))
        wait_in_flight(d)
        d.signal(signal.SIGTERM)
        code, took = exit_status(d, 10)
        assert code == 0, d.log()
        assert 0.8 < took < 4, took
        assert "still open after 1s" in d.log()
        r = slow.join()
        assert r.returncode != 0  # it did not get to finish: the bound won


def test_idle_connections_do_not_hold_a_graceful_shutdown(curl, daemon, origin):
    host, port = daemon.proxy.rsplit(":", 1)
    used = socket.create_connection((host, int(port)), timeout=10)
    fresh = socket.create_connection((host, int(port)), timeout=10)
    try:
        used.sendall(f"GET {origin.url('/small')} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n\r\n".encode())
        got = b""
        while not got.endswith(b"x" * 100):
            got += used.recv(65536)
        deadline = time.monotonic() + 5
        while len(daemon.ctl("conns")) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        daemon.signal(signal.SIGTERM)  # the profile allows 10s; idle connections must not use them
        code, took = exit_status(daemon, 10)
        assert code == 0 and took < 3, (code, took)
        for s in (used, fresh):
            s.settimeout(5)
            assert s.recv(1) == b""
    finally:
        used.close()
        fresh.close()


def test_a_keep_alive_response_in_flight_is_told_to_close(daemon, origin):
    host, port = daemon.proxy.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    try:
        s.sendall(f"GET {origin.url('/slow/1.5')} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n\r\n".encode())
        wait_in_flight(daemon)
        daemon.signal(signal.SIGTERM)
        got = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            got += data
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nConnection: close" in head
        assert body == b"slow"
    finally:
        s.close()
    assert exit_status(daemon, 10)[0] == 0


def test_an_immediate_shutdown_cuts_a_graceful_drain_short(curl, tmp_path, origin):
    with DaemonProcess(tmp_path / "arcus", render_profile(graceful="30s")) as d:
        proxy = d.proxy  # read before the signal: a draining daemon lists no listen address
        slow = Background(curl, proxy, origin.url("/slow/20"))
        wait_in_flight(d)
        d.signal(signal.SIGTERM)
        wait_refused(proxy)
        r = d.arcus("ctl", "shutdown")  # the operator does not want to wait 30s after all
        assert r.returncode == 0, r.stderr
        code, took = exit_status(d, 10)
        assert code == 0 and took < 3, (code, took)
        assert slow.join().returncode != 0


def test_a_second_ctrl_c_stops_now(curl, tmp_path, origin):
    with DaemonProcess(tmp_path / "arcus", render_profile(graceful="30s")) as d:
        proxy = d.proxy  # read before the signal: a draining daemon lists no listen address
        slow = Background(curl, proxy, origin.url("/slow/20"))
        wait_in_flight(d)
        d.signal(signal.SIGINT)
        wait_refused(proxy)
        assert d.proc.poll() is None  # the first one only drains
        d.signal(signal.SIGINT)
        code, took = exit_status(d, 10)
        assert code == 0 and took < 3, (code, took)
        assert slow.join().returncode != 0


def test_a_reload_during_the_drain_does_not_open_the_listeners_again(curl, daemon, origin):
    """logrotate's SIGHUP or an operator's reload may arrive while the daemon drains."""
    proxy = daemon.proxy
    slow = Background(curl, proxy, origin.url("/slow/2"))
    wait_in_flight(daemon)
    daemon.signal(signal.SIGTERM)
    wait_refused(proxy)
    daemon.signal(signal.SIGHUP)
    r = daemon.arcus("ctl", "reload")
    assert r.returncode == 1
    assert r.stderr.startswith("error: the daemon is shutting down"), r.stderr
    assert "Traceback" not in r.stderr
    health = daemon.ctl("health")
    assert health["servers"][0]["listen"] == []  # nothing bound again, on any port
    assert health["generation"] == 1
    assert refused(proxy)
    assert slow.join().stdout == b"slow"
    assert exit_status(daemon, 10)[0] == 0


def test_a_stop_with_streams_attached_leaves_nothing_on_stderr(tmp_path, curl, origin):
    """The TUI keeps stats.watch and events.watch open, `audit tail -f` audit.tail: a SIGTERM
    then printed asyncio's "Task exception was never retrieved ... StopAsyncIteration" on the
    daemon's stderr, past its log."""
    d = DaemonProcess(tmp_path / "arcus", render_profile()).start()
    streams = []
    try:
        for cmd in ("stats.watch", "events.watch", "audit.tail"):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(d.socket))
            s.settimeout(10)
            s.sendall((json.dumps({"v": 1, "id": 1, "cmd": cmd, "args": {}}) + "\n").encode())
            streams.append(s)
        assert run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small")).returncode == 0
        for s in streams:  # each stream has said something: all three are running
            assert b'"more":true' in s.recv(65536)
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0
        assert "never retrieved" not in d.log() and "Traceback" not in d.log(), d.log()[-2000:]
    finally:
        for s in streams:
            s.close()
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
