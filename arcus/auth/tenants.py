"""Tenant identification by the client's source address: longest prefix wins.

Pure logic, built once per Snapshot from the store's tenants and called once per accepted
connection, so the lookup avoids ``ipaddress`` objects: the address is packed with
``inet_pton`` into an integer, masked once per prefix length that some tenant uses (longest
first), and looked up in a dict per prefix length. Typical tables use a handful of distinct
prefix lengths, so a lookup is a few dict probes. Results are cached in a bounded dict (clients
repeat); when it fills up it is cleared, never rebuilt or evicted entry by entry.

IPv4-mapped IPv6 client addresses (``::ffff:10.20.1.1``, what a dual-stack listener reports
for IPv4 clients) are matched against the IPv4 ranges; a zone index (``fe80::1%eth0``) is
ignored. An address that matches no range, or that cannot be parsed (a Unix socket peer),
belongs to the ``default`` tenant.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Protocol

from arcus.errors import OperatorError
from arcus.store.migrations import DEFAULT_TENANT
from arcus.store.sources import parse_source

CACHE_SIZE = 4096
_V4_MAPPED_HIGH = 0xFFFF  # value >> 32 of an IPv4-mapped IPv6 address
_V4_LOW = 0xFFFFFFFF


class TenantLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def sources(self) -> Iterable[str]: ...
    @property
    def suspended(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class TenantEntry:
    name: str
    suspended: bool


# One level of a family's table: (prefix length, mask, {network as int: entry}).
_Level = tuple[int, int, dict[int, TenantEntry]]


def _levels(by_prefix: dict[int, dict[int, TenantEntry]], bits: int) -> tuple[_Level, ...]:
    full = (1 << bits) - 1
    return tuple(
        (plen, full ^ ((1 << (bits - plen)) - 1), nets)
        for plen, nets in sorted(by_prefix.items(), reverse=True)
    )


class TenantTable:
    """Maps a client address to the tenant whose range holds it most specifically."""

    __slots__ = ("_v4", "_v6", "_default", "_by_name", "_cache")

    def __init__(
        self,
        v4: tuple[_Level, ...],
        v6: tuple[_Level, ...],
        default: TenantEntry,
        by_name: dict[str, TenantEntry],
    ) -> None:
        self._v4 = v4
        self._v6 = v6
        self._default = default
        self._by_name = by_name
        self._cache: dict[str, TenantEntry] = {}

    @classmethod
    def build(cls, tenants: Iterable[TenantLike]) -> TenantTable:
        """Build from tenants (anything with ``.name``, ``.sources``, ``.suspended``).

        Raises OperatorError (code ``invalid``) for a duplicate tenant name, a bad range, or
        one range given to two tenants: the Snapshot being built is refused, the old one
        keeps serving.
        """
        by_name: dict[str, TenantEntry] = {}
        v4: dict[int, dict[int, TenantEntry]] = {}
        v6: dict[int, dict[int, TenantEntry]] = {}
        for tenant in tenants:
            entry = TenantEntry(tenant.name, bool(tenant.suspended))
            if entry.name in by_name:
                raise OperatorError(f"tenant {entry.name!r} given twice", code="invalid")
            by_name[entry.name] = entry
            for source in tenant.sources:
                network = parse_source(source)
                family = v4 if isinstance(network, IPv4Network) else v6
                level = family.setdefault(network.prefixlen, {})
                key = int(network.network_address)
                other = level.setdefault(key, entry)
                if other is not entry:
                    raise OperatorError(
                        f"source range '{network}' given to both tenant {other.name!r} "
                        f"and tenant {entry.name!r}",
                        code="invalid",
                        hint="a range identifies one tenant",
                    )
        default = by_name.get(DEFAULT_TENANT) or TenantEntry(DEFAULT_TENANT, False)
        return cls(_levels(v4, 32), _levels(v6, 128), default, by_name)

    @property
    def default(self) -> TenantEntry:
        return self._default

    def get(self, name: str) -> TenantEntry | None:
        """The entry of a tenant by name (for identification by user, server or header)."""
        return self._by_name.get(name)

    def lookup(self, address: str) -> TenantEntry:
        """The tenant of a client address (text as the socket reports it)."""
        cache = self._cache
        entry = cache.get(address)
        if entry is None:
            entry = self._match(address)
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            cache[address] = entry
        return entry

    def _match(self, address: str) -> TenantEntry:
        try:
            if ":" in address:
                host = address.partition("%")[0]
                value = int.from_bytes(socket.inet_pton(socket.AF_INET6, host), "big")
                if value >> 32 == _V4_MAPPED_HIGH:
                    value &= _V4_LOW
                    levels = self._v4
                else:
                    levels = self._v6
            else:
                value = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
                levels = self._v4
        except (OSError, ValueError, TypeError):
            return self._default
        for _plen, mask, networks in levels:
            entry = networks.get(value & mask)
            if entry is not None:
                return entry
        return self._default
