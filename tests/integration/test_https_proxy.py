"""HTTPS to the proxy (``http_proxy`` with ``tls:``), driven by curl ``--proxy https://``.

The test makes its own CA and server certificate with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from arcus.testing.daemon import DaemonProcess, render_profile
from tests.integration.conftest import run_curl


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "Arcus test CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca_key, ca_cert, names=("localhost",), ips=("127.0.0.1",)):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pair(directory: Path, key, cert, stem: str = "proxy") -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    # written to temp names and renamed, as a certificate renewal does
    tmp_c, tmp_k = cert_path.with_suffix(".tmp1"), key_path.with_suffix(".tmp2")
    tmp_c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp_k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.replace(tmp_k, key_path)
    os.replace(tmp_c, cert_path)
    return cert_path, key_path


def write_ca(path: Path, cert) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


TLS_SERVER = """\
  - name: https
    type: http_proxy
    listen: 127.0.0.1:0
    escaper: direct
    tls:
      certificate: proxy.pem
      private_key: proxy.key
"""


def test_curl_proxy_https_with_proxy_cacert(tmp_path, curl, origin):
    work = tmp_path / "arcus"
    work.mkdir()
    ca_key, ca = make_ca()
    write_pair(work, *issue(ca_key, ca))
    ca_file = write_ca(tmp_path / "ca.pem", ca)
    profile = render_profile().replace("servers:\n", "servers:\n" + TLS_SERVER, 1)  # paths relative to the profile
    with DaemonProcess(work, profile) as d:
        port = int(d.listen("https").rsplit(":", 1)[1])
        for host in ("127.0.0.1", "localhost"):  # by address (no SNI) and by name
            proxy = f"https://{host}:{port}"
            r = run_curl(curl, "--proxy", proxy, "--proxy-cacert", str(ca_file), origin.url("/bytes/200000"))
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"b" * 200000
            # a CONNECT tunnel inside the TLS connection to the proxy
            r = run_curl(curl, "-p", "--proxy", proxy, "--proxy-cacert", str(ca_file), origin.url("/small"))
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"x" * 100
        # the proxy's certificate is verified: without the CA curl refuses it
        r = run_curl(curl, "--proxy", f"https://127.0.0.1:{port}", origin.url("/small"))
        assert r.returncode in (35, 60), r.stderr
        # plain HTTP to the TLS port gets nothing useful
        r = run_curl(curl, "--proxy", f"http://127.0.0.1:{port}", origin.url("/small"))
        assert r.returncode != 0 or not r.stdout.endswith(b"x" * 100)
        stats = d.ctl("stats")["servers"]["https"]
        assert stats["requests"] == 4
        # the plain server of the same daemon is still plain
        r = run_curl(curl, "-x", f"http://{d.proxy}", origin.url("/small"))
        assert r.stdout == b"x" * 100

        # certificate renewal: new files (another CA) are served without a reload
        ca2_key, ca2 = make_ca("Arcus test CA 2")
        write_pair(work, *issue(ca2_key, ca2))
        ca2_file = write_ca(tmp_path / "ca2.pem", ca2)
        deadline = time.monotonic() + 10
        ok = False
        while time.monotonic() < deadline and not ok:
            time.sleep(0.5)
            for host in ("localhost", "127.0.0.1"):
                r = run_curl(curl, "--proxy", f"https://{host}:{port}", "--proxy-cacert", str(ca2_file), origin.url("/small"))
                ok = r.returncode == 0
        assert ok, r.stderr
        r = run_curl(curl, "--proxy", f"https://127.0.0.1:{port}", "--proxy-cacert", str(ca_file), origin.url("/small"))
        assert r.returncode in (35, 60)


def test_a_key_that_does_not_match_is_refused_at_load_with_its_line(tmp_path):
    work = tmp_path / "arcus"
    work.mkdir()
    ca_key, ca = make_ca()
    key, cert = issue(ca_key, ca)
    write_pair(work, ec.generate_private_key(ec.SECP256R1()), cert)
    profile = render_profile().replace("servers:\n", "servers:\n" + TLS_SERVER, 1)
    (work / "profile.yaml").write_text(profile)
    d = DaemonProcess(work, profile)
    r = d.arcus("config", "check", str(work / "profile.yaml"))
    assert r.returncode != 0
    line = profile.splitlines().index("      certificate: proxy.pem") + 1
    assert f"profile.yaml:{line}: server \"https\": tls: certificate: cannot load the certificate" in r.stdout + r.stderr
