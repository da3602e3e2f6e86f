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
    monkeypatch.setattr(retention, "MAX_ROWS", 30)
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


def test_by_age_finds_its_range_of_ids_without_an_index_on_time(tmp_path: Path) -> None:
    from arcus.audit.db import ids_from

    path = tmp_path / "audit.db"
    # ids 1-100: 40 days old, one second apart; 101: a clock stepped back (old time, new id);
    # 102-150: 10 days old.
    old = [event(i, time=NOW - 40 * DAY + i) for i in range(100)]
    stepped = [event(100, time=NOW - 50 * DAY)]
    new = [event(101 + i, time=NOW - 10 * DAY + i) for i in range(49)]
    fill(path, old + stepped + new)
    conn = open_writer(path)
    assert "events_time" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert ids_from(conn, NOW - 40 * DAY + 50) == 51
    assert ids_from(conn, NOW - 100 * DAY) == 1
    assert ids_from(conn, NOW) == 151  # nothing that late: one above the last id
    result = prune(conn, retention=30 * DAY, max_size=1 << 30, now=NOW)
    with AuditReader(path) as r:
        left = [row["request_id"] for row in r.search(limit=1000)]
    # nothing newer than the cutoff goes; the event out of order goes now or in a later pass
    assert [i for i in left if i != "req-100"] == [f"req-{101 + i}" for i in range(49)]
    assert result.by_age == 150 - len(left) and result.finished
    result = prune(conn, retention=9 * DAY, max_size=1 << 30, now=NOW)
    conn.close()
    with AuditReader(path) as r:
        assert r.count() == 0  # the boundary is past everything: all of it goes


def test_by_age_on_an_empty_log_and_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.db"
    fill(path, [])
    conn = open_writer(path)
    assert prune(conn, retention=DAY, max_size=1 << 30, now=NOW).by_age == 0
    conn.close()
    fill(path, [event(i, time=NOW - 2 * DAY + i) for i in range(25)] + [event(100 + i) for i in range(5)])
    monkeypatch.setattr(retention, "CHUNK", 10)
    conn = open_writer(path)
    result = prune(conn, retention=DAY, max_size=1 << 30, now=NOW + 10)
    conn.close()
    assert (result.by_age, result.finished) == (25, True)
    with AuditReader(path) as r:
        assert [row["request_id"] for row in r.search()] == [f"req-{100 + i}" for i in range(5)]


def test_the_host_map_forgets_the_lines_whose_events_are_gone(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    old = [event(i, time=NOW - 40 * DAY + i, host=f"old{i % 3}.example") for i in range(250)]
    new = [event(1000 + i, time=NOW - 10 * DAY + i, host=f"new{i % 3}.example") for i in range(120)]
    fill(path, old + new, batch=100)  # ids 1-250 old, 251-370 new: lines 1-100, 101-200, 201-300, 301-370
    conn = open_writer(path)
    assert prune(conn, retention=30 * DAY, max_size=1 << 30, now=NOW).by_age == 250
    # the line 201-300 still holds new events (251-300): it stays; the two before it go
    assert conn.execute("SELECT lo, hi FROM event_batches ORDER BY lo").fetchall() == [(201, 300), (301, 370)]
    conn.close()
    with AuditReader(path) as r:
        assert r.count(host="old1.example") == 0
        assert r.count(host="new1.example") == 40
        assert r.count(host="*.example") == 120
    fill(path, [event(2000 + i, time=NOW - 50 * DAY) for i in range(5)])  # all older than retention
    conn = open_writer(path)
    prune(conn, retention=0.0, max_size=1 << 30, now=NOW)  # everything goes
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM event_batches").fetchone()[0] == 0
    conn.close()


def test_the_pages_of_each_chunk_go_back_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file shrinks as the prune goes, many pages per statement: sqlite3's ``execute`` ran
    ``incremental_vacuum`` one page per call, so a pass that freed more pages than its 10,000
    calls left the rest inside the file (a 20 M-event log pruned to 2 GiB stayed at 5 GB)."""
    monkeypatch.setattr(retention, "CHUNK", 1000)
    path = tmp_path / "audit.db"
    fill(path, [varied(i, NOW + i) for i in range(20_000)])
    conn = open_writer(path)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    free_between: list[int] = []
    result = prune(conn, retention=365 * DAY, max_size=used_bytes(conn) // 4, now=NOW + 30_000,
                   between_chunks=lambda: free_between.append(conn.execute("PRAGMA freelist_count").fetchone()[0]))
    conn.set_trace_callback(None)
    freed = pages - conn.execute("PRAGMA page_count").fetchone()[0]
    vacuums = [s for s in statements if "incremental_vacuum" in s]
    assert result.by_size > 10_000 and len(free_between) > 5
    assert free_between == [0] * len(free_between)  # each chunk's pages went back before the next chunk
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert freed > 500 and len(vacuums) <= 2 * len(free_between) + 2
    conn.close()


def test_a_reader_holding_a_snapshot_does_not_hold_the_writer_at_the_end_of_a_prune(tmp_path: Path) -> None:
    """The truncating checkpoint after a prune is skipped while a reader (an export, a search)
    holds an old snapshot: it waited for the reader up to the busy timeout, 5 s in which the
    daemon's writer thread wrote nothing and its queue overflowed."""
    path = tmp_path / "audit.db"
    fill(path, [event(i, time=NOW - 40 * DAY + i) for i in range(300)] + [event(1000 + i) for i in range(10)])
    conn = open_writer(path)
    reader = open_reader(path)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 310  # a snapshot, held
    started = time.monotonic()
    result = prune(conn, retention=30 * DAY, max_size=1 << 30, now=NOW)
    took = time.monotonic() - started
    reader.execute("ROLLBACK")
    reader.close()
    assert result.by_age == 300
    assert took < 1.0, took
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000  # the writer's own waits are unchanged
    conn.close()


class SlowDisk:
    """A clock that moves only when the writer deletes an event: ``cost`` seconds per row (a
    temporary trigger on the writer's connection calls it), so the steps' times are exact."""

    def __init__(self, conn, cost: float) -> None:
        self.now = 0.0
        self.cost = cost
        self.rows = 0
        conn.create_function("slow_delete", 0, self.tick)
        conn.execute("CREATE TEMP TRIGGER slow AFTER DELETE ON main.events BEGIN SELECT slow_delete(); END")

    def tick(self) -> None:
        self.now += self.cost
        self.rows += 1

    def __call__(self) -> float:
        return self.now


def test_a_step_is_bounded_by_its_time_not_its_rows(tmp_path: Path) -> None:
    """A prune on a disk where a row costs 0.1 ms deletes BUDGET's worth a step (300 rows), not
    CHUNK's 5000 (0.5 s of the writer, while the daemon's queue fills); it starts small, grows
    to the budget, and after a stretch that is ten times slower the next step fits again."""
    path = tmp_path / "audit.db"
    fill(path, [event(i, time=NOW - 40 * DAY + i) for i in range(6000)] + [event(10_000 + i) for i in range(5)])
    conn = open_writer(path)
    disk = SlowDisk(conn, cost=0.0001)
    steps: list[tuple[int, float]] = []  # (rows, seconds) of each step
    mark = [0, 0.0]

    def between() -> None:
        steps.append((disk.rows - mark[0], disk.now - mark[1]))
        mark[:] = [disk.rows, disk.now]
        if disk.rows >= 3000:
            disk.cost = 0.001  # a cold stretch of the file

    result = prune(conn, retention=30 * DAY, max_size=1 << 30, now=NOW, between_chunks=between, clock=disk)
    conn.close()
    assert (result.by_age, result.finished) == (6000, True)
    rows = [n for n, _ in steps]
    assert sum(rows) == 6000
    assert rows[0] == retention.FIRST_CHUNK  # the first step is small: nothing timed yet
    assert 290 <= max(rows) <= 300  # the budget's rows at 0.1 ms (float rounding aside), never more
    over = [i for i, (_, seconds) in enumerate(steps) if seconds > retention.BUDGET + 1e-6]
    assert len(over) == 1 and rows[over[0] - 1] >= 290  # the step the stretch turned slow in, only
    assert all(n <= 30 for n in rows[over[0] + 1:])  # then 30 rows: the budget at 1 ms a row
    with AuditReader(path) as r:
        assert r.count() == 5


def test_a_size_prune_is_bounded_by_its_time_too(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [varied(i, NOW + i) for i in range(8000)])
    conn = open_writer(path)
    disk = SlowDisk(conn, cost=0.0002)
    seen: list[int] = []
    result = prune(conn, retention=365 * DAY, max_size=used_bytes(conn) // 3, now=NOW + 10_000,
                   between_chunks=lambda: seen.append(disk.rows), clock=disk)
    conn.close()
    steps = [b - a for a, b in zip([0, *seen], seen)]
    assert result.by_size > 4000 and result.finished
    assert steps[0] == 0  # the pass by age found nothing
    assert steps[1] == retention.FIRST_CHUNK and max(steps[2:]) <= retention.BUDGET / 0.0002  # 150 rows


def test_the_batch_map_lines_go_by_their_key_not_by_a_scan_of_the_map(tmp_path: Path) -> None:
    """Every chunk took the map's lines whose events were gone with ``hi < min(id)``, which no
    index serves: SQLite read the whole map at every chunk (41 GB through the page cache to prune
    3.5 M of 5 M events, and a second or more holding the writer for the first chunk, cold)."""
    path = tmp_path / "audit.db"
    fill(path, [event(i, time=NOW - 40 * DAY + i) for i in range(300)] + [event(1000 + i) for i in range(10)], batch=20)
    conn = open_writer(path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    assert prune(conn, retention=30 * DAY, max_size=1 << 30, now=NOW).by_age == 300
    conn.set_trace_callback(None)
    unmaps = [s for s in statements if s.startswith("DELETE FROM event_batches")]
    assert unmaps
    for sql in unmaps:
        oldest = conn.execute("SELECT min(id) FROM events").fetchone()[0]
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql.replace("?1", str(oldest))))
        assert "SEARCH event_batches USING INTEGER PRIMARY KEY" in plan, plan
    assert conn.execute("SELECT min(lo), max(hi) FROM event_batches").fetchone() == (301, 310)
    conn.close()


def test_a_free_list_from_before_the_pass_goes_back_in_paced_steps(tmp_path: Path) -> None:
    """A long free list (an older arcus left it) is given back at the end of a pass from
    FIRST_VACUUM pages a step, the writer's turn after each; the chunks give back their own
    pages only, so none of them carries the old list."""
    path = tmp_path / "audit.db"
    fill(path, [event(0, time=NOW - 40 * DAY)] + [varied(i, NOW + i) for i in range(1, 20_000)])
    conn = open_writer(path)
    conn.execute("DELETE FROM events WHERE id BETWEEN 2 AND 10000")  # freed, not given back
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    assert free > 200
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    turns: list[int] = []
    result = prune(conn, retention=30 * DAY, max_size=1 << 30, now=NOW + 30_000,
                   between_chunks=lambda: turns.append(1))
    conn.set_trace_callback(None)
    vacuums = [int(s.split("(")[1].rstrip(")")) for s in statements if "incremental_vacuum" in s]
    assert result.by_age == 1
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert vacuums[0] < free / 4 and vacuums[1] == retention.FIRST_VACUUM  # the chunk's own pages, then the old list
    assert len(turns) == len(vacuums)  # the writer's turn after each step
    conn.close()
