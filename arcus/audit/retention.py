"""Retention: the audit log forgets events older than ``audit.retention`` and keeps its file
under ``audit.max_size``.

Runs in the writer thread (at start, then every few minutes) in steps, and the writer puts the
events that queued up meanwhile in between (``between_chunks``). What bounds a step is its time,
not its rows: one step -- a chunk of events deleted in one transaction and its pages given back
-- should hold the writer for :data:`BUDGET` at most, because the daemon's queue holds
``audit.queue`` events, 0.6 s of a busy box's traffic, and whatever a step costs beyond that is
dropped. A pass starts with :data:`FIRST_CHUNK` rows (its pages are cold: read from disk, not
memory), then sizes each chunk from the rows a second the last one went at (:class:`_Pace`),
never beyond :data:`CHUNK` rows nor twice the last chunk: a fast disk soon deletes full chunks,
a slow or busy one small ones, and a step that came out slow is followed by a smaller one.
When the file has the optional full-text index (:mod:`arcus.audit.fulltext`), the events a chunk
deletes leave it in the same transaction.

What held the writer for seconds before (2026-12, ``bench/audit_prune_drops.py``): every chunk
took the batch map's lines whose events were gone with ``DELETE ... WHERE hi < min(id)``, which
has no index to use and read the whole map -- every line of the log, not the chunk's few. The
first chunk of a pass read it from disk (0.3 s for 3 M events of varied hosts, seconds for
20 M), and each later one through the page cache again (8 GB read to prune 2 M events from a
660 MB file). The lines now go by their key, ``lo``, which reads the lines deleted only
(:func:`_unmap`). Deleted events are not overwritten on this file's account: the Debian SQLite
is built with ``SECURE_DELETE``, whose zeroing of freed pages costs little here because the next
step, ``incremental_vacuum``, moves live pages onto those very pages anyway (measured: 3 % of
the bytes written), so the writer leaves the pragma as the build has it.

Size is the main file's pages in use, ``(page_count - freelist_count) * page_size``. When it is
over ``max_size``, the oldest events go until it is under 90 % of it (the margin keeps every
batch from triggering another prune at the edge). Deleted rows free pages inside the file;
``PRAGMA incremental_vacuum`` (the file is ``auto_vacuum = INCREMENTAL``) gives them back to the
file system after every chunk (:func:`_give_back`), so ``du`` agrees with the limit. The -wal
file is outside ``max_size``: it holds the pages written since the last checkpoint; the writer
checkpoints it every 8000 pages and ``journal_size_limit`` truncates it afterwards (to 64 MiB at
most), and after a prune we ask for a ``TRUNCATE`` checkpoint (skipped silently while a reader
holds an old snapshot).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from arcus.audit.db import (
    BATCH_MAP,
    BUSY_TIMEOUT,
    FTS_STATE,
    FTS_TABLE,
    ID_RANGE,
    batch_map,
    begin_write,
    fts_indexed_upto,
    ids_from,
)

BUDGET = 0.03
"""Seconds a step of a prune should hold the writer (:class:`_Pace`): a twentieth of what the
queue holds at 15,000 events a second, so a step that comes out several times slower than the
last (a cold stretch of the file, a checkpoint) still drops nothing."""
CHUNK = 5000
"""Rows deleted per transaction at most (a fast disk's steps)."""
FIRST_CHUNK = 200
"""Rows of a pass's first chunk, before any step has been timed."""
MAX_ROWS = 2_000_000
"""Rows deleted per pass at most: the rest waits for the next pass, which then comes soon."""
SIZE_MARGIN = 0.9
VACUUM_PAGES = 1024
"""Free pages given back per incremental_vacuum step at most (:func:`_give_back`)."""
FIRST_VACUUM = 64
"""Free pages of the first step that gives back a free list left from before the pass."""
MAX_VACUUM = 400 * VACUUM_PAGES
"""Free pages given back that way per pass at most (1.6 GiB of 4 KiB pages)."""

Clock = Callable[[], float]


@dataclass(slots=True)
class PruneResult:
    by_age: int = 0
    by_size: int = 0
    finished: bool = True  # False: MAX_ROWS reached, another pass is due soon


class _Pace:
    """How much the next step does (rows, or pages), so that it takes about :data:`BUDGET`.

    Each step reports what it did and how long it took (:meth:`took`); the next does what the
    same rate gives in the budget, at most twice the last and never beyond ``most`` nor below
    one. A step's cost is taken as proportional to its size: deleting a chunk reads and frees
    its rows' pages, and giving them back moves as many. No clock of its own, no thread.
    """

    __slots__ = ("size", "most")

    def __init__(self, first: int, most: int) -> None:
        self.most = max(1, most)
        self.size = max(1, min(first, self.most))

    def took(self, done: int, seconds: float) -> None:
        if done <= 0:
            return
        fit = self.most if seconds <= 0 else int(done * BUDGET / seconds)
        self.size = max(1, min(self.most, 2 * self.size, fit))


def used_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return (pages - free) * size


_UNINDEX = (
    f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, host, path) SELECT 'delete', id, host, path FROM events "
    f"WHERE id IN ({{ids}}) AND id <= (SELECT last_id FROM {FTS_STATE})"
)
"""Take the events about to be deleted out of the full-text index (FTS5's 'delete' command with
the values indexed, which only the events table still has), when the file has one."""


def _unmap(conn: sqlite3.Connection) -> None:
    """Delete the batch map's lines whose events are all gone (inside the chunk's transaction).

    A line's ids ``lo``..``hi`` lie below the next line's ``lo``, so the lines with ``hi`` below
    the oldest event left are also the first lines by ``lo``, the table's key: ``lo < ?`` makes
    it a range of the key that reads those lines only. ``hi < ?`` alone (the condition this
    took before) has no index and read every line of the map at every chunk. No event left:
    every line goes."""
    oldest = conn.execute("SELECT min(id) FROM events").fetchone()[0]
    if oldest is None:
        conn.execute(f"DELETE FROM {BATCH_MAP}")
    else:
        conn.execute(f"DELETE FROM {BATCH_MAP} WHERE lo < ?1 AND hi < ?1", (oldest,))


def _delete(conn: sqlite3.Connection, ids: str, params: tuple) -> int:
    """Delete the events ``ids`` (a subquery) selects, in one transaction, and their full-text
    index entries with them: the subquery runs twice inside it and sees the same rows. The batch
    map's lines below the oldest event left go in the same transaction (:func:`_unmap`). The
    pages they held go back to the file system at once (:func:`_give_back`): the chunk's pages,
    not a free list from before the pass, which goes at the end of it."""
    free_before = _free_pages(conn)
    begin_write(conn)  # the writer's thread: between a maintainer's chunks, as its batches
    try:
        if fts_indexed_upto(conn) is not None:
            conn.execute(_UNINDEX.format(ids=ids), params)
        n = conn.execute(f"DELETE FROM events WHERE id IN ({ids})", params).rowcount
        if n > 0 and batch_map(conn) is not None:
            _unmap(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    freed = _free_pages(conn) - free_before
    while freed > 0:
        conn.executescript(f"PRAGMA incremental_vacuum({min(freed, VACUUM_PAGES)})")
        freed -= VACUUM_PAGES
    return max(n, 0)


def _free_pages(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def prune(
    conn: sqlite3.Connection,
    *,
    retention: float,
    max_size: int,
    now: float | None = None,
    between_chunks: Callable[[], None] | None = None,
    clock: Clock = time.monotonic,
) -> PruneResult:
    """Delete what retention says must go; return how many rows went and whether it finished.

    ``between_chunks`` runs after every step (the writer's turn); ``clock`` times the steps
    (:class:`_Pace`)."""
    result = PruneResult()
    cutoff = (time.time() if now is None else now) - retention
    pace = _Pace(FIRST_CHUNK, CHUNK)
    rows = 0

    def step(ids: str, params: tuple) -> int:
        nonlocal rows
        started = clock()
        n = _delete(conn, ids, params)
        pace.took(n, clock() - started)
        rows += n
        if between_chunks is not None:
            between_chunks()
        return n

    # No index on time: the events older than the cutoff are those below the first id at the
    # cutoff (ids_from, a bisection on the key), read in id order. The time condition stays, so
    # an event out of order (a wall clock stepped back) is never deleted early.
    by_age = "SELECT id FROM events WHERE id < ? AND time < ? ORDER BY id LIMIT ?"
    boundary = ids_from(conn, cutoff)
    while True:
        if rows >= MAX_ROWS:
            result.finished = False
            return result
        want = min(pace.size, MAX_ROWS - rows)
        n = step(by_age, (boundary, cutoff, want))
        result.by_age += n
        if n < want:
            break

    target = int(max_size * SIZE_MARGIN)
    oldest = "SELECT id FROM events ORDER BY id LIMIT ?"
    if used_bytes(conn) > max_size:
        while True:
            used = used_bytes(conn)  # freed pages are on the freelist: not counted
            if used <= target:
                break
            if rows >= MAX_ROWS:
                result.finished = False
                break
            # Ids only ever go from the oldest end: max - min + 1 counts the rows in O(log n).
            lo, hi = conn.execute(ID_RANGE).fetchone()
            count = 0 if lo is None else hi - lo + 1
            if count <= 0:
                break  # the rest is schema and empty pages: nothing of ours to delete
            want = min(pace.size, MAX_ROWS - rows, max(1, math.ceil((used - target) / (used / count))))
            n = step(oldest, (want,))
            result.by_size += n
            if n == 0:
                break
    if result.by_age or result.by_size:
        _give_back(conn, between_chunks, clock)  # what was free before this pass (none, normally)
        _truncate_wal(conn)
    return result


def _truncate_wal(conn: sqlite3.Connection) -> None:
    """Checkpoint and truncate the -wal file, unless a reader holds an old snapshot (an export, a
    search): then it is skipped at once and the automatic checkpoints get to it later. A
    truncating checkpoint waits for the readers through the busy handler, and it runs in the
    writer's thread: with the connection's 5 s, every pass that deleted something beside a
    long export held the daemon's batches for 5 s."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.OperationalError:
        pass  # a reader holds the WAL
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")


def _give_back(conn: sqlite3.Connection, between_chunks: Callable[[], None] | None = None,
               clock: Clock = time.monotonic) -> None:
    """Hand the free pages left from before the pass to the file system in steps of
    :data:`BUDGET` (:class:`_Pace`, from :data:`FIRST_VACUUM` pages up to :data:`VACUUM_PAGES`),
    ``between_chunks`` after each: the file shrinks.

    Each chunk gives its own pages back as soon as it is deleted (:func:`_delete`), while the
    free list holds them only: SQLite searches the free list for every page it moves, so one
    long list given back at the end of a pass (2 M events deleted) moved 4096 pages in 5.4 s
    holding the write lock, where a chunk's few hundred take a millisecond. What is left here is
    a list an older arcus left. ``executescript``, not ``execute``: sqlite3's ``execute`` steps a
    statement that returns no rows once, and ``incremental_vacuum`` frees one page per step (one
    page a call: a 20 M-event log pruned to 2 GiB kept its 5 GB file). Bounded: a long list goes
    over passes."""
    pace = _Pace(FIRST_VACUUM, VACUUM_PAGES)
    given = 0
    while given < MAX_VACUUM:
        free = _free_pages(conn)
        if free == 0:
            return
        started = clock()
        conn.executescript(f"PRAGMA incremental_vacuum({min(free, pace.size)})")
        done = free - _free_pages(conn)
        pace.took(done, clock() - started)
        if done <= 0:
            return
        given += done
        if between_chunks is not None:
            between_chunks()
