"""The daemon's side of ``arcus audit tail -f``: events as they are written, on the event loop.

:func:`follow_sink` subscribes to the sink *first*, then reads the backlog (the last ``n``
events) from the file in a worker thread, then yields the live events whose ids are above the
backlog's: an event committed while the backlog was read is in one of the two, never lost,
never shown twice.

The writer thread hands each committed batch to the event loop with ``call_soon_threadsafe``;
the stream keeps at most ``max_pending`` events for a slow reader and, past that, drops and
says so with one ``{"skipped": n}`` item, so a client that stops reading costs the daemon a
bounded amount of memory (the control server drops a client that stops reading for good).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from arcus.audit.query import AuditReader
from arcus.audit.sink import AuditSink
from arcus.errors import OperatorError

MAX_PENDING = 10_000
MAX_BACKLOG = 10_000


async def follow_sink(
    sink: AuditSink,
    *,
    n: int = 0,
    tenant: str | None = None,
    max_pending: int = MAX_PENDING,
) -> AsyncIterator[dict[str, Any]]:
    """The last ``n`` events (``tenant``'s only, when given), then every new one as it is written."""
    loop = asyncio.get_running_loop()
    pending: deque[dict[str, Any]] = deque()
    wake = asyncio.Event()
    skipped = 0
    closed = False

    def end() -> None:  # on the event loop
        nonlocal closed
        closed = True
        wake.set()

    def on_close() -> None:  # in the thread that closed the sink
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(end)

    def take(rows: list[dict[str, Any]]) -> None:  # on the event loop
        nonlocal skipped
        for row in rows:
            if tenant is not None and row.get("tenant") != tenant:
                continue
            if len(pending) >= max_pending:
                skipped += 1
            else:
                pending.append(row)
        wake.set()

    def on_batch(rows: list[dict[str, Any]]) -> None:  # in the writer thread
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is reading
            loop.call_soon_threadsafe(take, rows)

    unsubscribe = sink.subscribe(on_batch, on_close)
    try:
        last = 0
        if n > 0:
            backlog = await asyncio.to_thread(_backlog, sink, min(n, MAX_BACKLOG), tenant)
            for row in backlog:
                last = row["id"]
                yield row
        while True:
            await wake.wait()
            wake.clear()
            if skipped:
                count, skipped = skipped, 0
                yield {"skipped": count}
            while pending:
                row = pending.popleft()
                if row["id"] > last:
                    yield row
            if closed:
                return  # the sink closed (audit turned off, shutdown): the stream ends
    finally:
        unsubscribe()


def _backlog(sink: AuditSink, n: int, tenant: str | None) -> list[dict[str, Any]]:
    try:
        with AuditReader(sink.path) as reader:
            return reader.tail(n, tenant=tenant)
    except OperatorError:
        return []  # no file yet (the writer creates it at start; moved away by hand): no backlog


Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def _arg(args: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = args.get(name)
    if value is None:
        return default
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise OperatorError(f'argument "{name}" must be {"an integer" if kind is int else "a string"}',
                            code="bad_request")
    return value


def audit_handlers(get_sink: Callable[[], AuditSink | None]) -> dict[str, Handler]:
    """The daemon's ``audit.*`` control commands; ``get_sink`` returns the current sink.

    - ``audit.tail {n?: int, tenant?: str}`` streams the last ``n`` events, then new ones;
    - ``audit.stats {}`` -> ``{enabled, written, dropped, queued, db_bytes}``.
    """

    async def tail(args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        n = _arg(args, "n", int, 0)
        tenant = _arg(args, "tenant", str, None)
        if n < 0:
            raise OperatorError('argument "n" must be 0 or more', code="bad_request")
        sink = get_sink()
        if sink is None:
            raise OperatorError(
                "the audit log is disabled in this daemon's profile",
                code="invalid",
                hint="set audit.enabled: true in the profile and reload",
            )
        return follow_sink(sink, n=n, tenant=tenant)

    async def stats(args: dict[str, Any]) -> dict[str, Any]:
        sink = get_sink()
        if sink is None:
            return {"enabled": False, "written": 0, "dropped": 0, "queued": 0, "db_bytes": 0}
        return {"enabled": True, **await asyncio.to_thread(sink.stats)}

    return {"audit.tail": tail, "audit.stats": stats}
