"""``events.watch`` on a real daemon: records, reloads and changes as they happen, filters, a
deliberately slow subscriber dropped with its final notice while the proxy and a second
subscriber go on, and ``arcus ctl events`` on a terminal and with ``--json``."""

from __future__ import annotations

import http.client
import json
import queue
import signal
import socket
import subprocess
import threading
import time

import pytest

from arcus.control.client import ControlClient
from arcus.control.protocol import ControlError
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl
from tests.integration.test_tenancy import add_tenant, add_user

pytestmark = pytest.mark.integration


class Follower:
    """Reads a stream in a thread into a queue (the test polls it with a bound)."""

    def __init__(self, d, args: dict) -> None:
        self.items: queue.Queue = queue.Queue()
        self._stream = ControlClient(d.socket).stream("events.watch", args, idle_timeout=60)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._stream:
                self.items.put(item)
        except Exception as exc:  # the stream closed under us at teardown
            self.items.put({"type": "_error", "error": repr(exc)})

    def next(self, pred, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching event in time")
            try:
                item = self.items.get(timeout=left)
            except queue.Empty:
                raise AssertionError("no matching event in time") from None
            if pred(item):
                return item

    def drain(self) -> list[dict]:
        out = []
        while not self.items.empty():
            out.append(self.items.get_nowait())
        return out


def test_records_reloads_and_changes_reach_the_stream(curl, daemon, origin):
    d = daemon
    every = Follower(d, {})
    acme = Follower(d, {"tenant": "acme", "types": ["request", "change"]})
    refusals = Follower(d, {"refused": True})
    add_tenant(d, "acme", "127.0.0.0/8", auth="required")
    add_user(d, "acme", "alice", "pw-alice")
    change = acme.next(lambda e: e["type"] == "change" and e["cmd"] == "user.add")
    assert change["tenant"] == "acme" and change["user"] == "alice" and "secret" not in change
    assert isinstance(change["generation"], int) and change["at"].endswith("Z")

    r = run_curl(curl, "-x", f"http://{d.proxy}", "-U", "alice:pw-alice", origin.url("/small?token=s3cret"))
    assert r.returncode == 0 and len(r.stdout) == 100, r.stderr
    ev = acme.next(lambda e: e["type"] == "request")
    assert ev["tenant"] == "acme" and ev["user"] == "alice" and ev["method"] == "GET"
    assert ev["status"] == 200 and ev["bytes_down"] == 100 and ev["path"] == "/small"  # no query
    assert ev["server"] == "http" and ev["server_type"] == "http_proxy" and ev["duration"] >= 0
    assert "pw-alice" not in json.dumps(ev)

    r = run_curl(curl, "-x", f"http://{d.proxy}", "-U", "alice:wrong", origin.url("/small"))
    denied = refusals.next(lambda e: e["type"] == "request")
    assert denied["status"] == 407 and "wrong" not in json.dumps(denied)

    d.ctl("reload")
    reload = every.next(lambda e: e["type"] == "reload")
    assert reload["generation"] >= 2 and reload["profile"] == str(d.profile_path)
    d.profile_path.write_text(d.profile_path.read_text() + "bogus: 1\n")
    with pytest.raises(ControlError):
        d.ctl("reload")
    refused = refusals.next(lambda e: e["type"] == "reload_refused")
    assert "bogus" in refused["message"] and refused["code"] == "invalid"
    # the tenant filter excludes what has no tenant: no reload reached ``acme``
    assert all(e["type"] in ("request", "change") and e.get("tenant") == "acme" for e in acme.drain())
    # default types leave out the HTTP connection's own record
    assert all(e["type"] != "connection" for e in every.drain())


@pytest.mark.parametrize(
    "args, message",
    [
        ({"types": ["request", "nope"]}, "unknown event type 'nope'"),
        ({"types": "request"}, "must be a list"),
        ({"buffer": 0}, "between 1 and"),
        ({"tenant": 3}, '"tenant" must be a string'),
        ({"colour": "red"}, "no argument 'colour'"),
    ],
)
def test_bad_arguments_are_refused_and_the_connection_stays_usable(daemon, args, message):
    with ControlClient(daemon.socket) as client:
        with pytest.raises(ControlError, match=message) as exc:
            next(client.stream("events.watch", args))
        assert exc.value.code == "bad_request"
        assert client.call("health")["status"] == "ok"


def burst(d, origin, n: int) -> list[float]:
    """``n`` requests over one keep-alive connection through the proxy; each one's duration."""
    host, port = d.proxy.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    durations = []
    try:
        for _ in range(n):
            t0 = time.monotonic()
            conn.request("GET", origin.url("/small"))
            body = conn.getresponse().read()
            durations.append(time.monotonic() - t0)
            assert len(body) == 100
    finally:
        conn.close()
    return durations


def test_a_slow_subscriber_is_dropped_with_a_notice_and_nothing_else_waits(daemon, origin):
    d = daemon
    steady = Follower(d, {"types": ["request"], "buffer": 10_000})
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(str(d.socket))
    slow.sendall(json.dumps({"v": 1, "id": 9, "cmd": "events.watch", "args": {"types": ["request"], "buffer": 5}}).encode() + b"\n")
    received = bytearray()
    done = threading.Event()

    def read_slowly() -> None:  # 512 bytes every 20 ms: far slower than the burst below
        slow.settimeout(30)
        while not done.is_set():
            chunk = slow.recv(512)
            if not chunk:
                break
            received.extend(chunk)
            if b'"more": false' in received or b'"more":false' in received:
                break
            time.sleep(0.02)

    reader = threading.Thread(target=read_slowly, daemon=True)
    try:
        reader.start()
        # both subscribed once each has seen a first request (events.watch has no backlog)
        sent = []
        wait_until(lambda: sent.append(burst(d, origin, 1)) or (received and steady.items.qsize() >= 1), timeout=10)
        warmup = len(sent)
        started = time.monotonic()
        durations = burst(d, origin, 400)
        took = time.monotonic() - started
        reader.join(30)
        assert not reader.is_alive(), "the slow subscriber's stream never ended"
    finally:
        done.set()
        slow.close()
    replies = [json.loads(line) for line in bytes(received).splitlines() if line.strip()]
    assert replies[-1] == {"id": 9, "ok": True, "result": None, "more": False}
    notice = replies[-2]["result"]
    assert notice["type"] == "dropped" and notice["reason"] == "slow subscriber" and notice["buffer"] == 5
    shown = [r["result"] for r in replies[:-2]]
    assert all(e["type"] == "request" for e in shown)
    assert notice["skipped"] > 0 and len(shown) + notice["skipped"] <= 400 + warmup
    # the proxy did not wait for it, and the steady subscriber saw every request
    assert max(durations) < 1.0, max(durations)
    assert took < 20, took
    wait_until(lambda: steady.items.qsize() >= 400 + warmup, timeout=15)
    assert [e["type"] for e in steady.drain()] == ["request"] * (400 + warmup)
    assert d.ctl("health")["status"] == "ok"
    assert d.ctl("stats")["servers"]["http"]["requests"] >= 400


class Output:
    """A process' stdout lines, read by a thread into a queue."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, args=(proc,), daemon=True).start()

    def _run(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.put(line)

    def get(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None


def _first_line(out: Output, wanted, timeout: float = 20.0) -> str | None:
    """The first line ``wanted`` says yes to, skipping the others; None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        line = out.get(left)
        if line is not None and wanted(line):
            return line
    return None


def test_ctl_events_follows_on_a_terminal_and_as_json(daemon, origin, curl):
    d = daemon
    procs = []
    try:
        for extra in (["--json"], []):
            procs.append(subprocess.Popen(
                d.command("ctl", "events", "--type", "change", "--type", "request", "--socket", str(d.socket), *extra),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=d.env, text=True,
            ))
        as_json, text = (Output(p) for p in procs)
        # events.watch has no backlog: add tenants until both followers have printed a change
        first_json = first_text = None
        n = 0
        deadline = time.monotonic() + 20
        while (first_json is None or first_text is None) and time.monotonic() < deadline:
            n += 1
            d.ctl("tenant.add", {"name": f"t{n}"})
            first_json = first_json or as_json.get(0.5)
            first_text = first_text or text.get(0.5)
        assert first_json is not None and first_text is not None
        event = json.loads(first_json)
        assert event["type"] == "change" and event["cmd"] == "tenant.add" and event["tenant"].startswith("t")
        assert " change   tenant.add tenant=t" in first_text
        r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small"))
        assert r.returncode == 0
        request = _first_line(as_json, lambda x: '"request"' in x)  # the changes of the loop above may come first
        assert request is not None
        request = json.loads(request)
        assert request["status"] == 200 and request["path"] == "/small"
        line = _first_line(text, lambda x: " request  " in x)
        assert line is not None and " request  default/- " in line and " GET 127.0.0.1:" in line and " 200 0 100 " in line, line
        for proc in procs:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
