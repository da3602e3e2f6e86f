"""The bounded polls tests wait with: they return the first truthy value or fail by the bound."""

from __future__ import annotations

import asyncio
import time

import pytest

from arcus.testing.wait import async_wait_until, wait_until


def test_returns_the_first_truthy_value() -> None:
    values = iter([None, 0, "", "found"])
    assert wait_until(lambda: next(values), interval=0.001) == "found"


def test_fails_at_the_bound_naming_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^timed out after 0.2s waiting for the flag$"):
        wait_until(lambda: False, timeout=0.2, what="the flag")
    assert 0.2 <= time.monotonic() - started < 2


def test_the_predicate_is_tried_at_the_deadline() -> None:
    calls: list[float] = []

    def late() -> bool:
        calls.append(time.monotonic())
        return len(calls) == 2  # true on the try at the deadline, the interval being longer

    assert wait_until(late, timeout=0.05, interval=10) is True
    assert calls[1] - calls[0] >= 0.05


def test_the_async_poll_lets_other_tasks_run() -> None:
    async def main() -> str:
        box: list[str] = []
        asyncio.get_running_loop().call_later(0.01, box.append, "set")
        return (await async_wait_until(lambda: box and box[0], what="the callback"))

    assert asyncio.run(main()) == "set"


def test_the_async_poll_fails_at_the_bound() -> None:
    with pytest.raises(AssertionError, match="timed out after 0.05s waiting for the condition"):
        asyncio.run(async_wait_until(lambda: False, timeout=0.05))
