"""`route_upstream`: the next escaper by the destination host; the first matching rule wins.

Host patterns are the policy engine's (``arcus.policy.hosts``): exact and child names cost a
dict probe per label, globs and regexes are gated by their literal, so a table of many rules
stays cheap. ``nets`` match destinations given as IP addresses (names are not resolved here).
"""

from __future__ import annotations

from arcus.config.escaper.route_upstream import RouteUpstreamEscaperConfig
from arcus.escape.base import Connected, Escaper
from arcus.policy.hosts import HostIndex, normalize_host, parse_host_pattern
from arcus.policy.nets import NetSet, parse_address, parse_cidr


class RouteUpstreamEscaper(Escaper):
    type_name = "route_upstream"
    config: RouteUpstreamEscaperConfig

    def __init__(self, config: RouteUpstreamEscaperConfig, escapers: dict[str, Escaper]) -> None:
        """Raises ``arcus.policy.hosts.PatternError`` / ``arcus.policy.nets.RangeError``
        (with a hint) for a pattern the matchers refuse."""
        super().__init__(config)
        rules = config.rules
        self.routes: tuple[Escaper, ...] = tuple(escapers[r.escaper] for r in rules)
        self.fallback = escapers[config.fallback]
        self.index = HostIndex(
            (i, [parse_host_pattern(h) for h in r.hosts]) for i, r in enumerate(rules) if r.hosts
        )
        self.nets: tuple[NetSet | None, ...] = tuple(
            NetSet(parse_cidr(n) for n in r.nets) if r.nets else None for r in rules
        )

    def route(self, host: str) -> tuple[int, Escaper]:
        """(rule index or -1 for the fallback, the escaper)."""
        name = normalize_host(host)
        hits = self.index.lookup(name)
        slow = self.index.slow_candidates(name) & ~hits
        address = parse_address(name) if (name[:1].isdigit() or ":" in name) else None
        for i, escaper in enumerate(self.routes):
            bit = 1 << i
            if hits & bit:
                return i, escaper
            if slow & bit and self.index.slow_match(i, name):
                return i, escaper
            nets = self.nets[i]
            if nets is not None and address is not None and address in nets:
                return i, escaper
        return -1, self.fallback

    async def connect(
        self, host, port, client_ip, protocol_factory, *, timeout, ssl=None, check=None, user=None
    ) -> Connected:
        _, escaper = self.route(host)
        return await escaper.connect(
            host, port, client_ip, protocol_factory, timeout=timeout, ssl=ssl, check=check, user=user
        )

    @property
    def next_escapers(self) -> tuple[Escaper, ...]:
        return tuple(dict.fromkeys(self.routes + (self.fallback,)))
