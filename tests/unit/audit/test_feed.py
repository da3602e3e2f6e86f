"""The daemon's audit.tail stream and audit.stats: backlog then live events, bounded for slow readers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from arcus.audit.feed import audit_handlers, follow_sink
from arcus.audit.sink import AuditSink
from arcus.config.schema import AuditConfig
from arcus.errors import OperatorError
from arcus.testing.wait import async_wait_until

from .factory import event, fill


def sink_on(path: Path, **kw) -> AuditSink:
    kw.setdefault("retention", 1e12)
    kw.setdefault("flush_interval", 0.01)
    sink = AuditSink(path, AuditConfig(**kw))
    sink.start()
    return sink


async def take(agen, n: int, timeout: float = 10.0) -> list[dict]:
    out = []
    for _ in range(n):
        out.append(await asyncio.wait_for(anext(agen), timeout))
    return out


def test_backlog_then_live_events_without_gap_or_repeat(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [event(i, tenant="acme" if i % 2 == 0 else "globex") for i in range(6)])
    sink = sink_on(path)

    async def main() -> list[dict]:
        agen = follow_sink(sink, n=2, tenant="acme")
        try:
            backlog = await take(agen, 2)
            for i in range(10, 14):
                sink.emit(event(i, tenant="acme" if i != 11 else "globex"))
            live = await take(agen, 3)
            return backlog + live
        finally:
            await agen.aclose()

    try:
        rows = asyncio.run(main())
    finally:
        sink.close()
    assert [r["request_id"] for r in rows] == ["req-2", "req-4", "req-10", "req-12", "req-13"]
    assert [r["id"] for r in rows] == [3, 5, 7, 9, 10]
    assert sink._subscribers == ()  # closing the stream unsubscribed it


def test_events_written_while_the_backlog_is_read_are_not_lost_or_doubled(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = sink_on(path, batch=1)

    async def main() -> list[int]:
        agen = follow_sink(sink, n=1000)
        try:
            for i in range(50):
                sink.emit(event(i))
                if i % 10 == 0:
                    await asyncio.sleep(0.005)  # let the backlog read run between emits: the case under test
            # Everything emitted comes out exactly once, whether from the backlog or live.
            rows = await take(agen, 50)
            return [r["id"] for r in rows]
        finally:
            await agen.aclose()

    try:
        ids = asyncio.run(main())
    finally:
        sink.close()
    assert ids == list(range(1, 51))


def test_a_slow_reader_gets_a_skipped_count_not_unbounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = sink_on(path, batch=100)

    async def main() -> list[dict]:
        agen = follow_sink(sink, max_pending=5)
        first = asyncio.ensure_future(anext(agen))
        await async_wait_until(lambda: sink._subscribers, what="the stream to subscribe")
        for i in range(20):
            sink.emit(event(i))
        try:
            return [await asyncio.wait_for(first, 10), *await take(agen, 5)]
        finally:
            await agen.aclose()

    try:
        rows = asyncio.run(main())
    finally:
        sink.close()
    assert rows[0] == {"skipped": 15}
    assert [r["request_id"] for r in rows[1:]] == [f"req-{i}" for i in range(5)]


def test_the_stream_ends_when_the_sink_closes(tmp_path: Path) -> None:
    sink = sink_on(tmp_path / "audit.db")

    async def main() -> list[dict]:
        agen = follow_sink(sink)
        first = asyncio.ensure_future(anext(agen))
        await async_wait_until(lambda: sink._subscribers, what="the stream to subscribe")
        sink.emit(event(1))
        await asyncio.to_thread(sink.close)  # a reload turned audit off
        rows = [await asyncio.wait_for(first, 10)]
        async for row in agen:  # ends by itself
            rows.append(row)
        return rows

    rows = asyncio.run(asyncio.wait_for(main(), 20))
    assert [r["request_id"] for r in rows] == ["req-1"]
    assert sink._subscribers == ()


def test_a_stream_before_any_file_has_no_backlog(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "none" / "audit.db", AuditConfig())  # never started: no file

    async def main() -> None:
        agen = follow_sink(sink, n=10)
        pending = asyncio.ensure_future(anext(agen))
        await async_wait_until(lambda: sink._subscribers, what="the stream to subscribe")
        await asyncio.sleep(0.05)  # a window in which nothing may arrive: the behaviour under test
        assert not pending.done()  # nothing to show, waiting for live events
        pending.cancel()  # as the control server does when the client leaves
        with pytest.raises(asyncio.CancelledError):
            await pending
        await agen.aclose()

    asyncio.run(main())


# -- handlers ---------------------------------------------------------------------------


def test_stats_handler(tmp_path: Path) -> None:
    sink = sink_on(tmp_path / "audit.db")
    current: list[AuditSink | None] = [sink]
    handlers = audit_handlers(lambda: current[0])
    sink.emit(event(1))
    sink.close()
    result = asyncio.run(handlers["audit.stats"]({}))
    assert result["enabled"] is True
    assert (result["written"], result["dropped"], result["queued"]) == (1, 0, 0)
    assert result["db_bytes"] > 0
    current[0] = None
    assert asyncio.run(handlers["audit.stats"]({})) == {
        "enabled": False, "written": 0, "dropped": 0, "queued": 0, "db_bytes": 0
    }


def test_tail_handler_refuses_when_disabled_and_bad_arguments(tmp_path: Path) -> None:
    handlers = audit_handlers(lambda: None)
    with pytest.raises(OperatorError) as info:
        asyncio.run(handlers["audit.tail"]({}))
    assert info.value.code == "invalid"
    assert "audit.enabled: true" in (info.value.hint or "")
    sink = AuditSink(tmp_path / "audit.db", AuditConfig())
    handlers = audit_handlers(lambda: sink)
    for args in ({"n": "ten"}, {"n": True}, {"n": -1}, {"tenant": 7}):
        with pytest.raises(OperatorError) as info:
            asyncio.run(handlers["audit.tail"](args))
        assert info.value.code == "bad_request", args
