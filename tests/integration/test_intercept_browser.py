"""A real browser through TLS interception: headless Chromium (Debian's ``chromium``) trusting
the tenant's CA loads an HTTPS page through the proxy, and a page a path rule denies shows the
block page. The proxy denies every destination but the test origin while Chromium runs (it calls
Google hosts in the background), and the test checks that nothing else got through.

Under ``CI=true`` a missing chromium or certutil fails the test (``require_program``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from arcus.testing.daemon import DaemonProcess
from arcus.testing.wait import wait_until
from tests.conftest import require_program
from tests.integration.test_intercept import audit, ca_init, export_ca, intercept_profile
from tests.integration.tls_peers import LocalCA, TlsOrigin

pytestmark = pytest.mark.integration


def nss_home(tmp_path: Path, ca: Path) -> Path:
    """A HOME whose NSS database (what Chromium trusts on Linux) holds ``ca``."""
    certutil = require_program("certutil")
    home = tmp_path / "home"
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run([certutil, "-d", f"sql:{db}", "-N", "--empty-password"], check=True, capture_output=True, timeout=30)
    subprocess.run([certutil, "-d", f"sql:{db}", "-A", "-t", "C,,", "-n", "arcus-tenant", "-i", str(ca)],
                   check=True, capture_output=True, timeout=30)
    return home


def dump_dom(chromium: str, home: Path, proxy: str, url: str) -> str:
    profile = home / "profile"
    profile.mkdir(exist_ok=True)
    args = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--proxy-server=http://{proxy}", "--proxy-bypass-list=<-loopback>",
        "--virtual-time-budget=5000", "--dump-dom", url,
    ]
    env = dict(os.environ, HOME=str(home))
    r = subprocess.run(args, capture_output=True, timeout=90, env=env)
    return r.stdout.decode("utf-8", "replace") + "\n<!--stderr-->\n" + r.stderr.decode("utf-8", "replace")[-2000:]


def test_chromium_loads_an_intercepted_page_and_sees_the_block_page(tmp_path):
    chromium = require_program("chromium")
    test_ca = LocalCA(tmp_path / "origin-ca")
    d = DaemonProcess(tmp_path / "arcus", intercept_profile(test_ca.cert_path))
    ca_init(d)
    with TlsOrigin(test_ca, "localhost", "127.0.0.1") as origin, d:
        port = origin.port
        rules = [
            ("blocked-path", "--deny", "--host", "localhost", "--path", "/bytes/"),
            ("the-origin", "--allow", "--host", "localhost", "--port", str(port)),
            ("nothing-else", "--deny", "--host", "~.*"),
        ]
        for rule_id, *args in rules:
            out = d.arcus("policy", "add", "default", rule_id, *args)
            assert out.returncode == 0, out.stderr
        home = nss_home(tmp_path, export_ca(d, tmp_path / "tenant-ca.pem"))

        page = dump_dom(chromium, home, d.proxy, f"https://localhost:{port}/small")
        assert "x" * 100 in page, page  # the origin's body, decrypted and re-encrypted by Arcus
        assert origin.requests and origin.requests[0].header("via") == "1.1 arcus"

        blocked = dump_dom(chromium, home, d.proxy, f"https://localhost:{port}/bytes/5")
        assert "blocked-path" in blocked, blocked  # the block page, naming the rule, in the browser
        assert "bbbbb" not in blocked

        def settled():
            rows = audit(d)
            return rows if any(e["status"] == 403 and e["rule"] == "blocked-path" for e in rows) else None

        rows = wait_until(settled, timeout=10)
        # nothing but the test origin left the box while Chromium ran
        through = [e for e in rows if e["decision"] in ("allow", "report") and e["host"]]
        assert through and all(e["host"] == "localhost" and e["port"] == port for e in through), through
        assert {s.target for s in origin.requests} <= {"/small", "/favicon.ico"}
