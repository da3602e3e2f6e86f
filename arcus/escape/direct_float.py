"""`direct_float`: ``direct_fixed`` with the source address of each connection chosen from a set.

The set starts as the profile's ``addresses`` and is replaced live by ``set_addresses`` (the
control command ``escaper.float.set``); a reload keeps the live set unless the profile's own
``addresses`` changed. Each connection binds a random address of the destination's family.
"""

from __future__ import annotations

import ipaddress
import random

from arcus.config.escaper.direct_float import DirectFloatEscaperConfig, egress_problem
from arcus.errors import ErrorCode, EscapeError
from arcus.escape.base import Escaper
from arcus.escape.direct_fixed import SKIP, DirectFixedEscaper, Source
from arcus.policy.egress import EgressGuard
from arcus.resolve.base import Resolver


class DirectFloatEscaper(DirectFixedEscaper):
    type_name = "direct_float"
    config: DirectFloatEscaperConfig

    def __init__(self, config: DirectFloatEscaperConfig, resolver: Resolver, guard: EgressGuard) -> None:
        super().__init__(config, resolver, guard)
        self._bind = None
        self.published = False  # True once the set was replaced live
        self._set(config.addresses)
        self._random = random.Random()

    def _set(self, addresses: tuple[str, ...]) -> None:
        self.addresses = addresses
        self._v4 = tuple(a for a in addresses if ":" not in a)
        self._v6 = tuple(a for a in addresses if ":" in a)

    def set_addresses(self, addresses: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """Replace the egress set (validated: IP addresses, no duplicates); returns it normalized."""
        normalized: list[str] = []
        for text in addresses:
            addr = str(ipaddress.ip_address(text))  # ValueError for the caller to report
            why = egress_problem(addr)
            if why is not None:
                raise ValueError(f"{addr} {why}")
            if addr not in normalized:
                normalized.append(addr)
        self._set(tuple(normalized))
        self.published = True
        return self.addresses

    def adopt(self, previous: Escaper) -> None:
        if (
            isinstance(previous, DirectFloatEscaper)
            and previous.published
            and previous.config.addresses == self.config.addresses
        ):
            self._set(previous.addresses)
            self.published = True

    def _source_for(self, addr: str) -> Source:
        pool = self._v6 if ":" in addr else self._v4
        if not pool:
            return SKIP
        return pool[0] if len(pool) == 1 else self._random.choice(pool)

    def _no_source(self, host: str, port: int) -> EscapeError:
        have = ", ".join(self.addresses) or "none"
        return EscapeError(
            f"escaper {self.name} has no egress address for the families of {host} (egress addresses: {have})",
            code=ErrorCode.UPSTREAM_CONNECT,
        )

    def info(self) -> dict:
        return {**super().info(), "addresses": list(self.addresses), "published": self.published}
