"""The full-text index of hosts and paths: built in chunks beside a writing sink, kept up to date
by searches, kept exact by retention, searched with the filters of `audit search`."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from arcus.audit import fulltext
from arcus.audit.db import open_writer
from arcus.audit.fulltext import TextIndex
from arcus.audit.query import Filters
from arcus.audit.retention import prune
from arcus.audit.sink import AuditSink
from arcus.config.schema import AuditConfig
from arcus.errors import NotFound, OperatorError

from .factory import NOW, event, fill, wait_for

DAY = 86400.0

EVENTS = [
    event(0, host="www.casino.example", path="/play"),
    event(1, host="news.example.org", path="/casino/odds"),  # the word in the path
    event(2, host="casinoroyale.example", path="/"),  # another word: not "casino"
    event(3, host="mail.example.com", path="/login", tenant="globex"),
    event(4, host="mail.example.com", path="/inbox", user="bob"),
    event(5, host="10.1.2.3", port=443, method="CONNECT", path=None),
]


def ids(rows: list[dict]) -> list[int]:
    return sorted(int(r["request_id"].split("-")[1]) for r in rows)


def integrity(path: Path) -> None:
    """FTS5's own check of an external-content index against the events table (raises when an
    entry points at a deleted event or an event is missing)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("INSERT INTO events_fts (events_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    fill(tmp_path / "audit.db", EVENTS)
    return tmp_path / "audit.db"


def test_search_finds_a_host_word_and_a_path_word_and_nothing_else(log: Path) -> None:
    with TextIndex(log) as index:
        assert index.create() is True and index.create() is False
        assert index.catch_up() == 6 and index.pending() == 0
        assert ids(index.search("casino", Filters(), limit=10)) == [0, 1]
        assert ids(index.search("login", Filters(), limit=10)) == [3]
        assert ids(index.search("example.com", Filters(), limit=10)) == [3, 4]
        assert ids(index.search("MAIL inbox", Filters(), limit=10)) == [4]  # every word, any case
        assert ids(index.search("10.1.2.3", Filters(), limit=10)) == [5]
        assert ids(index.search("casino OR login", Filters(), limit=10)) == []  # no FTS operators
        assert ids(index.search("nothing-here", Filters(), limit=10)) == []
        # with the filters of `audit search`, newest first
        assert ids(index.search("mail", Filters(tenant="acme"), limit=10)) == [4]
        assert ids(index.search("mail", Filters(user="bob", tenant="acme"), limit=10)) == [4]
        assert ids(index.search("example", Filters(since=NOW + 3, until=NOW + 5), limit=10)) == [3, 4]
        newest = index.search("example", Filters(), limit=2)
        assert [r["request_id"] for r in newest] == ["req-4", "req-3"]
        assert set(newest[0]) >= {"id", "at", "host", "path", "sni"}
    integrity(log)


def test_a_search_without_the_index_is_refused_and_changes_nothing(log: Path) -> None:
    before = log.read_bytes()
    with TextIndex(log) as index:
        with pytest.raises(NotFound) as info:
            index.search("casino", Filters(), limit=10)
        with pytest.raises(OperatorError, match="at least one word"):
            index.search("  ", Filters(), limit=10)
        assert index.drop() is False
    assert info.value.message == f"the audit log {log} has no full-text index"
    assert info.value.hint == fulltext.INDEX_HINT
    assert log.read_bytes() == before


def test_events_written_later_are_indexed_by_the_next_catch_up(log: Path) -> None:
    with TextIndex(log) as index:
        index.create()
        index.catch_up()
    fill(log, [event(10, host="late.casino.example")])
    with TextIndex(log) as index:
        assert index.pending() == 1
        assert ids(index.search("casino", Filters(), limit=10)) == [0, 1]  # search does not index by itself
        assert index.catch_up() == 1
        assert ids(index.search("casino", Filters(), limit=10)) == [0, 1, 10]
        integrity(log)
        assert index.drop() is True and not index.exists()
        with pytest.raises(NotFound):
            index.search("casino", Filters(), limit=10)
    conn = sqlite3.connect(log)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'events_fts%'")}
    conn.close()
    assert tables == set()

def test_retention_takes_deleted_events_out_of_the_index(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    old = [event(i, time=NOW - 40 * DAY + i, host=f"old{i}.casino.example") for i in range(30)]
    new = [event(100 + i, time=NOW - 10 * DAY + i, host=f"new{i}.casino.example") for i in range(20)]
    fill(path, old[:10])
    with TextIndex(path) as index:
        index.create()
        assert index.catch_up(chunk=3) == 10
    fill(path, old[10:] + new)  # 20 old events deleted below before they were ever indexed
    conn = open_writer(path)
    try:
        result = prune(conn, retention=30 * DAY, max_size=1 << 30, now=NOW)
    finally:
        conn.close()
    assert result.by_age == 30
    with TextIndex(path) as index:
        assert index.catch_up() == 20
        found = index.search("casino", Filters(), limit=100)
    assert ids(found) == [100 + i for i in range(20)]
    integrity(path)  # no entry left for a deleted event, none made up for one never indexed


def test_the_index_is_built_beside_a_writing_sink_without_holding_it_back(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, (event(i, host=f"h{i}.example.com") for i in range(20_000)))
    sink = AuditSink(path, AuditConfig(retention=1e12, queue=1_000_000, batch=200, flush_interval=0.01))
    sink.start()
    stop = threading.Event()

    def traffic() -> None:
        i = 20_000
        while not stop.is_set() and i < 60_000:
            sink.emit(event(i, host=f"h{i}.example.com", path="/live"))
            i += 1
            if i % 200 == 0:
                stop.wait(0.001)

    writer = threading.Thread(target=traffic, name="test-traffic")
    writer.start()
    try:
        with TextIndex(path) as index:
            index.create()
            while writer.is_alive():
                index.catch_up(chunk=1000)
            writer.join()
            wait_for(lambda: sink.queued == 0)
    finally:
        stop.set()
        writer.join()
        sink.close()
    assert sink.dropped == 0
    with TextIndex(path) as index:
        index.catch_up()
        assert index.pending() == 0
        assert len(index.search("example", Filters(), limit=100_000)) == sink.written + 20_000
        assert len(index.search("live", Filters(), limit=100_000)) == sink.written
    integrity(path)


def test_the_writer_waits_for_one_chunk_at_most_while_the_index_is_built(tmp_path: Path) -> None:
    """The sink gets the write lock between two of the indexer's chunks. It waited for the whole
    build: SQLite's busy wait tries again 100 ms apart after a while, and the indexer let go of the
    lock for microseconds between chunks (a daemon beside `arcus audit index` of 20 M events dropped
    1 M of its 2 M events)."""
    path = tmp_path / "audit.db"
    fill(path, (event(i, host=f"h{i}.example.com") for i in range(60_000)))
    sink = AuditSink(path, AuditConfig(retention=1e12, queue=1_000_000, batch=50, flush_interval=0.002))
    sink.start()
    emitted: dict[int, float] = {}
    waited: list[float] = []

    def committed(rows: list[dict]) -> None:
        now = time.monotonic()
        waited.extend(now - emitted[r["conn_id"]] for r in rows)

    sink.subscribe(committed)
    stop = threading.Event()

    def traffic() -> None:
        i = 60_000
        while not stop.is_set() and i < 70_000:
            for _ in range(20):
                emitted[i] = time.monotonic()
                sink.emit(event(i, host="live.example.com", path="/live"))
                i += 1
            stop.wait(0.002)

    writer = threading.Thread(target=traffic, name="test-traffic")
    writer.start()
    try:
        wait_for(lambda: sink.written > 0)
        with TextIndex(path) as index:
            index.create()
            started = time.monotonic()
            index.catch_up(chunk=1000)
            took = time.monotonic() - started
    finally:
        stop.set()
        writer.join()
        wait_for(lambda: sink.queued == 0)
        sink.close()
    assert sink.dropped == 0
    assert max(waited) < took / 5, (max(waited), took)  # a few of its 60-odd chunks, not the build


def test_the_newest_window_is_found_by_ids_and_read_oldest_first(log: Path) -> None:
    with TextIndex(log) as index:
        index.create()
        index.catch_up()
        with index.snapshot():
            # events 0-4 hold the word (ids 1-5; 5 is an address): the newest 2 are ids 4 and 5
            assert index.window_start("example", Filters(), limit=2) == 3
            assert [r["id"] for r in index.rows("example", Filters(), after_id=3)] == [4, 5]  # in id order
            assert [r["id"] for r in index.rows("example", Filters())] == [1, 2, 3, 4, 5]
            assert index.window_start("example", Filters(), limit=4) == 1
            assert index.window_start("example", Filters(), limit=5) is None  # five match: no more
            assert index.window_start("mail", Filters(tenant="acme"), limit=1) is None
            assert [r["id"] for r in index.rows("mail", Filters(status=(200, 200)))] == [4, 5]
        with pytest.raises(OperatorError, match="at least one word"):
            index.window_start('"', Filters(), limit=1)
        with pytest.raises(OperatorError, match="at least one word"):
            index.rows(" ", Filters())


def test_the_newest_matches_are_read_without_sorting_every_match(tmp_path: Path) -> None:
    """A word in most hosts (``google`` in a school's log) used to be searched by sorting every
    match to take the newest hundred; the index is now read newest first and stops at the limit:
    the statements a search runs sort nothing, and the answer is the same."""
    path = tmp_path / "audit.db"
    fill(path, [event(i, host="www.google.com" if i % 4 else "other.example", tenant="acme" if i % 3 else "globex")
                for i in range(400)])
    statements: list[str] = []
    with TextIndex(path) as index:
        index.create()
        index.catch_up()
        index.conn.set_trace_callback(statements.append)
        newest = index.search("google", Filters(tenant="acme"), limit=5)
        with index.snapshot():
            start = index.window_start("google", Filters(), limit=50)
            window = list(index.rows("google", Filters(), after_id=start))
        index.conn.set_trace_callback(None)
        searches = [s for s in statements if " match " in s.lower()]
        assert len(searches) == 3, statements
        for sql in searches:
            # the traced statement has its parameters in it as literals: EXPLAIN takes it as it is
            plan = " | ".join(r[3] for r in index.conn.execute("EXPLAIN QUERY PLAN " + sql))
            assert "TEMP B-TREE" not in plan and plan.startswith("SCAN events_fts"), (sql, plan)
    want = [i for i in range(400) if i % 4 and i % 3][-5:][::-1]
    assert [int(r["request_id"].split("-")[1]) for r in newest] == want
    assert [int(r["request_id"].split("-")[1]) for r in window] == [i for i in range(400) if i % 4][-50:]
