"""The escaper types' profile keys: what loads, and one bad file per error with its file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcus.config import check_profile, load_profile
from arcus.config.dump import profile_to_dict
from arcus.config.escaper.graph import build_order, edges, find_cycle
from arcus.config.loader import parse_profile

HEAD = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:3128
    escaper: {entry}
resolvers:
  - name: system
    type: system
escapers:
  - name: direct
    type: direct_fixed
  - name: deny
    type: dummy_deny
"""


def write(tmp_path: Path, escapers: str, entry: str = "direct") -> str:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD.format(entry=entry) + escapers)
    return str(path)


def issues(tmp_path: Path, escapers: str, entry: str = "direct") -> list[str]:
    path = write(tmp_path, escapers, entry)
    return [str(i).replace(path, "P", 1) for i in check_profile(path)]


RICH = """\
  - name: float
    type: direct_float
    addresses: [127.0.0.21, "::1"]
    happy_eyeballs_delay: 100ms
  - name: up_http
    type: proxy_http
    proxy: 127.0.0.1:8888
    username: arcus
    password: s3cret
  - name: up_https
    type: proxy_https
    proxy: proxy.example.net:8443
    tls_name: proxy.example.net
  - name: up_socks
    type: proxy_socks5
    proxy: "[::1]:1080"
  - name: route
    type: route_upstream
    rules:
      - hosts: [.corp.example, "~(www|cdn)[0-9]*\\\\.example\\\\.net"]
        escaper: up_http
      - nets: [10.0.0.0/8]
        escaper: up_socks
    fallback: direct
  - name: clients
    type: route_client
    rules:
      - clients: [10.1.0.0/16]
        escaper: float
      - users: [alice]
        escaper: route
    fallback: direct
  - name: failover
    type: route_failover
    primary: up_http
    standby: direct
    fallback_delay: 500ms
  - name: pool
    type: route_select
    next:
      - escaper: up_http
        weight: 3
      - escaper: up_socks
      - escaper: direct
        probe: 127.0.0.1:80
    pick: consistent_hash
    hash_by: user
    health_interval: 5s
    health_timeout: 1s
    max_failures: 2
    retry_after: 30s
"""


def test_every_type_loads_with_its_keys(tmp_path):
    profile = load_profile(write(tmp_path, RICH, entry="pool"))
    by = {e.name: e for e in profile.escapers}
    assert by["float"].addresses == ("127.0.0.21", "::1") and by["float"].happy_eyeballs_delay == 0.1
    assert by["direct"].happy_eyeballs_delay == 0.25
    assert (by["up_http"].proxy, by["up_http"].username, by["up_http"].password) == ("127.0.0.1:8888", "arcus", "s3cret")
    assert "s3cret" not in repr(by["up_http"])
    assert by["up_http"].resolver is None  # an IP proxy needs no resolver
    assert by["up_https"].resolver == "system"  # a name does: the only one is taken
    assert by["up_socks"].proxy == "[::1]:1080"
    route = by["route"]
    assert [(r.hosts, r.nets, r.escaper) for r in route.rules] == [
        ((".corp.example", "~(www|cdn)[0-9]*\\.example\\.net"), (), "up_http"),
        ((), ("10.0.0.0/8",), "up_socks"),
    ]
    assert route.next_escapers == ("up_http", "up_socks", "direct")
    assert [(r.clients, r.users) for r in by["clients"].rules] == [(("10.1.0.0/16",), ()), ((), ("alice",))]
    assert (by["failover"].primary, by["failover"].standby, by["failover"].fallback_delay) == ("up_http", "direct", 0.5)
    pool = by["pool"]
    assert [(n.escaper, n.weight, n.probe) for n in pool.next] == [
        ("up_http", 3, None), ("up_socks", 1, None), ("direct", 1, "127.0.0.1:80"),
    ]
    assert (pool.pick, pool.hash_by, pool.health_interval, pool.health_timeout, pool.max_failures, pool.retry_after) == (
        "consistent_hash", "user", 5.0, 1.0, 2, 30.0,
    )


def test_effective_profile_round_trips(tmp_path):
    profile = load_profile(write(tmp_path, RICH, entry="pool"))
    import yaml

    again = parse_profile(yaml.safe_dump(profile_to_dict(profile, reveal_secrets=True)), "again.yaml")
    shown = yaml.safe_dump(profile_to_dict(profile))
    secrets = [e.password for e in profile.escapers if getattr(e, "password", None)]
    assert secrets and not any(pw in shown for pw in secrets)  # `config show` never prints them

    def strip(p):
        import dataclasses

        def clean(obj):
            if dataclasses.is_dataclass(obj):
                return {f.name: clean(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "line"}
            if isinstance(obj, tuple):
                return tuple(clean(x) for x in obj)
            return obj

        return [clean(e) for e in p.escapers]

    assert strip(again) == strip(profile)


@pytest.mark.parametrize(
    "escapers, expected",
    [
        (
            """\
  - name: up
    type: proxy_http
    proxy: proxy.example.net
""",
            ['P:16: escaper "up": proxy: invalid address "proxy.example.net"; write "host:port" with an IP address '
             'or a DNS name, e.g. "proxy.example.net:3128" or "[2001:db8::1]:1080"'],
        ),
        (
            """\
  - name: up
    type: proxy_socks5
    proxy: 127.0.0.1:1080
    username: bob
""",
            ['P:17: escaper "up": username is set but password is not; set both, or neither'],
        ),
        (
            """\
  - name: up
    type: proxy_https
    proxy: 127.0.0.1:443
    ca_file: missing.pem
    tls_nam: x
""",
            ['P:17: escaper "up": ca_file: {dir}/missing.pem does not exist or is not a file',
             'P:18: escaper "up": unknown key "tls_nam"; did you mean "tls_name"?'],
        ),
        (
            """\
  - name: r
    type: route_upstream
    rules:
      - hosts: [a.example]
        escaper: nowhere
      - escaper: deny
      - nets: [10.0.0.0/33]
        escaper: deny
        next: direct
""",
            ['P:14: escaper "r": missing key "fallback"',
             'P:18: escaper "r": escaper "nowhere" is not defined; defined escapers: direct, deny, r',
             'P:19: escaper "r": rules[1]: a rule needs "hosts" or "nets" (or both), each a non-empty list',
             'P:20: escaper "r": rules[2]: nets: "10.0.0.0/33" is not a CIDR network (e.g. 10.0.0.0/8 or fd00::/8)',
             'P:22: escaper "r": rules[2]: unknown key "next"; did you mean "nets"?'],
        ),
        (
            """\
  - name: r
    type: route_upstream
    rules:
      - hosts: ["~(unclosed"]
        escaper: deny
    fallback: nowhere
""",
            ['P:17: escaper "r": rules[0]: hosts: bad regex \'(unclosed\': missing ), unterminated subpattern at position 0',
             'P:19: escaper "r": escaper "nowhere" is not defined; defined escapers: direct, deny, r'],
        ),
        (
            """\
  - name: f
    type: route_failover
    primary: direct
    standby: direct
""",
            ['P:17: escaper "f": standby is the primary "direct"; name a different escaper'],
        ),
        (
            """\
  - name: g
    type: route_geoip
    mmdb: nowhere.mmdb
    rules:
      - countries: [DEU]
        escaper: deny
      - continents: [XX]
        escaper: deny
    default: direct
""",
            ['P:16: escaper "g": mmdb: {dir}/nowhere.mmdb does not exist or is not a file',
             'P:18: escaper "g": rules[0]: countries: "DEU" is not a two-letter country code (ISO 3166-1 alpha-2, e.g. DE)',
             'P:20: escaper "g": rules[1]: continents: "XX" is not a continent code; use one of AF, AN, AS, EU, NA, OC, SA'],
        ),
        (
            """\
  - name: pool
    type: route_select
    next:
      - escaper: direct
      - escaper: direct
        weight: 0
    pick: random
    health_interval: 1s
    health_timeout: 2s
""",
            ['P:18: escaper "pool": next[1]: escaper "direct" is already in the pool (line 17)',
             'P:19: escaper "pool": next[1]: weight: must be at least 1, got 0',
             'P:20: escaper "pool": pick: expected one of round_robin, weighted_round_robin, consistent_hash, got "random"',
             'P:22: escaper "pool": health_timeout must be shorter than health_interval'],
        ),
        (
            """\
  - name: pool
    type: route_select
    next:
      - escaper: direct
        weight: 2
    hash_by: user
""",
            ['P:16: escaper "pool": weights apply to pick: weighted_round_robin or consistent_hash; round_robin ignores them',
             'P:19: escaper "pool": hash_by applies to pick: consistent_hash only (pick is round_robin)'],
        ),
        (
            """\
  - name: fl
    type: direct_float
    addresses: ["::1"]
    resolve_strategy: ipv4_only
""",
            ['P:16: escaper "fl": addresses ::1 is an IPv6 address but resolve_strategy is ipv4_only; '
             'use an IPv4 address or use ipv6_only'],
        ),
        (
            """\
  - name: fl
    type: direct_float
    addresses: [224.0.0.1, 0.0.0.0]
""",
            ['P:16: escaper "fl": addresses: 224.0.0.1 is a multicast address: a connection cannot come from it',
             'P:16: escaper "fl": addresses: 0.0.0.0 is the unspecified address: give one of this machine\'s addresses'],
        ),
    ],
    ids=["proxy-address", "half-credentials", "ca-file-and-unknown-key", "route-rules", "bad-regex-dangling",
         "failover-same", "geoip", "select", "select-cross", "float-family", "float-unusable"],
)
def test_one_bad_file_per_error(tmp_path, escapers, expected):
    assert issues(tmp_path, escapers) == [e.format(dir=tmp_path) for e in expected]


def test_cycles_are_found_and_the_build_order_puts_leaves_first():
    graph = {"a": ("b", "direct"), "b": ("c",), "c": ("a",), "direct": ()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    with pytest.raises(ValueError, match="a -> b -> c -> a"):
        build_order(graph)
    assert find_cycle({"a": ("a",)}) == ["a", "a"]
    assert build_order({"r": ("p", "d"), "p": ("d",), "d": ()}) == ["d", "p", "r"]
    assert find_cycle({"r": ("missing",)}) is None


def test_profile_edges_follow_the_references(tmp_path):
    profile = load_profile(write(tmp_path, RICH, entry="pool"))
    graph = edges(profile.escapers)
    assert graph["pool"] == ("up_http", "up_socks", "direct")
    assert graph["direct"] == ()
    assert find_cycle(graph) is None
