"""``type: route_geoip``: choose the next escaper by where the destination address is.

```yaml
- name: geo
  type: route_geoip
  mmdb: /var/lib/arcus/GeoLite2-Country.mmdb
  resolver: system
  rules:
    - countries: [DE, FR]
      escaper: eu_egress
    - continents: [AS]
      escaper: asia_egress
  default: direct
```

``mmdb`` is a MaxMind DB file whose ``database_type`` names a Country, City or Enterprise
database (GeoLite2/GeoIP2, or one written for tests), relative to the profile's directory; it
is read with MaxMind's ``geoip2`` (``maxminddb`` beneath it). A file that is not an MMDB, or an
MMDB of another type (ASN, ISP, Anonymous-IP...), is refused here, ``file:line: ...`` at the
``mmdb:`` value, so ``arcus config check`` and a reload both catch it. A destination name is
resolved with ``resolver`` (the first address decides); the first rule whose country or
continent matches wins; ``default`` takes the rest, and addresses the database does not know.
The file is opened again when the escaper is built (on start and reload).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from arcus.config.escaper._common import nested_reference, profile_path, read_rules, take_optional
from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import EscaperConfig
from arcus.config.yamlnodes import BadValue, Section, read_list, read_str, scalar_text

if TYPE_CHECKING:
    import geoip2.database
    import geoip2.models

TYPE = "route_geoip"
KEYS = ("mmdb", "resolver", "rules", "default")
RULE_KEYS = ("countries", "continents", "escaper")
CONTINENTS = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")
# database_type word -> the geoip2 Reader method whose model carries country and continent; the
# Reader refuses a method whose word is not in the database's type, so the choice is made once.
LOOKUPS = (("Enterprise", "enterprise"), ("City", "city"), ("Country", "country"))

GeoLookup = Callable[[str], "geoip2.models.Country"]


def open_geo_database(path: str) -> tuple[geoip2.database.Reader, GeoLookup]:
    """geoip2's Reader on ``path`` (memory-mapped) and its country/city/enterprise lookup.

    Raises OSError for a file that cannot be read, ValueError (one sentence naming the file)
    for a file that is not a MaxMind DB or whose database type carries no country records.
    geoip2 is imported here, not with the module: loading a profile without route_geoip (and
    every CLI command) does not pay for it.
    """
    import geoip2.database
    from maxminddb import InvalidDatabaseError  # what geoip2's Reader raises for a non-MMDB file

    try:
        reader = geoip2.database.Reader(path)
    except InvalidDatabaseError as exc:
        raise ValueError(f"{path} is not a MaxMind DB (MMDB) file: {exc}") from None
    db_type = reader.metadata().database_type
    for word, method in LOOKUPS:
        if word in db_type:
            return reader, getattr(reader, method)
    reader.close()
    raise ValueError(
        f"{path} is a {db_type!r} database, which has no country records; route_geoip needs a "
        "Country, City or Enterprise database (e.g. GeoLite2-Country.mmdb)"
    )


@dataclass(frozen=True, slots=True)
class GeoRule:
    escaper: str
    countries: tuple[str, ...] = ()
    continents: tuple[str, ...] = ()
    line: int | None = None


@dataclass(frozen=True, slots=True)
class RouteGeoipEscaperConfig(EscaperConfig):
    mmdb: str = ""  # absolute path
    rules: tuple[GeoRule, ...] = ()
    default: str = ""

    @property
    def next_escapers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([r.escaper for r in self.rules] + [self.default]))


def read_country(node) -> str:
    text = scalar_text(node, "a country code such as DE")
    if len(text) != 2 or not text.isascii() or not text.isalpha():
        raise BadValue(f'"{text}" is not a two-letter country code (ISO 3166-1 alpha-2, e.g. DE)')
    return text.upper()


def read_continent(node) -> str:
    text = scalar_text(node, "a continent code such as EU").upper()
    if text not in CONTINENTS:
        raise BadValue(f'"{text}" is not a continent code; use one of {", ".join(CONTINENTS)}')
    return text


def parse(sec: ObjectSection, ctx: Context, name: str) -> RouteGeoipEscaperConfig | None:
    mmdb = sec.need("mmdb", read_str)
    if mmdb is not None:
        mmdb = profile_path(ctx, mmdb)
        if not os.path.isfile(mmdb):
            sec.error(f"mmdb: {mmdb} does not exist or is not a file", sec.value_line("mmdb"))
        else:
            try:
                open_geo_database(mmdb)[0].close()
            except (OSError, ValueError) as exc:
                sec.error(f"mmdb: {exc}", sec.value_line("mmdb"))
    resolver = sec.reference("resolver", "resolver", required=False)

    def rule(sub: Section, index: int) -> GeoRule | None:
        countries = take_optional(sub, "countries", read_list(read_country), ())
        continents = take_optional(sub, "continents", read_list(read_continent), ())
        escaper = nested_reference(sec, sub, "escaper")
        if sub.ok and not countries and not continents:
            sub.error('a rule needs "countries" or "continents" (or both), each a non-empty list')
        if not sub.ok or escaper is None:
            return None
        return GeoRule(escaper=escaper, countries=countries, continents=continents, line=sub.line)

    rules = read_rules(sec, "rules", RULE_KEYS, rule, required=True)
    default = sec.reference("default", "escaper", required=True)
    if not sec.ok or default is None or mmdb is None:
        return None
    return RouteGeoipEscaperConfig(
        name=name, type=TYPE, mmdb=mmdb, resolver=resolver, rules=rules, default=default, line=sec.key_line("name")
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
