"""`route_client`: the next escaper by the client's address or user; the first matching rule wins."""

from __future__ import annotations

from arcus.config.escaper.route_client import RouteClientEscaperConfig
from arcus.escape.base import Connected, Escaper
from arcus.policy.nets import NetSet, parse_address, parse_cidr


class RouteClientEscaper(Escaper):
    type_name = "route_client"
    config: RouteClientEscaperConfig

    def __init__(self, config: RouteClientEscaperConfig, escapers: dict[str, Escaper]) -> None:
        super().__init__(config)
        rules = config.rules
        self.routes: tuple[Escaper, ...] = tuple(escapers[r.escaper] for r in rules)
        self.fallback = escapers[config.fallback]
        self.clients = tuple(NetSet(parse_cidr(c) for c in r.clients) if r.clients else None for r in rules)
        self.users = tuple(frozenset(r.users) for r in rules)

    def route(self, client_ip: str, user: str | None) -> tuple[int, Escaper]:
        address = parse_address(client_ip)
        for i, escaper in enumerate(self.routes):
            nets = self.clients[i]
            if nets is not None and address is not None and address in nets:
                return i, escaper
            if user is not None and user in self.users[i]:
                return i, escaper
        return -1, self.fallback

    async def connect(
        self, host, port, client_ip, protocol_factory, *, timeout, ssl=None, check=None, user=None
    ) -> Connected:
        _, escaper = self.route(client_ip, user)
        return await escaper.connect(
            host, port, client_ip, protocol_factory, timeout=timeout, ssl=ssl, check=check, user=user
        )

    @property
    def next_escapers(self) -> tuple[Escaper, ...]:
        return tuple(dict.fromkeys(self.routes + (self.fallback,)))

    @property
    def varies_by_client(self) -> bool:
        return True
