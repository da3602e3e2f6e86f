"""Issuing one leaf certificate: names, validity, extensions. Pure and synchronous (the caller
decides where it runs; :class:`arcus.tls.certcache.LeafFactory` runs it in a worker thread).

Names (as mitmproxy's ``TlsConfig.get_cert`` chooses them): the client's SNI first, then the DNS
names and IP addresses of the upstream certificate's subjectAltName, then the target's IP
addresses (a CONNECT to an IP); duplicates removed, order kept. CN is the SNI (or the first
name) when it fits in 64 characters; clients match on the SANs anyway. With no upstream
certificate (it could not be fetched, or an error page is to be served) the leaf names the SNI
and the IPs only.

Validity: from an hour before now (client clock skew), never before the CA's own start, to
``days`` from now, never after the CA's end nor the upstream certificate's end. A leaf whose
window would be empty (an expired upstream certificate) is refused with :class:`LeafError`: the
caller serves an SNI-only leaf with its error page instead.

Cost: one signature. The key pair is the CA's shared leaf key and the constant extensions are
computed once per CA (:attr:`CertificateAuthority.leaf_extensions`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from arcus.tls.ca import CertificateAuthority

LEAF_DAYS = 30
LEAF_MAX_DAYS = 397  # the CA/Browser Forum's ceiling; leaf_days is checked against it
BACKDATE = dt.timedelta(hours=1)

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class LeafError(ValueError):
    """A leaf cannot be made for these inputs (no name, an expired upstream certificate)."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """What a leaf mirrors from the upstream certificate."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_after: dt.datetime

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> "Upstream":
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = tuple(san.get_values_for_type(x509.DNSName))
            ips = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            dns, ips = (), ()
        if not dns and not ips:
            cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            dns = tuple(str(a.value) for a in cns[:1])
        return cls(dns, ips, cert.not_valid_after_utc)


def normalize_host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _ip(value: str) -> IP | None:
    try:
        return ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return None


def names_for(sni: str | None, upstream: Upstream | None, ips: Iterable[str]) -> tuple[list[str], list[IP]]:
    """The leaf's DNS names and IP addresses, SNI first, deduplicated in order."""
    dns: dict[str, None] = {}
    addrs: dict[IP, None] = {}

    def add(value: str) -> None:
        ip = _ip(value)
        if ip is not None:
            addrs[ip] = None
        elif value:
            dns[normalize_host(value)] = None

    if sni:
        add(sni)
    if upstream is not None:
        for name in upstream.dns_names:
            add(name)
        for a in upstream.ip_addresses:
            add(a)
    for a in ips:
        ip = _ip(a)
        if ip is None:
            raise LeafError(f"not an IP address: {a!r}")
        addrs[ip] = None
    return list(dns), list(addrs)


def validity(ca: CertificateAuthority, upstream: Upstream | None, now: dt.datetime,
             days: int = LEAF_DAYS) -> tuple[dt.datetime, dt.datetime]:
    not_before = max(now - BACKDATE, ca.cert.not_valid_before_utc)
    not_after = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    if upstream is not None:
        not_after = min(not_after, upstream.not_after)
    if not_after <= now:
        raise LeafError("the upstream certificate has expired" if upstream is not None and upstream.not_after <= now
                        else "the CA has expired")
    return not_before, not_after


def issue(ca: CertificateAuthority, sni: str | None, upstream: Upstream | None = None,
          ips: Sequence[str] = (), *, now: dt.datetime, days: int = LEAF_DAYS) -> x509.Certificate:
    """A leaf for ``sni`` (and ``ips``) signed by ``ca`` with its shared leaf key."""
    dns, addrs = names_for(sni, upstream, ips)
    if not dns and not addrs:
        raise LeafError("a leaf needs a server name or an IP address")
    not_before, not_after = validity(ca, upstream, now, days)
    first = normalize_host(sni) if sni else (dns[0] if dns else str(addrs[0]))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)] if len(first) <= 64 else [])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(a) for a in addrs]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(ca.leaf_public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=not subject)
    )
    for ext, critical in ca.leaf_extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(ca.key, ca.hash_algorithm)
