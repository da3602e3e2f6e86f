"""The dashboard's one way to the daemon: :class:`arcus.control.client.AsyncControlClient`.

``call`` sends one command. ``follow`` reads a stream (``stats.watch``, ``events.watch``) for
as long as the dashboard runs: when the daemon goes away (restart, crash, not started yet) it
says so with :class:`Down` -- the error, the delay before the next attempt and the attempt's
number -- waits that delay (bounded backoff) and subscribes again; the first item of a new
subscription comes with :class:`Up`. Screens never call this module: workers of the app do,
and post what they get as messages (:mod:`arcus.tui.messages`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from arcus.control import protocol as p
from arcus.control.client import AsyncControlClient
from arcus.tui.model import Backoff

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Up:
    """A subscription works (its first item follows); ``cmd`` is the command that answered."""

    cmd: str


@dataclass(frozen=True, slots=True)
class Item:
    value: Any


@dataclass(frozen=True, slots=True)
class Down:
    """The stream failed with ``error``; the next attempt, number ``attempt``, is in ``retry_in`` s."""

    error: p.ControlError
    retry_in: float
    attempt: int


class DaemonLink:
    def __init__(self, path: Path, *, timeout: float = 10.0, backoff: Callable[[], Backoff] = Backoff,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.path = Path(path)
        self._client = AsyncControlClient(self.path, timeout=timeout)
        self._backoff = backoff
        self._sleep = sleep

    async def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """One command's result; raises ControlError (DaemonNotRunning when nothing answers)."""
        return await self._client.call(cmd, args)

    async def follow(self, cmd: str, args: dict[str, Any] | None = None, *,
                     fallback: tuple[str, dict[str, Any]] | None = None,
                     idle_timeout: float | None = None) -> AsyncIterator[Up | Item | Down]:
        """Up, Item..., Down, (wait) Up, Item... until the caller stops iterating.

        ``fallback`` is another stream to read from a daemon that answers ``cmd`` with
        ``unknown_command`` (an older daemon); each reconnection tries ``cmd`` first again.
        ``idle_timeout`` bounds the wait for each item: a daemon that stops sending is treated
        as gone. The backoff starts again once a subscription has delivered an item.
        """
        backoff = self._backoff()
        failures = 0
        while True:
            used, used_args = cmd, args
            delivered = False
            error: p.ControlError
            while True:
                stream = cast(AsyncGenerator[Any, None],
                              self._client.stream(used, used_args, idle_timeout=idle_timeout))
                try:
                    async for value in stream:
                        if not delivered:
                            delivered = True
                            failures = 0
                            backoff.reset()
                            yield Up(used)
                        yield Item(value)
                    error = p.ControlError(p.UNAVAILABLE, f"the daemon at {self.path} ended the {used} stream")
                except p.ControlError as exc:
                    if exc.code == p.UNKNOWN_COMMAND and fallback is not None and used == cmd:
                        used, used_args = fallback
                        continue
                    error = exc
                finally:
                    await stream.aclose()
                break
            failures += 1
            delay = backoff.next()
            yield Down(error, delay, failures)
            await self._sleep(delay)

    async def close(self) -> None:
        await self._client.close()
