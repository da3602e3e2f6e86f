"""A certificate authority in memory: its key, its certificate, the chain served above it.

Made three ways, all with ``cryptography`` (never by running ``openssl``):

- :func:`generate`: a new self-signed root (EC P-256 by default, RSA 2048/3072 on request) with
  ``basicConstraints CA:true, pathlen:0`` and ``keyUsage keyCertSign, cRLSign``, both critical, a
  random serial, and its subject naming Arcus and the tenant (or the box);
- :func:`from_pem`: an operator's own root or intermediate (``arcus ca import``), checked by
  :func:`check`: the key matches the certificate, it is a CA allowed to sign certificates, it is
  valid now, and each certificate of the chain issued the one below it;
- :meth:`CertificateAuthority.load`: what :mod:`arcus.tls.castore` wrote.

Each CA carries ONE leaf key pair (EC P-256), generated once with the CA and stored beside it:
every leaf it signs uses that key (as mitmproxy does). A leaf then costs one signature, not a key
generation plus a signature, which is what makes ≥ 2,000 cold leaves per second per core possible.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arcus.errors import OperatorError

KeyType = Literal["ec", "rsa2048", "rsa3072"]
KEY_TYPES: tuple[KeyType, ...] = ("ec", "rsa2048", "rsa3072")
DEFAULT_DAYS = 3650
MAX_DAYS = 36500

CA_FILE = "ca.pem"
KEY_FILE = "ca.key"
CHAIN_FILE = "chain.pem"
LEAF_KEY_FILE = "leaf.key"

CAKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def generate_key(kind: KeyType) -> CAKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind in ("rsa2048", "rsa3072"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise OperatorError(f"unknown key type {kind!r}", hint=f"use one of: {', '.join(KEY_TYPES)}")


def generate_leaf_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_text(key: object) -> str:
    """``EC P-256``, ``RSA 3072``... for ``ca show``."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {"secp256r1": "EC P-256", "secp384r1": "EC P-384", "secp521r1": "EC P-521"}.get(
            key.curve.name, f"EC {key.curve.name}")
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"RSA {key.key_size}"
    return type(key).__name__


def key_pem(key: CAKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def colon_hex(hex_digest: str) -> str:
    return ":".join(hex_digest[i:i + 2] for i in range(0, len(hex_digest), 2)).upper()


def signature_hash(key: CAKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256 \
        else hashes.SHA256()


def ca_subject(tenant: str | None, public: object) -> x509.Name:
    """``O=Arcus, OU=<tenant>`` (``OU=the box`` for the box: a space no tenant name can hold) and a
    CN that differs for every CA (the start of its key identifier), so two generations of one
    tenant's CA are told apart in a trust store."""
    ski = x509.SubjectKeyIdentifier.from_public_key(public).digest.hex()[:8]  # type: ignore[arg-type]
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Arcus"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, tenant or "the box"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Arcus CA {(tenant or 'box')[:45]} {ski}"),
    ])


def kind_of(key: CAKey) -> KeyType:
    """The key type to make a CA like this one with (``ca rotate`` keeps it)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa3072" if key.key_size >= 3072 else "rsa2048"
    return "ec"


def generate(tenant: str | None, kind: KeyType = "ec", days: int = DEFAULT_DAYS,
             now: dt.datetime | None = None) -> tuple[x509.Certificate, CAKey]:
    """A new self-signed root for ``tenant`` (None: the box's), valid from an hour ago for ``days``."""
    if not 1 <= days <= MAX_DAYS:
        raise OperatorError(f"--days must be between 1 and {MAX_DAYS}, not {days}")
    now = now or utcnow()
    key = generate_key(kind)
    public = key.public_key()
    name = ca_subject(tenant, public)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, signature_hash(key))
    )
    return cert, key


def _load_certs(data: bytes, what: str) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise OperatorError(f"{what} is not a PEM or DER certificate") from None
    if not certs:
        raise OperatorError(f"{what} holds no certificate")
    return certs


def _load_key(data: bytes, what: str) -> CAKey:
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise OperatorError(f"{what} is encrypted", hint="give the key without a passphrase "
                            "(for example: openssl pkey -in KEY -out PLAIN.key), kept 0600") from None
    except ValueError:
        raise OperatorError(f"{what} is not a PEM or DER private key") from None
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise OperatorError(f"{what} is RSA {key.key_size}: too weak", hint="use RSA 2048 or more, or EC P-256")
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise OperatorError(f"{what} is a {type(key).__name__}: only EC and RSA keys can sign leaves "
                            "that every client accepts")
    return key


def _public_der(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def check(cert: x509.Certificate, key: CAKey, chain: list[x509.Certificate], now: dt.datetime) -> None:
    """Refuse a CA that cannot sign leaves clients accept (OperatorError saying why)."""
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise OperatorError("the key does not match the certificate",
                            hint="give the private key of this certificate (compare their public keys)")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise OperatorError("the certificate is not a CA (basicConstraints CA:true is missing)",
                            hint="give a root or intermediate CA certificate, not a server certificate")
    if bc.path_length is not None and bc.path_length < 0:
        raise OperatorError("the CA's path length is invalid")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            raise OperatorError("the CA may not sign certificates (keyUsage lacks keyCertSign)")
    except x509.ExtensionNotFound:
        pass
    for c, what in [(cert, "the certificate"), *((c, f"chain certificate {i + 1}") for i, c in enumerate(chain))]:
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise OperatorError(f"{what} is not valid now (valid {c.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                                f"{c.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)")
    below = cert
    for i, upper in enumerate(chain):
        try:
            below.verify_directly_issued_by(upper)
        except (ValueError, TypeError, InvalidSignature) as exc:  # a name mismatch, a key type, a signature
            why = str(exc) or "bad signature"
            raise OperatorError(f"chain certificate {i + 1} did not issue the certificate below it ({why})",
                                hint="give the chain in order: the issuer of the CA first, up to the root") from None
        below = upper


def from_pem(cert_data: bytes, key_data: bytes, chain_data: bytes | None,
             now: dt.datetime | None = None) -> tuple[x509.Certificate, CAKey, list[x509.Certificate]]:
    """Parse and :func:`check` an imported CA; the certificate file may carry the chain after the CA."""
    certs = _load_certs(cert_data, "the certificate file")
    key = _load_key(key_data, "the key file")
    chain = certs[1:] + (_load_certs(chain_data, "the chain file") if chain_data else [])
    check(certs[0], key, chain, now or utcnow())
    return certs[0], key, chain


def self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class CertificateAuthority:
    """One generation of a CA as it sits on disk in ``directory`` (see :mod:`arcus.tls.castore`)."""

    directory: Path
    cert: x509.Certificate
    key: CAKey
    chain: tuple[x509.Certificate, ...]
    leaf_key: ec.EllipticCurvePrivateKey

    @classmethod
    def load(cls, directory: Path) -> "CertificateAuthority":
        cert = x509.load_pem_x509_certificate((directory / CA_FILE).read_bytes())
        key = _load_key((directory / KEY_FILE).read_bytes(), f"{directory / KEY_FILE}")
        chain_path = directory / CHAIN_FILE
        chain = tuple(x509.load_pem_x509_certificates(chain_path.read_bytes())) if chain_path.exists() else ()
        leaf_key = serialization.load_pem_private_key((directory / LEAF_KEY_FILE).read_bytes(), password=None)
        if not isinstance(leaf_key, ec.EllipticCurvePrivateKey):
            raise OperatorError(f"{directory / LEAF_KEY_FILE} is not an EC key")
        return cls(directory, cert, key, chain, leaf_key)

    @functools.cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)

    @property
    def leaf_key_file(self) -> Path:
        return self.directory / LEAF_KEY_FILE

    @property
    def leaves_dir(self) -> Path:
        return self.directory / "leaves"

    @functools.cached_property
    def served_chain_pem(self) -> bytes:
        """What a server sends after a leaf: this CA and the chain above it, without a self-signed root."""
        return b"".join(cert_pem(c) for c in (self.cert, *self.chain) if not self_signed(c))

    @functools.cached_property
    def hash_algorithm(self) -> hashes.SHA256 | hashes.SHA384:
        return signature_hash(self.key)

    @functools.cached_property
    def leaf_extensions(self) -> tuple[tuple[x509.ExtensionType, bool], ...]:
        """The extensions every leaf of this CA shares (computed once: a leaf costs one signature)."""
        return (
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                           data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                           encipher_only=False, decipher_only=False), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.SubjectKeyIdentifier.from_public_key(self.leaf_key.public_key()), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False),
        )

    @functools.cached_property
    def leaf_public_key(self) -> ec.EllipticCurvePublicKey:
        return self.leaf_key.public_key()

    def describe(self) -> dict[str, object]:
        c = self.cert
        return {
            "subject": c.subject.rfc4514_string(),
            "issuer": c.issuer.rfc4514_string(),
            "fingerprint_sha256": colon_hex(self.fingerprint),
            "serial": format(c.serial_number, "x"),
            "not_before": c.not_valid_before_utc.isoformat(),
            "not_after": c.not_valid_after_utc.isoformat(),
            "key": key_text(self.key),
            "self_signed": self_signed(c),
            "chain": len(self.chain),
            "directory": str(self.directory),
        }


