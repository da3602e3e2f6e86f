"""AuditSink: a bounded, never-blocking emit; batches in one transaction each; flush on close."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from arcus.audit.db import SCHEMA_VERSION, audit_path, open_writer
from arcus.audit.query import AuditReader
from arcus.audit.sink import AuditSink, apply_config, open_sink
from arcus.config.schema import AuditConfig
from arcus.errors import OperatorError

from .factory import NOW, event, fill, wait_for


def config(**kw) -> AuditConfig:
    kw.setdefault("retention", 1e12)
    return AuditConfig(**kw)


def ids_in(path: Path) -> list[str]:
    with AuditReader(path) as r:
        return [row["request_id"] for row in r.search()]


# -- the hot path ------------------------------------------------------------------------


def test_flood_drops_the_new_events_counts_them_and_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = AuditSink(path, config(queue=100, batch=10))  # writer not started: the queue only fills
    events = [event(i) for i in range(20_000)]
    started = time.perf_counter()
    for e in events:
        sink.emit(e)
    elapsed = time.perf_counter() - started
    assert sink.queued == 100
    assert sink.dropped == 19_900
    # A few microseconds each at most on any machine; 20 us is a bound a disk wait would blow.
    assert elapsed / len(events) < 20e-6, f"{elapsed / len(events) * 1e6:.1f} us per emit"
    sink.start()
    sink.close()
    assert sink.written == 100
    assert ids_in(path) == [f"req-{i}" for i in range(100)]  # the first ones kept, the new ones dropped


def test_flood_while_the_writer_runs_accounts_for_every_event(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit.db", config(queue=500, batch=100, flush_interval=0.01))
    sink.start()
    events = [event(i) for i in range(30_000)]
    worst = 0.0
    for e in events:
        t = time.perf_counter()
        sink.emit(e)
        worst = max(worst, time.perf_counter() - t)
    sink.close()
    assert sink.written + sink.dropped == 30_000
    assert sink.written >= 500  # the queue's worth at least got through
    assert sink.queued == 0
    assert worst < 0.05, f"one emit took {worst * 1000:.1f} ms"  # never waited for the writer


def test_emit_never_raises_on_garbage_or_after_close(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit.db", config(batch=10, flush_interval=0.01))
    sink.start()
    sink.emit(event(1))
    sink.emit("not an event")  # type: ignore[arg-type]
    sink.emit(event(2, port=object()))  # a value SQLite cannot store
    sink.emit(event(3, bytes_up=1 << 70))  # an integer beyond 64 bits
    sink.emit(event(4))
    sink.close()
    assert sink.written == 2
    assert sink.dropped == 3
    assert ids_in(tmp_path / "audit.db") == ["req-1", "req-4"]
    sink.emit(event(5))  # closed: dropped and counted, no exception
    assert sink.dropped == 4
    assert sink.queued == 0


# -- batching ----------------------------------------------------------------------------


def test_full_batches_are_written_at_once_and_the_rest_on_close(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit.db", config(batch=50, flush_interval=60.0))
    batches: list[int] = []
    sink.subscribe(lambda rows: batches.append(len(rows)))
    sink.start()
    for i in range(120):
        sink.emit(event(i))
    assert wait_for(lambda: sink.written == 100, timeout=10)
    time.sleep(0.2)  # a window in which the partial batch must not be written: the behaviour under test
    assert sink.written == 100 and sink.queued == 20  # the partial batch waits for the interval
    assert batches == [50, 50]
    sink.close()
    assert sink.written == 120
    assert batches == [50, 50, 20]
    assert ids_in(tmp_path / "audit.db") == [f"req-{i}" for i in range(120)]


def test_partial_batch_is_written_after_the_flush_interval(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit.db", config(batch=1000, flush_interval=0.1))
    sink.start()
    try:
        for i in range(3):
            sink.emit(event(i))
        started = time.monotonic()
        assert wait_for(lambda: sink.written == 3, timeout=5)
        assert time.monotonic() - started < 2.0
    finally:
        sink.close()


def test_each_batch_is_one_transaction_with_increasing_ids(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit.db", config(batch=7, flush_interval=0.01))
    seen: list[list[int]] = []
    sink.subscribe(lambda rows: seen.append([r["id"] for r in rows]))
    sink.start()
    for i in range(30):
        sink.emit(event(i))
    sink.close()
    flat = [i for batch in seen for i in batch]
    assert flat == list(range(1, 31))
    assert all(len(b) <= 7 for b in seen)
    with AuditReader(tmp_path / "audit.db") as r:
        assert [row["id"] for row in r.search()] == flat


def test_close_is_bounded_when_the_disk_does_not_answer(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [event(0)])
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the writer waits (busy timeout 5 s)
    sink = AuditSink(path, config(batch=5, flush_interval=0.01))
    try:
        sink.start()
        for i in range(1, 13):
            sink.emit(event(i))
        assert wait_for(lambda: sink.queued < 12)  # the writer took a batch and waits for the lock
        started = time.monotonic()
        sink.close(timeout=0.5)
        assert time.monotonic() - started < 1.5
        assert sink.queued == 0
        assert sink.dropped >= 7  # what was still queued is counted lost at once
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert wait_for(lambda: sink._thread is not None and not sink._thread.is_alive(), timeout=15)
    assert sink.written + sink.dropped == 12


# -- the file ----------------------------------------------------------------------------


def test_file_is_0600_in_a_0700_directory_whatever_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    old = os.umask(0)
    try:
        sink = open_sink(config(flush_interval=0.01), data)
        assert sink is not None
        sink.emit(event(1))
        assert wait_for(lambda: sink.written == 1)
        for f in (data / "audit.db", data / "audit.db-wal", data / "audit.db-shm"):
            assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
        sink.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700


def test_wal_mode_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [event(0)])
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    indexes = {r[0]: r[1] for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")}
    # none on time alone (schema 3), none on hosts and users: the batch map has a line per batch
    assert set(indexes) == {"events_tenant"}
    assert indexes["events_tenant"].endswith("ON events(tenant)")  # its entries in id order
    assert conn.execute("SELECT lo, hi, hosts, users FROM event_batches").fetchall() == [(1, 1, ",www.example.com,", ",alice,")]
    table = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    assert table.endswith(") STRICT")
    from arcus.audit.db import WAL_CHECKPOINT_PAGES, open_writer

    writer = open_writer(path)
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_CHECKPOINT_PAGES > 1000
    writer.close()
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM events WHERE tenant = 'acme' AND time >= 1"))
    assert "events_tenant" in plan
    conn.close()


def test_hosts_are_stored_as_policy_compares_them(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [event(0, host="WWW.Example.COM.")])
    with AuditReader(path) as r:
        assert [row["host"] for row in r.search()] == ["www.example.com"]


def test_ids_are_never_reused_after_the_table_emptied(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [event(i) for i in range(5)])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM events")
    conn.close()
    fill(path, [event(9)])
    with AuditReader(path) as r:
        assert [row["id"] for row in r.search()] == [6]


def test_a_data_dir_that_cannot_be_created_is_an_operator_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OperatorError) as info:
        open_sink(config(), tmp_path / "file" / "data")
    assert "cannot create audit log" in info.value.message
    assert "audit.enabled: false" in (info.value.hint or "")


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "audit.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OperatorError) as info:
        open_sink(config(), tmp_path)
    assert "not a usable arcus audit database" in info.value.message


def test_disabled_means_no_sink_and_no_file(tmp_path: Path) -> None:
    assert open_sink(config(enabled=False), tmp_path) is None
    assert not (tmp_path / "audit.db").exists()


# -- counters and reload -----------------------------------------------------------------


def test_stats(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit.db", config(queue=3, batch=100, flush_interval=60))
    for i in range(5):
        sink.emit(event(i))
    assert sink.stats() == {"written": 0, "dropped": 2, "queued": 3, "db_bytes": 0}
    sink.start()
    sink.close()
    stats = sink.stats()
    assert (stats["written"], stats["dropped"], stats["queued"]) == (3, 2, 0)
    assert stats["db_bytes"] == os.path.getsize(tmp_path / "audit.db") + (
        os.path.getsize(tmp_path / "audit.db-wal") if (tmp_path / "audit.db-wal").exists() else 0
    )
    assert stats["db_bytes"] > 0


def test_apply_config_turns_off_on_and_changes_in_place(tmp_path: Path) -> None:
    sink = apply_config(None, config(flush_interval=0.01), tmp_path)
    assert isinstance(sink, AuditSink)
    sink.emit(event(1))
    same = apply_config(sink, config(queue=2, batch=1, flush_interval=0.01), tmp_path)
    assert same is sink and sink.config.queue == 2
    assert wait_for(lambda: sink.written == 1)
    assert apply_config(sink, config(enabled=False), tmp_path) is None
    assert sink._thread is not None and not sink._thread.is_alive()  # closed, flushed
    assert ids_in(audit_path(tmp_path)) == ["req-1"]
    assert apply_config(None, config(enabled=False), tmp_path) is None


def test_a_failing_subscriber_does_not_stop_the_writer(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit.db", config(batch=1, flush_interval=0.01))
    got: list[int] = []

    def bad(rows):
        raise RuntimeError("boom")

    sink.subscribe(bad)
    unsubscribe = sink.subscribe(lambda rows: got.extend(r["id"] for r in rows))
    sink.start()
    sink.emit(event(1))
    assert wait_for(lambda: got == [1])
    unsubscribe()
    sink.emit(event(2))
    assert wait_for(lambda: sink.written == 2)
    sink.close()
    assert got == [1]


def test_emit_from_many_threads_loses_nothing_unaccounted(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit.db", config(queue=10_000, batch=200, flush_interval=0.01))
    sink.start()

    def emitter(base: int) -> None:
        for i in range(2000):
            sink.emit(event(base + i))

    threads = [threading.Thread(target=emitter, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    sink.close()
    with AuditReader(tmp_path / "audit.db") as r:
        assert r.count() == sink.written
    assert sink.written + sink.dropped >= 7990  # the counter may miss a few across threads


def test_anonymous_events_name_no_user_in_the_map_and_user_search_reads_the_lines_that_do(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    fill(path, [event(0, user=None), event(1, user=None)], batch=2)
    fill(path, [event(2, user=None), event(3, user="alice")], batch=2)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT lo, hi, users FROM event_batches ORDER BY lo").fetchall() == [(1, 2, ",,"), (3, 4, ",alice,")]
    conn.close()
    with AuditReader(path) as r:
        assert [row["request_id"] for row in r.search(user="alice")] == ["req-3"]
        assert r.count(user="bob") == 0


def old_file(path: Path, version: int, events: list) -> None:
    """An audit.db as arcus wrote it at schema 1 to 9, holding ``events`` (ids 1..n): an index on
    (tenant, time) before 10, at 9 the map of hosts and users (``event_batches``), at 8 the map
    of hosts (``event_hosts``) and an index on users, before it indexes on hosts and users, no ``detail`` column before 7, no ``icap`` before 6, no
    ``protocol`` before 5, no ``sni`` before 4, STRICT from schema 3, an index on time alone before it."""
    from arcus.audit.db import _COLUMN_TYPES
    from arcus.audit.events import as_row

    added = {"sni": 4, "protocol": 5, "icap": 6, "detail": 7}
    columns = {n: t for n, t in _COLUMN_TYPES.items() if version >= added.get(n, 0)}
    table = "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, " + ", ".join(
        f'"{n}" {t}' for n, t in columns.items()) + (") STRICT" if version >= 3 else ")")
    insert = "INSERT INTO events (" + ", ".join(f'"{n}"' for n in columns) + ") VALUES (" + ", ".join("?" * len(columns)) + ")"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    user_index = 'CREATE INDEX events_user ON events("user", time)'
    for statement in [
        table,
        *(["CREATE INDEX events_time ON events(time)"] if version < 3 else []),
        "CREATE INDEX events_tenant ON events(tenant, time)",
        *([] if version >= 9 else [user_index if version == 1 else user_index + ' WHERE "user" IS NOT NULL']),
        *(["CREATE INDEX events_host ON events(host, time)"] if version < 8 else [
            "CREATE TABLE event_hosts (lo INTEGER PRIMARY KEY, hi INTEGER NOT NULL, hosts TEXT NOT NULL) STRICT"]),
    ]:
        conn.execute(statement)
    for e in events:
        conn.execute(insert, as_row(e)[: len(columns)])
    if version >= 8:  # its map as the schema-8 writer left it: a line per batch (here, per 100 ids)
        conn.execute("INSERT INTO event_hosts SELECT min(id), max(id), ',' || coalesce(group_concat(DISTINCT "
                     "nullif(host, '')), '') || ',' FROM events GROUP BY (id - 1) / 100")
    if version == 9:  # and as the schema-9 writer left it: with the lines' users
        conn.execute("ALTER TABLE event_hosts RENAME TO event_batches")
        conn.execute("ALTER TABLE event_batches ADD COLUMN users TEXT")
        conn.execute("UPDATE event_batches SET users = ',' || coalesce((SELECT group_concat(DISTINCT "
                     "nullif(\"user\", '')) FROM events WHERE id BETWEEN lo AND hi), '') || ','")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_an_old_file_is_upgraded_by_the_writer_keeping_its_events_and_readable_before(
    tmp_path: Path, version: int
) -> None:
    from arcus.audit.db import SCHEMA_VERSION

    path = tmp_path / "audit.db"
    hosts = ["a.example", "www.b.example", "", "c.example"]  # "": a connection's record has no host
    users = ["alice", None, "carol", None, "dave"]
    old_file(path, version, [event(i, user=users[i % 5], host=hosts[i % 4]) for i in range(1200)])
    with AuditReader(path) as r:  # the CLI reads a file the daemon has not upgraded yet
        assert r.count() == 1200
        assert [row["request_id"] for row in r.search(since=NOW + 1198)] == ["req-1198", "req-1199"]
        assert r.count(host="a.example") == 300  # through the old index on hosts, or the schema-8 map
        assert r.count(user="carol") == 240  # through the old index on users
    fill(path, [event(1200, user="bob", host="new.b.example")])
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10
    indexes = {r[0]: r[1] for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")}
    assert set(indexes) == {"events_tenant"}  # the host and user indexes gave way to the batch map
    assert indexes["events_tenant"].endswith("ON events(tenant)")  # in id order (schema 10)
    # the old events' map (a line per 500 ids from the 7 -> 8 backfill, per 100 as a schema-8
    # writer left it), then the new batch's line
    lines = conn.execute("SELECT lo, hi, hosts, users FROM event_batches ORDER BY lo").fetchall()
    if version < 8:
        assert [line[:2] for line in lines] == [(1, 499), (500, 999), (1000, 1200), (1201, 1201)]
    else:
        assert [line[:2] for line in lines] == [(1 + 100 * k, 100 * (k + 1)) for k in range(12)] + [(1201, 1201)]
    assert sorted(lines[0][2].strip(",").split(",")) == ["a.example", "c.example", "www.b.example"]
    assert sorted(lines[0][3].strip(",").split(",")) == ["alice", "carol", "dave"]
    assert lines[-1][2:] == (",new.b.example,", ",bob,")
    strict = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0].endswith("STRICT")
    assert strict == (version >= 3)  # a table is never rebuilt: it stays as it was created
    assert {"sni", "protocol", "icap"} <= {r[1] for r in conn.execute("PRAGMA table_info(events)")}
    conn.close()
    with AuditReader(path) as r:
        assert [row["id"] for row in r.search(limit=2000)] == list(range(1, 1202))  # every old event kept
        assert [row["request_id"] for row in r.search(since=NOW + 1199)] == ["req-1199", "req-1200"]
        assert [row["request_id"] for row in r.search(user="bob")] == ["req-1200"]
        assert r.count(user="alice") == 240
        assert [row["request_id"] for row in r.search(user="dave", host="c.example", limit=3)] == [
            "req-19", "req-39", "req-59"]
        # hosts through the map: the old events' lines and the new one's
        assert r.count(host="a.example") == 300
        assert r.count(host=".b.example") == 301
        assert [row["request_id"] for row in r.search(host="*.b.example", since=NOW + 1190)] == [
            "req-1193", "req-1197", "req-1200"]
        assert {row["sni"] for row in r.search(limit=2000) if row["id"] <= 1200} <= {None}  # old rows: no server name
        if version < 5:
            assert {row["protocol"] for row in r.search(limit=2000)} == {None}  # nor protocol
        if version < 6:
            assert {row["icap"] for row in r.search(limit=2000)} == {None}  # nor ICAP verdict


def test_an_upgraded_file_not_strict_still_refuses_values_of_the_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    old_file(path, 2, [event(0)])
    fill(path, [event(1)])  # upgraded
    sink = AuditSink(path, config(batch=10, flush_interval=0.01))
    sink.start()
    sink.emit(event(2, host=b"bytes.example"))  # would be a BLOB in a table that is not STRICT
    sink.emit(event(3))
    sink.close()
    assert (sink.written, sink.dropped) == (1, 1)
    assert ids_in(path) == ["req-0", "req-1", "req-3"]


def test_a_strict_table_refuses_values_of_the_wrong_type_without_the_python_check(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = AuditSink(path, config(batch=10, flush_interval=60.0))
    sink.start()
    assert sink._check_types is False
    for i, over in enumerate([{}, {"host": b"bytes.example"}, {"path": bytearray(b"/x")}, {"status": "200 OK"}, {}]):
        sink.emit(event(i, **over))
    sink.close()
    assert (sink.written, sink.dropped) == (2, 3)
    assert ids_in(path) == ["req-0", "req-4"]


def test_a_newer_schema_is_refused_by_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    old_file(path, 2, [])
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(OperatorError, match="newer arcus"):
        AuditSink(path, config()).start()


def test_a_batch_written_500_then_50_events_a_statement_keeps_order_and_ids(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit.db", config(batch=630, flush_interval=60.0))
    seen: list[tuple[int, str]] = []
    sink.subscribe(lambda rows: seen.extend((r["id"], r["request_id"]) for r in rows))
    sink.start()
    for i in range(630):  # one statement of 500 events, two of 50, then 30 one by one
        sink.emit(event(i, user=None if i % 3 else "alice"))
    sink.close()
    assert seen == [(i + 1, f"req-{i}") for i in range(630)]
    with AuditReader(tmp_path / "audit.db") as r:
        assert [(row["id"], row["request_id"]) for row in r.search(limit=1000)] == seen
        assert [row["user"] for row in r.search(limit=1000)][:4] == ["alice", None, None, "alice"]


def test_a_reload_that_shortens_retention_prunes_at_once(tmp_path: Path) -> None:
    """docs/audit.md: a reload applies retention at once; the pass ran only at the next of every
    PRUNE_INTERVAL (5 minutes), with the disk filling meanwhile."""
    sink = AuditSink(tmp_path / "audit.db", config(flush_interval=0.01))
    sink.start()
    try:
        for i in range(20):
            sink.emit(event(i))  # events of NOW + i: older than a retention of one second
        wait_for(lambda: sink.written == 20)
        assert sink.pruned == 0  # the first pass ran at start, before they came
        sink.reconfigure(config(flush_interval=0.01, retention=1.0))
        wait_for(lambda: sink.pruned == 20)
        assert ids_in(tmp_path / "audit.db") == []
    finally:
        sink.close()


def _pruning_sink(tmp_path: Path, old: int, **kw) -> tuple[AuditSink, list[int]]:
    """A sink whose writer's connection is open but whose thread is not started (the test is the
    writer thread), over ``old`` events 40 days old; the returned list gets, at every batch
    written, how many old events are still there (more than 0: written during the prune)."""
    path = tmp_path / "audit.db"
    fill(path, [event(i, time=NOW - 40 * 86400 + i) for i in range(old)])
    sink = AuditSink(path, config(retention=time.time() - NOW + 86400, **kw))
    sink._conn = open_writer(path)
    left: list[int] = []
    conn = sink._conn
    sink.subscribe(lambda rows: left.append(conn.execute("SELECT count(*) FROM events WHERE time < ?",
                                                         (NOW - 86400,)).fetchone()[0]))
    return sink, left


def test_events_queued_during_a_prune_are_written_between_its_steps(tmp_path: Path) -> None:
    """Between two steps of a prune the writer writes what waits: full batches, and a partial
    one too once it has waited flush_interval (full batches only, before: a rest waited for the
    whole prune, minutes on a big log)."""
    sink, left = _pruning_sink(tmp_path, 3000, batch=500, flush_interval=0.0)
    for i in range(1200):  # queued when the pass starts: two full batches and a rest of 200
        sink.emit(event(10_000 + i, time=time.time()))
    assert sink._prune() is True
    assert sink.written == 1200 and sink.queued == 0 and sink.pruned == 3000
    assert len(left) == 3 and all(n > 0 for n in left)  # all three batches while old events were left
    sink._conn.close()


def test_a_partial_batch_waits_for_its_flush_interval_during_a_prune_too(tmp_path: Path) -> None:
    sink, left = _pruning_sink(tmp_path, 3000, batch=500, flush_interval=3600.0)
    sink._last_write = time.monotonic()  # the writer has just written: the interval runs from now
    for i in range(700):
        sink.emit(event(10_000 + i, time=time.time()))
    sink._prune()
    assert (sink.written, sink.queued) == (500, 200)  # the full batch went; the rest waits its turn
    assert left and left[0] > 0
    sink._conn.close()
