"""Reload as an operator does it: edit the profile, `arcus ctl reload` or SIGHUP, while clients
keep using the proxy. A bad profile is refused with `file:line: message` and the old Snapshot
keeps serving; nothing in flight is dropped."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest

from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration

SECOND_SERVER = """\
  - name: second
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: direct
"""


def with_second_server(profile: str) -> str:
    return profile.replace("\nescapers:", "\n" + SECOND_SERVER + "\nescapers:", 1)


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in profile")


def status_of(curl: str, proxy: str, url: str) -> tuple[int, str]:
    r = run_curl(curl, "-o", "/dev/null", "-D", "-", "-x", f"http://{proxy}", url)
    assert r.returncode == 0, r.stderr
    head = r.stdout.decode("latin-1")
    error = ""
    for line in head.split("\r\n"):
        if line.lower().startswith("x-arcus-error:"):
            error = line.split(":", 1)[1].strip()
    return int(head.split(" ", 2)[1]), error


def generation(d: DaemonProcess) -> int:
    return d.ctl("health")["generation"]


def wait_generation(d: DaemonProcess, at_least: int, timeout: float = 10.0) -> int:
    try:
        return wait_until(lambda: (g := generation(d)) >= at_least and g, timeout=timeout, interval=0.02)
    except AssertionError:
        raise AssertionError(f"generation stayed {generation(d)}, wanted {at_least}\n{d.log()}") from None


def refused(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


class KeepAlive:
    """One client connection to the proxy, used for many absolute-form requests."""

    def __init__(self, proxy: str) -> None:
        host, port = proxy.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buf = b""

    def get(self, url: str) -> tuple[int, bytes]:
        authority = url.split("/", 3)[2]
        self.sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"proxy closed the keep-alive connection: {self.buf!r}")
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < length:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("proxy closed mid-body")
            self.buf += data
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(head.split(b" ", 2)[1]), body

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------------- good reloads


def test_ctl_reload_adds_a_server_that_serves_and_removes_it_again(curl, daemon, origin):
    original = daemon.profile_path.read_text()
    daemon.profile_path.write_text(with_second_server(original))
    r = daemon.arcus("ctl", "reload")
    assert (r.returncode, r.stdout) == (0, "reloaded: now serving generation 2\n"), r.stderr

    servers = {s["name"]: s for s in daemon.ctl("health")["servers"]}
    assert set(servers) == {"http", "second"}
    second = servers["second"]["listen"][0]
    assert second != daemon.proxy
    r = run_curl(curl, "-x", f"http://{second}", origin.url("/small"))
    assert (r.returncode, r.stdout) == (0, b"x" * 100), r.stderr
    assert daemon.ctl("stats")["servers"]["second"]["requests"] == 1
    r = daemon.arcus("ctl", "health")
    assert "second" in r.stdout and second in r.stdout

    daemon.profile_path.write_text(original)
    assert daemon.arcus("ctl", "reload").returncode == 0
    assert [s["name"] for s in daemon.ctl("health")["servers"]] == ["http"]
    assert refused(second)
    assert status_of(curl, daemon.proxy, origin.url("/small")) == (200, "")


def test_reload_applies_changed_timeouts_to_new_connections(curl, tmp_path, origin):
    with DaemonProcess(tmp_path / "arcus", render_profile({"upstream_response": "10s"})) as d:
        assert status_of(curl, d.proxy, origin.url("/slow/1.5")) == (200, "")
        d.profile_path.write_text(render_profile({"upstream_response": "1s"}))
        assert d.arcus("ctl", "reload").returncode == 0
        started = time.monotonic()
        assert status_of(curl, d.proxy, origin.url("/slow/4")) == (504, "upstream_timeout")
        assert time.monotonic() - started < 3.5


def test_sighup_reloads_profile_and_store(curl, daemon, origin):
    # a tenant written to the store behind the daemon's back (a CLI pointed at another socket)
    r = daemon.arcus("tenant", "add", "acme", "--source", "127.0.0.0/8", "--socket", str(daemon.workdir / "none.sock"))
    assert r.returncode == 0 and "directly" in r.stderr, r.stderr
    daemon.profile_path.write_text(with_second_server(daemon.profile_path.read_text()))
    daemon.signal(signal.SIGHUP)
    assert wait_generation(daemon, 2) == 2
    servers = {s["name"]: s["listen"] for s in daemon.ctl("health")["servers"]}
    assert set(servers) == {"http", "second"}
    assert status_of(curl, servers["second"][0], origin.url("/small")) == (200, "")
    assert daemon.ctl("stats")["tenants"]["acme"]["requests"] == 1
    assert "reloaded profile" in daemon.log()


# ---------------------------------------------------------------------------------- bad profiles


def _bad_profiles(good: str, busy_port: int) -> list[tuple[str, str, str]]:
    """(profile text, the line the error must name, text the message must contain)."""
    unknown_key = good.replace("log:\n", "log:\n  colour: blue\n")
    bad_ref = good.replace("    escaper: direct\n", "    escaper: nowhere\n", 1)
    bad_duration = good.replace("client_idle: 10s", "client_idle: 10 parsecs")
    bad_yaml = good + "servers: [\n"
    busy = with_second_server(good).replace(
        "  - name: second\n    type: http_proxy\n    listen: 127.0.0.1:0",
        f"  - name: second\n    type: http_proxy\n    listen: 127.0.0.1:{busy_port}",
    )
    foreign = with_second_server(good).replace(
        "  - name: second\n    type: http_proxy\n    listen: 127.0.0.1:0",
        "  - name: second\n    type: http_proxy\n    listen: 192.0.2.55:3128",
    )
    return [
        (foreign, str(line_of(foreign, "name: second")), "192.0.2.55:3128"),
        (unknown_key, str(line_of(unknown_key, "colour:")), "colour"),
        (bad_ref, str(line_of(bad_ref, "escaper: nowhere")), "nowhere"),
        (bad_duration, str(line_of(bad_duration, "parsecs")), "parsecs"),
        (bad_yaml, str(len(bad_yaml.splitlines()) + 1), "YAML"),
        (busy, str(line_of(busy, "name: second")), f"127.0.0.1:{busy_port}"),
    ]


def test_a_bad_profile_is_refused_with_file_line_and_the_old_snapshot_keeps_serving(curl, daemon, origin):
    good = daemon.profile_path.read_text()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        for text, line, needle in _bad_profiles(good, holder.getsockname()[1]):
            daemon.profile_path.write_text(text)
            r = daemon.arcus("ctl", "reload")
            assert r.returncode == 1, (needle, r.stdout, r.stderr)
            assert r.stdout == ""
            assert "Traceback" not in r.stderr
            assert r.stderr.startswith("error: "), r.stderr
            located = [ln.strip() for ln in r.stderr.splitlines() if ln.strip().startswith(f"{daemon.profile_path}:")]
            assert located, r.stderr
            assert located[0].startswith(f"{daemon.profile_path}:{line}: "), (located, line)
            assert needle in located[0], located
            assert "hint: " in r.stderr
            if "192.0.2.55" in needle:  # not an address of this machine: said so, not "who holds it"
                assert "hint: 192.0.2.55 is not an address of this machine" in r.stderr, r.stderr
            # still generation 1, still one server, still serving
            health = daemon.ctl("health")
            assert health["generation"] == 1
            assert [s["name"] for s in health["servers"]] == ["http"]
            assert status_of(curl, daemon.proxy, origin.url("/small")) == (200, "")
        assert len(origin.requests) == 6
    finally:
        holder.close()
    daemon.profile_path.write_text(good)
    assert daemon.arcus("ctl", "reload").returncode == 0
    assert generation(daemon) == 2


def test_sighup_with_a_bad_profile_logs_it_and_keeps_serving(curl, daemon, origin):
    good = daemon.profile_path.read_text()
    bad = good.replace("log:\n", "log:\n  colour: blue\n")
    daemon.profile_path.write_text(bad)
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in daemon.log(), what="the refused reload in the log")
    log = daemon.log()
    assert "reload refused, still serving generation 1" in log
    assert f"{daemon.profile_path}:{line_of(bad, 'colour:')}: " in log
    assert daemon.proc.poll() is None
    assert generation(daemon) == 1
    assert status_of(curl, daemon.proxy, origin.url("/small")) == (200, "")
    daemon.profile_path.write_text(good)
    daemon.signal(signal.SIGHUP)
    assert wait_generation(daemon, 2) == 2


# ---------------------------------------------------------------------------------- in flight


def test_requests_and_tunnels_in_flight_survive_a_reload_even_of_their_own_server(curl, daemon, origin):
    original = daemon.profile_path.read_text()
    daemon.profile_path.write_text(with_second_server(original))
    assert daemon.arcus("ctl", "reload").returncode == 0
    second = next(s["listen"][0] for s in daemon.ctl("health")["servers"] if s["name"] == "second")

    results: dict[str, subprocess.CompletedProcess] = {}

    def slow(name: str, proxy: str) -> None:
        results[name] = run_curl(curl, "-x", f"http://{proxy}", origin.url("/slow/2"))

    threads = [threading.Thread(target=slow, args=(n, p)) for n, p in (("first", daemon.proxy), ("second", second))]
    for t in threads:
        t.start()
    host, port = second.rsplit(":", 1)
    tunnel = socket.create_connection((host, int(port)), timeout=10)
    try:
        tunnel.sendall(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert tunnel.recv(4096).startswith(b"HTTP/1.1 200 ")
        wait_until(lambda: len(daemon.ctl("conns")) >= 3, what="three connections in flight")
        assert len(daemon.ctl("conns")) == 3

        daemon.profile_path.write_text(original)  # the reload removes the server "second" itself
        assert daemon.arcus("ctl", "reload").returncode == 0
        daemon.signal(signal.SIGHUP)
        wait_generation(daemon, 4)
        assert refused(second)

        for t in threads:
            t.join(30)
        for name in ("first", "second"):
            assert (results[name].returncode, results[name].stdout) == (0, b"slow"), (name, results[name].stderr)
        tunnel.sendall(b"GET /small HTTP/1.1\r\nHost: origin\r\n\r\n")
        got = b""
        while not got.endswith(b"x" * 100):
            data = tunnel.recv(65536)
            assert data, got
            got += data
    finally:
        tunnel.close()


def test_twenty_reloads_while_a_client_keeps_requesting(curl, daemon, origin):
    """The quality bar: 20 reloads (ctl reload and SIGHUP by turns), no request fails."""
    url = origin.url("/small")
    failures: list[str] = []
    counts = {"keepalive": 0, "curl": 0}
    stop = threading.Event()

    def client() -> None:
        ka = KeepAlive(daemon.proxy)
        try:
            for _ in range(5000):  # bounded; `stop` ends it long before
                if stop.is_set():
                    break
                try:
                    status, body = ka.get(url)
                    if (status, body) != (200, b"x" * 100):
                        failures.append(f"keep-alive: {status} {body[:80]!r}")
                    counts["keepalive"] += 1
                except OSError as exc:
                    failures.append(f"keep-alive: {exc!r}")
                    break
                r = run_curl(curl, "-x", f"http://{daemon.proxy}", url, timeout=20)
                if (r.returncode, r.stdout) != (0, b"x" * 100):
                    failures.append(f"curl: exit {r.returncode}: {r.stderr[:200]!r}")
                counts["curl"] += 1
        finally:
            ka.close()

    worker = threading.Thread(target=client, name="reload-client")
    worker.start()
    base = daemon.profile_path.read_text()
    try:
        for i in range(20):
            # each reload really changes the profile (a timeout), so a new Snapshot is built
            daemon.profile_path.write_text(base.replace("client_idle: 10s", f"client_idle: {10 + i % 2}s"))
            before = counts["curl"]
            if i % 4 == 0:  # the real CLI (slow to start), then the same command sent directly
                r = daemon.arcus("ctl", "reload")
                assert r.returncode == 0, r.stderr
            elif i % 2 == 0:
                assert daemon.ctl("reload") == {"generation": i + 2}
            else:
                daemon.signal(signal.SIGHUP)
                wait_generation(daemon, i + 2)
            # let some traffic through on every generation
            deadline = time.monotonic() + 5
            while counts["curl"] == before and time.monotonic() < deadline and worker.is_alive():
                time.sleep(0.01)
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()
    assert failures == []
    assert generation(daemon) == 21
    assert counts["curl"] >= 20 and counts["keepalive"] >= 20, counts
    stats = daemon.ctl("stats")["servers"]["http"]
    assert stats["requests"] == counts["curl"] + counts["keepalive"]
    assert stats["errors"] == {}
    assert stats["conns_total"] == counts["curl"] + 1  # the keep-alive connection was never dropped


def test_removing_a_server_while_clients_hammer_it_leaves_no_hung_connection(daemon, origin):
    """Connections a removed server's listener accepted just before the reload are served or
    cut, never left hanging with a traceback in the log (they must not meet the new Snapshot,
    which no longer knows their server)."""
    base = daemon.profile_path.read_text()
    outcomes = {"served": 0, "cut": 0}
    problems: list[str] = []
    request = f"GET {origin.url('/small')} HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n".encode()

    def hammer(addr: str, stop: threading.Event) -> None:
        host, port = addr.rsplit(":", 1)
        for _ in range(2000):
            if stop.is_set():
                return
            try:
                s = socket.create_connection((host, int(port)), timeout=3)
            except ConnectionRefusedError:
                return  # the listener is gone
            except OSError as exc:
                outcomes["cut"] += 1
                if isinstance(exc, TimeoutError):
                    problems.append("connect timed out")
                continue
            try:
                s.sendall(request)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                if data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"x" * 100):
                    outcomes["served"] += 1
                else:
                    problems.append(f"answer {data[:60]!r}")
            except TimeoutError:
                problems.append("hung: no answer and no close within 3s")
            except OSError:
                outcomes["cut"] += 1  # reset by the listener closing: the client can tell
            finally:
                s.close()

    for _ in range(6):
        daemon.profile_path.write_text(with_second_server(base))
        daemon.ctl("reload")
        second = next(s["listen"][0] for s in daemon.ctl("health")["servers"] if s["name"] == "second")
        stop = threading.Event()
        workers = [threading.Thread(target=hammer, args=(second, stop)) for _ in range(3)]
        served = outcomes["served"]
        for w in workers:
            w.start()
        # the reload must meet connections in flight: wait until the hammer is hitting the server
        wait_until(lambda served=served: outcomes["served"] >= served + 3 or problems, what="requests through the second server")
        daemon.profile_path.write_text(base)
        daemon.ctl("reload")
        stop.set()
        for w in workers:
            w.join(30)
    assert problems == []
    assert outcomes["served"] > 0
    assert "Traceback" not in daemon.log()
    assert daemon.ctl("conns") == []


def logged(path, text: str, count: int = 1, timeout: float = 10.0) -> bool:
    """Poll (bounded) until ``path`` holds ``text`` ``count`` times: access-log lines are
    written by the records writer thread, within the profile's audit.flush_interval."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count(text) >= count:
            return True
        time.sleep(0.05)
    return False


def test_reload_applies_the_log_section_and_sighup_reopens_a_rotated_log_file(curl, tmp_path, origin):
    log_file = tmp_path / "arcus.log"
    profile = render_profile().replace("target: stderr", f"target: {log_file}")
    with DaemonProcess(tmp_path / "arcus", profile) as d:
        assert status_of(curl, d.proxy, origin.url("/small?first")) == (200, "")
        assert logged(log_file, "/small 200")

        # logrotate: move the file away, then SIGHUP; the daemon writes to a new file
        rotated = tmp_path / "arcus.log.1"
        log_file.rename(rotated)
        d.signal(signal.SIGHUP)
        wait_generation(d, 2)
        assert status_of(curl, d.proxy, origin.url("/small?second")) == (200, "")
        assert logged(log_file, "/small 200")
        assert rotated.read_text().count("/small 200") == 1

        # access log off, level warning: requests leave no line, reloads neither
        d.profile_path.write_text(profile.replace("level: info", "level: warning").replace(
            f"target: {log_file}", f"target: {log_file}\n  access: false"))
        assert d.arcus("ctl", "reload").returncode == 0
        before = log_file.read_text()
        assert status_of(curl, d.proxy, origin.url("/small?third")) == (200, "")
        assert d.arcus("ctl", "reload").returncode == 0
        assert log_file.read_text() == before

        # a log target that cannot be opened refuses the reload (as it refuses `arcus serve`):
        # the operator is told, and the daemon serves and logs as it was
        generation = d.ctl("health")["generation"]
        d.profile_path.write_text(profile.replace(f"target: {log_file}", "target: /nonexistent/dir/arcus.log"))
        refused = d.arcus("ctl", "reload")
        assert refused.returncode != 0
        assert "cannot open the log file /nonexistent/dir/arcus.log" in refused.stderr
        assert d.ctl("health")["generation"] == generation
        assert status_of(curl, d.proxy, origin.url("/small?fourth")) == (200, "")
