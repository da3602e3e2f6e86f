"""A real browser through TLS interception: headless Chromium (Debian's ``chromium``) trusting
the tenant's CA loads an HTTPS page through the proxy, and a page a path rule denies shows the
block page. The proxy denies every destination but the test origin while Chromium runs (it calls
Google hosts in the background), and the test checks that nothing else got through.

Under ``CI=true`` a missing chromium or certutil fails the test (``require_program``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socketserver
import ssl
import subprocess
import threading
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


class WsOrigin(socketserver.ThreadingTCPServer):
    """A TLS origin on 127.0.0.1 serving ``/`` (a page that opens a WebSocket back to it, sends
    "ping" and closes on the echo), ``/ws`` (a WebSocket echo that answers a close frame with its
    own and then closes its socket, as servers do: the origin ends the TCP connection first) and
    ``/hold`` (answered once that close is done, at most 10 s: it holds the page's load event)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ca: LocalCA) -> None:
        cert, key = ca.issue("localhost", "127.0.0.1", stem="ws-origin")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        super().__init__(("127.0.0.1", 0), WsHandler)
        self.port = self.server_address[1]
        self.page = (
            "<!doctype html><pre id=out></pre><script>"
            f"const ws = new WebSocket('wss://localhost:{self.port}/ws');"
            "const out = document.getElementById('out');"
            "ws.onopen = () => ws.send('ping');"
            "ws.onmessage = e => { out.textContent += 'echo:' + e.data + ' '; ws.close(1000); };"
            "</script><img src='/hold'>"  # the page's load (what --dump-dom waits for) waits for /hold
        ).encode()
        self.closed = threading.Event()  # the browser's close frame arrived and was answered
        self.close_codes: list[int] = []

    def __enter__(self) -> WsOrigin:
        threading.Thread(target=self.serve_forever, name="ws-origin", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class WsHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: WsOrigin = self.server  # type: ignore[assignment]
        self.request.settimeout(10)
        with server.ctx.wrap_socket(self.request, server_side=True) as s:
            f = s.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                target = line.split()[1]
                headers = {}
                while (h := f.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                if target == b"/hold":
                    server.closed.wait(10)
                if target != b"/ws":
                    body = server.page if target == b"/" else b""
                    status = "200 OK" if body else "404 Not Found"
                    s.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                    continue
                accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest())
                s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
                for _ in range(100):  # frames from the browser (masked, short): echo texts, answer the close
                    b0, b1 = f.read(2)
                    mask = f.read(4)
                    data = bytes(c ^ mask[i % 4] for i, c in enumerate(f.read(b1 & 0x7F)))
                    s.sendall(bytes([b0, len(data)]) + data)
                    if b0 & 0x0F == 8:
                        server.close_codes.append(int.from_bytes(data[:2], "big"))
                        server.closed.set()
                        s.unwrap()  # the close answered: the origin ends its TLS first (close_notify)
                        return


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_chromium_websocket_through_interception_closes_cleanly_and_is_recorded(tmp_path):
    """A wss:// echo in Chromium through interception: the echo arrives, the close handshake
    completes, the upgrade's record is a decrypted request (sni), and the daemon's log gets no
    stray line from the event loop when the origin closes its TLS first."""
    chromium = require_program("chromium")
    test_ca = LocalCA(tmp_path / "origin-ca")
    d = DaemonProcess(tmp_path / "arcus", intercept_profile(test_ca.cert_path))
    ca_init(d)
    with WsOrigin(test_ca) as origin, d:
        port = origin.port
        for rule_id, *args in [("the-origin", "--allow", "--host", "localhost", "--port", str(port)),
                               ("nothing-else", "--deny", "--host", "~.*")]:
            out = d.arcus("policy", "add", "default", rule_id, *args)
            assert out.returncode == 0, out.stderr
        home = nss_home(tmp_path, export_ca(d, tmp_path / "tenant-ca.pem"))

        page = dump_dom(chromium, home, d.proxy, f"https://localhost:{port}/")
        assert "echo:ping" in page, page
        assert origin.close_codes == [1000]  # the close handshake went through both TLS connections

        def ws_record():
            rows = audit(d)
            ws = [e for e in rows if e["path"] == "/ws" and e["status"] == 101]
            return (ws[0], rows) if ws else None

        ws, rows = wait_until(ws_record, timeout=10)
        assert ws["sni"] == "localhost" and ws["port"] == port
        through = [e for e in rows if e["decision"] in ("allow", "report") and e["host"]]
        assert all(e["host"] == "localhost" and e["port"] == port for e in through), through
        assert "eof_received" not in d.log(), d.log()[-2000:]
