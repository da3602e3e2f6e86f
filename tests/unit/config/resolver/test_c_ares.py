"""``type: c_ares`` in a profile: defaults, canonical servers, and one bad file per error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from arcus.config import check_profile, parse_profile
from arcus.config.dump import profile_to_dict
from arcus.config.resolver.c_ares import CAresResolverConfig, parse_server

HEAD = """\
servers:
  - name: http
    type: http_proxy
    listen: 127.0.0.1:3128
    escaper: direct
escapers:
  - name: direct
    type: direct_fixed
    resolver: dns
resolvers:
  - name: dns
    type: c_ares
"""  # the resolver's own keys follow, from line 13


def issues(tmp_path: Path, keys: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(keys), "    "))
    return [str(i).replace(str(path), "P", 1) for i in check_profile(str(path))]


def test_defaults() -> None:
    (r,) = parse_profile(HEAD, "p.yaml").resolvers
    assert r == CAresResolverConfig(name="dns", type="c_ares", line=11)
    assert (r.servers, r.timeout, r.each_timeout, r.tries, r.min_ttl, r.max_ttl, r.negative_ttl) == (
        (), 5.0, 2.0, 2, 1.0, 3600.0, 5.0)


def test_every_key_and_canonical_servers() -> None:
    text = HEAD + textwrap.indent(textwrap.dedent("""\
        servers: ["192.0.2.53", "127.0.0.1:5353", "2001:DB8::53", "[::1]:5300"]
        timeout: 3s
        each_timeout: 500ms
        tries: 3
        min_ttl: 10s
        max_ttl: 10m
        negative_ttl: 2s
        max_entries: 100
    """), "    ")
    (r,) = parse_profile(text, "p.yaml").resolvers
    assert r.servers == ("192.0.2.53:53", "127.0.0.1:5353", "[2001:db8::53]:53", "[::1]:5300")
    assert (r.timeout, r.each_timeout, r.tries, r.min_ttl, r.max_ttl, r.negative_ttl, r.max_entries) == (
        3.0, 0.5, 3, 10.0, 600.0, 2.0, 100)


def test_effective_profile_loads_back_the_same() -> None:
    text = HEAD + "    servers: [127.0.0.1:5353]\n    bind: 127.0.0.1\n    min_ttl: 2s\n"
    profile = parse_profile(text, "p.yaml")
    again = parse_profile(yaml.safe_dump(profile_to_dict(profile)), "p.yaml")
    assert [r.servers for r in again.resolvers] == [("127.0.0.1:5353",)]
    assert [(r.bind, r.min_ttl) for r in again.resolvers] == [("127.0.0.1", 2.0)]
    assert {k: v for k, v in vars_of(again.resolvers[0]).items() if k != "line"} == {
        k: v for k, v in vars_of(profile.resolvers[0]).items() if k != "line"}


def vars_of(obj) -> dict:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def test_defaults_give_way_to_a_shorter_timeout_and_max_ttl() -> None:
    (r,) = parse_profile(HEAD + "    timeout: 1s\n    max_ttl: 500ms\n", "p.yaml").resolvers
    assert (r.each_timeout, r.min_ttl) == (1.0, 0.5)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("servers: [dns.example]",
         'P:13: resolver "dns": servers: invalid DNS server "dns.example"; write an IP address, "ip:port" or '
         '"[ipv6]:port", e.g. "192.0.2.53" or "127.0.0.1:5353"'),
        ("servers: [127.0.0.1:0]",
         'P:13: resolver "dns": servers: invalid port "0" in DNS server "127.0.0.1:0"; write a number 1-65535'),
        ("servers: []", 'P:13: resolver "dns": servers: expected a non-empty list'),
        ('servers: ["[127.0.0.1]:53"]', 'P:13: resolver "dns": servers: "127.0.0.1" in brackets is not an IPv6 address'),
        ("min_ttl: 2h\nmax_ttl: 1h",
         'P:13: resolver "dns": min_ttl 7200s is longer than max_ttl 3600s; make min_ttl at most max_ttl'),
        ("timeout: 1s\neach_timeout: 2s",
         'P:14: resolver "dns": each_timeout 2s is longer than timeout 1s, which bounds the whole lookup; '
         "make each_timeout shorter or timeout longer"),
        ("servers: ['[::1]:53']\nbind: 127.0.0.1",
         'P:14: resolver "dns": bind 127.0.0.1 is an IPv4 address but server [::1]:53 is not; '
         "bind an address of the servers' family"),
        ("tries: 0", 'P:13: resolver "dns": tries: must be at least 1, got 0'),
        ("cache_ttl: 5s", 'P:13: resolver "dns": unknown key "cache_ttl"; did you mean "max_ttl"?'),
    ],
)
def test_one_bad_key_per_file(tmp_path: Path, keys: str, expected: str) -> None:
    assert issues(tmp_path, keys + "\n") == [expected]


@pytest.mark.parametrize(
    ("text", "server"),
    [("10.0.0.1", "10.0.0.1:53"), (" 10.0.0.1:54 ", "10.0.0.1:54"), ("fe80::1", "[fe80::1]:53"),
     ("[fe80::1]", "[fe80::1]:53"), ("[fe80::1]:5353", "[fe80::1]:5353")],
)
def test_parse_server(text: str, server: str) -> None:
    assert parse_server(text) == server


@pytest.mark.parametrize("text", ["", ":53", "10.0.0.1:", "10.0.0.1:x", "10.0.0.1:65536", "[fe80::1", "[fe80::1]x"])
def test_parse_server_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_server(text)
