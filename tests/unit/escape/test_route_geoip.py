"""route_geoip reads its MMDB through geoip2: the database type is checked when the profile is
loaded (file:line at the ``mmdb:`` value) and again when the escaper is built; Country and City
databases are read with the Reader's matching lookup. The databases are written by mmdb-writer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from arcus.config.loader import parse_profile
from arcus.errors import ConfigError, OperatorError
from arcus.escape import build_escapers
from tests.unit.escape.peers import FixedResolver
from tests.unit.escape.test_routes import HEAD

GEO = """\
  - name: eu
    type: direct_fixed
    bind: 127.0.0.51
  - name: geo
    type: route_geoip
    mmdb: geo.mmdb
    rules:
      - countries: [JP]
        escaper: deny
      - continents: [EU, OC]
        escaper: eu
    default: direct
"""
MMDB_LINE = 19  # the line of "mmdb: geo.mmdb" in HEAD + GEO (the escaper's name is two lines up)


def write(path: Path, database_type: str, networks: dict[str, dict]) -> Path:
    writer = MMDBWriter(ip_version=6, database_type=database_type, ipv4_compatible=True)
    for net, record in networks.items():
        writer.insert_network(IPSet([net]), record)
    writer.to_db_file(str(path))
    return path


PLACES = {
    "127.0.0.2/32": {"country": {"iso_code": "DE"}, "continent": {"code": "EU"}},
    "127.0.0.3/32": {"country": {"iso_code": "JP"}, "continent": {"code": "AS"}},
    "127.0.0.4/32": {"continent": {"code": "OC"}},  # a continent only
    "127.0.0.5/32": {"registered_country": {"iso_code": "jp"}},  # no country: the registered one
    "::1/128": {"country": {"iso_code": "FR"}, "continent": {"code": "EU"}},
}


def load(tmp: Path):
    source = tmp / "p.yaml"
    source.write_text(HEAD + GEO)
    return parse_profile(source.read_text(), str(source)), str(source)


def routes(tmp: Path) -> dict[str, tuple[str, str | None, str | None]]:
    profile, source = load(tmp)
    esc = build_escapers(profile.escapers, {"system": FixedResolver({})}, frozenset(), source)["geo"]

    async def main():
        out = {}
        for host in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.9", "::1", "::2"):
            _, escaper, country, continent = await esc.route(host)
            out[host] = (escaper.name, country, continent)
        return out

    return asyncio.run(main())


EXPECTED = {
    "127.0.0.2": ("eu", "DE", "EU"),  # by continent (no country rule for DE)
    "127.0.0.3": ("deny", "JP", "AS"),  # by country, before the continent rule
    "127.0.0.4": ("eu", None, "OC"),  # continent only
    "127.0.0.5": ("deny", "JP", None),  # the registered country when there is no country
    "127.0.0.9": ("direct", None, None),  # unknown address: default
    "::1": ("eu", "FR", "EU"),
    "::2": ("direct", None, None),
}


@pytest.mark.parametrize("database_type", ["GeoLite2-Country", "GeoIP2-City", "GeoIP2-Enterprise"])
def test_country_continent_and_unknown_addresses_from_each_database_type(tmp_path, database_type):
    write(tmp_path / "geo.mmdb", database_type, PLACES)
    assert routes(tmp_path) == EXPECTED


def test_an_ipv4_only_database_sends_ipv6_addresses_to_the_default(tmp_path):
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["127.0.0.2/32"]), PLACES["127.0.0.2/32"])
    writer.to_db_file(str(tmp_path / "geo.mmdb"))
    got = routes(tmp_path)
    assert got["127.0.0.2"] == ("eu", "DE", "EU")
    assert got["::1"] == ("direct", None, None)


def test_a_database_of_another_type_is_refused_at_load_with_file_and_line(tmp_path):
    write(tmp_path / "geo.mmdb", "GeoLite2-ASN", {"127.0.0.2/32": {"autonomous_system_number": 64500}})
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    mmdb = tmp_path / "geo.mmdb"
    assert [str(i) for i in info.value.issues] == [
        f"{tmp_path}/p.yaml:{MMDB_LINE}: escaper \"geo\": mmdb: {mmdb} is a 'GeoLite2-ASN' database, which has no "
        "country records; route_geoip needs a Country, City or Enterprise database (e.g. GeoLite2-Country.mmdb)"
    ]


def test_a_file_that_is_not_an_mmdb_is_refused_at_load_with_file_and_line(tmp_path):
    (tmp_path / "geo.mmdb").write_bytes(b"not a database")
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    (issue,) = info.value.issues
    assert str(issue).startswith(f"{tmp_path}/p.yaml:{MMDB_LINE}: escaper \"geo\": mmdb: {tmp_path}/geo.mmdb is not a MaxMind DB (MMDB) file")


def test_a_database_replaced_after_the_load_is_refused_when_built(tmp_path):
    write(tmp_path / "geo.mmdb", "GeoLite2-Country", PLACES)
    profile, source = load(tmp_path)
    write(tmp_path / "geo.mmdb", "GeoLite2-ASN", {"127.0.0.2/32": {"autonomous_system_number": 64500}})
    with pytest.raises(OperatorError) as info:
        build_escapers(profile.escapers, {"system": FixedResolver({})}, frozenset(), source)
    assert info.value.message.startswith(f'{source}:{MMDB_LINE - 2}: escaper "geo": ')
    assert "'GeoLite2-ASN' database, which has no country records" in info.value.message


def test_config_check_names_the_line_of_a_database_of_another_type(tmp_path):
    from tests.unit.cli.harness import invoke

    write(tmp_path / "geo.mmdb", "GeoIP2-ISP", {"127.0.0.2/32": {"isp": "Example"}})
    source = tmp_path / "p.yaml"
    source.write_text(HEAD + GEO)
    result = invoke("config", "check", str(source))
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        f"{source}:{MMDB_LINE}: escaper \"geo\": mmdb: {tmp_path}/geo.mmdb is a 'GeoIP2-ISP' database, which has no "
        "country records; route_geoip needs a Country, City or Enterprise database (e.g. GeoLite2-Country.mmdb)\n"
    )
    write(tmp_path / "geo.mmdb", "GeoLite2-City", PLACES)
    ok = invoke("config", "check", str(source))
    assert ok.exit_code == 0 and ok.stdout.startswith(f"{source}: ok")
