"""A scripted daemon for the dashboard's tests: the real ControlServer on a real Unix socket,
speaking the real protocol, with the daemon's real tenancy handlers over a real store, and
streams and lists the test writes (``stats.watch``, ``events.watch``, ``conns``, ``kill``,
``reload``). Nothing in the dashboard is replaced: it talks to this over the socket exactly as
it talks to ``arcus serve``.

Streams follow the daemon's contract: ``stats.watch`` sends the current stats at once, then
what the test pushes; ``events.watch`` sends what the test pushes after the subscription.
``stop()`` and ``start()`` play a daemon restart on the same socket path.
"""

from __future__ import annotations

import asyncio
import copy
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from arcus.errors import NotFound
from arcus.store import Store
from arcus.testing.control import ServerThread, TenancyDaemon
from arcus.testing.wait import async_wait_until


async def _cancel_others() -> None:
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me]
    for t in others:
        t.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class _Subscription:
    """One subscriber's stream: the items the test pushes, in order. A plain async iterator
    rather than an async generator, so a daemon stopped mid-stream leaves nothing to finalize."""

    def __init__(self, subscribers: list[asyncio.Queue[Any]], first: Any) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.subscribers = subscribers
        subscribers.append(self.queue)
        if first is not None:
            self.queue.put_nowait(first)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Any:
        return await self.queue.get()

    async def aclose(self) -> None:
        if self.queue in self.subscribers:
            self.subscribers.remove(self.queue)


def counters(active: int = 0, requests: int = 0, up: int = 0, down: int = 0, **errors: int) -> dict[str, Any]:
    return {"conns_total": requests, "conns_active": active, "requests": requests, "bytes_up": up,
            "bytes_down": down, "errors": dict(errors)}


def stats(uptime: float, tenants: dict[str, dict[str, Any]], generation: int = 1) -> dict[str, Any]:
    """A ``stats`` result whose one server carries the sum of the tenants."""
    total = counters()
    for c in tenants.values():
        for key in ("conns_total", "conns_active", "requests", "bytes_up", "bytes_down"):
            total[key] += c[key]
        for code, n in c["errors"].items():
            total["errors"][code] = total["errors"].get(code, 0) + n
    return {"servers": {"http": total}, "tenants": tenants, "generation": generation, "uptime": uptime,
            "pooled_upstreams": 2, "fds": {"open": 40, "limit": 1024, "low": 0},
            "auth": {"pending": 0, "kdf_runs": 0, "refused_busy": 0, "throttled_keys": 0, "cached": 0},
            "reloads": {"done": 0, "refused": 0}}


class ScriptedDaemon:
    def __init__(self, sock: Path, store_path: Path) -> None:
        self.sock = sock
        self.store = Store.open(store_path)
        self.tenancy = TenancyDaemon(self.store)
        self.current: dict[str, Any] = stats(10.0, {})
        self.conns: list[dict[str, Any]] = []
        self.reload_error: Exception | None = None
        self.generation = 1
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.pushed: list[dict[str, Any]] = []
        self.events_cmd = "events.watch"
        """Where the events are: ``audit.tail`` plays a daemon from before events.watch."""
        self._subscribers: dict[str, list[asyncio.Queue[Any]]] = defaultdict(list)
        self._thread: ServerThread | None = None

    # -- the script -------------------------------------------------------------------------

    def push_stats(self, value: dict[str, Any]) -> None:
        self.current = value
        self._broadcast("stats.watch", value)

    def push_event(self, event: dict[str, Any]) -> None:
        self.pushed.append(event)
        self._broadcast(self.events_cmd, event)

    def subscribers(self, cmd: str) -> int:
        return len(self._subscribers[cmd])

    async def subscribed(self, cmd: str, n: int = 1) -> None:
        """Wait (on the test's loop, where the dashboard runs) for ``n`` subscribers of ``cmd``."""
        await async_wait_until(lambda: self.subscribers(cmd) >= n, what=f"{n} {cmd} subscriber(s)")

    def _broadcast(self, cmd: str, value: Any) -> None:
        assert self._thread is not None
        for q in list(self._subscribers[cmd]):
            self._thread.loop.call_soon_threadsafe(q.put_nowait, copy.deepcopy(value))

    # -- handlers -------------------------------------------------------------------------------

    def handlers(self) -> dict[str, Any]:
        def recorded(cmd: str, fn: Any) -> Any:
            async def handler(args: dict[str, Any]) -> Any:
                self.calls.append((cmd, dict(args)))
                return await fn(args)

            return handler

        own = {
            "stats": self._stats,
            "stats.watch": self._stats_watch,
            "conns": self._conns,
            "kill": self._kill,
            "reload": self._reload,
        }
        own[self.events_cmd] = self._events_watch
        return {**self.tenancy.handlers(), **{cmd: recorded(cmd, fn) for cmd, fn in own.items()}}

    async def _stats(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.current

    async def _stats_watch(self, args: dict[str, Any]) -> AsyncIterator[Any]:
        return self._follow("stats.watch", first=self.current)

    async def _events_watch(self, args: dict[str, Any]) -> AsyncIterator[Any]:
        return self._follow(self.events_cmd)

    def _follow(self, cmd: str, first: Any = None) -> _Subscription:
        sub = _Subscription(self._subscribers[cmd], first)
        return sub

    async def _conns(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.conns

    async def _kill(self, args: dict[str, Any]) -> dict[str, Any]:
        cid = args.get("id")
        for c in self.conns:
            if c["id"] == cid:
                self.conns.remove(c)
                return {"killed": cid}
        raise NotFound(f"no live connection {cid}", hint="see `arcus ctl conns`")

    async def _reload(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.reload_error is not None:
            raise self.reload_error
        self.generation += 1
        return {"generation": self.generation}

    # -- life -------------------------------------------------------------------------------------

    def start(self) -> ScriptedDaemon:
        self._thread = ServerThread(self.sock, self.handlers())
        self._thread.__enter__()
        return self

    def stop(self, *, last: bool = False) -> None:
        """The daemon goes away: every connection closes, nothing answers on the socket."""
        thread, self._thread = self._thread, None
        if thread is not None:
            if last:
                thread.run(self.tenancy.close())
            thread.run(thread.server.close())
            # ControlServer._stream leaves the task reading the next item pending when its
            # connection is cancelled; end it here so it is not collected after the loop closed.
            thread.run(_cancel_others())
            thread.__exit__(None, None, None)
            self._subscribers = defaultdict(list)

    def __enter__(self) -> ScriptedDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(last=True)
        self.store.close()
