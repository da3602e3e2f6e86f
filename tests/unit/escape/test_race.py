"""The staggered race under happy eyeballs and failover: timing, winners, losers, deadline."""

from __future__ import annotations

import asyncio

import pytest

from arcus.escape.race import RaceFailed, staggered_race
from arcus.testing.wait import async_wait_until


def run(coro):
    return asyncio.run(coro)


def test_second_attempt_starts_after_the_delay_and_wins_while_the_first_hangs():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        starts = []
        cancelled = []

        async def hang():
            starts.append(loop.time() - t0)
            try:
                await asyncio.sleep(10)  # an attempt that hangs: the case under test
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        async def quick():
            starts.append(loop.time() - t0)
            return "b"

        index, value = await staggered_race([hang, quick], 0.2, t0 + 5, lambda v: None)
        await async_wait_until(lambda: cancelled, what="the loser's cancellation")
        return index, value, starts, cancelled

    index, value, starts, cancelled = run(main())
    assert (index, value) == (1, "b")
    assert starts[0] < 0.05 and 0.18 <= starts[1] < 0.5
    assert cancelled == [True]  # the loser is cancelled


def test_a_failure_starts_the_next_attempt_at_once():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def fail():
            raise ConnectionRefusedError(111, "Connection refused")

        async def ok():
            return loop.time() - t0

        return await staggered_race([fail, ok], 5.0, t0 + 5, lambda v: None)

    index, started_after = run(main())
    assert index == 1 and started_after < 0.5


def test_all_failing_reports_every_error_in_start_order():
    async def main():
        async def fail(n):
            raise OSError(n, f"error {n}")

        return await staggered_race([lambda: fail(1), lambda: fail(2)], 0.1, asyncio.get_running_loop().time() + 5, lambda v: None)

    with pytest.raises(RaceFailed) as info:
        run(main())
    assert [e.errno for e in info.value.errors] == [1, 2]
    assert info.value.timed_out is False


def test_deadline_bounds_the_whole_race():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def hang():
            await asyncio.sleep(10)  # attempts that hang: the case under test

        try:
            await staggered_race([hang, hang], 0.1, t0 + 0.3, lambda v: None)
        except RaceFailed as exc:
            return exc, loop.time() - t0

    exc, took = run(main())
    assert exc.timed_out and 0.25 < took < 1.0
    assert all(isinstance(e, TimeoutError) for e in exc.errors)


def test_a_second_success_in_the_same_turn_is_discarded():
    async def main():
        discarded = []

        async def a():  # a and b finish in the same turn of the loop: the case under test
            await asyncio.sleep(0.05)
            return "a"

        async def b():
            await asyncio.sleep(0.05)
            return "b"

        result = await staggered_race([a, b], 0.0, asyncio.get_running_loop().time() + 5, discarded.append)
        await async_wait_until(lambda: discarded, what="the second success to be discarded")
        return result, discarded

    (index, value), discarded = run(main())
    assert (index, value) == (0, "a")
    assert discarded == ["b"]


def test_a_fatal_error_ends_the_race_without_the_next_attempt():
    async def main():
        started = []

        async def refuse():
            raise PermissionError("policy")

        async def other():
            started.append(True)
            return "x"

        try:
            await staggered_race([refuse, other], 0.5, asyncio.get_running_loop().time() + 5, lambda v: None,
                                 fatal=lambda e: isinstance(e, PermissionError))
        except PermissionError:
            return started

    assert run(main()) == []
