"""The c_ares resolver against a scripted DNS server on loopback: real packets through c-ares."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from arcus.config.resolver.c_ares import CAresResolverConfig
from arcus.errors import EscapeError
from arcus.resolve import build_resolver
from arcus.resolve.c_ares import CAresResolver
from arcus.testing.clock import ManualClock
from tests.unit.resolve.dnspeer import NXDOMAIN, SERVFAIL, DnsPeer, Zone


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def cares(server: str, clock=time.monotonic, **kw) -> CAresResolver:
    kw.setdefault("each_timeout", 0.3)
    kw.setdefault("tries", 1)
    kw.setdefault("timeout", 3.0)
    resolver = build_resolver(CAresResolverConfig(name="dns", type="c_ares", servers=(server,), **kw), clock=clock)
    assert isinstance(resolver, CAresResolver)
    return resolver


async def with_peer(zone: Zone, body, clock=time.monotonic, **kw):
    async with DnsPeer(zone) as peer:
        resolver = cares(peer.address, clock, **kw)
        try:
            return await body(resolver, peer)
        finally:
            await resolver.close()


def test_a_and_aaaa_together_cached_for_the_smallest_ttl() -> None:
    zone = Zone(records={"both.test": [("192.0.2.1", 40), ("2001:db8::1", 25)]})

    async def body(r, peer):
        first = await r.lookup("both.test")
        second = await r.lookup("both.test")
        return first, second

    first, second = run(with_peer(zone, body))
    assert first.addresses == ("192.0.2.1", "2001:db8::1")
    assert 24 < first.ttl <= 25 and not first.cached
    assert second.cached
    assert zone.asked == {("both.test", "A"): 1, ("both.test", "AAAA"): 1}


def test_min_ttl_holds_a_zero_ttl_answer_and_max_ttl_cuts_a_long_one() -> None:
    zone = Zone(records={"zero.test": [("192.0.2.1", 0)], "long.test": [("192.0.2.2", 86400)]})

    async def body(r, peer):
        return await r.lookup("zero.test"), await r.lookup("long.test")

    zero, long = run(with_peer(zone, body, min_ttl=5.0, max_ttl=60.0))
    assert 4.5 < zero.ttl <= 5.0
    assert 59 < long.ttl <= 60


def test_short_ttl_expires_and_the_new_record_is_seen() -> None:
    zone = Zone(records={"moving.test": [("192.0.2.1", 1)]})

    clock = ManualClock()

    async def body(r, peer):
        first = await r.resolve("moving.test")
        zone.records["moving.test"] = [("192.0.2.2", 1)]
        still = await r.resolve("moving.test")
        clock.advance(1)
        return first, still, await r.resolve("moving.test")

    first, still, after = run(with_peer(zone, body, clock, min_ttl=0.5))
    assert (first, still, after) == (["192.0.2.1"], ["192.0.2.1"], ["192.0.2.2"])
    assert zone.asked[("moving.test", "A")] == 2


def test_past_max_ttl_the_server_is_asked_again_not_c_ares_own_cache() -> None:
    zone = Zone(records={"held.test": [("192.0.2.1", 300)]})
    clock = ManualClock()

    async def body(r, peer):
        await r.resolve("held.test")
        # Past max_ttl for Arcus; in real time the record's 300 s are far from over, so an
        # answer from c-ares's own query cache would still be the old address.
        clock.advance(0.25)
        zone.records["held.test"] = [("192.0.2.2", 300)]
        return await r.resolve("held.test")

    assert run(with_peer(zone, body, clock, min_ttl=0.1, max_ttl=0.2)) == ["192.0.2.2"]
    assert zone.asked[("held.test", "A")] == 2 and zone.asked[("held.test", "AAAA")] == 2


def test_nxdomain_is_502_with_the_reason_and_negatively_cached() -> None:
    zone = Zone()

    async def body(r, peer):
        messages = []
        for _ in range(3):
            with pytest.raises(EscapeError) as info:
                await r.resolve("nx.test")
            messages.append((info.value.status, info.value.code, info.value.message))
        return peer.address, messages

    address, messages = run(with_peer(zone, body, negative_ttl=30.0))
    expected = (502, "resolve_failed", f"cannot resolve nx.test: no such domain (NXDOMAIN from {address}, resolver dns)")
    assert messages == [expected] * 3
    assert zone.asked[("nx.test", "A")] == 1  # the two later failures came from the cache


def test_name_with_only_ipv6_and_a_name_without_addresses() -> None:
    zone = Zone(records={"six.test": [("2001:db8::6", 60)], "empty.test": []})

    async def body(r, peer):
        six = await r.resolve("six.test")
        with pytest.raises(EscapeError) as info:
            await r.resolve("empty.test")
        return six, info.value.message

    six, message = run(with_peer(zone, body))
    assert six == ["2001:db8::6"]
    assert message.startswith("cannot resolve empty.test: no A or AAAA record (NODATA from 127.0.0.1:")


def test_servfail_reason() -> None:
    zone = Zone(records={"sf.test": []}, rcodes={"sf.test": SERVFAIL})

    async def body(r, peer):
        with pytest.raises(EscapeError) as info:
            await r.resolve("sf.test")
        return info.value

    exc = run(with_peer(zone, body))
    assert exc.code == "resolve_failed" and "the DNS server failed (SERVFAIL from 127.0.0.1:" in exc.message


def test_nxdomain_wins_over_a_timeout_of_the_other_family() -> None:
    zone = Zone(records={"half.test": []}, rcodes={"half.test": NXDOMAIN}, silent={("half.test", "AAAA")})

    async def body(r, peer):
        with pytest.raises(EscapeError) as info:
            await r.resolve("half.test")
        return info.value

    exc = run(with_peer(zone, body))
    assert exc.code == "resolve_failed" and "no such domain (NXDOMAIN" in exc.message


def test_one_family_timing_out_still_gives_the_other_familys_addresses() -> None:
    zone = Zone(records={"v4.test": [("192.0.2.4", 60)]}, silent={("v4.test", "AAAA")})

    async def body(r, peer):
        return await r.lookup("v4.test")

    found = run(with_peer(zone, body))
    assert found.addresses == ("192.0.2.4",) and 59 < found.ttl <= 60


def test_server_that_never_answers_fails_after_the_tries_not_later() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read: queries vanish
    silent.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{silent.getsockname()[1]}"

    async def go():
        r = cares(address, each_timeout=0.2, tries=2, timeout=5.0)
        try:
            started = time.monotonic()
            with pytest.raises(EscapeError) as info:
                await r.resolve("quiet.test")
            return time.monotonic() - started, info.value
        finally:
            await r.close()

    try:
        elapsed, exc = run(go())
    finally:
        silent.close()
    assert elapsed < 3.0  # c-ares gave up after its tries, well before the 5s bound
    assert (exc.status, exc.code) == (502, "resolve_timeout")
    assert exc.message == (f"cannot resolve quiet.test: no answer from {address} after 2 tries (each up to 0.2s or 5 "
                           "times the server's usual answer time, at least 0.25s, doubled on every retry) (resolver dns)")


def test_a_slow_answer_after_fast_ones_is_still_waited_for() -> None:
    """c-ares shortens its timeout to 5 times the server's average answer time (0.25 s at
    least) once the server has answered fast: a name the server needs 0.6 s for must still
    resolve within each_timeout 2s (the retries are added for the doubling to get there)."""
    zone = Zone(records={f"fast{i}.test": [("192.0.2.1", 60)] for i in range(6)} | {"slow.test": [("192.0.2.9", 60)]},
                slow={"slow.test": 0.6})

    async def body(r, peer):
        for i in range(6):
            assert await r.resolve(f"fast{i}.test") == ["192.0.2.1"]
        return await r.resolve("slow.test")

    assert run(with_peer(zone, body, each_timeout=2.0, tries=2, timeout=5.0)) == ["192.0.2.9"]


def test_overall_timeout_bounds_a_slow_server() -> None:
    zone = Zone(records={"slow.test": [("192.0.2.1", 60)]}, delay=3.0)

    async def body(r, peer):
        started = time.monotonic()
        with pytest.raises(EscapeError) as info:
            await r.resolve("slow.test")
        return time.monotonic() - started, info.value

    elapsed, exc = run(with_peer(zone, body, each_timeout=2.0, tries=3, timeout=0.5))
    assert elapsed < 1.5
    assert exc.code == "resolve_timeout" and exc.message == "cannot resolve slow.test: resolver dns timed out after 0.5s"


def test_trailing_dot_and_bad_names() -> None:
    zone = Zone(records={"dot.test": [("192.0.2.3", 60)]})

    async def body(r, peer):
        dotted = await r.resolve("dot.test.")
        with pytest.raises(EscapeError) as info:
            await r.resolve("bad..name")
        return dotted, info.value.message

    dotted, message = run(with_peer(zone, body))
    assert dotted == ["192.0.2.3"]
    assert message.startswith("cannot resolve bad..name: not a valid domain name")


def test_channel_is_made_on_the_loop_and_closed() -> None:
    resolver = cares("127.0.0.1:9")  # building (in a worker thread, for a Snapshot) makes no channel
    assert resolver._dns is None
    zone = Zone(records={"x.test": [("192.0.2.1", 60)]})

    async def body(r, peer):
        await r.resolve("x.test")
        assert r._dns is not None
        await r.close()
        return r._dns

    assert run(with_peer(zone, body)) is None
