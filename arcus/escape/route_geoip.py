"""`route_geoip`: the next escaper by the country or continent of the destination's address.

The MMDB (MaxMind DB: GeoLite2/GeoIP2 Country or City, or one written for tests) is read with
``maxminddb``, the reader under MaxMind's ``geoip2`` package, memory-mapped; a lookup is one C
call. A name is resolved with the escaper's resolver and its first address decides (the next
escaper resolves again, from the same cache). The first rule that matches the record's
``country.iso_code`` (or ``registered_country.iso_code`` when the record has no country) or
``continent.code`` wins; anything else, and addresses the database does not know, go to
``default``. A resolver failure is answered as such (502/504), not routed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import maxminddb

from arcus.config.escaper.route_geoip import RouteGeoipEscaperConfig
from arcus.errors import ErrorCode, EscapeError
from arcus.escape.base import Connected, Escaper
from arcus.resolve.base import Resolver, ip_literal


def open_mmdb(path: str) -> Any:
    """The reader; raises OSError, or ValueError for a file that is not a MaxMind DB."""
    try:
        return maxminddb.open_database(path, maxminddb.MODE_AUTO)
    except maxminddb.InvalidDatabaseError as exc:
        raise ValueError(f"{path} is not a MaxMind DB (MMDB) file: {exc}") from None


def place_of(record: Any) -> tuple[str | None, str | None]:
    """(country ISO code, continent code) of an MMDB record (either may be None)."""
    if not isinstance(record, dict):
        return None, None
    country = None
    for key in ("country", "registered_country"):
        part = record.get(key)
        if isinstance(part, dict) and isinstance(part.get("iso_code"), str):
            country = part["iso_code"].upper()
            break
    continent = record.get("continent")
    code = continent.get("code") if isinstance(continent, dict) else None
    return country, code.upper() if isinstance(code, str) else None


class RouteGeoipEscaper(Escaper):
    type_name = "route_geoip"
    config: RouteGeoipEscaperConfig

    def __init__(self, config: RouteGeoipEscaperConfig, escapers: dict[str, Escaper], resolver: Resolver, reader: Any) -> None:
        super().__init__(config)
        rules = config.rules
        self.routes: tuple[Escaper, ...] = tuple(escapers[r.escaper] for r in rules)
        self.countries = tuple(frozenset(r.countries) for r in rules)
        self.continents = tuple(frozenset(r.continents) for r in rules)
        self.default = escapers[config.default]
        self.resolver = resolver
        self.reader = reader

    def route_address(self, address: str) -> tuple[int, Escaper, str | None, str | None]:
        """(rule index or -1, escaper, country, continent) for an IP address."""
        try:
            record = self.reader.get(address)
        except ValueError:  # not an address the database's IP version holds
            record = None
        country, continent = place_of(record)
        for i, escaper in enumerate(self.routes):
            if (country is not None and country in self.countries[i]) or (
                continent is not None and continent in self.continents[i]
            ):
                return i, escaper, country, continent
        return -1, self.default, country, continent

    async def route(self, host: str) -> tuple[int, Escaper, str | None, str | None]:
        literal = ip_literal(host)
        address = literal if literal is not None else (await self.resolver.resolve(host))[0]
        return self.route_address(address)

    async def connect(
        self, host, port, client_ip, protocol_factory, *, timeout, ssl=None, check=None, user=None
    ) -> Connected:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            _, escaper, _, _ = await asyncio.wait_for(self.route(host), timeout)
        except TimeoutError:
            raise EscapeError(
                f"resolving {host} to route it by country took longer than {timeout:g}s",
                code=ErrorCode.RESOLVE_TIMEOUT,
            ) from None
        return await escaper.connect(
            host,
            port,
            client_ip,
            protocol_factory,
            timeout=max(0.001, deadline - loop.time()),
            ssl=ssl,
            check=check,
            user=user,
        )

    @property
    def next_escapers(self) -> tuple[Escaper, ...]:
        return tuple(dict.fromkeys(self.routes + (self.default,)))

    def info(self) -> dict:
        meta = getattr(self.reader, "metadata", None)
        out = {**super().info(), "mmdb": self.config.mmdb}
        if callable(meta):
            m = meta()
            out["database_type"] = m.database_type
            out["build_epoch"] = m.build_epoch
        return out
