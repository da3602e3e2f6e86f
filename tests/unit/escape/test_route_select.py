"""route_select: pick policies, the circuit breaker, health checks against real listeners."""

from __future__ import annotations

import asyncio
import collections
import socket

import pytest

from arcus.errors import EscapeError
from arcus.escape.health import DOWN, TRIAL, UP, Breaker, Member, check_round
from arcus.escape.route_select import RouteSelectEscaper, rendezvous_order
from arcus.testing.clock import ManualClock
from arcus.testing.wait import async_wait_until
from tests.unit.escape.peers import Listener, Recorder, closed_port
from tests.unit.escape.test_routes import build


def pool(pick: str, extra: str = "", weights=(1, 1, 1), members=("a", "b", "c")) -> str:
    leaves = "".join(f"  - name: {m}\n    type: direct_fixed\n    bind: 127.0.0.{61 + i}\n" for i, m in enumerate(members))
    nodes = "".join(f"      - escaper: {m}\n        weight: {w}\n" for m, w in zip(members, weights))
    return leaves + f"  - name: pool\n    type: route_select\n    pick: {pick}\n    next:\n{nodes}{extra}"


def names(members):
    return [m.name for m in members]


def test_round_robin_takes_each_in_turn_and_a_retry_goes_to_the_next():
    esc = build(pool("round_robin"))["pool"]
    firsts = [esc.order("10.0.0.1", None, 0.0)[0].name for _ in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    assert names(esc.order("10.0.0.1", None, 0.0)) == ["a", "b", "c"]


def test_smooth_weighted_round_robin_interleaves_by_weight():
    esc = build(pool("weighted_round_robin", weights=(5, 1, 1)))["pool"]
    picks = [esc.order("10.0.0.1", None, 0.0)[0].name for _ in range(7)]
    assert picks == ["a", "a", "b", "a", "c", "a", "a"]  # nginx's sequence for 5:1:1
    many = collections.Counter(esc.order("10.0.0.1", None, 0.0)[0].name for _ in range(700))
    assert many == {"a": 500, "b": 100, "c": 100}


def test_consistent_hash_keeps_keys_and_moves_only_the_lost_members_keys():
    esc = build(pool("consistent_hash", weights=(1, 1, 1), members=("a", "b", "c", "d")[:3]))["pool"]
    clients = [f"10.0.{i // 250}.{i % 250}" for i in range(1000)]
    before = {c: esc.order(c, None, 0.0)[0].name for c in clients}
    assert before == {c: esc.order(c, None, 0.0)[0].name for c in clients}  # stable
    share = collections.Counter(before.values())
    assert all(250 < n < 420 for n in share.values()), share
    esc.breaker.members[1].state = DOWN
    esc.breaker.members[1].down_since = 0.0
    after = {c: esc.order(c, None, 1.0)[0].name for c in clients}
    moved = [c for c in clients if before[c] != after[c]]
    assert moved and all(before[c] == "b" for c in moved) and "b" not in after.values()


def test_consistent_hash_by_user_falls_back_to_the_client_address():
    esc = build(pool("consistent_hash", "    hash_by: user\n"))["pool"]
    users = {u: esc.order("10.0.0.1", u, 0.0)[0].name for u in ("alice", "bob", "carol", "dave", "erin", "frank")}
    assert len(set(users.values())) > 1  # users spread although the address is the same
    assert esc.order("10.0.0.1", None, 0.0)[0].name == esc.order("10.0.0.1", None, 0.0)[0].name
    assert esc.varies_by_client


def test_weighted_rendezvous_follows_the_weights():
    members = [Member(None, "heavy", 3), Member(None, "light", 1)]
    wins = collections.Counter(rendezvous_order(f"k{i}", members)[0].name for i in range(4000))
    assert 2800 < wins["heavy"] < 3200


def test_breaker_opens_after_k_failures_then_one_trial_decides():
    a, b = Member(None, "a"), Member(None, "b")
    br = Breaker([a, b], max_failures=2, retry_after=10.0, active=False)
    br.failure(a, "refused", 0.0)
    assert a.state == UP
    br.failure(a, "refused", 1.0)
    assert a.state == DOWN and names(br.usable(5.0)) == ["b"]
    assert names(br.usable(11.0)) == ["a", "b"] and a.state == TRIAL
    br.started(a)
    assert names(br.usable(11.5)) == ["b"]  # one trial at a time
    br.failure(a, "still refused", 12.0)
    assert a.state == DOWN and a.down_since == 12.0
    assert names(br.usable(21.0)) == ["b"]
    br.usable(22.0)
    br.started(a)
    br.success(a)
    assert a.state == UP and a.failures == 0


def test_with_active_checks_real_connections_never_trial():
    a = Member(None, "a")
    br = Breaker([a], max_failures=1, retry_after=1.0, active=True)
    br.failure(a, "x", 0.0)
    assert br.usable(5.0) == []
    assert br.due_for_check(a, 5.0) and a.state == TRIAL


DEAD_PROXY = """\
  - name: up
    type: direct_fixed
  - name: dead
    type: proxy_http
    proxy: 127.0.0.1:{dead}
  - name: pool
    type: route_select
    next:
      - escaper: dead
      - escaper: up
    max_failures: 2
    retry_after: 30s
"""


def test_a_member_failing_by_its_own_fault_is_retried_elsewhere_and_taken_out():
    async def main():
        async with Listener("127.0.0.1") as origin:
            esc = build(DEAD_PROXY.format(dead=closed_port()), {"svc.example": ["127.0.0.1"]})["pool"]
            vias = []
            for _ in range(4):
                conn = await esc.connect("svc.example", origin.port, "127.0.0.1", Recorder, timeout=2)
                vias.append(conn.via)
                conn.transport.close()
            return vias, esc.info()

    vias, info = asyncio.run(main())
    assert vias == ["up"] * 4
    dead = info["members"][0]
    assert dead["state"] == "down" and "cannot connect to upstream proxy" in dead["last_error"]
    assert info["in_service"] == 1


def test_a_destination_failure_is_not_the_members_fault():
    async def main():
        esc = build(pool("round_robin"), {"svc.example": ["127.0.0.1"]})["pool"]
        for _ in range(6):
            with pytest.raises(EscapeError):
                await esc.connect("svc.example", closed_port(), "127.0.0.1", Recorder, timeout=2)
        return esc.info()

    info = asyncio.run(main())
    assert [m["state"] for m in info["members"]] == ["up", "up", "up"]


TWO_DEAD = """\
  - name: dead1
    type: proxy_http
    proxy: 127.0.0.1:{one}
  - name: dead2
    type: proxy_http
    proxy: 127.0.0.1:{two}
  - name: pool
    type: route_select
    next:
      - escaper: dead1
      - escaper: dead2
    max_failures: 5
"""


def test_a_retry_that_fails_too_names_every_member_tried():
    async def main():
        esc = build(TWO_DEAD.format(one=closed_port(), two=closed_port()), {})["pool"]
        with pytest.raises(EscapeError) as info:
            await esc.connect("svc.example", 80, "127.0.0.1", Recorder, timeout=2)
        return info.value

    exc = asyncio.run(main())
    assert exc.message.startswith("every member of pool pool tried failed: ")
    assert "dead1: cannot connect to upstream proxy" in exc.message and "dead2: cannot connect to upstream proxy" in exc.message
    assert exc.code.value == "upstream_connect" and exc.hop is not None


def test_all_members_out_is_a_clear_502():
    async def main():
        esc = build(DEAD_PROXY.format(dead=closed_port()).replace("      - escaper: up\n", ""), {})["pool"]
        errors = []
        for _ in range(3):
            with pytest.raises(EscapeError) as info:
                await esc.connect("svc.example", 80, "127.0.0.1", Recorder, timeout=2)
            errors.append(info.value.message)
        return errors

    errors = asyncio.run(main())
    assert errors[2].startswith("no upstream of pool pool is in service (dead: cannot connect to upstream proxy")


HEALTH = """\
  - name: up
    type: direct_fixed
  - name: pool
    type: route_select
    next:
      - escaper: up
        probe: 127.0.0.1:{port}
    health_interval: 200ms
    health_timeout: 100ms
    max_failures: 2
    retry_after: 300ms
"""


def health_pool(port: int, clock: ManualClock) -> RouteSelectEscaper:
    built = build(HEALTH.format(port=port))
    return RouteSelectEscaper(built["pool"].config, built, clock=clock)


def test_health_checks_take_a_dead_member_out_and_bring_it_back():
    async def main():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        clock = ManualClock()
        esc = health_pool(port, clock)
        member = esc.breaker.members[0]
        states = []
        for step in (0.0, 0.25):  # max_failures (2) failed checks take it out
            clock.advance(step)
            await check_round(esc.breaker, esc.health_timeout, clock)
            states.append(member.state)
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        try:
            clock.advance(0.25)  # retry_after (300 ms) has not passed since it went down: no check
            await check_round(esc.breaker, esc.health_timeout, clock)
            states.append(member.state)
            assert esc.info()["members"][0]["down_for"] == 0.25
            clock.advance(0.125)  # it has: the next check is the trial, and it succeeds
            await check_round(esc.breaker, esc.health_timeout, clock)
            states.append(member.state)
        finally:
            server.close()
            await server.wait_closed()
        return states, esc.info()["members"][0]

    states, member = asyncio.run(main())
    assert states == [UP, DOWN, DOWN, UP]
    assert member["checks_ok"] == 1 and member["checks_failed"] == 2


def test_a_started_pool_runs_its_checks_until_closed():
    async def main():
        esc = build(HEALTH.format(port=closed_port()))["pool"]
        await esc.start()
        try:
            member = esc.breaker.members[0]
            await async_wait_until(lambda: member.state == DOWN, timeout=10, what="the dead member to go down")
        finally:
            esc.close()
        return esc._task

    assert asyncio.run(main()) is None


def test_without_checks_a_down_member_gets_one_trial_connection_after_retry_after():
    async def main():
        async with Listener("127.0.0.1") as origin:
            clock = ManualClock()
            built = build(DEAD_PROXY.format(dead=closed_port()), {"svc.example": ["127.0.0.1"]})
            esc = RouteSelectEscaper(built["pool"].config, built, clock=clock)
            dead = esc.breaker.members[0]

            async def through() -> str:
                conn = await esc.connect("svc.example", origin.port, "127.0.0.1", Recorder, timeout=2)
                conn.transport.close()
                return conn.via

            vias = [await through() for _ in range(4)]  # round robin: dead is first every other time
            assert dead.state == DOWN and dead.down_since == clock.now
            clock.advance(29.5)  # retry_after is 30 s
            assert names(esc.order("10.0.0.1", None, clock())) == ["up"]
            clock.advance(0.5)
            assert sorted(names(esc.order("10.0.0.1", None, clock()))) == ["dead", "up"]
            vias += [await through() for _ in range(2)]  # one of them is dead's trial, which fails
            return vias, dead.state, dead.down_since == clock.now

    assert asyncio.run(main()) == (["up"] * 6, DOWN, True)  # down again for another 30 s


def test_health_checks_need_an_address(tmp_path):
    from arcus.errors import OperatorError

    with pytest.raises(OperatorError) as info:
        build(HEALTH.replace("        probe: 127.0.0.1:{port}\n", ""), tmp=tmp_path)
    assert "health checks have no address to check for up" in info.value.message
    assert info.value.message.startswith(f"{tmp_path}/p.yaml:")


def test_reload_keeps_breaker_state_of_members_still_in_the_pool():
    old = build(pool("round_robin"))["pool"]
    old.breaker.members[0].state = DOWN
    old.breaker.members[0].down_since = 42.0
    new = build(pool("round_robin"))["pool"]
    old.breaker.members[0].failures, old.breaker.members[0].checks_failed, old.breaker.members[0].checks_ok = 57, 46, 3
    new.adopt(old)
    m = new.breaker.members[0]
    assert (m.state, m.down_since) == (DOWN, 42.0)
    assert (m.failures, m.checks_failed, m.checks_ok) == (57, 46, 3)  # the counters go on together
