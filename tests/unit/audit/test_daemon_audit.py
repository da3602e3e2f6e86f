"""The audit log in the real daemon: a request through the proxy reaches audit.db, `audit tail -f`
streams it live through the daemon, shutdown flushes, a reload turns audit off."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.origin import Origin

pytestmark = pytest.mark.integration


def get_through(proxy: str, url: str, host: str) -> bytes:
    phost, pport = proxy.rsplit(":", 1)
    with socket.create_connection((phost, int(pport)), timeout=10) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def read_json_line(proc: subprocess.Popen, timeout: float) -> dict:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no audit event streamed in time"
    line = proc.stdout.readline()
    assert line, "the tail ended"
    return json.loads(line)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_requests_are_audited_streamed_and_flushed(tmp_path: Path) -> None:
    with Origin() as origin, DaemonProcess(tmp_path / "arcus") as d:
        stats = d.ctl("audit.stats")
        assert stats["enabled"] is True and stats["dropped"] == 0
        host = f"127.0.0.1:{origin.port}"
        assert get_through(d.proxy, f"http://{host}/first", host).startswith(b"HTTP/1.1 404")
        tail = subprocess.Popen(
            d.command("audit", "tail", "-f", "-n", "1", "--json"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(d.env, ARCUS_SOCKET=str(d.socket), ARCUS_DATA_DIR=str(d.data_dir)),
            preexec_fn=_ignore_sigint,  # as a child of `cmd &` or of a suite run so: the worst case, always
        )
        try:
            # The stream subscribes before it reads the backlog: its first line means it is live.
            read_json_line(tail, 15)
            answer = get_through(d.proxy, f"http://{host}/hello?token=s3cret", host)
            assert answer.startswith(b"HTTP/1.1 404"), answer[:200]  # the origin knows no /hello
            live = read_json_line(tail, 15)
            while live.get("path") != "/hello":  # the first connection's own event may come first
                assert live["path"] in (None, "/first"), live
                live = read_json_line(tail, 15)
            assert (live["kind"], live["method"], live["path"], live["status"]) == ("request", "GET", "/hello", 404)
            assert live["host"] == "127.0.0.1" and live["port"] == origin.port
            assert "s3cret" not in json.dumps(live)  # no query string: the tenant did not opt in
        finally:
            # SIGTERM, not SIGINT: a suite started with `&` or nohup hands its children SIGINT ignored.
            tail.terminate()
            try:
                _, err = tail.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                tail.kill()
                raise
        assert tail.returncode == 0, err
        assert "Traceback" not in err
        audit_db = d.data_dir / "audit.db"
        assert stat.S_IMODE(os.stat(audit_db).st_mode) == 0o600
    # The daemon stopped: whatever was queued (the connections' events) has been flushed.
    r = subprocess.run(
        d.command("audit", "search", "--json", "--data-dir", str(d.data_dir)),
        capture_output=True, text=True, timeout=60, env=d.env,
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = sorted(row["kind"] for row in rows)
    assert kinds == ["connection", "connection", "request", "request"], rows
    assert all("s3cret" not in json.dumps(row) for row in rows)


def test_reload_turns_the_audit_log_off_and_on(tmp_path: Path) -> None:
    profile = render_profile()
    with DaemonProcess(tmp_path / "arcus", profile) as d:
        assert d.ctl("audit.stats")["enabled"] is True
        d.profile_path.write_text(profile + "\naudit:\n  enabled: false\n")
        d.ctl("reload")
        assert d.ctl("audit.stats")["enabled"] is False
        r = d.arcus("audit", "tail", "-f")
        assert r.returncode == 1 and "disabled" in r.stderr
        d.profile_path.write_text(profile + "\naudit:\n  enabled: true\n  retention: 7d\n")
        d.ctl("reload")
        assert d.ctl("audit.stats")["enabled"] is True
