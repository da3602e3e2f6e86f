"""Address ranges and port ranges: parsed once, matched with integer arithmetic.

An address is parsed with ``inet_pton`` into ``(version, integer)``; an IPv4-mapped IPv6 address
(``::ffff:10.1.2.3``, what a dual-stack socket reports) becomes the IPv4 address it carries, and
a zone index (``fe80::1%eth0``) is dropped. A :class:`NetSet` keeps one set of network integers
per prefix length in use, longest first, so a lookup is a mask and a set probe per prefix length
(as :mod:`arcus.auth.tenants` does), whatever the number of ranges.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

Address = tuple[int, int]  # (4 or 6, address as an integer)
Network = IPv4Network | IPv6Network

_V4_MAPPED = IPv6Network("::ffff:0:0/96")
_V4_MAPPED_HIGH = 0xFFFF
_V4_LOW = 0xFFFFFFFF


class RangeError(ValueError):
    """A range or port cannot be used; ``hint`` says what to write instead."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def parse_address(text: str) -> Address | None:
    """``(version, integer)`` of an address in text form, or None if it is not one."""
    try:
        if ":" in text:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text.partition("%")[0]), "big")
            if value >> 32 == _V4_MAPPED_HIGH:
                return (4, value & _V4_LOW)
            return (6, value)
        # inet_pton, unlike inet_aton, takes only the dotted quad: "127.1" and "2130706433"
        # are names here (a resolver may still turn them into 127.0.0.1; the caller decides
        # again with the resolved address).
        return (4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big"))
    except (OSError, ValueError, TypeError, UnicodeError):
        return None


_CIDR_HINT = "write an IPv4 or IPv6 range in CIDR form, e.g. 10.0.0.0/8 or 2001:db8::/32"


def parse_cidr(text: str) -> Network:
    """One range as an operator typed it: a bare address is a /32 or /128; host bits cleared.

    IPv4-mapped IPv6 ranges are refused: mapped addresses are matched as IPv4, so such a
    range would silently never match. Zone indexes are refused too.
    """
    if not isinstance(text, str):
        raise RangeError(f"expected text, got {type(text).__name__}", _CIDR_HINT)
    value = text.strip()
    if not value:
        raise RangeError("empty range", _CIDR_HINT)
    if "%" in value:
        raise RangeError(f"zone index not allowed in {text!r}", "drop the '%zone' part")
    family = IPv6Network if ":" in value else IPv4Network
    try:
        network: Network = family(value, strict=False)
    except ValueError as exc:
        raise RangeError(f"bad range {text!r}: {exc}", _CIDR_HINT) from None
    if isinstance(network, IPv6Network) and network.subnet_of(_V4_MAPPED):
        raise RangeError(
            f"IPv4-mapped range {text!r} is not accepted",
            "write the IPv4 range instead (e.g. 10.0.0.0/8); mapped addresses are matched as IPv4",
        )
    return network


def _levels(by_len: dict[int, set[int]], bits: int) -> tuple[tuple[int, frozenset[int]], ...]:
    full = (1 << bits) - 1
    return tuple(
        (full ^ ((1 << (bits - plen)) - 1), frozenset(nets)) for plen, nets in sorted(by_len.items(), reverse=True)
    )


class NetSet:
    """A set of ranges that answers "which range holds this address" in a few set probes."""

    __slots__ = ("networks", "_v4", "_v6")

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks: tuple[Network, ...] = tuple(networks)
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for net in self.networks:
            family = v4 if net.version == 4 else v6
            family.setdefault(net.prefixlen, set()).add(int(net.network_address))
        self._v4 = _levels(v4, 32)
        self._v6 = _levels(v6, 128)

    def __contains__(self, address: Address) -> bool:
        version, value = address
        for mask, nets in self._v4 if version == 4 else self._v6:
            if value & mask in nets:
                return True
        return False

    def which(self, address: Address) -> Network | None:
        """The range that holds ``address`` (the most specific), for explanations."""
        version, value = address
        best: Network | None = None
        for net in self.networks:
            if net.version == version:
                mask = int(net.netmask)
                if value & mask == int(net.network_address) and (best is None or net.prefixlen > best.prefixlen):
                    best = net
        return best


@dataclass(frozen=True, slots=True)
class PortRange:
    low: int
    high: int

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


_PORT_HINT = "write a port 1-65535 or a range like 8000-8999"


def parse_port_range(text: str) -> PortRange:
    if not isinstance(text, str):
        raise RangeError(f"expected text, got {type(text).__name__}", _PORT_HINT)
    low_text, dash, high_text = text.strip().partition("-")
    if not dash:
        high_text = low_text
    try:
        low, high = _port(low_text), _port(high_text)
    except ValueError:
        raise RangeError(f"bad port range {text!r}", _PORT_HINT) from None
    if low > high:
        raise RangeError(f"bad port range {text!r}: start above end", _PORT_HINT)
    return PortRange(low, high)


def _port(text: str) -> int:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise ValueError(text)
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(text)
    return value


class PortSet:
    """Ports as a frozenset (single ports) plus a tuple of ranges."""

    __slots__ = ("ranges", "_singles", "_spans")

    def __init__(self, ranges: Iterable[PortRange]) -> None:
        self.ranges = tuple(ranges)
        self._singles = frozenset(r.low for r in self.ranges if r.low == r.high)
        self._spans = tuple((r.low, r.high) for r in self.ranges if r.low != r.high)

    def __contains__(self, port: int) -> bool:
        if port in self._singles:
            return True
        for low, high in self._spans:
            if low <= port <= high:
                return True
        return False

    def which(self, port: int) -> PortRange | None:
        for r in self.ranges:
            if r.low <= port <= r.high:
                return r
        return None
