"""direct_fixed and direct_float against real loopback listeners."""

from __future__ import annotations

import asyncio

import pytest

from arcus.config.escaper.direct_fixed import DirectFixedEscaperConfig
from arcus.config.escaper.direct_float import DirectFloatEscaperConfig
from arcus.errors import EscapeError
from arcus.escape.direct_fixed import DirectFixedEscaper, order_addresses
from arcus.escape.direct_float import DirectFloatEscaper
from arcus.policy.egress import EgressGuard
from arcus.testing.wait import async_wait_until
from tests.unit.escape.peers import FixedResolver, Listener, Recorder, closed_port, hanging_port


def test_order_interleaves_families_preferred_first():
    addrs = ["10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2", "10.0.0.3"]
    assert order_addresses(addrs, "ipv4_first") == ["10.0.0.1", "2001:db8::1", "10.0.0.2", "2001:db8::2", "10.0.0.3"]
    assert order_addresses(addrs, "ipv6_first") == ["2001:db8::1", "10.0.0.1", "2001:db8::2", "10.0.0.2", "10.0.0.3"]
    assert order_addresses(addrs, "ipv4_only") == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert order_addresses(addrs, "ipv6_only") == ["2001:db8::1", "2001:db8::2"]


def direct(table, **kw) -> DirectFixedEscaper:
    config = DirectFixedEscaperConfig(name="direct", type="direct_fixed", resolver="fixed", **kw)
    return DirectFixedEscaper(config, FixedResolver(table), EgressGuard())


def test_happy_eyeballs_second_address_wins_while_the_first_hangs():
    async def main():
        loop = asyncio.get_running_loop()
        async with Listener("127.0.0.3") as good:
            with hanging_port("127.0.0.2") as port:
                # the good listener must be on the same port: bind it there
                good.server.close()
                await good.server.wait_closed()
                server = await asyncio.start_server(lambda r, w: w.write(b"ok\n"), "127.0.0.3", port)
                try:
                    esc = direct({"svc.test": ["127.0.0.2", "127.0.0.3"]}, happy_eyeballs_delay=0.2)
                    rec = Recorder()
                    t0 = loop.time()
                    conn = await esc.connect("svc.test", port, "127.0.0.1", lambda: rec, timeout=5)
                    took = loop.time() - t0
                    await rec.read_until(b"ok\n")
                    conn.transport.close()
                    return conn.peer, took
                finally:
                    server.close()
                    await server.wait_closed()

    peer, took = asyncio.run(main())
    assert peer.startswith("127.0.0.3:")
    assert 0.18 <= took < 1.5  # started after the delay, not after the connect timeout


def test_refused_first_address_falls_to_the_next_at_once():
    async def main():
        async with Listener("127.0.0.3") as good:
            port = good.port
            esc = direct({"svc.test": ["127.0.0.2", "127.0.0.3"]}, happy_eyeballs_delay=5.0)
            rec = Recorder()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            conn = await esc.connect("svc.test", port, "127.0.0.1", lambda: rec, timeout=5)
            took = loop.time() - t0
            conn.transport.close()
            return conn.peer, took

    peer, took = asyncio.run(main())
    assert peer.startswith("127.0.0.3:") and took < 1.0


def test_every_address_hanging_is_a_504_within_the_timeout():
    async def main():
        with hanging_port("127.0.0.2") as port:
            esc = direct({"svc.test": ["127.0.0.2"]})
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(EscapeError) as info:
                await esc.connect("svc.test", port, "127.0.0.1", Recorder, timeout=0.5)
            return info.value, loop.time() - t0

    err, took = asyncio.run(main())
    assert (err.status, err.code) == (504, "upstream_timeout")
    assert took < 1.5


def test_refused_everywhere_is_a_502_with_the_reason():
    async def main():
        esc = direct({"svc.test": ["127.0.0.1"]})
        with pytest.raises(EscapeError) as info:
            await esc.connect("svc.test", closed_port(), "127.0.0.1", Recorder, timeout=2)
        return info.value

    err = asyncio.run(main())
    assert (err.status, err.code) == (502, "upstream_connect")
    assert "refused" in err.message.lower()


def test_check_refuses_and_allows_per_address():
    async def main():
        async with Listener("127.0.0.1") as good:
            esc = direct({"svc.test": ["127.0.0.1"]})
            with pytest.raises(EscapeError) as info:
                await esc.connect("svc.test", good.port, "127.0.0.1", Recorder, timeout=2, check=lambda a: "blocked by rule 7")
            # a remote client may not reach loopback, unless the check opens it explicitly
            with pytest.raises(EscapeError) as guarded:
                await esc.connect("svc.test", good.port, "192.0.2.9", Recorder, timeout=2)
            conn = await esc.connect("svc.test", good.port, "192.0.2.9", Recorder, timeout=2, check=lambda a: True)
            conn.transport.close()
            return info.value, guarded.value

    refused, guarded = asyncio.run(main())
    assert (refused.status, refused.side) == (403, "forbidden") and "blocked by rule 7" in refused.message
    assert guarded.status == 403 and "loopback" in guarded.message


def test_bind_sets_the_source_address():
    async def main():
        async with Listener("127.0.0.1") as good:
            esc = direct({"svc.test": ["127.0.0.1"]}, bind="127.0.0.5")
            rec = Recorder()
            conn = await esc.connect("svc.test", good.port, "127.0.0.1", lambda: rec, timeout=2)
            await rec.read_until(b"\n127.")
            conn.transport.close()
            return good.peers

    assert asyncio.run(main()) == ["127.0.0.5"]


def float_escaper(addresses=()) -> DirectFloatEscaper:
    config = DirectFloatEscaperConfig(name="float", type="direct_float", resolver="fixed", addresses=tuple(addresses))
    return DirectFloatEscaper(config, FixedResolver({"svc.test": ["127.0.0.1"]}), EgressGuard())


def test_float_picks_from_the_set_and_the_set_changes_live():
    async def main():
        async with Listener("127.0.0.1") as good:
            esc = float_escaper(["127.0.0.21", "127.0.0.22"])
            for _ in range(12):
                conn = await esc.connect("svc.test", good.port, "127.0.0.1", Recorder, timeout=2)
                conn.transport.close()
            await async_wait_until(lambda: len(good.peers) == 12, what="the listener to see all 12")
            first = set(good.peers)
            good.peers.clear()
            assert esc.set_addresses(["127.0.0.23", "127.0.0.23"]) == ("127.0.0.23",)
            conn = await esc.connect("svc.test", good.port, "127.0.0.1", Recorder, timeout=2)
            conn.transport.close()
            await async_wait_until(lambda: good.peers, what="the listener to see the connection")
            return first, good.peers

    first, after = asyncio.run(main())
    assert first == {"127.0.0.21", "127.0.0.22"}  # 12 random picks of 2: both seen (p of not: 2**-11)
    assert after == ["127.0.0.23"]


def test_float_with_no_address_of_the_family_refuses_clearly():
    async def main():
        esc = float_escaper(["::1"])
        with pytest.raises(EscapeError) as info:
            await esc.connect("svc.test", 80, "127.0.0.1", Recorder, timeout=2)
        return info.value

    err = asyncio.run(main())
    assert err.status == 502 and "no egress address" in err.message and "::1" in err.message


def test_float_set_survives_reload_only_while_the_profile_set_is_unchanged():
    old = float_escaper(["127.0.0.21"])
    old.set_addresses(["127.0.0.30"])
    same = float_escaper(["127.0.0.21"])
    same.adopt(old)
    assert same.addresses == ("127.0.0.30",)
    changed = float_escaper(["127.0.0.22"])
    changed.adopt(old)
    assert changed.addresses == ("127.0.0.22",)
    with pytest.raises(ValueError):
        old.set_addresses(["not-an-ip"])
