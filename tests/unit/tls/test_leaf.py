"""Leaves: names, validity, extensions; verified by cryptography's X.509 verifier and by a real
TLS handshake on loopback (a client trusting only the tenant's CA)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from arcus.ops import ca as ops
from arcus.tls import leaf as leaflib
from arcus.tls.ca import CertificateAuthority, cert_pem, key_pem, utcnow
from arcus.tls.castore import CAStore
from arcus.tls.certcache import LeafFactory
from arcus.tls.leaf import LeafError, Upstream
from tests.unit.tls.helpers import TLSServer, handshake, make_ca

NOW = utcnow()


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertificateAuthority]:
    data = tmp_path_factory.mktemp("cas")
    store = CAStore(data)
    made = NOW - dt.timedelta(days=1)  # so backdating a leaf by an hour stays inside the CA
    return {"box": store.init(None, now=made), "acme": store.init("acme", now=made),
            "beta": store.init("beta", "rsa2048", now=made),
            "_data": data}  # type: ignore[dict-item]


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def verify(ca: CertificateAuthority, cert: x509.Certificate, name: x509.GeneralName,
           at: dt.datetime = NOW) -> list[x509.Certificate]:
    verifier = PolicyBuilder().store(Store([ca.cert])).time(at).build_server_verifier(name)
    return verifier.verify(cert, list(ca.chain))


def test_sni_only_leaf(cas: dict) -> None:
    ca = cas["acme"]
    cert = leaflib.issue(ca, "WWW.Example.com.", now=NOW)
    assert sans(cert) == (["www.example.com"], [])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "www.example.com"
    assert cert.public_key() == ca.leaf_public_key  # the CA's one shared leaf key
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert not bc.ca and list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_before_utc == (NOW - dt.timedelta(hours=1)).replace(microsecond=0)
    assert cert.not_valid_after_utc == (NOW + dt.timedelta(days=leaflib.LEAF_DAYS)).replace(microsecond=0)
    assert verify(ca, cert, x509.DNSName("www.example.com"))[-1] == ca.cert
    with pytest.raises(VerificationError):
        verify(ca, cert, x509.DNSName("other.example.com"))
    with pytest.raises(VerificationError):
        verify(cas["beta"], cert, x509.DNSName("www.example.com"))


def test_sans_mirror_the_upstream_and_add_the_sni_and_ips(cas: dict) -> None:
    up = Upstream(("example.com", "*.example.com", "www.example.com"), ("192.0.2.7",), NOW + dt.timedelta(days=5))
    cert = leaflib.issue(cas["box"], "www.example.com", up, ["2001:db8::1", "192.0.2.7"], now=NOW)
    assert sans(cert) == (["www.example.com", "example.com", "*.example.com"], ["192.0.2.7", "2001:db8::1"])
    assert cert.not_valid_after_utc == (NOW + dt.timedelta(days=5)).replace(microsecond=0)  # never past upstream's
    verify(cas["box"], cert, x509.DNSName("api.example.com"))  # the wildcard mirrored from upstream
    verify(cas["box"], cert, x509.IPAddress(ipaddress.ip_address("192.0.2.7")))


def test_an_ip_target_without_sni(cas: dict) -> None:
    cert = leaflib.issue(cas["box"], None, None, ["198.51.100.4"], now=NOW)
    assert sans(cert) == ([], ["198.51.100.4"])
    verify(cas["box"], cert, x509.IPAddress(ipaddress.ip_address("198.51.100.4")))


def test_upstream_from_a_real_certificate(cas: dict) -> None:
    served = leaflib.issue(cas["beta"], "a.example.net", Upstream(("b.example.net",), ("203.0.113.9",), NOW +
                                                                   dt.timedelta(days=9)), now=NOW)
    up = Upstream.from_certificate(served)
    assert up == Upstream(("a.example.net", "b.example.net"), ("203.0.113.9",), served.not_valid_after_utc)


def test_validity_stays_inside_the_ca(tmp_path: Path) -> None:
    ca = CAStore(tmp_path).init(None, days=3)
    cert = leaflib.issue(ca, "x.example", now=ca.cert.not_valid_before_utc + dt.timedelta(minutes=10))
    assert cert.not_valid_before_utc == ca.cert.not_valid_before_utc  # backdating stops at the CA's start
    assert cert.not_valid_after_utc == ca.cert.not_valid_after_utc


def test_refusals(cas: dict) -> None:
    expired = Upstream(("old.example",), (), NOW - dt.timedelta(days=1))
    with pytest.raises(LeafError, match="upstream certificate has expired"):
        leaflib.issue(cas["box"], "old.example", expired, now=NOW)
    with pytest.raises(LeafError, match="needs a server name"):
        leaflib.issue(cas["box"], None, now=NOW)
    with pytest.raises(LeafError, match="not an IP address"):
        leaflib.issue(cas["box"], "x.example", None, ["nope"], now=NOW)


def test_a_long_name_has_no_cn_and_a_critical_san(cas: dict) -> None:
    name = ("a" * 60) + ".example.com"
    cert = leaflib.issue(cas["box"], name, now=NOW)
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    verify(cas["box"], cert, x509.DNSName(name))


def test_tls_handshake_trusts_only_the_tenants_own_ca(cas: dict, tmp_path: Path) -> None:
    factory = LeafFactory()
    try:
        leaf = factory.get_blocking(cas["acme"], "shop.example.com")
        acme_root = ops.export(cas["_data"], "acme")
        assert handshake(leaf, acme_root, "shop.example.com") == "shop.example.com"
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
            handshake(leaf, ops.export(cas["_data"], "beta"), "shop.example.com")
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            handshake(leaf, acme_root, "bank.example.com")
    finally:
        factory.close()


def test_tls_handshake_through_an_imported_intermediate(tmp_path: Path) -> None:
    root = make_ca("Corp Root", path_length=1)
    inter = make_ca("Corp Proxy CA", root, path_length=0)
    store = CAStore(tmp_path)
    ca = store.import_("acme", cert_pem(inter[0]), key_pem(inter[1]), cert_pem(root[0]))
    factory = LeafFactory()
    try:
        leaf = factory.get_blocking(ca, "intranet.corp.example")
        # the client knows only the root: the server must send the intermediate
        assert handshake(leaf, cert_pem(root[0]), "intranet.corp.example") == "intranet.corp.example"
        assert ops.export(tmp_path, "acme") == cert_pem(root[0])
        chain = PolicyBuilder().store(Store([root[0]])).time(NOW).build_server_verifier(
            x509.DNSName("intranet.corp.example")).verify(leaf.cert, [inter[0]])
        assert chain[-1] == root[0]
    finally:
        factory.close()


def test_curl_trusts_the_exported_ca_and_refuses_another_tenants(cas: dict, tmp_path: Path, curl: str) -> None:
    factory = LeafFactory()
    try:
        leaf = factory.get_blocking(cas["acme"], "shop.example.com")
    finally:
        factory.close()
    acme, beta = tmp_path / "acme.pem", tmp_path / "beta.pem"
    acme.write_bytes(ops.export(cas["_data"], "acme"))
    beta.write_bytes(ops.export(cas["_data"], "beta"))
    with TLSServer(leaf) as server:
        url = f"https://shop.example.com:{server.port}/"
        resolve = f"shop.example.com:{server.port}:127.0.0.1"

        def run(cacert: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run([curl, "-sS", "--max-time", "10", "--cacert", str(cacert), "--resolve", resolve, url],
                                  capture_output=True, text=True, timeout=30)

        ok = run(acme)
        assert ok.returncode == 0 and ok.stdout == "hello over intercepted TLS\n", ok.stderr
        refused = run(beta)
        assert refused.returncode == 60, refused.stderr  # CURLE_PEER_FAILED_VERIFICATION
