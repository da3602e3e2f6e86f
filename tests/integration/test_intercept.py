"""TLS interception through the real daemon, driven by curl.

The origin is a local TLS server with a certificate from a throwaway test CA
(``tls_peers.LocalCA``); the daemon verifies it against that CA (``upstream_ca``) and serves the
client a leaf from the tenant's (or the box's) Arcus CA, which curl trusts with ``--cacert`` of
``arcus ca export``.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from arcus.testing.daemon import DaemonProcess, render_profile
from arcus.testing.wait import wait_until
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
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]  # JSON lines


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


def test_a_path_rule_denies_one_url_over_the_intercepted_connection(box, tls_origin, curl, tmp_path):
    ca = export_ca(box, tmp_path / "box-ca.pem")
    out = box.arcus("policy", "add", "default", "no-secret", "--deny", "--path", "/bytes/")
    assert out.returncode == 0, out.stderr
    url = f"https://localhost:{tls_origin.port}"
    r = run_curl(curl, "-i", "--cacert", str(ca), "--proxy", f"http://{box.proxy}", url + "/bytes/10?token=abc", url + "/small")
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode("latin-1")
    assert text.startswith("HTTP/1.1 200 Connection established"), text[:200]
    assert "HTTP/1.1 403" in text and "X-Arcus-Rule: no-secret" in text
    assert "no-secret" in text.split("\r\n\r\n", 2)[2]  # the block page names the rule
    assert text.endswith("x" * 100)  # the next request on the same connection is served
    assert [s.target for s in tls_origin.requests] == ["/small"]

    def records():
        rows = [e for e in audit(box, "--host", "localhost") if e["kind"] == "request" and e["method"] == "GET"]
        return rows if len(rows) >= 2 else None

    rows = wait_until(records, timeout=10)
    denied = next(e for e in rows if e["status"] == 403)
    assert denied["decision"] == "deny" and denied["rule"] == "no-secret"
    assert denied["path"] == "/bytes/10"  # the query string only when the tenant opts in
    assert denied["port"] == tls_origin.port and denied["sni"] == "localhost"
    assert any(e["status"] == 200 and e["path"] == "/small" for e in rows)



def test_a_client_that_sends_no_sni_is_recorded_without_one(box, tls_origin, curl, tmp_path):
    """To an IP address curl sends no server name: the CONNECT's record and the decrypted
    request's agree that none was sent (the request's said the address, as if the client had)."""
    ca = export_ca(box, tmp_path / "box-ca.pem")
    r = run_curl(curl, "--cacert", str(ca), "--proxy", f"http://{box.proxy}", f"https://127.0.0.1:{tls_origin.port}/small")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"x" * 100

    def records():
        rows = [e for e in audit(box, "--host", "127.0.0.1") if e["kind"] == "request"]
        return rows if {e["method"] for e in rows} >= {"CONNECT", "GET"} else None

    rows = wait_until(records, timeout=10)
    assert {e["method"]: e["sni"] for e in rows} == {"CONNECT": None, "GET": None}


def test_a_bad_upstream_certificate_gives_an_error_page_and_an_audit_record(box, curl, tmp_path):
    other = LocalCA(tmp_path / "other-ca")  # not the upstream_ca the daemon trusts
    ca = export_ca(box, tmp_path / "box-ca.pem")
    with TlsOrigin(other, "localhost", "127.0.0.1") as bad:
        r = run_curl(curl, "-i", "--cacert", str(ca), "--proxy", f"http://{box.proxy}", f"https://localhost:{bad.port}/small")
        assert r.returncode == 0, r.stderr.decode()  # the client trusts the interception: it reads our page
        text = r.stdout.decode("latin-1")
        assert "HTTP/1.1 502" in text and "X-Arcus-Error: upstream_tls" in text
        assert "could not be verified" in text and "certificate verify failed" not in text.split("\r\n\r\n")[0]
        assert not bad.requests  # nothing was sent to an origin we could not verify

    def record():
        rows = [e for e in audit(box, "--host", "localhost") if e["kind"] == "request" and e["status"] == 502]
        return rows[0] if rows else None

    row = wait_until(record, timeout=10)
    assert row["error_code"] == "upstream_tls" and row["error_side"] == "upstream"
    assert "subject=CN=localhost" in row["detail"] and "issuer=CN=Arcus Test CA" in row["detail"]
    assert "error=" in row["detail"]



def test_the_policy_decides_before_a_bad_upstream_certificate_is_answered(box, curl, tmp_path):
    """Behind a refused origin certificate, a request the policy denies gets the block page and
    its rule (it was answered 502 with no decision, so the rule was never applied nor named);
    one it allows gets the certificate's 502 and a record that says allow."""
    other = LocalCA(tmp_path / "other-ca")
    ca = export_ca(box, tmp_path / "box-ca.pem")
    out = box.arcus("policy", "add", "default", "no-secret", "--deny", "--path", "/secret")
    assert out.returncode == 0, out.stderr
    with TlsOrigin(other, "localhost", "127.0.0.1") as bad:
        url = f"https://localhost:{bad.port}"
        r = run_curl(curl, "-i", "--cacert", str(ca), "--proxy", f"http://{box.proxy}", url + "/secret", url + "/small")
        assert r.returncode == 0, r.stderr.decode()
        text = r.stdout.decode("latin-1")
        assert "HTTP/1.1 403" in text and "X-Arcus-Rule: no-secret" in text
        assert "HTTP/1.1 502" in text and "X-Arcus-Error: upstream_tls" in text
        assert not bad.requests

    def records():
        rows = [e for e in audit(box, "--host", "localhost") if e["kind"] == "request" and e["method"] == "GET"]
        return rows if len(rows) >= 2 else None

    rows = {e["path"]: e for e in wait_until(records, timeout=10)}
    assert (rows["/secret"]["decision"], rows["/secret"]["rule"], rows["/secret"]["status"]) == ("deny", "no-secret", 403)
    assert (rows["/small"]["decision"], rows["/small"]["error_code"], rows["/small"]["status"]) == ("allow", "upstream_tls", 502)


def test_splice_rules_and_the_pinned_list_leave_the_origin_certificate(tmp_path, test_ca, tls_origin, curl):
    rules = "  rules:\n    - {action: splice, hosts: [localhost], name: lab-splice}\n"
    d = DaemonProcess(tmp_path / "arcus", intercept_profile(test_ca.cert_path, extra=rules))
    ca_init(d)
    with d:
        r = run_curl(curl, "-v", "--cacert", str(test_ca.cert_path), "--proxy", f"http://{d.proxy}", f"https://localhost:{tls_origin.port}/small")
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == b"x" * 100
        assert issuer_of(r.stderr.decode()) == "CN=Arcus Test CA"  # the origin's own certificate
        assert tls_origin.requests[-1].header("via") is None  # spliced: no exchange in between

        def connect_record():
            rows = [e for e in audit(d, "--host", "localhost") if e["method"] == "CONNECT"]
            return rows[0] if rows else None

        assert wait_until(connect_record, timeout=10)["detail"] == "spliced by lab-splice"


def test_an_insecure_rule_intercepts_an_unverifiable_origin_and_says_so(tmp_path, test_ca, curl):
    rules = "  rules:\n    - {action: intercept, hosts: [localhost], insecure: true, name: lab}\n"
    d = DaemonProcess(tmp_path / "arcus", intercept_profile(test_ca.cert_path, extra=rules))
    ca_init(d)
    other = LocalCA(tmp_path / "other-ca")
    with d, TlsOrigin(other, "localhost") as bad:
        ca = export_ca(d, tmp_path / "box-ca.pem")
        r = run_curl(curl, "--cacert", str(ca), "--proxy", f"http://{d.proxy}", f"https://localhost:{bad.port}/small")
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == b"x" * 100
        wait_until(lambda: "WITHOUT verifying" in d.log(), timeout=10)

        def record():
            rows = [e for e in audit(d, "--host", "localhost") if e["kind"] == "request" and e["status"] == 200]
            return rows[0] if rows else None

        assert "insecure" in wait_until(record, timeout=10)["detail"]


def two_tenant_profile(upstream_ca: Path) -> str:
    text = render_profile().replace(
        "  - name: http\n    type: http_proxy\n    listen: 127.0.0.1:0\n    escaper: direct\n",
        "  - name: http\n    type: http_proxy\n    listen: 127.0.0.1:0\n    escaper: direct\n    tenant: alpha\n"
        "  - name: http-b\n    type: http_proxy\n    listen: 127.0.0.1:0\n    escaper: direct\n    tenant: beta\n",
    )
    return text + f"intercept:\n  enabled: true\n  upstream_ca: {upstream_ca}\n"


def test_two_tenants_two_cas_a_client_of_a_trusts_only_a(tmp_path, test_ca, tls_origin, curl):
    d = DaemonProcess(tmp_path / "arcus", two_tenant_profile(test_ca.cert_path))
    for t in ("alpha", "beta"):
        assert d.arcus("tenant", "add", t).returncode == 0
        ca_init(d, t)
    with d:
        a_root = export_ca(d, tmp_path / "alpha.pem", "alpha")
        b_root = export_ca(d, tmp_path / "beta.pem", "beta")
        assert a_root.read_text() != b_root.read_text()
        url = f"https://localhost:{tls_origin.port}/small"
        ok = run_curl(curl, "--cacert", str(a_root), "--proxy", f"http://{d.listen('http')}", url)
        assert ok.returncode == 0 and ok.stdout == b"x" * 100, ok.stderr.decode()
        refused = run_curl(curl, "--cacert", str(a_root), "--proxy", f"http://{d.listen('http-b')}", url)
        assert refused.returncode == 60, refused.stderr.decode()
        ok_b = run_curl(curl, "--cacert", str(b_root), "--proxy", f"http://{d.listen('http-b')}", url)
        assert ok_b.returncode == 0 and ok_b.stdout == b"x" * 100, ok_b.stderr.decode()


def test_interception_through_socks5_and_a_python_client(tmp_path, test_ca, tls_origin, curl):
    """The same step on another tunnel server (the tunnel is shared, so is interception), and a
    client offering h2 with TLS 1.3 that gets HTTP/1.1 over TLS 1.3."""
    socks = "  - name: socks\n    type: socks_proxy\n    listen: 127.0.0.1:0\n    escaper: direct\n"
    d = DaemonProcess(tmp_path / "arcus", intercept_profile(test_ca.cert_path).replace("servers:\n", "servers:\n" + socks, 1))
    ca_init(d)
    with d:
        ca = export_ca(d, tmp_path / "box-ca.pem")
        r = run_curl(curl, "-v", "--cacert", str(ca), "--proxy", f"socks5h://{d.listen('socks')}", f"https://localhost:{tls_origin.port}/small")
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == b"x" * 100 and "Arcus" in issuer_of(r.stderr.decode())
        assert tls_origin.requests[-1].header("via") == "1.1 arcus"

        host, port = d.proxy.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(f"CONNECT localhost:{tls_origin.port} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            ctx = ssl.create_default_context(cafile=str(ca))
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                assert t.selected_alpn_protocol() == "http/1.1"
                assert t.version() == "TLSv1.3"
                t.sendall(b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = t.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"x" * 100)


def test_tls12_on_both_sides(box, test_ca, curl, tmp_path):
    ca = export_ca(box, tmp_path / "box-ca.pem")
    origin = TlsOrigin(test_ca, "localhost")
    origin.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
    with origin:
        r = run_curl(curl, "-v", "--tlsv1.2", "--tls-max", "1.2", "--cacert", str(ca), "--proxy", f"http://{box.proxy}",
                     f"https://localhost:{origin.port}/small")
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == b"x" * 100
        assert "TLSv1.2" in r.stderr.decode()
        assert origin.requests[-1].header("via") == "1.1 arcus"


SERVERS = """\
  - name: https
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: direct
    tls:
      certificate: {cert}
      private_key: {key}
  - name: socks
    type: socks_proxy
    listen: 127.0.0.1:0
    escaper: direct
  - name: one
    type: intelli_proxy
    listen: 127.0.0.1:0
    escaper: direct
  - name: sni
    type: sni_proxy
    listen: 127.0.0.1:0
    escaper: direct
    tls_port: {origin_port}
"""


def test_every_tunnel_server_intercepts_the_same_way(tmp_path, test_ca, tls_origin, curl):
    """One table: CONNECT on http_proxy (plain and over TLS), socks_proxy, intelli_proxy (HTTP
    and SOCKS), sni_proxy. Each request is decrypted (our leaf, the exchange's Via) and recorded."""
    cert, key = test_ca.issue("localhost", "127.0.0.1", stem="proxy")
    servers = SERVERS.format(cert=cert, key=key, origin_port=tls_origin.port)
    d = DaemonProcess(tmp_path / "arcus", intercept_profile(test_ca.cert_path).replace("servers:\n", "servers:\n" + servers, 1))
    ca_init(d)
    with d:
        ca = export_ca(d, tmp_path / "box-ca.pem")
        url = f"https://localhost:{tls_origin.port}/small"
        sni_port = d.listen("sni").rsplit(":", 1)[1]
        table = {
            "http_proxy": ["--proxy", f"http://{d.proxy}"],
            "http_proxy over TLS": ["--proxy", f"https://localhost:{d.listen('https').rsplit(':', 1)[1]}",
                                    "--proxy-cacert", str(test_ca.cert_path)],
            "socks_proxy": ["--proxy", f"socks5h://{d.listen('socks')}"],
            "intelli_proxy HTTP": ["--proxy", f"http://{d.listen('one')}"],
            "intelli_proxy SOCKS": ["--proxy", f"socks5h://{d.listen('one')}"],
            "sni_proxy": ["--connect-to", f"localhost:{tls_origin.port}:127.0.0.1:{sni_port}"],
        }
        for name, args in table.items():
            before = len(tls_origin.requests)
            r = run_curl(curl, "-v", "--cacert", str(ca), *args, url)
            assert r.returncode == 0, (name, r.stderr.decode())
            assert r.stdout == b"x" * 100, name
            assert "Arcus" in issuer_of(r.stderr.decode()), name
            assert len(tls_origin.requests) == before + 1 and tls_origin.requests[-1].header("via") == "1.1 arcus", name

        def recorded():
            rows = [e for e in audit(d, "--host", "localhost") if e["kind"] == "request" and e["path"] == "/small"]
            return rows if len(rows) >= len(table) else None

        rows = wait_until(recorded, timeout=10)
        assert {e["server"] for e in rows} == {"http", "https", "socks", "one", "sni"}

        def tunnels():  # the tunnels' own records (a CONNECT's, a SOCKS or SNI connection's)
            rows = [e for e in audit(d, "--host", "localhost", "--limit", "1000") if e["method"] != "GET"]
            return rows if {e["server"] for e in rows} >= {"http", "https", "socks", "one", "sni"} else None

        rows = wait_until(tunnels, timeout=10)
        assert {e["detail"] for e in rows} == {"intercepted by default"}, rows


def test_a_client_hello_in_pieces_is_gathered_before_the_decision(box, tls_origin, tmp_path):
    """The hello's records arrive in three writes (a slow client, a large post-quantum hello):
    the interceptor waits for the whole hello, then intercepts."""
    import time

    ca = export_ca(box, tmp_path / "box-ca.pem")
    ctx = ssl.create_default_context(cafile=str(ca))
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
    host, port = box.proxy.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(f"CONNECT localhost:{tls_origin.port} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        for piece in (hello[:3], hello[3:60], hello[60:]):
            s.sendall(piece)
            time.sleep(0.05)  # separate segments, not a wait for an effect

        def pump(until) -> None:
            while True:
                try:
                    if until():
                        return
                except ssl.SSLWantReadError:
                    pass
                if out.pending:
                    s.sendall(out.read())
                data = s.recv(65536)
                assert data, "the proxy closed the connection"
                inc.write(data)

        pump(lambda: tls.do_handshake() is None)
        s.sendall(out.read())
        tls.write(b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        s.sendall(out.read())
        body = bytearray()

        def whole() -> bool:
            body.extend(tls.read(65536))
            return body.endswith(b"x" * 100)

        pump(whole)
    assert bytes(body).startswith(b"HTTP/1.1 200")
    assert any("Arcus" in v for rdn in tls.getpeercert()["issuer"] for _, v in rdn)  # our leaf


def test_rate_limits_and_the_query_string_opt_in_apply_to_decrypted_requests(box, tls_origin, curl, tmp_path):
    ca = export_ca(box, tmp_path / "box-ca.pem")
    assert box.arcus("tenant", "set", "default", "--rps", "1", "--log-query").returncode == 0
    url = f"https://localhost:{tls_origin.port}/small?q=1"
    r = run_curl(curl, "-i", "--cacert", str(ca), "--proxy", f"http://{box.proxy}", *[url] * 4)
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode("latin-1")
    assert "HTTP/1.1 429" in text and "X-Arcus-Error: rate_limited" in text  # over the intercepted TLS

    def rows():
        got = [e for e in audit(box, "--host", "localhost") if e["kind"] == "request" and e["method"] == "GET"]
        return got if len(got) >= 4 else None

    got = wait_until(rows, timeout=10)
    assert {e["path"] for e in got} == {"/small?q=1"}  # the tenant opted in: the query is kept
    assert any(e["status"] == 429 and e["error_code"] == "rate_limited" for e in got)


def test_a_tenant_that_intercepts_without_any_ca_has_its_tunnel_closed_and_logged(tmp_path, test_ca, tls_origin, curl):
    with DaemonProcess(tmp_path / "arcus", intercept_profile(test_ca.cert_path)) as d:  # no `ca init`
        r = run_curl(curl, "--cacert", str(test_ca.cert_path), "--proxy", f"http://{d.proxy}", f"https://localhost:{tls_origin.port}/small")
        assert r.returncode != 0
        assert not tls_origin.requests
        wait_until(lambda: "cannot intercept localhost for tenant default" in d.log(), timeout=10)


def _upgraded_echo(box: DaemonProcess, origin_port: int, ca: Path) -> None:
    """Through interception: CONNECT, TLS with Arcus' leaf, an upgrade answered 101, one echo;
    then the client goes away (its socket closed: a FIN, no close_notify)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    host, port = box.proxy.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(f"CONNECT localhost:{origin_port} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /upgrade HTTP/1.1\r\nHost: localhost\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(b"HTTP/1.1 101"), head
            s.sendall(b"ping")
            echoed = head.split(b"\r\n\r\n", 1)[1]
            while len(echoed) < 4:
                chunk = s.recv(4096)
                assert chunk, echoed
                echoed += chunk
            assert echoed == b"ping"


def test_an_upgrade_inside_interception_ends_when_its_client_goes_away(box, tls_origin, tmp_path):
    """The origin's TLS cannot be half-closed: the client's end is the tunnel's end (it stayed open,
    with its origin connection, until tunnel_idle)."""
    _upgraded_echo(box, tls_origin.port, export_ca(box, tmp_path / "box-ca.pem"))
    wait_until(lambda: box.ctl("conns") == [], timeout=10)  # tunnel_idle is 30 s here


def test_an_upgrade_inside_an_intercepted_connection_is_recorded_as_a_decrypted_request(box, tls_origin, tmp_path):
    """An upgrade's record is written when its connection ends; it is a decrypted request like
    the others (``sni``)."""
    _upgraded_echo(box, tls_origin.port, export_ca(box, tmp_path / "box-ca.pem"))

    def record():
        rows = [e for e in audit(box, "--host", "localhost") if e["kind"] == "request" and e["path"] == "/upgrade"]
        return rows[0] if rows else None

    row = wait_until(record, timeout=10)
    assert row["status"] == 101 and row["method"] == "GET"
    assert row["sni"] == "localhost"  # a decrypted request: its record says whose TLS it came through
