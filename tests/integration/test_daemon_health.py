"""`ctl health` says when the box is degraded: a full data dir drops every audit event while the
proxy keeps forwarding (issue 10, "also observed")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from arcus.testing.daemon import DaemonProcess
from arcus.testing.wait import wait_until
from tests.conftest import IN_CI
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a data dir that can be filled without touching the machine's disks."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if IN_CI:
            pytest.fail("the full-disk health test needs root and mount (a private tmpfs)")
        pytest.skip("needs root to mount a tmpfs")
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True, timeout=20)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=20)


def _health(d: DaemonProcess) -> dict:
    r = d.arcus("ctl", "health", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_health_says_degraded_while_a_full_disk_drops_audit_events(curl, origin, small_disk):
    with DaemonProcess(small_disk / "arcus") as d:
        assert run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small")).returncode == 0
        assert _health(d)["status"] == "ok"
        assert _health(d)["problems"] == []
        # fill the disk: the audit log can no longer grow, the proxy must still forward
        filler = small_disk / "filler"
        with open(filler, "wb", buffering=0) as f:  # unbuffered: a short last write leaves nothing for close() to flush
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass

        def degraded():
            r = run_curl(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", f"http://{d.proxy}", origin.url("/small"))
            assert r.stdout == b"200", r
            h = _health(d)
            return h if h["status"] == "degraded" else None

        h = wait_until(degraded, timeout=30, interval=0.2, what="ctl health to say degraded")
        assert [p["problem"] for p in h["problems"]] == ["audit_dropped"]
        assert h["problems"][0]["count"] >= 1
        text = d.arcus("ctl", "health")
        assert text.returncode == 0
        assert "is running (degraded)" in text.stdout and "audit events were dropped" in text.stdout
        filler.unlink()


def test_a_ca_damaged_before_start_is_reported_before_any_tunnel_meets_it(tmp_path):
    """The box's CA key was damaged while the daemon was down: the log says so at start and
    `ctl health` is degraded (ca_unreadable) without waiting for a client to be refused."""
    from arcus.tls.ca import KEY_FILE
    from arcus.tls.castore import CAStore

    d = DaemonProcess(tmp_path / "arcus")
    ca = CAStore(d.data_dir).init(None)
    (ca.directory / KEY_FILE).write_text("garbage\n")
    with d:
        def degraded():
            h = _health(d)
            return h if h["status"] == "degraded" else None

        h = wait_until(degraded, timeout=30, interval=0.2, what="ctl health to say degraded")
        assert [p["problem"] for p in h["problems"]] == ["ca_unreadable"]
        assert "the CA of the box cannot be read" in d.log()
