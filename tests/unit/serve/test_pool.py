"""The upstream pool: reuse re-checks the destination with the egress guard, gained addresses
drop idle connections, expiry. Connections are real UpstreamConnection objects over a stand-in
transport (the pool only asks it where it goes and whether it is closing)."""

from __future__ import annotations

from arcus.config.loader import parse_profile
from arcus.escape import build_escapers
from arcus.escape.base import Escaper
from arcus.policy.egress import HostAddresses, parse_ip
from arcus.serve.pool import UpstreamPool, guards_of
from arcus.serve.upstream import UpstreamConnection

OFF_BOX = "198.51.100.7"
LAN = "10.99.0.1"  # the box's own address


class Transport:
    def __init__(self, peer: str | None) -> None:
        self.peer = peer
        self.closed = False

    def get_extra_info(self, name: str, default=None):  # noqa: ANN001, ANN201
        return (self.peer, 80) if name == "peername" and self.peer is not None else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def conn(key: tuple, peer: str | None) -> UpstreamConnection:
    c = UpstreamConnection(key)
    c.connection_made(Transport(peer))
    return c


PROFILE = """\
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
  - name: open
    type: direct_fixed
    allow_special: [127.0.0.0/8]
  - name: up
    type: proxy_http
    proxy: 127.0.0.1:3129
  - name: route
    type: route_failover
    primary: direct
    standby: up
"""


def escapers(host: HostAddresses) -> dict[str, Escaper]:
    profile = parse_profile(PROFILE, "p.yaml")
    return build_escapers(profile.escapers, {"system": None}, host, "p.yaml")  # type: ignore[dict-item]


def direct(host: HostAddresses) -> Escaper:
    return escapers(host)["direct"]


def test_a_loopback_connection_is_never_handed_to_an_off_box_client() -> None:
    host = HostAddresses([LAN])
    esc = direct(host)
    pool = UpstreamPool()
    key = ("direct", "default", False, b"http", "127.0.0.1", 8080)  # a key that forgot locality
    up = conn(key, "127.0.0.1")
    pool.put(up, 30, 8)
    assert pool.take(key, OFF_BOX, esc) is None
    assert up.transport.closed and len(pool) == 0
    up = conn(key, "127.0.0.1")
    pool.put(up, 30, 8)
    assert pool.take(key, LAN, esc) is up  # on the box: its loopback allowance holds
    assert not up.pooled and up.pool is None
    pool.put(up, 30, 8)  # cleared for LAN: another client is checked again, not waved through
    assert pool.take(key, OFF_BOX, esc) is None
    assert up.transport.closed


def test_an_address_the_box_gains_is_refused_on_reuse_and_dropped_when_idle() -> None:
    host = HostAddresses([LAN])
    esc = direct(host)
    pool = UpstreamPool()
    key = ("direct", "default", False, b"http", "10.99.0.9", 80)
    idle, busy = conn(key, "10.99.0.9"), conn(key, "10.99.0.9")
    other = conn(("direct", "default", False, b"http", "203.0.113.5", 80), "203.0.113.5")
    pool.put(busy, 30, 8)
    assert pool.take(key, OFF_BOX, esc) is busy  # cleared for OFF_BOX, then in use
    pool.put(idle, 30, 8)
    pool.put(other, 30, 8)
    assert pool.take(key, OFF_BOX, esc) is idle  # an ordinary destination so far
    pool.put(idle, 30, 8)
    gained, _ = host.replace([LAN, "10.99.0.9"])
    assert pool.drop_to(gained) == 1
    assert idle.transport.closed and not other.transport.closed and len(pool) == 1
    pool.put(busy, 30, 8)  # in use meanwhile, cleared before the gain: refused at the next take
    assert pool.take(key, OFF_BOX, esc) is None
    assert busy.transport.closed


def test_without_a_guard_nothing_is_rechecked() -> None:
    """A proxy escaper's connections go to its proxy (often on loopback): no guard applies."""
    proxy = escapers(HostAddresses())["up"]
    assert guards_of(proxy) == ()
    pool = UpstreamPool()
    key = ("up", "default", False, b"http", "example.com", 80)
    up = conn(key, "127.0.0.1")
    pool.put(up, 30, 8)
    assert pool.take(key, OFF_BOX, proxy) is up


def test_a_route_rechecks_with_the_guards_behind_it() -> None:
    built = escapers(HostAddresses([LAN]))
    route = built["route"]
    assert guards_of(route) == (built["direct"].guard,)  # the proxy member has none
    pool = UpstreamPool()
    key = ("r", "default", False, b"http", "127.0.0.1", 80)
    pool.put(conn(key, "127.0.0.1"), 30, 8)
    assert pool.take(key, OFF_BOX, route) is None


def test_an_allowed_special_destination_stays_reusable() -> None:
    esc = escapers(HostAddresses())["open"]
    pool = UpstreamPool()
    key = ("direct", "default", False, b"http", "127.0.0.1", 80)
    up = conn(key, "127.0.0.1")
    pool.put(up, 30, 8)
    assert pool.take(key, OFF_BOX, esc) is up


def test_a_connection_of_unknown_destination_is_not_reused_under_a_guard() -> None:
    esc = direct(HostAddresses())
    pool = UpstreamPool()
    key = ("direct", "default", False, b"http", "example.com", 80)
    up = conn(key, None)
    pool.put(up, 30, 8)
    assert pool.take(key, OFF_BOX, esc) is None


def test_expire_and_discard_forget_the_destination() -> None:
    pool = UpstreamPool()
    key = ("direct", "default", False, b"http", "203.0.113.5", 80)
    old, new = conn(key, "203.0.113.5"), conn(key, "203.0.113.5")
    pool.put(old, 1, 8)
    pool.put(new, 100, 8)
    pool.expire(old.idle_until + 0.5)
    assert old.transport.closed and len(pool) == 1
    new.connection_lost(None)  # the origin closed it while idle
    assert len(pool) == 0
    assert pool.drop_to({parse_ip("203.0.113.5")}) == 0
