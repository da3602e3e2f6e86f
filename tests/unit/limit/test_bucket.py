"""Token bucket: never more than rate * t + burst, exact waits, live changes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcus.limit import TokenBucket, take_all


def test_burst_then_rate() -> None:
    b = TokenBucket(rate=10.0, burst=5.0)
    assert [b.take(0.0) for _ in range(5)] == [0.0] * 5
    assert b.take(0.0) == pytest.approx(0.1)
    assert b.take(0.05) == pytest.approx(0.05)  # refused: nothing taken, wait shrinks
    assert b.take(0.1) == 0.0
    assert b.take(0.1) == pytest.approx(0.1)
    # A long idle time earns one burst, not more.
    assert [b.take(1000.0) for _ in range(6)][-2:] == [0.0, pytest.approx(0.1)]


def test_waiting_the_returned_time_always_succeeds() -> None:
    b = TokenBucket(rate=3.0, burst=1.0)
    now = 0.0
    assert b.take(now) == 0.0
    for _ in range(1000):
        now += 0.1
        wait = b.take(now)
        if wait:
            now += wait
            assert b.take(now) == 0.0


def test_default_burst_is_one_second_and_at_least_one() -> None:
    assert TokenBucket(200.0).burst == 200.0
    assert TokenBucket(0.5).burst == 1.0


def test_request_larger_than_burst_never_passes() -> None:
    b = TokenBucket(rate=1.0, burst=2.0)
    assert b.take(0.0, n=3.0) == math.inf
    assert b.tokens(0.0) == 2.0


def test_unlimited() -> None:
    b = TokenBucket(None)
    assert all(b.take(0.0) == 0.0 for _ in range(10000))
    assert b.tokens(0.0) == math.inf


def test_time_going_backwards_earns_nothing() -> None:
    b = TokenBucket(rate=1.0, burst=1.0)
    assert b.take(10.0) == 0.0
    assert b.take(5.0) == pytest.approx(1.0)
    assert b.take(10.5) == pytest.approx(0.5)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (-1.0, 1.0), (math.nan, 1.0), (math.inf, 1.0), (1.0, 0.0)])
def test_rejects_bad_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_set_rate_lowering_bites_at_once() -> None:
    b = TokenBucket(rate=100.0, burst=100.0)
    b.set_rate(1.0, 2.0, now=0.0)
    assert b.take(0.0) == 0.0 and b.take(0.0) == 0.0
    assert b.take(0.0) == pytest.approx(1.0)


def test_set_rate_raising_gives_no_sudden_burst() -> None:
    b = TokenBucket(rate=1.0, burst=1.0)
    assert b.take(0.0) == 0.0
    b.set_rate(100.0, 100.0, now=0.0)
    assert b.tokens(0.0) == 0.0
    assert b.take(0.0) == pytest.approx(0.01)
    assert b.tokens(0.5) == pytest.approx(50.0)  # fills at the new rate


def test_set_rate_credits_time_at_the_old_rate_first() -> None:
    b = TokenBucket(rate=1.0, burst=10.0)
    for _ in range(10):
        b.take(0.0)
    b.set_rate(100.0, 10.0, now=2.0)  # two seconds at 1/s: 2 tokens, not 200
    assert b.tokens(2.0) == pytest.approx(2.0)


def test_set_rate_from_and_to_unlimited() -> None:
    b = TokenBucket(None)
    b.set_rate(1.0, 3.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0] * 3
    assert b.take(0.0) > 0
    b.set_rate(None)
    assert b.take(0.0) == 0.0


def test_take_all_is_all_or_nothing() -> None:
    glob = TokenBucket(rate=100.0, burst=100.0)
    tenant = TokenBucket(rate=1.0, burst=1.0)
    assert take_all(0.0, glob, tenant, None) == 0.0
    assert take_all(0.0, glob, tenant, None) == pytest.approx(1.0)
    assert glob.tokens(0.0) == pytest.approx(99.0)  # the refused request cost nothing globally
    assert take_all(1.0, glob, tenant) == 0.0


steps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=2.0), st.sampled_from([1.0, 1.0, 1.0, 0.5, 2.5])),
    min_size=1,
    max_size=150,
)


@settings(max_examples=150, deadline=None)
@given(
    rate=st.floats(min_value=0.1, max_value=1000.0),
    burst=st.floats(min_value=2.5, max_value=500.0),
    steps=steps,
    start=st.floats(min_value=0.0, max_value=1e6),
)
def test_never_exceeds_rate_times_t_plus_burst(rate: float, burst: float, steps: list, start: float) -> None:
    """In every window of time, not only from the start: idle time earns at most a burst."""
    b = TokenBucket(rate, burst)
    now = start
    granted: list[tuple[float, float]] = []  # (time, amount) of each allowed take
    for dt, n in steps:
        now += dt
        if b.take(now, n) == 0.0:
            granted.append((now, n))
    for j in range(len(granted)):
        total = 0.0
        for i in range(j, -1, -1):
            total += granted[i][1]
            assert total <= rate * (granted[j][0] - granted[i][0]) + burst + 1e-6 * (1 + total)


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=500.0), burst=st.floats(min_value=1.0, max_value=100.0))
def test_a_greedy_client_gets_the_rate(rate: float, burst: float) -> None:
    b = TokenBucket(rate, burst)
    now, taken, calls = 0.0, 0.0, 0
    while now < 30.0 and calls < 100_000:
        calls += 1
        wait = b.take(now)
        if wait == 0.0:
            taken += 1
        else:
            now += wait
    expected = rate * now + burst
    assert taken <= expected + 1e-6 * expected
    assert taken >= expected - 2  # loses at most a token to the integer steps
