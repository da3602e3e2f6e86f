"""Retention: events older than audit.retention go; the file stays under audit.max_size."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from arcus.audit import retention
from arcus.audit.db import open_reader, open_writer
from arcus.audit.query import AuditReader
from arcus.audit.retention import prune, used_bytes
from arcus.audit.sink import AuditSink
from arcus.config.schema import AuditConfig

from .factory import NOW, event, fill, wait_for

DAY = 86400.0


def varied(i: int, t: float):
    rnd = random.Random(i)
    return event(
        i,
        time=t,
        tenant=rnd.choice(["acme", "globex", "initech"]),
        user=rnd.choice(["alice", "bob", None]),
        host=f"h{rnd.randrange(500)}.example.com",
        path="/" + "x" * rnd.randrange(10, 120),
    )


def test_by_age(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    old = [event(i, time=NOW - 40 * DAY + i) for i in range(30)]
    new = [event(100 + i, time=NOW - 10 * DAY + i) for i in range(20)]
    fill(path, old + new)
    conn = open_writer(path)
    result = prune(conn, retention=30 * DAY, max_size=1 << 30, now=NOW)
    conn.close()
    assert (result.by_age, result.by_size, result.finished) == (30, 0, True)
    with AuditReader(path) as r:
        assert [row["request_id"] for row in r.search()] == [f"req-{100 + i}" for i in range(20)]


def test_nothing_to_do_deletes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [event(i) for i in range(10)])
    conn = open_writer(path)
    result = prune(conn, retention=30 * DAY, max_size=1 << 30, now=NOW)
    conn.close()
    assert (result.by_age, result.by_size) == (0, 0)
    with AuditReader(path) as r:
        assert r.count() == 10


def test_by_size_deletes_the_oldest_and_gives_the_space_back(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [varied(i, NOW + i) for i in range(20_000)])
    conn = open_writer(path)
    before = used_bytes(conn)
    limit = before // 4
    assert before > 1_000_000
    result = prune(conn, retention=365 * DAY, max_size=limit, now=NOW + 30_000)
    after = used_bytes(conn)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert result.by_age == 0 and result.by_size > 0 and result.finished
    assert after <= limit
    assert os.path.getsize(path) <= limit  # incremental vacuum gave the freed pages back
    assert after > limit * 0.5  # it did not throw away far more than needed
    with AuditReader(path) as r:
        ids = [row["id"] for row in r.search()]
    assert ids == list(range(20_000 - len(ids) + 1, 20_001))  # the newest kept, contiguously
    assert len(ids) == 20_000 - result.by_size


def test_under_the_size_limit_nothing_goes(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [varied(i, NOW + i) for i in range(2000)])
    conn = open_writer(path)
    used = used_bytes(conn)
    result = prune(conn, retention=365 * DAY, max_size=used + 1, now=NOW)
    conn.close()
    assert result.by_size == 0


def test_a_pass_is_bounded_and_says_it_did_not_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "CHUNK", 10)
    monkeypatch.setattr(retention, "MAX_CHUNKS", 3)
    path = tmp_path / "audit.db"
    fill(path, [event(i, time=NOW - 100 * DAY + i) for i in range(100)])
    conn = open_writer(path)
    calls: list[int] = []
    result = prune(conn, retention=DAY, max_size=1 << 30, now=NOW, between_chunks=lambda: calls.append(1))
    assert (result.by_age, result.finished) == (30, False)
    assert calls  # the writer gets its turn between chunks
    result = prune(conn, retention=DAY, max_size=1 << 30, now=NOW)
    conn.close()
    assert result.by_age == 30


def test_the_sink_prunes_at_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [event(i, time=NOW - 10 * DAY) for i in range(5)])
    fill(path, [event(10 + i, time=NOW) for i in range(3)])
    age = time.time() - NOW  # the sink prunes against the real clock
    sink = AuditSink(path, AuditConfig(retention=age + 5 * DAY, flush_interval=0.01))
    sink.start()
    try:
        assert wait_for(lambda: sink.pruned == 5)
    finally:
        sink.close()
    with AuditReader(path) as r:
        assert [row["request_id"] for row in r.search()] == ["req-10", "req-11", "req-12"]


def test_the_sink_keeps_the_file_under_max_size_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from arcus.audit import sink as sink_mod

    monkeypatch.setattr(sink_mod, "PRUNE_INTERVAL", 0.05)
    path = tmp_path / "audit.db"
    limit = 1_000_000
    sink = AuditSink(path, AuditConfig(retention=1e12, max_size=limit, batch=500, flush_interval=0.01,
                                       queue=100_000))
    sink.start()
    for i in range(15_000):
        sink.emit(varied(i, NOW + i))
    assert wait_for(lambda: sink.written == 15_000, timeout=30)
    reader = open_reader(path)
    try:
        assert wait_for(lambda: sink.pruned > 0 and used_bytes(reader) <= limit, timeout=10)
    finally:
        reader.close()
        sink.close()
    with AuditReader(path) as r:
        assert r.last_id() == 15_000  # the newest are there
        assert r.count() < 15_000
