"""Shaper: pauses instead of drops, long-run average at the rate, hierarchy, live changes."""

from __future__ import annotations

import heapq
import random

import pytest

from arcus.limit import Shaper, max_pause
from arcus.limit.shaper import MIN_BURST

MB = 1_000_000


def run(conns: list[list[Shaper | None]], seconds: float, link: float = 100 * MB, chunk: int = 65536, seed: int = 1) -> list[float]:
    """Simulate connections that read ``chunk``-ish bytes whenever not paused.

    Each connection's own link delivers at most ``link`` bytes/s. Returns bytes per second
    achieved by each connection over ``seconds``.
    """
    rng = random.Random(seed)
    ready = [(0.0, i) for i in range(len(conns))]
    heapq.heapify(ready)
    got = [0] * len(conns)
    events = 0
    while ready and events < 2_000_000:
        now, i = heapq.heappop(ready)
        if now >= seconds:
            continue
        events += 1
        n = rng.randint(chunk // 4, chunk)
        got[i] += n
        pause = max_pause(now, n, *conns[i])
        heapq.heappush(ready, (now + max(pause, n / link), i))
    return [g / seconds for g in got]


def test_under_the_rate_no_pause() -> None:
    s = Shaper(10 * MB)
    now = 0.0
    for _ in range(100):
        now += 0.01
        assert s.consume(now, 50_000) == 0.0  # 5 MB/s < 10 MB/s


def test_pause_is_the_debt_over_the_rate() -> None:
    s = Shaper(1000.0, burst_bytes=1000.0)
    assert s.consume(0.0, 1000) == 0.0
    assert s.consume(0.0, 500) == pytest.approx(0.5)
    assert s.pause(0.25) == pytest.approx(0.25)
    assert s.pause(0.5) == 0.0
    assert s.consume(0.5, 0) == 0.0


def test_a_huge_read_is_accepted_and_paused_for() -> None:
    s = Shaper(1000.0, burst_bytes=1000.0)
    assert s.consume(0.0, 11_000) == pytest.approx(10.0)


def test_default_burst() -> None:
    assert Shaper(1000.0).burst == MIN_BURST
    assert Shaper(100 * MB).burst == 25 * MB


def test_unlimited_never_pauses() -> None:
    s = Shaper(None)
    assert s.consume(0.0, 10**12) == 0.0 and s.pause(0.0) == 0.0


@pytest.mark.parametrize("rate", [0.0, -5.0, float("inf")])
def test_rejects_bad_rates(rate: float) -> None:
    with pytest.raises(ValueError):
        Shaper(rate)


@pytest.mark.parametrize("rate", [64_000.0, 1 * MB, 6.25 * MB])
def test_long_run_average_is_the_rate(rate: float) -> None:
    seconds, chunk = 60.0, 65536
    (achieved,) = run([[Shaper(rate)]], seconds=seconds, chunk=chunk)
    # Bytes read in the window: the rate, plus the burst spent once, give or take the last
    # read (counted, though its pause falls after the window).
    expected = rate * seconds + Shaper(rate).burst
    assert abs(achieved * seconds - expected) <= chunk
    assert achieved == pytest.approx(rate, rel=0.03)


def test_hierarchy_the_tightest_level_wins() -> None:
    tenant = Shaper(2 * MB, burst_bytes=MIN_BURST)
    alice = Shaper(1 * MB, burst_bytes=MIN_BURST)
    bob = Shaper(5 * MB, burst_bytes=MIN_BURST)
    a, b = run([[None, tenant, alice], [None, tenant, bob]], seconds=60.0)
    assert a == pytest.approx(1 * MB, rel=0.02)  # alice's own limit
    assert a + b == pytest.approx(2 * MB, rel=0.02)  # together no more than the tenant


def test_a_tenant_at_its_limit_does_not_slow_another() -> None:
    glob = Shaper(50 * MB, burst_bytes=MIN_BURST)
    acme = Shaper(1 * MB, burst_bytes=MIN_BURST)
    alone = run([[Shaper(50 * MB, burst_bytes=MIN_BURST), None]], seconds=20.0, link=10 * MB)[0]
    busy_acme, other = run([[glob, acme], [glob, acme], [glob, None]], seconds=20.0, link=10 * MB)[1:]
    assert busy_acme == pytest.approx(0.5 * MB, rel=0.05)
    assert other == pytest.approx(alone, rel=0.02)  # the other tenant gets its link rate


def test_live_rate_change_mid_stream() -> None:
    s = Shaper(1 * MB, burst_bytes=MIN_BURST)
    now, got_after = 0.0, 0
    while now < 10.0:
        now += max(s.consume(now, 65536), 0.001)
    s.set_rate(4 * MB, burst_bytes=MIN_BURST, now=now)
    start = now
    while now < start + 10.0:
        got_after += 65536
        now += max(s.consume(now, 65536), 0.001)
    assert got_after / (now - start) == pytest.approx(4 * MB, rel=0.02)


def test_set_rate_keeps_debt_in_bytes_and_unlimited_starts_full() -> None:
    s = Shaper(1000.0, burst_bytes=1000.0)
    s.consume(0.0, 3000)  # 2000 bytes of debt: 2 s at 1000 B/s
    s.set_rate(2000.0, burst_bytes=1000.0, now=0.0)
    assert s.pause(0.0) == pytest.approx(1.0)  # paid off at the new rate
    s.set_rate(None)
    assert s.consume(0.0, 10**9) == 0.0
    s.set_rate(1000.0, burst_bytes=1000.0)
    assert s.consume(0.0, 1000) == 0.0  # full again


def test_max_pause_charges_every_level() -> None:
    a = Shaper(1000.0, burst_bytes=1000.0)
    b = Shaper(500.0, burst_bytes=1000.0)
    assert max_pause(0.0, 1500, a, None, b) == pytest.approx(1.0)
    assert a.pause(0.0) == pytest.approx(0.5) and b.pause(0.0) == pytest.approx(1.0)
    assert max_pause(0.0, 0) == 0.0
