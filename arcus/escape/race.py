"""Staggered racing of connection attempts: happy eyeballs (RFC 8305) and failover share it.

Attempt *i+1* starts ``delay`` after attempt *i* started, or at once when every running attempt
has failed; the first to succeed wins; the others are cancelled, and one that succeeded anyway
(a race in the same loop turn, or a cancellation that came too late) is handed to ``discard``
so its connection is closed. The whole race is bounded by ``deadline`` (``loop.time()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


class RaceFailed(Exception):
    """Every attempt failed (``errors`` in the order the attempts were started; an attempt
    cut by the deadline has a TimeoutError), or the deadline passed (``timed_out``)."""

    def __init__(self, errors: list[BaseException | None], timed_out: bool) -> None:
        super().__init__("all attempts failed" if not timed_out else "timed out")
        self.errors = errors
        self.timed_out = timed_out


async def staggered_race(
    attempts: Sequence[Callable[[], Awaitable[T]]],
    delay: float,
    deadline: float,
    discard: Callable[[T], None],
    name: str = "arcus-attempt",
    fatal: Callable[[BaseException], bool] | None = None,
) -> tuple[int, T]:
    """(index of the winner, its result); raises RaceFailed, or at once an attempt's exception
    for which ``fatal`` is true (one that no other attempt could do better on)."""
    loop = asyncio.get_running_loop()
    errors: list[BaseException | None] = [None] * len(attempts)
    tasks: dict[asyncio.Task, int] = {}
    started = 0
    next_start = loop.time()

    def start_next() -> None:
        nonlocal started, next_start
        index = started
        started += 1
        task = loop.create_task(_run(attempts[index]), name=f"{name}-{index}")
        tasks[task] = index
        next_start = loop.time() + delay

    def late(task: asyncio.Task) -> None:
        # A task cancelled after the race: a connection it made anyway must be closed.
        if task.cancelled():
            return
        if task.exception() is None:
            discard(task.result())

    start_next()
    try:
        while True:
            now = loop.time()
            if now >= deadline:
                for index in tasks.values():
                    errors[index] = TimeoutError()
                raise RaceFailed(errors, timed_out=True)
            if not tasks:
                if started < len(attempts):
                    start_next()
                    continue
                raise RaceFailed(errors, timed_out=False)
            wait_until = deadline
            if started < len(attempts):
                wait_until = min(wait_until, next_start)
            done, _ = await asyncio.wait(
                set(tasks), timeout=max(0.0, wait_until - now), return_when=asyncio.FIRST_COMPLETED
            )
            winner: tuple[int, T] | None = None
            for task in sorted(done, key=tasks.__getitem__):
                index = tasks.pop(task)
                exc = task.exception()
                if exc is not None:
                    errors[index] = exc
                    if fatal is not None and fatal(exc):
                        raise exc
                elif winner is None:
                    winner = (index, task.result())
                else:
                    discard(task.result())
            if winner is not None:
                return winner
            if started < len(attempts) and (done or loop.time() >= next_start):
                start_next()  # a failure starts the next attempt at once (RFC 8305 5), as does the delay
    finally:
        for task in tasks:
            task.cancel()
            task.add_done_callback(late)


async def _run(attempt: Callable[[], Awaitable[T]]) -> T:
    return await attempt()
