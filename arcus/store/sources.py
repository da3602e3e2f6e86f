"""Source ranges: the CIDRs that identify a tenant by its clients' addresses.

Parsing lives here, apart from SQLite, so that tenant identification (``arcus.auth.tenants``)
and the store agree on what a range is. A range is normalized once, on the way in: host bits
cleared, IPv6 compressed. Normalized text is then unique per network, which lets the store
enforce "one range belongs to one tenant" with a plain UNIQUE constraint on the text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network

from arcus.errors import OperatorError

Network = IPv4Network | IPv6Network

_FORM_HINT = "write an IPv4 or IPv6 range in CIDR form, e.g. 10.20.0.0/16 or 2001:db8::/48"
_V4_MAPPED = IPv6Network("::ffff:0:0/96")


def _invalid(text: object, reason: str, hint: str = _FORM_HINT) -> OperatorError:
    return OperatorError(f"invalid source range {text!r}: {reason}", code="invalid", hint=hint)


def parse_source(text: str) -> Network:
    """Parse one source range, as an operator typed it, into a normalized network.

    A bare address is a single-host range (/32 or /128); host bits are cleared
    (``10.20.1.7/16`` is ``10.20.0.0/16``). Refused, with a hint: anything that is not an
    address or CIDR, a zone index (``fe80::%eth0/64``: ranges apply on every interface), and
    IPv4-mapped IPv6 ranges (``::ffff:10.0.0.0/104``), because mapped client addresses are
    matched against the IPv4 ranges and a mapped range would silently never match.
    """
    if not isinstance(text, str):
        raise _invalid(text, f"expected text, got {type(text).__name__}")
    value = text.strip()
    if not value:
        raise _invalid(text, "empty")
    if "%" in value:
        raise _invalid(text, "zone index not allowed",
                       hint="drop the '%zone' part; a range applies to clients on every interface")
    # The family classes explain what is wrong ("'33' is not a valid netmask"); the generic
    # ip_network() only says the text "does not appear to be" a network.
    family = IPv6Network if ":" in value else IPv4Network
    try:
        network: Network = family(value, strict=False)
    except ValueError as exc:
        raise _invalid(text, str(exc)) from None
    if isinstance(network, IPv6Network) and network.subnet_of(_V4_MAPPED):
        raise _invalid(
            text,
            "IPv4-mapped IPv6 ranges are not accepted",
            hint="write the IPv4 range instead (e.g. 10.20.0.0/16); "
            "IPv4-mapped client addresses are matched against IPv4 ranges",
        )
    return network


def normalize_source(text: str) -> str:
    """The canonical text of a source range (see :func:`parse_source`)."""
    return str(parse_source(text))


def source_sort_key(cidr: str) -> tuple[int, int, int]:
    """Order ranges IPv4 first, then by address, then by prefix length (not as text)."""
    network = ipaddress.ip_network(cidr, strict=False)
    return (network.version, int(network.network_address), network.prefixlen)


def normalize_sources(texts: Iterable[str] | str) -> tuple[str, ...]:
    """Normalize many ranges: duplicates (after normalization) dropped, sorted."""
    if isinstance(texts, str):
        # A lone string is almost certainly a mistake for [string]; iterating it would
        # yield one "range" per character.
        texts = (texts,)
    unique = {normalize_source(t) for t in texts}
    return tuple(sorted(unique, key=source_sort_key))
