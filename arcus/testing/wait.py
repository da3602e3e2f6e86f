"""Bounded polls for tests: wait for an effect, never for a fixed time.

A test that sleeps "long enough" for something to happen is slow when the machine is idle and
flaky when it is busy. Poll the effect instead, with a bound that fails the test clearly:

    wait_until(lambda: log.exists(), what="the daemon's log")
    await async_wait_until(lambda: member.state == DOWN, what="the member to go down")

Both return the predicate's first truthy value (so ``line = wait_until(find_line)`` works) and
raise :class:`AssertionError` naming ``what`` when ``timeout`` passes first. The predicate is
always tried once more at the deadline, so a slow last interval never loses an effect that
did happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0


def _timed_out(what: str | None, timeout: float) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g}s waiting for {what or 'the condition'}")


def wait_until(
    predicate: Callable[[], T], *, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.01, what: str | None = None
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timed_out(what, timeout)
        time.sleep(min(interval, left))


async def async_wait_until(
    predicate: Callable[[], T], *, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.005, what: str | None = None
) -> T:
    """Like :func:`wait_until`, on the running event loop (other tasks run between tries)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - loop.time()
        if left <= 0:
            raise _timed_out(what, timeout)
        await asyncio.sleep(min(interval, left))
