"""The store's per-tenant interception switch through the real daemon, driven by curl.

The profile leaves interception off for the box and for acme by name; ``arcus tenant set acme
--intercept on`` on the running daemon makes acme's next CONNECT intercepted (curl, trusting the
exported Arcus CA, sees a leaf that CA issued), ``--intercept off`` and ``--intercept default``
splice again (curl, trusting the origin's own CA, sees the origin's certificate). No restart, no
reload: the daemon's process and profile stay the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from arcus.testing.daemon import DaemonProcess
from tests.integration.conftest import run_curl
from tests.integration.test_intercept import ca_init, export_ca, intercept_profile, issuer_of, test_ca, tls_origin  # noqa: F401

pytestmark = pytest.mark.integration


def common_name(pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_tenant_set_intercept_switches_the_next_connect_without_a_restart(tmp_path, test_ca, tls_origin, curl):  # noqa: F811
    profile = intercept_profile(test_ca.cert_path, tenants="    acme: {enabled: false}\n").replace(
        "intercept:\n  enabled: true\n", "intercept:\n  enabled: false\n")
    d = DaemonProcess(tmp_path / "arcus", profile)
    ca_init(d)
    with d:
        pid = d.proc.pid
        out = d.arcus("tenant", "add", "acme", "--source", "127.0.0.0/8")
        assert out.returncode == 0, out.stderr
        arcus_ca = export_ca(d, tmp_path / "arcus-ca.pem")
        url = f"https://localhost:{tls_origin.port}/small"

        def fetch(cacert) -> tuple[str, str | None]:
            """The issuer curl saw and the Via header the origin got (None: spliced, bytes relayed)."""
            before = len(tls_origin.requests)
            r = run_curl(curl, "-v", "--cacert", str(cacert), "--proxy", f"http://{d.proxy}", url)
            assert r.returncode == 0, r.stderr.decode()
            assert r.stdout == b"x" * 100
            assert len(tls_origin.requests) == before + 1
            return issuer_of(r.stderr.decode()), tls_origin.requests[-1].header("via")

        def switch(value: str) -> None:
            out = d.arcus("tenant", "set", "acme", "--intercept", value)
            assert out.returncode == 0, out.stderr
            assert out.stderr == ""  # through the running daemon, not the store behind its back
            expected = "as the profile says" if value == "default" else value
            assert out.stdout == f"changed tenant acme: TLS interception {expected}\n"

        # the profile says off: spliced, the origin's own certificate
        assert fetch(test_ca.cert_path) == ("CN=Arcus Test CA", None)

        switch("on")
        issuer, via = fetch(arcus_ca)
        assert issuer.endswith(f"CN={common_name(arcus_ca)}"), issuer  # a leaf of the box's Arcus CA
        assert via == "1.1 arcus"  # the decrypted request went through the HTTP exchange
        # and a client that trusts only the origin's CA now refuses the intercepted certificate
        r = run_curl(curl, "--cacert", str(test_ca.cert_path), "--proxy", f"http://{d.proxy}", url)
        assert r.returncode == 60, (r.returncode, r.stderr.decode())

        switch("off")
        assert fetch(test_ca.cert_path) == ("CN=Arcus Test CA", None)

        switch("on")
        assert fetch(arcus_ca)[1] == "1.1 arcus"
        switch("default")  # back to the profile, which says off
        assert fetch(test_ca.cert_path) == ("CN=Arcus Test CA", None)

        shown = d.arcus("tenant", "show", "acme")
        assert "intercept  default (as the profile's intercept: says)" in shown.stdout, shown.stdout
        assert d.proc.pid == pid and d.proc.poll() is None
        assert "reloaded profile" not in d.log()
