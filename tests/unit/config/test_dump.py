"""The effective profile written back out loads to the same Profile."""

from __future__ import annotations

from dataclasses import replace

import yaml

from arcus.config import load_profile, parse_profile
from arcus.config.dump import profile_to_dict
from arcus.config.schema import Profile

RICH = """\
timeouts:
  client_idle: 1.5s
  expect_continue: 250ms
limits:
  max_headers: 64
servers:
  - name: http
    type: http_proxy
    listen: ["127.0.0.1:0", "[::1]:0"]
    escaper: direct
    max_connections: 10
    timeouts:
      tunnel_idle: 1h
  - name: blocked
    type: http_proxy
    listen: localhost:0
    escaper: deny
escapers:
  - name: direct
    type: direct_fixed
    bind: 192.0.2.1
    allow_special: [10.0.0.0/8]
    loopback_for_local_clients: false
  - name: deny
    type: dummy_deny
resolvers:
  - name: sys
    type: system
    negative_ttl: 100ms
log:
  level: warning
  access: false
runtime:
  graceful_timeout: 2m
icap_services:
  - name: av
    servers: [icap://127.0.0.1:1344/avscan, "icap://[::1]/av"]
    timeout: 5s
    max_connections: 4
"""


def _without_lines(profile: Profile) -> Profile:
    return replace(
        profile,
        source="",
        servers=tuple(replace(s, line=None) for s in profile.servers),
        escapers=tuple(replace(e, line=None) for e in profile.escapers),
        resolvers=tuple(replace(r, line=None) for r in profile.resolvers),
        icap_services=tuple(replace(i, line=None) for i in profile.icap_services),
    )


def _round_trip(profile: Profile) -> Profile:
    return parse_profile(yaml.safe_dump(profile_to_dict(profile), sort_keys=False), "dumped")


def test_default_round_trips() -> None:
    profile = load_profile(None)
    assert _without_lines(_round_trip(profile)) == _without_lines(profile)


def test_rich_profile_round_trips_and_keeps_type_keys_apart() -> None:
    profile = parse_profile(RICH, "rich")
    data = profile_to_dict(profile)
    assert data["escapers"][1] == {"name": "deny", "type": "dummy_deny"}
    assert data["servers"][0]["listen"] == ["127.0.0.1:0", "[::1]:0"]
    assert data["servers"][1]["listen"] == "localhost:0"
    assert data["servers"][0]["timeouts"]["client_idle"] == "1.5s"
    assert data["servers"][0]["timeouts"]["tunnel_idle"] == "3600s"
    assert data["escapers"][0]["resolver"] == "sys"  # the defaulted reference is written out
    assert data["runtime"] == {"graceful_timeout": "120s"}
    assert data["icap_services"][0]["servers"] == ["icap://127.0.0.1:1344/avscan", "icap://[::1]:1344/av"]
    assert data["icap_services"][0]["timeout"] == "5s"
    assert _without_lines(_round_trip(profile)) == _without_lines(profile)
