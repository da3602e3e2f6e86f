"""Retention: the audit log forgets events older than ``audit.retention`` and keeps its file
under ``audit.max_size``.

Runs in the writer thread (at start, then every few minutes), in short transactions of at most
:data:`CHUNK` rows, so a big prune never holds the write lock for long and the writer can put
the events that queued up meanwhile in between (``between_chunks``). When the file has the
optional full-text index (:mod:`arcus.audit.fulltext`), the events a chunk deletes leave it in
the same transaction.

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
    BUSY_TIMEOUT,
    FTS_STATE,
    FTS_TABLE,
    ID_RANGE,
    UNMAP,
    batch_map,
    begin_write,
    fts_indexed_upto,
    ids_from,
)

CHUNK = 5000
"""Rows deleted per transaction."""
MAX_CHUNKS = 400
"""Chunks per pass (2 M rows): the rest waits for the next pass, which then comes soon."""
SIZE_MARGIN = 0.9
VACUUM_PAGES = 1024
"""Free pages given back per incremental_vacuum transaction (:func:`_give_back`)."""


@dataclass(slots=True)
class PruneResult:
    by_age: int = 0
    by_size: int = 0
    finished: bool = True  # False: MAX_CHUNKS reached, another pass is due soon


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


def _delete(conn: sqlite3.Connection, ids: str, params: tuple) -> int:
    """Delete the events ``ids`` (a subquery) selects, in one transaction, and their full-text
    index entries with them: the subquery runs twice inside it and sees the same rows. The batch
    map's lines below the oldest event left go in the same transaction. The pages they held
    go back to the file system at once (:func:`_give_back`)."""
    begin_write(conn)  # the writer's thread: between a maintainer's chunks, as its batches
    try:
        if fts_indexed_upto(conn) is not None:
            conn.execute(_UNINDEX.format(ids=ids), params)
        n = conn.execute(f"DELETE FROM events WHERE id IN ({ids})", params).rowcount
        if n > 0 and batch_map(conn) is not None:
            conn.execute(UNMAP)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    _give_back(conn)
    return max(n, 0)


def prune(
    conn: sqlite3.Connection,
    *,
    retention: float,
    max_size: int,
    now: float | None = None,
    between_chunks: Callable[[], None] | None = None,
) -> PruneResult:
    """Delete what retention says must go; return how many rows went and whether it finished."""
    result = PruneResult()
    cutoff = (time.time() if now is None else now) - retention
    chunks = 0
    # No index on time: the events older than the cutoff are those below the first id at the
    # cutoff (ids_from, a bisection on the key), read in id order. The time condition stays, so
    # an event out of order (a wall clock stepped back) is never deleted early.
    by_age = "SELECT id FROM events WHERE id < ? AND time < ? ORDER BY id LIMIT ?"
    boundary = ids_from(conn, cutoff)
    while chunks < MAX_CHUNKS:
        n = _delete(conn, by_age, (boundary, cutoff, CHUNK))
        chunks += 1
        result.by_age += n
        if n < CHUNK:
            break
        if between_chunks is not None:
            between_chunks()
    else:
        result.finished = False
        return result

    target = int(max_size * SIZE_MARGIN)
    oldest = "SELECT id FROM events ORDER BY id LIMIT ?"
    if used_bytes(conn) > max_size:
        while True:
            used = used_bytes(conn)  # freed pages are on the freelist: not counted
            if used <= target:
                break
            if chunks >= MAX_CHUNKS:
                result.finished = False
                break
            # Ids only ever go from the oldest end: max - min + 1 counts the rows in O(log n).
            lo, hi = conn.execute(ID_RANGE).fetchone()
            count = 0 if lo is None else hi - lo + 1
            if count <= 0:
                break  # the rest is schema and empty pages: nothing of ours to delete
            want = min(CHUNK, max(1, math.ceil((used - target) / (used / count))))
            n = _delete(conn, oldest, (want,))
            chunks += 1
            result.by_size += n
            if n == 0:
                break
            if between_chunks is not None:
                between_chunks()
    if result.by_age or result.by_size:
        _give_back(conn, between_chunks)  # what was free before this pass (none, normally)
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


def _give_back(conn: sqlite3.Connection, between_chunks: Callable[[], None] | None = None) -> None:
    """Hand the free pages to the file system, :data:`VACUUM_PAGES` per transaction: the file shrinks.

    Called after every chunk deleted, while the free list holds that chunk's pages only: SQLite
    searches the free list for every page it moves, so one long list given back at the end of a
    pass (2 M events deleted) moved 4096 pages in 5.4 s holding the write lock, where a chunk's
    few hundred take a millisecond. ``executescript``, not ``execute``: sqlite3's ``execute``
    steps a statement that returns no rows once, and ``incremental_vacuum`` frees one page per
    step (one page a call: a 20 M-event log pruned to 2 GiB kept its 5 GB file)."""
    for _ in range(MAX_CHUNKS):  # bounded: a list left by an older arcus goes over passes
        if conn.execute("PRAGMA freelist_count").fetchone()[0] == 0:
            return
        conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
        if between_chunks is not None:
            between_chunks()
