"""`route_geoip`: the next escaper by the country or continent of the destination's address.

The MMDB (MaxMind DB: GeoLite2/GeoIP2 Country, City or Enterprise, or one written for tests) is
read with MaxMind's ``geoip2`` Reader (``maxminddb`` beneath it, memory-mapped); the database
type is checked when the file is opened (``open_geo_database``) and the lookup is the Reader's
country, city or enterprise method accordingly. A name is resolved with the escaper's resolver
and its first address decides (the next escaper resolves again, from the same cache). The first
rule that matches the record's country ISO code (or the registered country's, when the record has
no country) or continent code wins; anything else, and addresses the database does not know, go
to ``default``. A resolver failure is answered as such (502/504), not routed.
"""

from __future__ import annotations

import asyncio

import geoip2.database
import geoip2.errors
import geoip2.models

from arcus.config.escaper.route_geoip import GeoLookup, RouteGeoipEscaperConfig, open_geo_database
from arcus.errors import ErrorCode, EscapeError
from arcus.escape.base import Connected, Escaper
from arcus.resolve.base import Resolver, ip_literal


def open_mmdb(path: str) -> tuple[geoip2.database.Reader, GeoLookup]:
    """The reader and its lookup; raises OSError, or ValueError for a file that is not a
    MaxMind DB or not a Country/City/Enterprise one (``arcus.config.escaper.route_geoip``)."""
    return open_geo_database(path)


def place_of(model: geoip2.models.Country | None) -> tuple[str | None, str | None]:
    """(country ISO code, continent code) of a geoip2 model (either may be None)."""
    if model is None:
        return None, None
    country = model.country.iso_code or model.registered_country.iso_code
    continent = model.continent.code
    return (country.upper() if country else None), (continent.upper() if continent else None)


class RouteGeoipEscaper(Escaper):
    type_name = "route_geoip"
    config: RouteGeoipEscaperConfig

    def __init__(
        self,
        config: RouteGeoipEscaperConfig,
        escapers: dict[str, Escaper],
        resolver: Resolver,
        database: tuple[geoip2.database.Reader, GeoLookup],
    ) -> None:
        super().__init__(config)
        rules = config.rules
        self.routes: tuple[Escaper, ...] = tuple(escapers[r.escaper] for r in rules)
        self.countries = tuple(frozenset(r.countries) for r in rules)
        self.continents = tuple(frozenset(r.continents) for r in rules)
        self.default = escapers[config.default]
        self.resolver = resolver
        self.reader, self.lookup = database

    def route_address(self, address: str) -> tuple[int, Escaper, str | None, str | None]:
        """(rule index or -1, escaper, country, continent) for an IP address."""
        try:
            model: geoip2.models.Country | None = self.lookup(address)
        except geoip2.errors.AddressNotFoundError:
            model = None
        except ValueError:  # not an address the database's IP version holds
            model = None
        country, continent = place_of(model)
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
        m = self.reader.metadata()
        return {**super().info(), "mmdb": self.config.mmdb, "database_type": m.database_type, "build_epoch": m.build_epoch}
