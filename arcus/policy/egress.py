"""The egress guard: special-purpose destinations are refused unless the profile opens them.

Pure logic, no I/O: the box's own addresses are gathered by the runtime and passed in.
Refused by default: loopback and the box's own addresses (open to clients that are themselves
local, so an operator on the box can still reach local services), unspecified, link-local
(which holds the cloud metadata address 169.254.169.254), multicast, reserved and broadcast
ranges, and the well-known metadata addresses of other clouds.
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


class EgressGuard:
    __slots__ = ("_allow", "_own", "_local_clients_reach_loopback")

    def __init__(
        self,
        allow: Iterable[str] = (),
        own_addresses: Iterable[str] = (),
        loopback_for_local_clients: bool = True,
    ) -> None:
        self._allow = [ipaddress.ip_network(a, strict=False) for a in allow]
        self._own = frozenset(ipaddress.ip_address(a) for a in own_addresses)
        self._local_clients_reach_loopback = loopback_for_local_clients

    @staticmethod
    def _addr(value: str) -> IPAddress:
        addr = ipaddress.ip_address(value.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        return addr

    def is_local(self, client: str) -> bool:
        try:
            addr = self._addr(client)
        except ValueError:
            return False
        return addr.is_loopback or addr in self._own

    def check(self, client: str, dest: str) -> str | None:
        """None when ``dest`` may be reached by ``client``; else why not."""
        addr = self._addr(dest)
        if any(addr in net for net in self._allow):
            return None
        loopback = any(addr in net for net in _LOOPBACK)
        if loopback or addr in self._own:
            if self._local_clients_reach_loopback and self.is_local(client):
                return None
            what = "loopback" if loopback else "one of this box's own addresses"
            return f"{addr} is {what}"
        for net in _SPECIAL:
            if addr in net:
                return f"{addr} is in the special-purpose range {net}"
        return None
