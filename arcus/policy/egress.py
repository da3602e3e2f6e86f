"""The egress guard: special-purpose destinations are refused unless the profile opens them.

Pure logic, no I/O: the box's own addresses are gathered by the runtime and handed over in a
:class:`HostAddresses`, which the runtime replaces live when an interface gains or loses an
address; every guard built from it (and the upstream pool's key) reads the current set.

Refused by default: loopback and the box's own addresses (open to clients that are themselves
on the box, so an operator there can still reach local services), unspecified, link-local
(which holds the cloud metadata address 169.254.169.254), multicast, reserved and broadcast
ranges, and the well-known metadata addresses of other clouds.

An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is the IPv4 address it carries. The other
IPv6 forms that carry an IPv4 address a packet may end up at are judged by that address too,
and refused for every client when it is special (loopback, this box's or in a special range):
IPv4-compatible ``::a.b.c.d``, IPv4-translated ``::ffff:0:a.b.c.d``, NAT64 ``64:ff9b::/96``,
6to4 ``2002::/16`` (the relay's address) and Teredo ``2001::/32`` (server and client). They
name another path to the same place, never "this box's loopback" for a local client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LOOPBACK = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128")]
_SPECIAL = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "169.254.0.0/16",  # link-local, cloud metadata 169.254.169.254
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.0/24",  # IETF protocol assignments (holds Oracle's 192.0.0.192)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved
        "255.255.255.255/32",  # broadcast
        "::/128",  # unspecified
        "fe80::/10",  # link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "ff00::/8",  # multicast
    )
]
# IPv6 ranges whose last 32 bits are an IPv4 address (RFC 4291 2.5.5.1, RFC 2765, RFC 6052)
_V4_IN_LOW_BITS = [
    (ipaddress.IPv6Network("::/96"), "IPv4-compatible"),
    (ipaddress.IPv6Network("::ffff:0:0:0/96"), "IPv4-translated"),
    (ipaddress.IPv6Network("64:ff9b::/96"), "NAT64"),
]


def parse_ip(value: str) -> IPAddress:
    """An address as the guard compares it: zone index dropped, IPv4-mapped made IPv4.

    Raises ValueError when ``value`` is not an IP address.
    """
    addr = ipaddress.ip_address(value.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _parse_all(addresses: Iterable[str | IPAddress]) -> frozenset[IPAddress]:
    return frozenset(a if isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address) else parse_ip(a) for a in addresses)


def embedded_ipv4(addr: IPAddress) -> list[tuple[ipaddress.IPv4Address, str]]:
    """The IPv4 addresses an IPv6 address carries, each with the name of the form."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return []
    for net, form in _V4_IN_LOW_BITS:
        if addr in net:
            return [(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF), form)]
    if addr.sixtofour is not None:
        return [(addr.sixtofour, "6to4")]
    if addr.teredo is not None:
        server, client = addr.teredo
        return [(server, "Teredo server"), (client, "Teredo client")]
    return []


class HostAddresses:
    """The box's own addresses: one frozenset, replaced whole (one reference assignment).

    The runtime fills it at start and calls ``replace`` when the kernel reports a change; the
    guards and the pool key hold this object, not a copy, so they see the change at once.
    """

    __slots__ = ("addresses",)

    def __init__(self, addresses: Iterable[str | IPAddress] = ()) -> None:
        self.addresses: frozenset[IPAddress] = _parse_all(addresses)

    def replace(self, addresses: Iterable[str | IPAddress]) -> tuple[frozenset[IPAddress], frozenset[IPAddress]]:
        """Make ``addresses`` the current set; the addresses (gained, lost)."""
        new = _parse_all(addresses)
        old = self.addresses
        self.addresses = new
        return new - old, old - new

    def is_local(self, client: str) -> bool:
        """Whether a client at this address is on the box: loopback or one of its addresses.

        The one answer to that question: the guard's loopback allowance and the upstream
        pool's key both ask it.
        """
        try:
            addr = parse_ip(client)
        except ValueError:
            return False
        return addr.is_loopback or addr in self.addresses

    def __contains__(self, addr: IPAddress) -> bool:
        return addr in self.addresses


CACHE_SIZE = 4096  # remembered verdicts per guard; cleared when full, never evicted one by one


class EgressGuard:
    """Whether a client may reach a destination address; see the module docstring.

    Verdicts are remembered per (client, destination) while the box's addresses stay the same
    (a change replaces the set, which empties the memory): the guard is asked on every connect
    and on every reuse of a pooled connection, and parsing and range tests cost microseconds.
    """

    __slots__ = ("_allow", "_host", "_local_clients_reach_loopback", "_verdicts", "_verdicts_for")

    def __init__(
        self,
        allow: Iterable[str] = (),
        own_addresses: HostAddresses | Iterable[str] = (),
        loopback_for_local_clients: bool = True,
    ) -> None:
        """``own_addresses``: the live set the runtime keeps (a HostAddresses), or a fixed list."""
        self._allow = [ipaddress.ip_network(a, strict=False) for a in allow]
        self._host = own_addresses if isinstance(own_addresses, HostAddresses) else HostAddresses(own_addresses)
        self._local_clients_reach_loopback = loopback_for_local_clients
        self._verdicts: dict[tuple[str, str], str | None] = {}
        self._verdicts_for: frozenset[IPAddress] | None = None  # the address set they hold for

    @property
    def host(self) -> HostAddresses:
        return self._host

    _addr = staticmethod(parse_ip)

    def is_local(self, client: str) -> bool:
        return self._host.is_local(client)

    def _local_kind(self, addr: IPAddress) -> str | None:
        if any(addr in net for net in _LOOPBACK):
            return "loopback"
        if addr in self._host.addresses:
            return "one of this box's own addresses"
        return None

    @staticmethod
    def _special_range(addr: IPAddress) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        for net in _SPECIAL:
            if addr in net:
                return net
        return None

    def check(self, client: str, dest: str) -> str | None:
        """None when ``dest`` may be reached by ``client``; else why not.

        Raises ValueError when ``dest`` is not an IP address.
        """
        own = self._host.addresses
        if own is not self._verdicts_for:
            self._verdicts = {}
            self._verdicts_for = own
        key = (client, dest)
        verdicts = self._verdicts
        if key in verdicts:
            return verdicts[key]
        why = self._judge(client, dest)
        if len(verdicts) >= CACHE_SIZE:
            verdicts.clear()
        verdicts[key] = why
        return why

    def _judge(self, client: str, dest: str) -> str | None:
        addr = parse_ip(dest)
        if any(addr in net for net in self._allow):
            return None
        kind = self._local_kind(addr)
        if kind is not None:
            if self._local_clients_reach_loopback and self.is_local(client):
                return None
            return f"{addr} is {kind}"
        net = self._special_range(addr)
        if net is not None:
            return f"{addr} is in the special-purpose range {net}"
        for inner, form in embedded_ipv4(addr):
            kind = self._local_kind(inner)
            if kind is None and (net := self._special_range(inner)) is not None:
                kind = f"in the special-purpose range {net}"
            if kind is not None:
                return f"{addr} carries {inner} ({form}), which is {kind}"
        return None
