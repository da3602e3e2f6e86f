"""route_upstream, route_client, route_failover and route_geoip: built from a profile, routing
real connections to real loopback listeners."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from arcus.config.loader import parse_profile
from arcus.errors import ConfigError, EscapeError, OperatorError
from arcus.escape import build_escapers
from arcus.testing.wait import async_wait_until
from tests.unit.escape.peers import FixedResolver, Listener, Recorder, closed_port, hanging_port

HEAD = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:3128
    escaper: direct
resolvers:
  - name: system
    type: system
escapers:
  - name: direct
    type: direct_fixed
  - name: deny
    type: dummy_deny
"""


def build(escapers: str, table: dict[str, list[str]] | None = None, tmp: Path | None = None):
    text = HEAD + escapers
    source = str(tmp / "p.yaml") if tmp is not None else "p.yaml"
    if tmp is not None:
        Path(source).write_text(text)
    profile = parse_profile(text, source)
    return build_escapers(profile.escapers, {"system": FixedResolver(table or {})}, frozenset(), source)


ROUTE = """\
  - name: via_a
    type: direct_fixed
    bind: 127.0.0.31
  - name: via_b
    type: direct_fixed
    bind: 127.0.0.32
  - name: route
    type: route_upstream
    rules:
      - hosts: [exact.example, .child.example]
        escaper: via_a
      - hosts: ["~(www|cdn)[0-9]*\\\\.regex\\\\.example", "*.strict.example"]
        escaper: via_b
      - nets: [127.0.0.0/8, "::1/128"]
        escaper: deny
      - hosts: [exact.example]
        escaper: via_b
    fallback: direct
"""


def test_route_upstream_matches_exact_child_regex_subnet_first_match_wins():
    esc = build(ROUTE)["route"]
    pick = lambda host: esc.route(host)[1].name  # noqa: E731
    assert pick("exact.example") == "via_a"  # rule 0 before rule 3
    assert pick("EXACT.example.") == "via_a"
    assert pick("child.example") == "via_a" and pick("a.b.child.example") == "via_a"
    assert pick("notchild.example") == "direct"
    assert pick("cdn12.regex.example") == "via_b" and pick("api.regex.example") == "direct"
    assert pick("x.strict.example") == "via_b" and pick("strict.example") == "direct"
    assert pick("127.9.9.9") == "deny" and pick("::1") == "deny" and pick("[::1]") == "deny"
    assert pick("10.0.0.1") == "direct"  # no rule: fallback
    assert pick("127.0.0.1.nip.example") == "direct"  # a name is not an address


def test_route_upstream_passes_check_and_user_down_to_the_connection():
    async def main():
        async with Listener("127.0.0.1") as origin:
            esc = build(ROUTE, {"svc.child.example": ["127.0.0.1"]})["route"]
            rec = Recorder()
            conn = await esc.connect("svc.child.example", origin.port, "127.0.0.1", lambda: rec, timeout=2)
            await rec.read_until(b"\n127.0.0.31")
            conn.transport.close()
            with pytest.raises(EscapeError) as info:
                await esc.connect("svc.child.example", origin.port, "127.0.0.1", Recorder, timeout=2,
                                  check=lambda a: "rule 3 blocks " + a, user="alice")
            return origin.peers, info.value

    peers, refused = asyncio.run(main())
    assert peers == ["127.0.0.31"]  # left through via_a, bound to its address
    assert refused.status == 403 and "rule 3 blocks 127.0.0.1" in refused.message


def test_route_upstream_refuses_a_regex_too_slow_for_hostile_names(tmp_path):
    escapers = """\
  - name: route
    type: route_upstream
    rules:
      - hosts: ["~(a+)+b"]
        escaper: deny
    fallback: direct
"""
    with pytest.raises(OperatorError) as info:
        build(escapers, tmp=tmp_path)
    assert info.value.message.startswith(f'{tmp_path}/p.yaml:14: escaper "route": ')
    assert "repeat inside a repeat" in info.value.message and info.value.hint


CLIENT = """\
  - name: via_a
    type: direct_fixed
    bind: 127.0.0.31
  - name: by_client
    type: route_client
    rules:
      - clients: [10.1.0.0/16, "2001:db8::/32"]
        escaper: via_a
      - users: [alice]
        escaper: deny
    fallback: direct
"""


def test_route_client_by_address_and_by_user():
    esc = build(CLIENT)["by_client"]
    pick = lambda ip, user=None: esc.route(ip, user)[1].name  # noqa: E731
    assert pick("10.1.2.3") == "via_a" and pick("::ffff:10.1.2.3") == "via_a" and pick("2001:db8::5") == "via_a"
    assert pick("10.2.0.1") == "direct"
    assert pick("10.2.0.1", "alice") == "deny" and pick("10.2.0.1", "bob") == "direct"
    assert pick("10.1.2.3", "alice") == "via_a"  # first match wins
    assert esc.varies_by_client


def test_route_client_user_reaches_deny_through_connect():
    async def main():
        esc = build(CLIENT)["by_client"]
        with pytest.raises(EscapeError) as info:
            await esc.connect("x.example", 80, "10.9.9.9", Recorder, timeout=1, user="alice")
        return info.value

    assert asyncio.run(main()).code == "denied"


FAILOVER = """\
  - name: primary
    type: direct_fixed
    bind: 127.0.0.41
  - name: standby
    type: direct_fixed
    bind: 127.0.0.42
  - name: fo
    type: route_failover
    primary: primary
    standby: standby
    fallback_delay: 300ms
"""


def test_failover_uses_the_primary_while_it_connects():
    async def main():
        async with Listener("127.0.0.1") as origin:
            esc = build(FAILOVER, {"svc.example": ["127.0.0.1"]})["fo"]
            conn = await esc.connect("svc.example", origin.port, "127.0.0.1", Recorder, timeout=2)
            conn.transport.close()
            await async_wait_until(lambda: origin.peers, what="the origin to see the connection")
            return origin.peers, conn.via

    peers, via = asyncio.run(main())
    assert peers == ["127.0.0.41"] and via == "primary"


def test_failover_to_the_standby_at_once_when_the_primary_is_refused():
    escapers = FAILOVER.replace("    bind: 127.0.0.41\n", "    bind: 127.0.0.41\n    resolver: system\n")
    escapers = escapers.replace("  - name: fo\n", "  - name: dead\n    type: proxy_http\n    proxy: 127.0.0.1:{dead}\n  - name: fo\n")
    escapers = escapers.replace("    primary: primary\n", "    primary: dead\n")

    async def main():
        async with Listener("127.0.0.1") as origin:
            esc = build(escapers.format(dead=closed_port()), {"svc.example": ["127.0.0.1"]})["fo"]
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            conn = await esc.connect("svc.example", origin.port, "127.0.0.1", Recorder, timeout=2)
            took = loop.time() - t0
            conn.transport.close()
            await async_wait_until(lambda: origin.peers, what="the origin to see the connection")
            return origin.peers, took

    peers, took = asyncio.run(main())
    assert peers == ["127.0.0.42"] and took < 0.25  # no wait for the fallback delay


def test_failover_to_the_standby_after_the_delay_when_the_primary_hangs():
    async def main():
        with hanging_port("127.0.0.2") as port:
            server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.3", port)
            try:
                escapers = FAILOVER.replace("    bind: 127.0.0.41\n", "    bind: 127.0.0.2\n").replace(
                    "    bind: 127.0.0.42\n", "    bind: 127.0.0.3\n"
                )
                # primary reaches "hang" (127.0.0.2), standby "ok" (127.0.0.3): names per escaper
                esc = build(escapers, {"svc.example": ["127.0.0.2", "127.0.0.3"]})["fo"]
                esc.primary.resolver.table["svc.example"] = ["127.0.0.2"]
                esc.standby.resolver = type(esc.primary.resolver)({"svc.example": ["127.0.0.3"]})
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                conn = await esc.connect("svc.example", port, "127.0.0.1", Recorder, timeout=3)
                took = loop.time() - t0
                conn.transport.close()
                return conn.via, took
            finally:
                server.close()
                await server.wait_closed()

    via, took = asyncio.run(main())
    assert via == "standby" and 0.28 <= took < 1.5


def test_failover_does_not_retry_a_policy_refusal_and_reports_both_failures():
    escapers = FAILOVER.replace("    primary: primary\n", "    primary: deny\n")

    async def main():
        esc = build(escapers, {"svc.example": ["127.0.0.1"]})["fo"]
        with pytest.raises(EscapeError) as denied:
            await esc.connect("svc.example", 80, "127.0.0.1", Recorder, timeout=2)
        both = build(FAILOVER, {"svc.example": ["127.0.0.1"]})["fo"]
        with pytest.raises(EscapeError) as failed:
            await both.connect("svc.example", closed_port(), "127.0.0.1", Recorder, timeout=2)
        return denied.value, failed.value

    denied, failed = asyncio.run(main())
    assert denied.code == "denied" and denied.side == "forbidden"
    assert failed.status == 502
    assert failed.message.startswith("primary primary: cannot connect") and "; standby standby: cannot connect" in failed.message


def write_mmdb(path: Path) -> str:
    """A country database for loopback: 127.0.0.2 in Germany, 127.0.0.3 in Japan, 127.0.0.4
    with a continent only; IPv6 ::1 in France."""
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True)
    writer.insert_network(IPSet(["127.0.0.2/32"]), {"country": {"iso_code": "DE"}, "continent": {"code": "EU"}})
    writer.insert_network(IPSet(["127.0.0.3/32"]), {"country": {"iso_code": "JP"}, "continent": {"code": "AS"}})
    writer.insert_network(IPSet(["127.0.0.4/32"]), {"continent": {"code": "OC"}})
    writer.insert_network(IPSet(["::1/128"]), {"country": {"iso_code": "FR"}, "continent": {"code": "EU"}})
    writer.to_db_file(str(path))
    return str(path)


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


def test_route_geoip_by_country_then_continent_then_default(tmp_path):
    write_mmdb(tmp_path / "geo.mmdb")

    async def main():
        esc = build(GEO, {"de.example": ["127.0.0.2"], "jp.example": ["127.0.0.3"]}, tmp=tmp_path)["geo"]
        out = {}
        for host in ("de.example", "jp.example", "127.0.0.4", "127.0.0.9", "::1"):
            index, escaper, country, continent = await esc.route(host)
            out[host] = (escaper.name, country, continent)
        with pytest.raises(EscapeError) as unresolved:
            await esc.route("nowhere.example")
        async with Listener("127.0.0.2") as origin:  # "in Germany": reached through "eu"
            rec = Recorder()
            conn = await esc.connect("de.example", origin.port, "127.0.0.1", lambda: rec, timeout=2)
            await rec.read_until(b"\n127.0.0.51")
            conn.transport.close()
        return out, unresolved.value

    out, unresolved = asyncio.run(main())
    assert out == {
        "de.example": ("eu", "DE", "EU"),
        "jp.example": ("deny", "JP", "AS"),
        "127.0.0.4": ("eu", None, "OC"),
        "127.0.0.9": ("direct", None, None),
        "::1": ("eu", "FR", "EU"),
    }
    assert unresolved.code == "resolve_failed"


def test_a_loop_among_escapers_is_refused_by_the_loader_and_when_building():
    escapers = """\
  - name: a
    type: route_failover
    primary: b
    standby: direct
  - name: b
    type: route_upstream
    rules:
      - hosts: [x.example]
        escaper: a
    fallback: direct
"""
    with pytest.raises(ConfigError, match="cycle a -> b -> a"):
        build(escapers)
    # build_escapers refuses it too, for configs that did not come through the loader
    from arcus.config.escaper.route_failover import RouteFailoverEscaperConfig
    from arcus.config.escaper.route_upstream import RouteUpstreamEscaperConfig, UpstreamRule
    from arcus.config.schema import EscaperConfig

    configs = [
        EscaperConfig(name="direct", type="dummy_deny"),
        RouteFailoverEscaperConfig(name="a", type="route_failover", primary="b", standby="direct"),
        RouteUpstreamEscaperConfig(name="b", type="route_upstream", rules=(UpstreamRule("a", ("x.example",)),), fallback="direct"),
    ]
    with pytest.raises(OperatorError, match="loop: a -> b -> a"):
        build_escapers(configs, {}, frozenset())


def test_an_escaper_is_built_only_from_its_own_config_class() -> None:
    """The registry hands each escaper type the config class it reads; a config of the base
    class (or another type's) under that type name is refused, naming both classes."""
    from arcus.config.escaper.route_failover import RouteFailoverEscaperConfig
    from arcus.config.schema import EscaperConfig

    wrong = [EscaperConfig(name="direct", type="dummy_deny"), EscaperConfig(name="a", type="route_failover")]
    with pytest.raises(TypeError, match="escaper a of type route_failover needs a RouteFailoverEscaperConfig, got EscaperConfig"):
        build_escapers(wrong, {}, frozenset())
    right = [
        EscaperConfig(name="direct", type="dummy_deny"),
        RouteFailoverEscaperConfig(name="a", type="route_failover", primary="direct", standby="direct", fallback_delay=0.5),
    ]
    built = build_escapers(right, {}, frozenset())
    assert built["a"].next_escapers == (built["direct"], built["direct"])
    assert built["a"].delay == 0.5
