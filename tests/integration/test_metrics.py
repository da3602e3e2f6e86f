"""The metrics listener of a real daemon: Prometheus text read with prometheus-client's own parser
after real curl traffic, /health and /ready (and its 503), and ``stats.watch`` on the control
socket (at least two updates; a subscriber that never reads is dropped, curl unhurt)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from arcus.control.client import ControlClient
from arcus.control.protocol import ControlError
from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl
from tests.integration.test_tenancy import add_tenant, add_user

pytestmark = pytest.mark.integration

METRICS_PROFILE = render_profile() + "metrics:\n  listen: 127.0.0.1:0\n  max_users: 1\n"


@pytest.fixture
def mdaemon(tmp_path):
    d = DaemonProcess(tmp_path / "arcus", METRICS_PROFILE)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def fetch(d: DaemonProcess, path: str) -> tuple[int, str]:
    url = f"http://{d.ctl('health')['metrics']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(d: DaemonProcess) -> dict[tuple[str, frozenset], float]:
    """``{(sample name, labels): value}`` of one scrape, parsed by prometheus-client."""
    status, text = fetch(d, "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(snap: dict, name: str, **labels: str) -> float:
    return snap.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_real_traffic(curl, mdaemon, origin):
    d = mdaemon
    add_tenant(d, "acme", "127.0.0.0/8", auth="required")
    add_user(d, "acme", "alice", "pw-alice")
    add_user(d, "acme", "bob", "pw-bob")
    add_user(d, "acme", "carol", "pw-carol")
    before = samples(d)
    for user in ("alice", "bob", "carol", "alice"):
        r = run_curl(curl, "-x", f"http://{d.proxy}", "-U", f"{user}:pw-{user}", origin.url("/small"))
        assert r.returncode == 0 and len(r.stdout) == 100, r.stderr
    r = run_curl(curl, "-x", f"http://{d.proxy}", "-U", "alice:pw-alice", "http://127.0.0.1:1/refused")
    assert b"502" in r.stdout or r.returncode == 0
    # The request records reach the histogram through the records writer: poll for them.
    wait_until(lambda: value(samples(d), "arcus_request_duration_seconds_count", server="http") >= 5, timeout=10)
    after = samples(d)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("arcus_server_connections_total", server="http") == 5
    assert moved("arcus_server_requests_total", server="http") == 5
    assert moved("arcus_server_traffic_out_bytes_total", server="http") == 400
    assert moved("arcus_server_errors_total", server="http", code="upstream_connect") == 1
    assert value(after, "arcus_server_connections_active", server="http") == 0
    assert moved("arcus_tenant_requests_total", tenant="acme") == 5
    assert moved("arcus_tenant_traffic_out_bytes_total", tenant="acme") == 400
    # max_users: 1: alice, seen first, keeps her label; bob and carol are folded
    assert value(after, "arcus_user_requests_total", tenant="acme", user="alice") == 3
    assert value(after, "arcus_user_errors_total", tenant="acme", user="alice", code="upstream_connect") == 1
    assert value(after, "arcus_user_requests_total", tenant="acme", user="_other") == 2
    assert not any(n == "arcus_user_requests_total" and ("user", "bob") in ls for n, ls in after)
    assert moved("arcus_request_duration_seconds_count", server="http") == 5
    assert value(after, "arcus_request_duration_seconds_bucket", server="http", le="+Inf") == value(
        after, "arcus_request_duration_seconds_count", server="http"
    )
    # the same requests per tenant, per (folded) user and per escaper, from the records
    assert moved("arcus_tenant_request_duration_seconds_count", tenant="acme") == 5
    assert value(after, "arcus_user_request_duration_seconds_count", tenant="acme", user="alice") == 3
    assert value(after, "arcus_user_request_duration_seconds_count", tenant="acme", user="_other") == 2
    assert moved("arcus_escaper_request_duration_seconds_count", escaper="direct") == 5
    assert moved("arcus_escaper_requests_total", escaper="direct") == 5
    assert moved("arcus_escaper_traffic_out_bytes_total", escaper="direct") == 400
    assert moved("arcus_escaper_errors_total", escaper="direct", code="upstream_connect") == 1
    assert value(after, "arcus_listeners_down") == 0
    assert moved("arcus_resolver_lookups_total", resolver="system") == 0  # IP literals only
    assert moved("arcus_resolver_cache_misses_total", resolver="system") == 0
    assert value(after, "arcus_audit_enabled") == 1
    assert value(after, "arcus_audit_written_total") > value(before, "arcus_audit_written_total")
    assert value(after, "arcus_audit_dropped_total") == 0
    assert value(after, "arcus_records_dropped_total") == 0
    assert value(after, "arcus_fds_open") > 0 and value(after, "arcus_fds_limit") > value(after, "arcus_fds_open")
    assert value(after, "arcus_auth_kdf_runs_total") >= 3  # three users logged in once at least
    assert value(after, "arcus_upstream_pool_connections") >= 0
    assert value(after, "arcus_build_info", version=d.ctl("health")["version"]) == 1

    d.ctl("reload")
    d.profile_path.write_text(METRICS_PROFILE + "bogus: 1\n")
    with pytest.raises(ControlError, match="profile refused"):
        d.ctl("reload")
    snap = samples(d)
    assert value(snap, "arcus_reloads_total", result="done") == 1
    assert value(snap, "arcus_reloads_total", result="refused") == 1


def test_user_bytes_are_counted_once(curl, mdaemon, origin):
    d = mdaemon
    add_tenant(d, "acme", "127.0.0.0/8", auth="required")
    add_user(d, "acme", "alice", "pw-alice")
    r = run_curl(curl, "-x", f"http://{d.proxy}", "-U", "alice:pw-alice", origin.url("/small"))
    assert r.returncode == 0 and len(r.stdout) == 100, r.stderr
    wait_until(lambda: value(samples(d), "arcus_server_connections_active", server="http") == 0, timeout=10)
    snap = samples(d)
    assert value(snap, "arcus_tenant_traffic_out_bytes_total", tenant="acme") == 100
    assert value(snap, "arcus_user_traffic_out_bytes_total", tenant="acme", user="alice") == 100


def test_health_ready_and_not_ready(mdaemon):
    d = mdaemon
    assert fetch(d, "/health") == (200, "ok\n")
    assert fetch(d, "/ready") == (200, "ready\n")
    assert fetch(d, "/nothing")[0] == 404
    # An unreadable store: the daemon keeps its open handle, a fresh reader cannot open the file.
    store = d.data_dir / "arcus.db"
    assert store.exists()
    moved = store.with_name("elsewhere.db")
    store.rename(moved)
    try:
        status, text = fetch(d, "/ready")
        assert status == 503 and text.startswith("not ready: store ") and "not readable" in text, text
    finally:
        moved.rename(store)
    assert fetch(d, "/ready") == (200, "ready\n")


def test_no_metrics_section_no_listener(daemon):
    assert daemon.ctl("health")["metrics"] is None


def test_metrics_listen_conflict_is_refused_with_the_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        d = DaemonProcess(tmp_path / "arcus", render_profile() + f"metrics:\n  listen: 127.0.0.1:{port}\n")
        with pytest.raises(RuntimeError, match="exited with"):
            d.start(timeout=20)
        d.stop()
        assert f"profile.yaml:{METRICS_PROFILE.splitlines().index('metrics:') + 2}: metrics cannot listen on 127.0.0.1:{port}" in d.log()


# -- stats.watch -------------------------------------------------------------------------------


def test_stats_watch_streams_updates_that_follow_the_traffic(curl, daemon, origin):
    d = daemon
    with ControlClient(d.socket) as client:
        updates = client.stream("stats.watch", {"interval": 0.05}, idle_timeout=10)
        try:
            first = next(updates)
            second = next(updates)
            assert second["uptime"] > first["uptime"]
            assert set(first) >= {"servers", "tenants", "generation", "uptime", "reloads"}
            r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small"))
            assert r.returncode == 0, r.stderr
            seen = first["servers"]["http"]["requests"]
            for update in updates:  # bounded by idle_timeout per update and the test's timeout
                if update["servers"]["http"]["requests"] == seen + 1 and update["servers"]["http"]["conns_active"] == 0:
                    assert update["servers"]["http"]["bytes_down"] == first["servers"]["http"]["bytes_down"] + 100
                    break
        finally:
            updates.close()
    with pytest.raises(ControlError) as exc:
        next(ControlClient(d.socket).stream("stats.watch", {"interval": 0}))
    assert exc.value.code == "bad_request"
    with pytest.raises(ControlError) as exc:  # a misspelt argument is not ignored
        next(ControlClient(d.socket).stream("stats.watch", {"intervall": 5}))
    assert exc.value.code == "bad_request" and "unknown argument 'intervall'" in str(exc.value)


def test_a_subscriber_that_never_reads_is_dropped_and_curl_is_not_slowed(curl, daemon, origin):
    d = daemon
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    silent.connect(str(d.socket))
    silent.sendall(json.dumps({"v": 1, "id": 1, "cmd": "stats.watch", "args": {"interval": 0.05}}).encode() + b"\n")
    try:
        started = time.monotonic()
        durations = []
        dropped = False
        while time.monotonic() - started < 60 and not dropped:  # bounded: the drop takes seconds
            t0 = time.monotonic()
            r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small"))
            durations.append(time.monotonic() - t0)
            assert r.returncode == 0 and len(r.stdout) == 100, r.stderr
            dropped = "the subscriber stopped reading; dropped" in d.log()
        assert dropped, "the silent subscriber was never dropped"
        took = time.monotonic() - started
        # The proxy was not slowed: every request answered well within its usual time.
        assert max(durations) < 2.0, durations
        assert took < 30, took
        # Its connection is closed: what is left to read ends (the daemon closed it).
        silent.settimeout(10)
        while silent.recv(65536):
            pass
    finally:
        silent.close()
    assert d.ctl("health")["status"] == "ok"


def test_ctl_stats_watch_json_prints_one_line_per_update(daemon):
    d = daemon
    proc = subprocess.Popen(
        d.command("ctl", "stats", "--watch", "--json", "--interval", "0.05", "--socket", str(d.socket)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=d.env,
    )
    try:
        assert proc.stdout is not None
        first, second = (json.loads(proc.stdout.readline()) for _ in range(2))
        assert second["uptime"] > first["uptime"] and "http" in first["servers"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_reload_adds_moves_and_removes_the_listener(mdaemon):
    d = mdaemon
    first = d.ctl("health")["metrics"]
    d.profile_path.write_text(render_profile())
    d.ctl("reload")
    assert d.ctl("health")["metrics"] is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{first}/health", timeout=5)
    d.profile_path.write_text(render_profile() + "metrics:\n  listen: '[::1]:0'\n")
    d.ctl("reload")
    again = d.ctl("health")["metrics"]
    assert again.startswith("[::1]:")
    assert fetch(d, "/ready") == (200, "ready\n")
    assert value(samples(d), "arcus_reloads_total", result="done") == 2


def test_ready_turns_503_while_draining(curl, mdaemon, origin):
    d = mdaemon
    held = socket.create_connection(("127.0.0.1", d.proxy_port), timeout=10)  # a client that stays
    try:
        held.sendall(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert held.recv(1024).startswith(b"HTTP/1.1 200")
        url = d.ctl("health")["metrics"]
        d.ctl("shutdown", {"graceful": True})

        def not_ready() -> bool:
            try:
                urllib.request.urlopen(f"http://{url}/ready", timeout=5)
            except urllib.error.HTTPError as exc:
                return exc.code == 503 and exc.read() == b"not ready: shutting down\n"
            return False

        wait_until(not_ready, timeout=10)
        with urllib.request.urlopen(f"http://{url}/health", timeout=5) as r:
            assert r.status == 200  # alive, draining
    finally:
        held.close()
    assert d.wait(20) == 0
