"""`arcus ca`: init, show, export, import, rotate with no daemon (files under --data-dir)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import Result

from arcus.paths import STORE_FILE
from arcus.store import Store
from arcus.tls.ca import cert_pem, key_pem
from tests.unit.cli.harness import errors, invoke, js
from tests.unit.tls.helpers import make_ca


CA_KEYS = {"subject", "issuer", "fingerprint_sha256", "serial", "not_before", "not_after", "key", "self_signed",
           "chain", "directory"}


def ca(data_dir: Path, *args: str) -> Result:
    return invoke("ca", *args, "--data-dir", str(data_dir))


@pytest.fixture(autouse=True)
def acme(data_dir: Path) -> None:
    """Tenant acme in the store: a tenant's CA is made only for a tenant the store has."""
    with Store.open(data_dir / STORE_FILE) as store:
        store.add_tenant("acme")


def files(data_dir: Path) -> list[str]:
    """What the CA commands wrote under ``data_dir`` (the store the fixture made left out)."""
    if not data_dir.exists():
        return []
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if not p.name.startswith(STORE_FILE))


def test_init_show_export(data_dir: Path, tmp_path: Path) -> None:
    out = js(ca(data_dir, "init", "--json"))
    assert set(out) == {"tenant", "uses", "current", "generations", "tenants_with_own_ca"}
    assert set(out["current"]) == CA_KEYS
    assert set(out["generations"][0]) == CA_KEYS | {"generation", "status", "origin", "cached_leaves"}
    assert out["uses"] == "box" and out["current"]["key"] == "EC P-256" and out["tenant"] is None
    assert [g["status"] for g in out["generations"]] == ["current"]
    key_file = Path(out["current"]["directory"]) / "ca.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key_file.parent).st_mode) == 0o700

    acme = js(ca(data_dir, "init", "--tenant", "acme", "--key", "rsa3072", "--days", "90", "--json"))
    assert acme["uses"] == "own" and acme["current"]["key"] == "RSA 3072"
    assert acme["current"]["fingerprint_sha256"] != out["current"]["fingerprint_sha256"]

    other = js(ca(data_dir, "show", "--tenant", "other", "--json"))
    assert other["uses"] == "box" and other["current"]["fingerprint_sha256"] == out["current"]["fingerprint_sha256"]
    text = ca(data_dir, "show", "--tenant", "other")
    assert text.exit_code == 0 and "tenant other has no CA of its own; it uses the box's" in text.stdout
    box = js(ca(data_dir, "show", "--json"))
    assert box["tenants_with_own_ca"] == ["acme"]

    pem = ca(data_dir, "export", "--tenant", "acme")
    assert pem.exit_code == 0
    exported = x509.load_pem_x509_certificate(pem.stdout.encode())
    assert "acme" in exported.subject.rfc4514_string()
    der_file = tmp_path / "acme.der"
    der = ca(data_dir, "export", "--tenant", "acme", "--format", "der", "--out", str(der_file))
    assert der.exit_code == 0 and x509.load_der_x509_certificate(der_file.read_bytes()) == exported


def test_init_twice_is_refused_with_a_hint(data_dir: Path) -> None:
    assert ca(data_dir, "init", "--tenant", "acme").exit_code == 0
    before = files(data_dir)
    assert errors(ca(data_dir, "init", "--tenant", "acme")) == [
        "error: tenant 'acme' already has a CA",
        "hint: use `arcus ca rotate --tenant acme` to replace it (the old one is kept, retired)",
    ]
    assert files(data_dir) == before


def test_rotate_lists_the_old_ca_as_retired(data_dir: Path) -> None:
    first = js(ca(data_dir, "init", "--json"))
    rotated = js(ca(data_dir, "rotate", "--json"))
    assert rotated["current"]["fingerprint_sha256"] != first["current"]["fingerprint_sha256"]
    retired = [g for g in rotated["generations"] if g["status"] == "retired"]
    assert [g["fingerprint_sha256"] for g in retired] == [first["current"]["fingerprint_sha256"]]
    assert retired[0]["retired_until"]
    assert "retired: " in ca(data_dir, "show").stdout


def test_import_own_root_and_a_wrong_key(data_dir: Path, tmp_path: Path) -> None:
    cert, key = make_ca("Corp Root", path_length=0)
    (tmp_path / "root.pem").write_bytes(cert_pem(cert))
    (tmp_path / "root.key").write_bytes(key_pem(key))
    (tmp_path / "other.key").write_bytes(key_pem(make_ca("Other")[1]))

    assert errors(ca(data_dir, "import", "--cert", str(tmp_path / "root.pem"), "--key", str(tmp_path / "other.key"),
                     "--tenant", "acme")) == [
        "error: the key does not match the certificate",
        "hint: give the private key of this certificate (compare their public keys)",
    ]
    assert files(data_dir) == []
    out = js(ca(data_dir, "import", "--cert", str(tmp_path / "root.pem"), "--key", str(tmp_path / "root.key"),
                "--tenant", "acme", "--json"))
    assert out["current"]["subject"] == "CN=Corp Root" and out["generations"][0]["origin"] == "imported"


def test_bad_input_is_one_line(data_dir: Path, tmp_path: Path) -> None:
    assert errors(ca(data_dir, "show")) == [
        "error: the box has no CA",
        "hint: create one with `arcus ca init` (or `arcus ca init --tenant T` for one tenant)",
    ]
    assert errors(ca(data_dir, "show", "--tenant", "acme"))[0] == "error: tenant 'acme' has no CA and the box has none"
    assert errors(ca(data_dir, "init", "--key", "dsa")) == [
        "error: unknown key type 'dsa'", "hint: use one of: ec, rsa2048, rsa3072"]
    assert errors(ca(data_dir, "init", "--days", "0"))[0] == "error: --days must be between 1 and 36500, not 0"
    assert errors(ca(data_dir, "init", "--tenant", "a/b"))[0] == "error: invalid tenant name 'a/b'"
    assert errors(ca(data_dir, "rotate", "--tenant", "acme"))[0] == "error: tenant 'acme' has no CA to rotate"
    assert errors(ca(data_dir, "import", "--cert", str(tmp_path / "missing.pem"), "--key", str(tmp_path / "k")))[0] \
        == f"error: cannot read the certificate file {tmp_path / 'missing.pem'}: No such file or directory"
    assert files(data_dir) == []
    assert ca(data_dir, "init").exit_code == 0
    assert errors(ca(data_dir, "export", "--format", "der"))[0] == "error: DER is binary: give --out FILE"
    assert errors(ca(data_dir, "export", "--format", "txt", "--out", str(tmp_path / "x")))[0] == \
        "error: unknown format 'txt'"


def test_import_an_intermediate_with_its_chain(data_dir: Path, tmp_path: Path) -> None:
    root = make_ca("Corp Root", path_length=1)
    inter = make_ca("Corp Proxy CA", root, path_length=0)
    (tmp_path / "inter.pem").write_bytes(cert_pem(inter[0]))
    (tmp_path / "inter.key").write_bytes(key_pem(inter[1]))
    (tmp_path / "root.pem").write_bytes(cert_pem(root[0]))
    out = js(ca(data_dir, "import", "--cert", str(tmp_path / "inter.pem"), "--key", str(tmp_path / "inter.key"),
                "--chain", str(tmp_path / "root.pem"), "--json"))
    assert out["current"]["subject"] == "CN=Corp Proxy CA" and out["current"]["chain"] == 1
    # what clients must trust is the root at the top of the chain
    assert ca(data_dir, "export").stdout.encode() == cert_pem(root[0])
    # the wrong order is refused
    assert errors(ca(data_dir, "import", "--cert", str(tmp_path / "root.pem"), "--key", str(tmp_path / "inter.key"),
                     "--tenant", "acme"))[0] == "error: the key does not match the certificate"


def test_an_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocked = tmp_path / "file"
        blocked.write_text("not a directory")
        data_dir = blocked / "data"
    else:
        data_dir = tmp_path / "ro" / "data"
        (tmp_path / "ro").mkdir(mode=0o500)
    lines = errors(ca(data_dir, "init"))
    assert lines[0].startswith("error: cannot write the CA of the box under ") and len(lines) == 2


def test_export_prints_the_install_steps_of_the_onboarding_page_on_stderr(data_dir: Path) -> None:
    from arcus.tls.install import INSTALL_STEPS, install_text

    assert ca(data_dir, "init").exit_code == 0
    out = ca(data_dir, "export")
    assert out.exit_code == 0
    x509.load_pem_x509_certificate(out.stdout.encode())  # stdout: the certificate alone
    assert out.stdout.count("-----BEGIN CERTIFICATE-----") == 1 and "Windows" not in out.stdout
    assert [title for title, _ in INSTALL_STEPS] == ["Windows", "macOS", "Linux", "Firefox", "Android", "iOS"]
    body = install_text("x").split("\n", 1)[1]  # the same steps, from the one text the page shows too
    assert body in out.stderr
    assert "http://arcus.invalid/" in out.stderr
    quiet = ca(data_dir, "export", "--no-steps")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_a_ca_for_a_tenant_the_store_does_not_have_is_refused_in_one_line_writing_nothing(
    data_dir: Path, tmp_path: Path
) -> None:
    before = files(data_dir)
    result = ca(data_dir, "init", "--tenant", "ghost")
    assert errors(result) == [f"error: no tenant 'ghost' in {data_dir / STORE_FILE} (add it first: arcus tenant add ghost)"]
    assert "Traceback" not in result.stderr
    assert files(data_dir) == before
    cert, key = make_ca("Own Root")
    (tmp_path / "own.key").write_bytes(key_pem(key))
    (tmp_path / "own.pem").write_bytes(cert_pem(cert))
    assert errors(ca(data_dir, "import", "--cert", str(tmp_path / "own.pem"), "--key", str(tmp_path / "own.key"),
                     "--tenant", "ghost"))[0].startswith("error: no tenant 'ghost'")
    assert files(data_dir) == before
    empty = tmp_path / "empty"  # no store at all: refused, and no store file is created
    assert errors(ca(empty, "init", "--tenant", "acme"))[0].startswith("error: no tenant 'acme'")
    assert not empty.exists()
    assert ca(empty, "init", "--tenant", "default").exit_code == 0  # the default tenant always exists
