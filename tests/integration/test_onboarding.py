"""The CA onboarding page (arcus.serve.onboard): curl through the proxy to http://arcus.invalid/
gets its own tenant's CA, byte for byte what `arcus ca export --tenant T` prints, in PEM and DER;
a client of another tenant gets that tenant's; a tenant without a CA gets the box's."""

from __future__ import annotations

import json
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from arcus.testing.daemon import DaemonProcess
from arcus.testing.wait import wait_until
from tests.integration.conftest import run_curl

pytestmark = pytest.mark.integration

PAGE = "http://arcus.invalid/"


@pytest.fixture
def box(tmp_path):
    d = DaemonProcess(tmp_path / "arcus")
    d.start()
    try:
        for args in (("tenant", "add", "alpha", "--source", "127.0.0.2/32"),
                     ("tenant", "add", "beta", "--source", "127.0.0.3/32"),
                     ("tenant", "add", "gamma", "--source", "127.0.0.4/32"),
                     ("ca", "init"), ("ca", "init", "--tenant", "alpha"), ("ca", "init", "--tenant", "beta")):
            r = d.arcus(*args)
            assert r.returncode == 0, (args, r.stderr)
        yield d
    finally:
        d.stop()


def fetch(curl: str, d: DaemonProcess, source: str, path: str, *extra: str) -> tuple[str, bytes]:
    """(status line and headers, body) of ``path`` on the page, asked from ``source``."""
    r = run_curl(curl, "-i", "--interface", source, "-x", f"http://{d.proxy}", *extra, PAGE + path)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    return head.decode(), body


def exported(d: DaemonProcess, tenant: str) -> bytes:
    r = d.arcus("ca", "export", "--tenant", tenant)
    assert r.returncode == 0, r.stderr
    return r.stdout.encode()


def test_each_tenant_downloads_its_own_ca_through_the_page(curl, box):
    for source, tenant in (("127.0.0.2", "alpha"), ("127.0.0.3", "beta")):
        head, pem = fetch(curl, box, source, "ca.pem")
        assert head.startswith("HTTP/1.1 200") and "Content-Type: application/x-pem-file" in head, head
        assert pem == exported(box, tenant)
        head, der = fetch(curl, box, source, "ca.der")
        assert "Content-Type: application/x-x509-ca-cert" in head, head
        cert = x509.load_pem_x509_certificate(pem)
        assert der == cert.public_bytes(serialization.Encoding.DER)
        head, page = fetch(curl, box, source, "")
        text = page.decode()
        assert f"Trust the CA of tenant {tenant}" in text
        for title in ("Windows", "macOS", "Linux", "Firefox", "Android", "iOS"):
            assert f"<h3>{title}</h3>" in text
        assert 'href="http://arcus.invalid/ca.pem"' in text and 'href="http://arcus.invalid/ca.der"' in text
        fp = re.search(r'<code id="fingerprint">([0-9A-F:]+)</code>', text)
        assert fp is not None and fp.group(1).replace(":", "").lower() == cert.fingerprint(
            cert.signature_hash_algorithm).hex()  # type: ignore[arg-type]
    assert exported(box, "alpha") != exported(box, "beta")


def test_a_tenant_without_its_own_ca_gets_the_box_s_and_other_paths_are_404(curl, box):
    _, pem = fetch(curl, box, "127.0.0.4", "ca.pem")
    box_pem = box.arcus("ca", "export").stdout.encode()
    assert pem == box_pem == exported(box, "gamma")
    _, page = fetch(curl, box, "127.0.0.4", "")
    assert b"Trust the box&#x27;s CA (tenant gamma has none of its own)" in page
    head, _ = fetch(curl, box, "127.0.0.2", "secret")
    assert head.startswith("HTTP/1.1 404"), head
    head, _ = fetch(curl, box, "127.0.0.2", "ca.pem", "-X", "POST", "-d", "x")
    assert head.startswith("HTTP/1.1 405") and "Allow: GET, HEAD" in head, head
    # answered by the proxy: recorded like any request, attributed to the client's tenant
    def rows() -> list | None:
        out = box.arcus("audit", "search", "--host", "arcus.invalid", "--json")
        found = [json.loads(line) for line in out.stdout.splitlines()]
        return found if len(found) >= 4 else None

    found = wait_until(rows, timeout=10, interval=0.1)
    got = sorted((e["tenant"], e["path"], e["status"]) for e in found)
    assert got == [("alpha", "/ca.pem", 405), ("alpha", "/secret", 404), ("gamma", "/", 200), ("gamma", "/ca.pem", 200)]
    # the host with its trailing dot is the same host
    r = run_curl(curl, "-s", "--interface", "127.0.0.4", "-x", f"http://{box.proxy}", "http://arcus.invalid./ca.pem")
    assert r.returncode == 0 and r.stdout == pem, r.stdout[:200]


def test_a_client_that_must_log_in_gets_a_407_then_the_ca_of_the_tenant_its_credentials_name(curl, tmp_path):
    from tests.integration.test_socks_proxy import secret

    with DaemonProcess(tmp_path / "arcus") as d:
        d.ctl("tenant.add", {"name": "acme", "sources": ["127.0.0.0/8"]})
        d.ctl("tenant.set", {"name": "acme", "auth": "required"})
        d.ctl("user.add", {"tenant": "acme", "name": "alice", "secret": secret("wonderland")})
        d.ctl("tenant.add", {"name": "globex", "sources": ["10.99.0.0/16"]})
        d.ctl("user.add", {"tenant": "globex", "name": "sam", "secret": secret("globex-pass")})
        for args in (("ca", "init"), ("ca", "init", "--tenant", "acme"), ("ca", "init", "--tenant", "globex")):
            r = d.arcus(*args)
            assert r.returncode == 0, (args, r.stderr)
        head, _ = fetch(curl, d, "127.0.0.1", "ca.pem")
        assert head.startswith("HTTP/1.1 407"), head
        head, _ = fetch(curl, d, "127.0.0.1", "ca.pem", "-U", "alice:wrong")
        assert head.startswith("HTTP/1.1 407"), head
        _, pem = fetch(curl, d, "127.0.0.1", "ca.pem", "-U", "alice:wonderland")
        assert pem == exported(d, "acme")
        _, pem = fetch(curl, d, "127.0.0.1", "ca.pem", "-U", "sam@globex:globex-pass")
        assert pem == exported(d, "globex") != exported(d, "acme")


def test_a_box_without_any_ca_says_so_and_how_to_make_one(curl, tmp_path):
    with DaemonProcess(tmp_path / "arcus") as d:
        head, body = fetch(curl, d, "127.0.0.1", "")
        assert head.startswith("HTTP/1.1 503"), head
        assert b"tenant 'default' has no CA and the box has none" in body
        assert b"arcus ca init" in body
