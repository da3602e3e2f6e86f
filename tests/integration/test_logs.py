"""The daemon's log as the profile sets it: JSON lines read back one by one, a log file rotated
at its size with its backups bounded, a per-tenant minimum level, and never a proxy credential
(nor a query string) in any line, at debug level too."""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl
from tests.integration.test_tenancy import add_tenant, add_user

pytestmark = pytest.mark.integration

PASSWORD = "Pw-S3cret-9x"


def json_profile(log_file, extra: str = "") -> str:
    base = render_profile().replace("log:\n  level: info\n  target: stderr\n", "")
    return base + (
        f"log:\n  level: debug\n  format: json\n  target: {log_file}\n  max_size: 64KiB\n  backups: 2\n"
        f"  tenants:\n    quiet: warning\n{extra}"
    )


def lines_of(*files) -> list[dict]:
    out = []
    for f in files:
        if f.exists():
            for line in f.read_text().splitlines():
                out.append(json.loads(line))  # every line is one JSON object
    return out


def test_json_lines_tenant_levels_and_no_credentials(curl, origin, tmp_path):
    log_file = tmp_path / "arcus.log"
    d = DaemonProcess(tmp_path / "arcus", json_profile(log_file))
    d.start()
    try:
        add_tenant(d, "loud", "127.0.0.2/32", auth="required")
        add_user(d, "loud", "alice", PASSWORD)
        add_tenant(d, "quiet", "127.0.0.3/32")
        for source in ("127.0.0.2", "127.0.0.3"):
            r = run_curl(curl, "--interface", source, "-x", f"http://{d.proxy}", "-U", f"alice:{PASSWORD}",
                         origin.url("/small?token=q-s3cret"))
            assert r.returncode == 0 and len(r.stdout) == 100, r.stderr
        r = run_curl(curl, "--interface", "127.0.0.2", "-x", f"http://{d.proxy}", "-U", f"alice:wrong-{PASSWORD}", origin.url("/small"))
        assert r.returncode == 0

        def access() -> list[dict]:
            return [x for x in lines_of(log_file) if x["logger"] == "arcus.access"]

        wait_until(lambda: len(access()) >= 2, timeout=10)
        assert d.ctl("stats")["tenants"]["quiet"]["requests"] == 1  # served, and not logged
    finally:
        d.stop()
    everything = lines_of(log_file)
    startup = [x for x in everything if "serving profile" in x["msg"]]
    assert startup and startup[0]["level"] == "info" and startup[0]["time"].endswith("Z")
    acc = [x for x in everything if x["logger"] == "arcus.access"]
    ok = next(x for x in acc if x.get("status") == 200)
    assert ok["tenant"] == "loud" and ok["user"] == "alice" and ok["type"] == "request" and ok["method"] == "GET"
    assert ok["path"] == "/small" and ok["bytes_down"] == 100 and ok["host"] == "127.0.0.1"
    assert " GET 127.0.0.1:" in ok["msg"]
    assert any(x.get("status") == 407 for x in acc)
    # quiet's minimum level is warning: none of its info lines, neither access nor change
    assert not [x for x in everything if x.get("tenant") == "quiet"]
    assert any(x.get("tenant") == "loud" and "tenant.add" in x["msg"] for x in everything)
    # no credential, in any form, nor the query string, in any line
    text = log_file.read_text()
    for secret in (PASSWORD, base64.b64encode(f"alice:{PASSWORD}".encode()).decode(), "q-s3cret", "token="):
        assert secret not in text


def test_a_log_file_rotates_at_its_size_and_keeps_its_backups(origin, tmp_path):
    log_file = tmp_path / "arcus.log"
    d = DaemonProcess(tmp_path / "arcus", json_profile(log_file))
    d.start()
    try:
        host, port = d.proxy.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        for _ in range(600):  # ~600 bytes of JSON each: several rotations of 64 KiB
            conn.request("GET", origin.url("/small"))
            assert len(conn.getresponse().read()) == 100
        conn.close()
        rotated = [tmp_path / "arcus.log.1", tmp_path / "arcus.log.2"]
        wait_until(lambda: all(f.exists() for f in rotated), timeout=10)
    finally:
        d.stop()
    assert not (tmp_path / "arcus.log.3").exists()  # backups: 2
    for f in (log_file, *rotated):
        assert f.stat().st_size <= 64 * 1024, f
    lines_of(log_file, *rotated)  # every line of every file is whole JSON


def test_log_section_errors_name_the_line(tmp_path):
    from tests.unit.config.test_loader import VALID, issues

    assert issues(tmp_path, VALID + "log:\n  format: xml\n  max_size: 1KiB\n  tenants:\n    'bad name': debug\n    ok: loud\n") == [
        'P:16: log: format: expected one of text, json, got "xml"',
        "P:17: log: max_size: must be at least 64KiB",
        'P:19: log: tenants: invalid tenant name "bad name"; use letters, digits, ".", "_" and "-"',
        'P:20: log: tenants: ok: expected one of debug, info, warning, error, got "loud"',
    ]
