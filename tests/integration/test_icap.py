"""ICAP through the proxy against a real c-icap with ClamAV (a private clamd and signature
database built from EICAR: arcus.testing.icap), with curl as the client and a local origin."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from arcus.testing import icap as av
from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration

THREAT = "Eicar-Test-Signature.UNOFFICIAL"


class FileOrigin:
    """Serves the files of a directory (HTTP/1.1 keep-alive, Content-Length) and counts uploads."""

    def __init__(self, root: Path) -> None:
        origin = self
        self.uploads: list[bytes] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = root / self.path.lstrip("/").split("?")[0]
                if not path.is_file():
                    self.send_error(404)
                    return
                size = path.stat().st_size
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if path.suffix == ".html" else "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                with path.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        self.wfile.write(chunk)

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                origin.uploads.append(body)
                self.send_response(201)
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"stored\n")

            do_POST = do_PUT

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    av.require()
    p = av.AntivirusPeers(tmp_path_factory.mktemp("av"), icap_servers=2)
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    (root / "eicar.com").write_bytes(av.EICAR)
    (root / "clean.txt").write_bytes(b"nothing to see here\n" * 100)
    (root / "page.html").write_bytes(b"<html><body><p>hi</p><pre>" + av.EICAR + b"</pre></body></html>\n")
    # larger than c-icap's preview (1024 bytes): it must go whole, or c-icap cuts its answer
    (root / "eicar-big.bin").write_bytes(av.EICAR + os.urandom(200_000))
    origin = FileOrigin(root)
    try:
        yield root, origin
    finally:
        origin.close()


def _profile(peers: av.AntivirusPeers, servers: tuple[int, ...]) -> str:
    urls = ", ".join(peers.url(i) for i in servers)
    return render_profile() + f"""
icap_services:
  - name: av
    servers: [{urls}]
    connect_timeout: 1s
    timeout: 10s
    retry_after: 30s
"""


@pytest.fixture
def proxy(tmp_path, peers):
    def start(servers: tuple[int, ...], *settings: str) -> DaemonProcess:
        d = DaemonProcess(tmp_path / "arcus", _profile(peers, servers))
        d.start()
        started.append(d)
        r = d.arcus("tenant", "set", "default", "--icap-service", "av", *settings)
        assert r.returncode == 0, r.stderr
        return d

    started: list[DaemonProcess] = []
    yield start
    for d in started:
        d.stop()


def curl_through(curl: str, d: DaemonProcess, url: str, *args: str, out: Path | None = None):
    extra = ["-o", str(out)] if out is not None else []
    return run_curl(curl, "-x", f"http://{d.proxy}", "-D", "-", *extra, *args, url, timeout=120)


def final(r) -> str:
    """What curl printed from the final response on (interim 100 Continue heads and a CONNECT's
    200 skipped)."""
    out = r.stdout.decode(errors="replace")
    while out.startswith(("HTTP/1.1 100", "HTTP/1.1 200 Connection established")):
        out = out.split("\r\n\r\n", 1)[1]
    return out


def records(d: DaemonProcess, count: int) -> list[dict]:
    def rows() -> list[dict] | None:
        out = d.arcus("audit", "search", "--json")
        found = [e for e in map(json.loads, out.stdout.splitlines()) if e["kind"] == "request"]
        return found if len(found) >= count else None

    return wait_until(rows, timeout=10, interval=0.1, what=f"{count} request records")


def test_an_eicar_download_is_blocked_with_the_threat_named_and_a_clean_one_passes(curl, proxy, files):
    root, origin = files
    d = proxy((0,))
    r = curl_through(curl, d, origin.url("eicar.com"))
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, r.stderr
    assert out.startswith("HTTP/1.1 403"), out[:300]
    assert "X-Arcus-Error: icap_blocked" in out and "X-Arcus-Rule: icap:av" in out
    assert THREAT in out and av.EICAR.decode() not in out
    r = curl_through(curl, d, origin.url("clean.txt"))
    assert r.stdout.decode().startswith("HTTP/1.1 200") and r.stdout.endswith((root / "clean.txt").read_bytes())
    r = curl_through(curl, d, origin.url("page.html"))  # EICAR inside HTML (ClamAV normalises it)
    assert r.stdout.decode(errors="replace").startswith("HTTP/1.1 403")
    rows = records(d, 3)
    assert [(e["path"], e["status"], e["icap"], e["error_code"]) for e in rows] == [
        ("/eicar.com", 403, f"blocked:{THREAT}", "icap_blocked"),
        ("/clean.txt", 200, "clean", None),
        ("/page.html", 403, "blocked:Eicar-Test-Signature-Html.UNOFFICIAL", "icap_blocked"),
    ]
    assert rows[0]["decision"] == "deny" and rows[0]["rule"] == "icap:av"


def test_an_eicar_body_larger_than_the_preview_is_blocked_both_ways(curl, proxy, files, tmp_path):
    """c-icap asks for a 1 KiB preview; its antivirus answers a body sent after a preview early
    and then cuts it (an empty 200, no threat named): the client got an empty file and the
    record said modified. A larger body goes whole, and is blocked with its threat named."""
    root, origin = files
    d = proxy((0,))
    r = curl_through(curl, d, origin.url("eicar-big.bin"))
    out = r.stdout.decode(errors="replace")
    assert out.startswith("HTTP/1.1 403") and THREAT in out, out[-900:]
    before = len(origin.uploads)
    r = curl_through(curl, d, origin.url("upload"), "-T", str(root / "eicar-big.bin"))
    out = final(r)
    assert out.startswith("HTTP/1.1 403") and THREAT in out, out[:300]
    assert len(origin.uploads) == before  # never reached the origin
    rows = records(d, 2)
    assert [(e["method"], e["status"], e["icap"]) for e in rows] == [
        ("GET", 403, f"blocked:{THREAT}"), ("PUT", 403, f"blocked:{THREAT}")]


def test_a_clean_50mb_download_passes_byte_exact(curl, proxy, files, tmp_path):
    root, origin = files
    big = root / "big.bin"
    if not big.exists():
        big.write_bytes(os.urandom(50 * 1024 * 1024))
    d = proxy((0,), "--icap-max-body", "64MiB")
    got = tmp_path / "got.bin"
    r = curl_through(curl, d, origin.url("big.bin"), out=got)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("HTTP/1.1 200")
    assert hashlib.sha256(got.read_bytes()).hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    assert records(d, 1)[0]["icap"] == "clean"


def test_an_eicar_upload_is_blocked_before_it_reaches_the_origin(curl, proxy, files, tmp_path):
    root, origin = files
    d = proxy((0,))
    before = len(origin.uploads)
    r = curl_through(curl, d, origin.url("upload"), "-T", str(root / "eicar.com"))
    out = final(r)
    assert out.startswith("HTTP/1.1 403") and THREAT in out, out[:300]
    r = curl_through(curl, d, origin.url("upload"), "-T", str(root / "clean.txt"))  # with Expect: 100-continue
    assert final(r).startswith("HTTP/1.1 201"), r.stdout[:300]
    assert origin.uploads[before:] == [(root / "clean.txt").read_bytes()]  # the infected one never arrived
    rows = records(d, 2)
    assert [(e["method"], e["status"], e["icap"]) for e in rows] == [("PUT", 403, f"blocked:{THREAT}"), ("PUT", 201, "clean")]


def test_failover_to_the_second_server_then_fail_open_and_fail_closed(curl, proxy, files, peers):
    root, origin = files
    d = proxy((0, 1))
    try:
        peers.stop_icap(0)
        r = curl_through(curl, d, origin.url("eicar.com"))  # server 0 is down: server 1 scans
        assert r.stdout.decode(errors="replace").startswith("HTTP/1.1 403"), r.stdout[:300]
        peers.stop_icap(1)
        r = curl_through(curl, d, origin.url("eicar.com"))  # none answers; fail open (the default): passes
        assert r.stdout.decode(errors="replace").startswith("HTTP/1.1 200") and r.stdout.endswith(av.EICAR)
        assert d.arcus("tenant", "set", "default", "--icap-fail", "closed").returncode == 0
        r = curl_through(curl, d, origin.url("clean.txt"))  # fail closed: refused
        out = r.stdout.decode(errors="replace")
        assert out.startswith("HTTP/1.1 503") and "X-Arcus-Error: icap_failed" in out, out[:300]
    finally:
        for i in (0, 1):
            if peers.icaps[i] is None:
                peers.start_icap(i)
    rows = records(d, 3)
    assert rows[0]["icap"] == f"blocked:{THREAT}"
    assert rows[1]["icap"].startswith("fail_open:") and rows[1]["status"] == 200
    assert rows[2]["icap"].startswith("error:") and (rows[2]["status"], rows[2]["error_code"]) == (503, "icap_failed")


def test_a_body_beyond_the_bound_is_passed_or_refused_as_the_tenant_says(curl, proxy, files):
    root, origin = files
    d = proxy((0,), "--icap-max-body", "1KiB")
    r = curl_through(curl, d, origin.url("clean.txt"))  # 2,000 bytes: passed unscanned
    assert r.stdout.decode().startswith("HTTP/1.1 200") and r.stdout.endswith((root / "clean.txt").read_bytes())
    assert d.arcus("tenant", "set", "default", "--icap-oversize", "refuse").returncode == 0
    r = curl_through(curl, d, origin.url("clean.txt"))
    out = r.stdout.decode(errors="replace")
    assert out.startswith("HTTP/1.1 403") and "X-Arcus-Error: icap_too_large" in out, out[:300]
    rows = records(d, 2)
    assert [e["icap"] for e in rows] == ["oversize:pass", "oversize:refused"]
    # an upload over the bound goes on unscanned; its small response is scanned clean: the
    # record keeps the worse of the two, not the response's "clean"
    assert d.arcus("tenant", "set", "default", "--icap-oversize", "pass").returncode == 0
    r = curl_through(curl, d, origin.url("upload"), "-T", str(root / "clean.txt"))
    assert final(r).startswith("HTTP/1.1 201"), r.stdout[:300]
    assert records(d, 3)[2]["icap"] == "oversize:pass"


def test_sampling_zero_sends_nothing(curl, proxy, files):
    root, origin = files
    d = proxy((0,), "--icap-sample", "0")
    r = curl_through(curl, d, origin.url("eicar.com"))
    assert r.stdout.decode(errors="replace").startswith("HTTP/1.1 200")
    assert records(d, 1)[0]["icap"] is None


def test_framings_chunked_until_close_no_body_and_keep_alive(curl, proxy, origin, tmp_path):
    d = proxy((0,))
    # one curl, one kept-alive connection to the proxy: a chunked response (trailer dropped,
    # the body intact), a 304 and a HEAD (no body: not sent), a close-delimited body
    r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/chunked"), "-o", "/dev/null",
                 origin.url("/status/304"), "-o", "/dev/null", origin.url("/close"), "-w", "%{http_code} %{size_download}\\n",
                 "--next", "-x", f"http://{d.proxy}", "-I", origin.url("/small"), timeout=60)
    assert r.returncode == 0, r.stderr
    r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/chunked"), origin.url("/close"), timeout=60)
    assert r.stdout == b"hello worlduntil close"
    # a chunked upload of EICAR: REQMOD on the decoded body
    eicar = tmp_path / "eicar.txt"
    eicar.write_bytes(av.EICAR)
    r = run_curl(curl, "-x", f"http://{d.proxy}", "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{eicar}",
                 "-D", "-", origin.url("/echo"), timeout=60)
    assert final(r).startswith("HTTP/1.1 403") and THREAT in final(r), r.stdout[:300]
    r = run_curl(curl, "-x", f"http://{d.proxy}", "-H", "Transfer-Encoding: chunked", "--data-binary", "clean words",
                 origin.url("/echo"), timeout=60)
    assert r.stdout == b"clean words"
    rows = records(d, 8)
    by_path = [(e["method"], e["path"], e["status"], e["icap"]) for e in rows]
    assert ("GET", "/chunked", 200, "clean") in by_path and ("GET", "/close", 200, "clean") in by_path
    assert ("GET", "/status/304", 304, None) in by_path and ("HEAD", "/small", 200, None) in by_path
    assert ("POST", "/echo", 403, f"blocked:{THREAT}") in by_path and ("POST", "/echo", 200, "clean") in by_path


def test_an_intercepted_eicar_download_is_blocked_over_the_intercepted_tls(curl, peers, tmp_path):
    """Decrypted HTTPS runs through the same exchange: the block page arrives over the leaf."""
    from tests.integration.tls_peers import LocalCA, TlsOrigin

    ca = LocalCA(tmp_path / "origin-ca")
    profile = _profile(peers, (0,)) + f"intercept:\n  enabled: true\n  upstream_ca: {ca.cert_path}\n"
    d = DaemonProcess(tmp_path / "arcus", profile)
    assert d.arcus("ca", "init").returncode == 0
    d.start()
    try:
        assert d.arcus("tenant", "set", "default", "--icap-service", "av").returncode == 0
        pem = d.arcus("ca", "export", "--format", "pem").stdout
        box_ca = tmp_path / "box-ca.pem"
        box_ca.write_text(pem[pem.index("-----BEGIN CERTIFICATE-----"): pem.rindex("-----END CERTIFICATE-----") + 25] + "\n")
        with TlsOrigin(ca, "localhost", "127.0.0.1") as origin:
            url = f"https://localhost:{origin.port}"
            r = run_curl(curl, "--cacert", str(box_ca), "-x", f"http://{d.proxy}", "-D", "-", url + "/eicar", timeout=60)
            out = final(r)
            assert r.returncode == 0, r.stderr
            assert out.startswith("HTTP/1.1 403") and THREAT in out and "X-Arcus-Error: icap_blocked" in out, out[:300]
            r = run_curl(curl, "--cacert", str(box_ca), "-x", f"http://{d.proxy}", url + "/small", timeout=60)
            assert r.stdout == b"x" * 100
        rows = records(d, 2)
        assert [(e["path"], e["icap"]) for e in rows if e["method"] == "GET"] == [("/eicar", f"blocked:{THREAT}"), ("/small", "clean")]
    finally:
        d.stop()
