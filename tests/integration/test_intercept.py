"""TLS interception through the real daemon, driven by curl.

The origin is a local TLS server with a certificate from a throwaway test CA
(``tls_peers.LocalCA``); the daemon verifies it against that CA (``upstream_ca``) and serves the
client a leaf from the tenant's (or the box's) Arcus CA, which curl trusts with ``--cacert`` of
``arcus ca export``.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from arcus.testing.daemon import DaemonProcess, render_profile
from tests.integration.conftest import run_curl
from tests.integration.tls_peers import LocalCA, TlsOrigin

pytestmark = pytest.mark.integration


def intercept_profile(upstream_ca: Path, extra: str = "", tenants: str = "") -> str:
    text = render_profile()
    text += f"intercept:\n  enabled: true\n  upstream_ca: {upstream_ca}\n"
    if extra:
        text += extra
    if tenants:
        text += "  tenants:\n" + tenants
    return text


def export_ca(d: DaemonProcess, path: Path, tenant: str | None = None) -> Path:
    args = ["ca", "export", "--format", "pem"] + (["--tenant", tenant] if tenant else [])
    out = d.arcus(*args)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    start = text.index("-----BEGIN CERTIFICATE-----")
    end = text.rindex("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    path.write_text(text[start:end] + "\n")
    return path


def ca_init(d: DaemonProcess, tenant: str | None = None) -> None:
    out = d.arcus("ca", "init", *(["--tenant", tenant] if tenant else []))
    assert out.returncode == 0, out.stderr


@pytest.fixture
def test_ca(tmp_path):
    return LocalCA(tmp_path / "origin-ca")


@pytest.fixture
def tls_origin(test_ca):
    with TlsOrigin(test_ca, "localhost", "127.0.0.1") as o:
        yield o


@pytest.fixture
def box(tmp_path, test_ca):
    d = DaemonProcess(tmp_path / "arcus", intercept_profile(test_ca.cert_path))
    ca_init(d)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def issuer_of(curl_verbose: str) -> str:
    for line in curl_verbose.splitlines():
        if "issuer:" in line:
            return line.split("issuer:", 1)[1].strip()
    return ""


def audit(d: DaemonProcess, *args: str) -> list[dict]:
    import json

    out = d.arcus("audit", "search", "--json", *args)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return data if isinstance(data, list) else data.get("events", data.get("rows", []))


def test_curl_with_the_tenant_ca_sees_the_origin_through_interception(box, tls_origin, curl, tmp_path):
    ca = export_ca(box, tmp_path / "box-ca.pem")
    url = f"https://localhost:{tls_origin.port}/small"
    r = run_curl(curl, "-v", "--cacert", str(ca), "--proxy", f"http://{box.proxy}", url)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"x" * 100
    err = r.stderr.decode()
    assert "Arcus" in issuer_of(err), err  # the leaf is ours, not the origin's
    assert "ALPN: server accepted http/1.1" in err or "http/1.1" in err
    # the origin saw a request that went through the HTTP exchange
    assert tls_origin.requests[-1].target == "/small"
    assert tls_origin.requests[-1].header("via") == "1.1 arcus"
    assert tls_origin.server_names[-1] == "localhost"  # the client's SNI went upstream


def test_curl_without_the_ca_refuses_the_intercepted_certificate(box, tls_origin, curl):
    url = f"https://localhost:{tls_origin.port}/small"
    r = run_curl(curl, "--proxy", f"http://{box.proxy}", url)
    assert r.returncode == 60, (r.returncode, r.stderr.decode())  # SSL certificate problem
    assert not tls_origin.requests  # nothing was sent to the origin on the client's behalf


def test_h2_offered_is_answered_with_http11_and_keepalive_requests_share_the_connection(box, tls_origin, curl, tmp_path):
    ca = export_ca(box, tmp_path / "box-ca.pem")
    url = f"https://localhost:{tls_origin.port}"
    r = run_curl(curl, "-v", "--http2", "--cacert", str(ca), "--proxy", f"http://{box.proxy}", url + "/small", url + "/bytes/70000")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"x" * 100 + b"b" * 70000
    err = r.stderr.decode()
    assert "h2" not in [line.split("accepted")[-1].strip() for line in err.splitlines() if "ALPN: server accepted" in line]
    assert err.count("CONNECT localhost") == 1  # both requests on one intercepted connection


def test_non_tls_bytes_through_connect_are_spliced(box, tls_origin):
    from arcus.testing.origin import Origin

    with Origin() as plain:
        host, port = box.proxy.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(f"CONNECT 127.0.0.1:{plain.port} HTTP/1.1\r\nHost: 127.0.0.1:{plain.port}\r\n\r\n".encode())
            head = s.recv(4096)
            assert head.startswith(b"HTTP/1.1 200"), head
            s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert data.endswith(b"x" * 100), data
        assert plain.requests[-1].header("via") is None  # relayed as bytes, not through an exchange
