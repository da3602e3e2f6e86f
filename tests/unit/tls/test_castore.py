"""CA homes on disk: init, import (root, intermediate, refusals), rotation, tenant isolation."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.tls.ca import CA_FILE, CHAIN_FILE, KEY_FILE, LEAF_KEY_FILE, cert_pem, key_pem, utcnow
from arcus.tls.castore import CAStore
from tests.unit.tls.helpers import make_ca


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_init_makes_a_root_ca_with_private_files(tmp_path: Path) -> None:
    store = CAStore(tmp_path)
    ca = store.init(None)
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    assert "Arcus" in ca.cert.subject.rfc4514_string() and "box" in ca.cert.subject.rfc4514_string()
    assert ca.describe()["key"] == "EC P-256"
    assert ca.cert.not_valid_after_utc - utcnow() > dt.timedelta(days=3649)
    for name in (KEY_FILE, LEAF_KEY_FILE, CA_FILE):
        assert mode(ca.directory / name) == 0o600
    for d in (tmp_path / "ca", tmp_path / "ca" / "box", ca.directory, ca.leaves_dir):
        assert mode(d) == 0o700
    assert not [p for p in tree(tmp_path) if ".tmp" in p or ".new-" in p]


def test_serials_are_random_and_rsa_on_request(tmp_path: Path) -> None:
    store = CAStore(tmp_path)
    a = store.init("a", "rsa2048", days=30)
    b = store.init("b")
    assert a.describe()["key"] == "RSA 2048"
    assert a.cert.serial_number != b.cert.serial_number and a.cert.serial_number.bit_length() > 64
    assert a.cert.not_valid_after_utc - a.cert.not_valid_before_utc == dt.timedelta(days=30, hours=1)


def test_init_refuses_to_overwrite_and_changes_nothing(tmp_path: Path) -> None:
    store = CAStore(tmp_path)
    first = store.init("acme")
    before = tree(tmp_path)
    with pytest.raises(AlreadyExists) as err:
        store.init("acme")
    assert "ca rotate --tenant acme" in (err.value.hint or "")
    assert tree(tmp_path) == before
    assert store.current("acme").fingerprint == first.fingerprint  # type: ignore[union-attr]


def test_a_tenant_without_its_own_ca_uses_the_box_and_tenants_never_share(tmp_path: Path) -> None:
    store = CAStore(tmp_path)
    with pytest.raises(NotFound):
        store.resolve("acme")
    box = store.init(None)
    resolved, owner = store.resolve("acme")
    assert resolved.fingerprint == box.fingerprint and owner is None
    a, b = store.init("acme"), store.init("beta")
    assert len({box.fingerprint, a.fingerprint, b.fingerprint}) == 3
    assert store.resolve("acme")[0].fingerprint == a.fingerprint and store.resolve("acme")[1] == "acme"
    assert store.tenants_with_own() == ["acme", "beta"]


def test_rotate_keeps_the_old_ca_retired(tmp_path: Path) -> None:
    store = CAStore(tmp_path)
    old = store.init("acme", days=100)
    now = utcnow() + dt.timedelta(seconds=2)
    new = store.rotate("acme", now=now)
    assert new.fingerprint != old.fingerprint and new.directory != old.directory
    assert store.current("acme").fingerprint == new.fingerprint  # type: ignore[union-attr]
    gens = store.generations("acme")
    assert [g["status"] for g in gens] == ["current", "retired"]
    assert gens[1]["generation"] == old.directory.name
    assert dt.datetime.fromisoformat(gens[1]["retired_until"]) == old.cert.not_valid_after_utc  # 100 d < 397 d
    assert (new.cert.not_valid_after_utc - new.cert.not_valid_before_utc).days == 100  # lifetime kept
    assert (old.directory / KEY_FILE).exists()
    # a second rotation a year later deletes the generation retired past its last leaf
    later = now + dt.timedelta(days=400)
    third = store.rotate("acme", now=later)
    names = [g["generation"] for g in store.generations("acme", later)]
    assert names == [third.directory.name, new.directory.name]


def test_rotate_without_a_ca_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as err:
        CAStore(tmp_path).rotate("acme")
    assert "ca init --tenant acme" in (err.value.hint or "")


def test_import_an_own_root(tmp_path: Path) -> None:
    cert, key = make_ca("Corp Root", path_length=0)
    ca = CAStore(tmp_path / "d").import_("acme", cert_pem(cert), key_pem(key), None)
    assert ca.cert == cert and ca.chain == () and ca.served_chain_pem == b""
    assert mode(ca.directory / KEY_FILE) == 0o600


def test_import_an_intermediate_with_its_chain(tmp_path: Path) -> None:
    root = make_ca("Corp Root", path_length=1)
    inter = make_ca("Corp Proxy CA", root, path_length=0)
    ca = CAStore(tmp_path / "d").import_(None, cert_pem(inter[0]), key_pem(inter[1]), cert_pem(root[0]))
    assert ca.chain == (root[0],)
    assert ca.served_chain_pem == cert_pem(inter[0])  # the self-signed root is not served
    assert (ca.directory / CHAIN_FILE).read_bytes() == cert_pem(root[0])


@pytest.mark.parametrize("case, message", [
    ("wrong key", "the key does not match the certificate"),
    ("not a CA", "the certificate is not a CA"),
    ("expired", "the certificate is not valid now"),
    ("bad chain", "chain certificate 1 did not issue the certificate below it"),
    ("garbage cert", "the certificate file is not a PEM or DER certificate"),
    ("garbage key", "the key file is not a PEM or DER private key"),
])
def test_import_refusals_write_nothing(tmp_path: Path, case: str, message: str) -> None:
    cert, key = make_ca("Corp Root")
    chain = None
    if case == "wrong key":
        key = make_ca("Other")[1]
    elif case == "not a CA":
        cert, key = make_ca("www.example.com", ca=False)
    elif case == "expired":
        cert, key = make_ca("Old", start=utcnow() - dt.timedelta(days=20), days=10)
    elif case == "bad chain":
        chain = cert_pem(make_ca("Unrelated Root")[0])
    cert_data, key_data = cert_pem(cert), key_pem(key)
    if case == "garbage cert":
        cert_data = b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
    if case == "garbage key":
        key_data = b"not a key"
    data = tmp_path / "d"
    with pytest.raises(OperatorError) as err:
        CAStore(data).import_("acme", cert_data, key_data, chain)
    assert str(err.value).startswith(message)
    assert not data.exists()


def test_import_over_an_existing_ca_needs_replace(tmp_path: Path) -> None:
    store = CAStore(tmp_path)
    first = store.init(None)
    cert, key = make_ca("Corp Root", path_length=0)
    with pytest.raises(AlreadyExists):
        store.import_(None, cert_pem(cert), key_pem(key), None)
    ca = store.import_(None, cert_pem(cert), key_pem(key), None, replace=True)
    assert ca.cert == cert
    assert [g["status"] for g in store.generations(None)] == ["current", "retired"]
    assert store.generations(None)[1]["generation"] == first.directory.name


def test_a_failed_write_leaves_no_half_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up while the leaf key is written: no generation, no temporary left, no `current`."""
    from arcus.tls import castore

    real = castore.atomic_write

    def failing(path: Path, data: bytes, **kw: object) -> None:
        if path.name == LEAF_KEY_FILE:
            raise OSError(28, "No space left on device")
        real(path, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(castore, "atomic_write", failing)
    with pytest.raises(OperatorError) as err:
        CAStore(tmp_path).init("acme")
    assert str(err.value) == f"cannot write the CA of tenant 'acme' under {tmp_path / 'ca/tenants/acme'}: " \
        "No space left on device"
    assert tree(tmp_path / "ca" / "tenants" / "acme") == [".lock"]



def test_leftovers_of_a_killed_writer_are_swept(tmp_path: Path) -> None:
    store = CAStore(tmp_path)
    store.init(None)
    home = tmp_path / "ca" / "box"
    (home / ".new-123-abcd").mkdir()
    (home / ".new-123-abcd" / KEY_FILE).write_bytes(b"half")
    (home / ".current.1.2.tmp").write_bytes(b"half")
    store.rotate(None, now=utcnow() + dt.timedelta(seconds=2))
    assert not [p for p in home.iterdir() if p.name not in (".lock", "current") and p.name.startswith(".")]


def test_a_damaged_ca_is_one_clear_error(tmp_path: Path) -> None:
    store = CAStore(tmp_path)
    ca = store.init("acme")
    (ca.directory / KEY_FILE).unlink()
    with pytest.raises(OperatorError) as err:
        store.resolve("acme")
    assert str(err.value).startswith("the CA of tenant 'acme' cannot be read (No such file or directory: ")
