"""The audit database file: ``audit.db`` in the data dir, apart from the tenant store.

Why a file of its own: the audit log is written all the time, in big batches, and pruned by
age and size; the store is written rarely and must never wait behind an audit batch for its
write lock, nor share its size limit. Two files, two locks, two retention stories.

The file is created 0600 with ``os.open`` before SQLite touches it (events name users and the
hosts they visit), in WAL mode (readers -- the CLI -- never block the writer thread), with
``auto_vacuum = INCREMENTAL`` so pages freed by retention can be given back to the file system
(see :mod:`arcus.audit.retention`). ``synchronous = NORMAL``: in WAL mode the log is synced at
checkpoints only, so a power cut may lose the events since the last one (up to
:data:`WAL_CHECKPOINT_PAGES` pages of log) but never corrupts the file, and a commit does not
wait for an fsync -- an audit log trades those events for throughput, the tenant store does not.

Event ids come from an ``AUTOINCREMENT`` key so they are never reused, even after retention
emptied the table: ``audit tail -f`` polls for ids above the last one it printed.
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from arcus.audit.events import FIELDS
from arcus.privfiles import create_private_file, make_private_dirs, tighten_sqlite_modes
from arcus.errors import NotFound, OperatorError

AUDIT_FILE = "audit.db"
SCHEMA_VERSION = 10
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
"""Schemas a reader can read: they differ in their indexes, STRICT (see UPGRADES) and, before 4,
the ``sni`` column, before 5 the ``protocol`` column, before 6 the ``icap`` column, before 7 the ``detail`` column (read as NULL: :func:`select_columns`)."""
BUSY_TIMEOUT = 5.0
LOCK_RETRY = 0.001
"""Seconds between two tries of the daemon's writer for the write lock (:func:`begin_write`)."""
MAINTAINER_GAP = 0.01
"""Seconds a maintainer (the full-text index) lets go of the write lock between two of its
chunks: ten of the writer's tries, and room for its thread to get the GIL from a busy event loop
(Python hands it over every 5 ms)."""
WAL_LIMIT = 64 * 1024 * 1024
"""After a checkpoint the -wal file is truncated to this (it never shrinks otherwise)."""
WAL_CHECKPOINT_PAGES = 8000
"""The writer checkpoints the -wal file into the main file every this many pages (32 MiB at
4 KiB; SQLite's default is 1000). The table's and the indexes' last pages are rewritten by every
batch; a checkpoint copies each page once however often it changed, so rarer checkpoints copy
less: 0.2 us of CPU per event less (600,000 events, bench/audit_micro.py)."""

_COLUMN_TYPES = {
    "time": "REAL NOT NULL", "kind": "TEXT NOT NULL", "tenant": "TEXT NOT NULL", "user": "TEXT",
    "client": "TEXT", "server": "TEXT", "escaper": "TEXT", "host": "TEXT", "port": "INTEGER",
    "method": "TEXT", "path": "TEXT", "status": "INTEGER", "bytes_up": "INTEGER",
    "bytes_down": "INTEGER", "duration": "REAL", "decision": "TEXT", "rule": "TEXT",
    "error_side": "TEXT", "error_code": "TEXT", "request_id": "TEXT", "conn_id": "INTEGER",
    "sni": "TEXT", "protocol": "TEXT", "icap": "TEXT", "detail": "TEXT",
}
assert tuple(_COLUMN_TYPES) == FIELDS, "the table's columns follow AuditEvent's fields"

CREATE_TABLE = (
    "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f'"{name}" {kind}' for name, kind in _COLUMN_TYPES.items())
    + ") STRICT"
)
"""STRICT (schema 3): SQLite itself refuses a value of the wrong type (a bytes host would be a
BLOB in a TEXT column), so the writer does not check every value of a batch in Python (0.4 us per
event). A file upgraded from schema 1 or 2 keeps its table as it was (rebuilding it would copy
every event at start) and the writer keeps checking for it: :func:`is_strict`."""
USER_INDEX = 'CREATE INDEX events_user ON events("user", time) WHERE "user" IS NOT NULL'
"""Anonymous events (no user) are never searched by user: they take no entry here, which spares
an index insert per request on a box without authentication (schema 2)."""
BATCH_MAP = "event_batches"
CREATE_BATCH_MAP = (
    f"CREATE TABLE {BATCH_MAP} (lo INTEGER PRIMARY KEY, hi INTEGER NOT NULL, hosts TEXT NOT NULL, users TEXT) STRICT"
)
"""The batch map (schema 9; hosts only, as ``event_hosts``, at schema 8): one row per batch the
writer inserted -- its ids ``lo``..``hi``, the distinct hosts and the distinct users among them,
each between commas (``,a.example,b.example,``; ``,,`` when none). ``audit search --host`` and
``--user`` read it to find the batches that can hold a match and then only their ids
(:mod:`arcus.audit.query`), which indexes on ``(host, time)`` and ``(user, time)`` did until
schema 7 and 8.

Why not those indexes: their entries go all over their trees when the traffic goes to many hosts
or comes from many users, and every page a batch touches is written to the WAL again and copied
back at the checkpoint. Measured with 200,000 records (bench/audit_micro.py): over 1,000 hosts
the audit writer spent 12.8 us per record with the host index, 3.1 us with the map; rows from
2,000 users cost 11.3 us with the user index, 3.2 us without it. The map is one row appended per
batch, whatever the hosts and users. A comma inside a name (a SOCKS client may send any host)
can only make a batch look like a candidate it is not; the search's exact condition on the event
decides, so nothing is ever missed. The tenant keeps its index: a box has a few tenants, every
batch would name them all, and the index's entries stay at a few places of its tree."""
HOST_MAP_8 = "event_hosts"
"""The batch map's name at schema 8, when it held hosts only (a reader may open such a file
before a daemon upgrades it)."""
HOST_MAP_BACKFILL = (
    f"INSERT INTO {HOST_MAP_8} (lo, hi, hosts) "
    "SELECT min(id), max(id), ',' || coalesce(group_concat(DISTINCT nullif(host, '')), '') || ',' "
    "FROM events GROUP BY id / 500"
)
"""Schema 7 -> 8: the map of the events already written, one row per 500 ids (one pass over the
table, at the writer's first open after the upgrade)."""
USERS_BACKFILL = (
    f"UPDATE {BATCH_MAP} SET users = ',' || coalesce((SELECT group_concat(DISTINCT nullif(\"user\", '')) "
    f"FROM events WHERE events.id BETWEEN {BATCH_MAP}.lo AND {BATCH_MAP}.hi), '') || ','"
)
"""Schema 8 -> 9: the users of the batches already mapped (each line's ids read once)."""
TENANT_INDEX = "CREATE INDEX events_tenant ON events(tenant)"
"""The tenant's index (schema 10; on ``(tenant, time)`` before). An index's entries end with the
row's id, so this one holds each tenant's events in id order: ``--tenant`` reads the newest from
its end and a time range (turned into a range of ids, :func:`ids_from`) as one stretch of it,
nothing sorted. On ``(tenant, time)`` the entries were in time order, which is not the order
searches and ``tail -f`` page in (ids): SQLite read every event of the tenant and sorted them by
id, 12 s for the newest 100 of 9 M (20 M events), and once per poll of ``tail -f --tenant``.
Rebuilt at the upgrade: about 0.7 s per million events (20 M: 14 s at the daemon's first start)."""

SCHEMA = [
    CREATE_TABLE,
    # There is no index on time (schema 3): ids grow with time, so --since/--until and
    # retention by age find their range of ids by bisection on the primary key (ids_from),
    # which spares an index insert per event. The tenant's index is in id order (TENANT_INDEX);
    # hosts and users have the batch map instead of indexes (schemas 8 and 9, see BATCH_MAP).
    TENANT_INDEX,
    CREATE_BATCH_MAP,
]

# A migration that rebuilds the events table (new rowids) must drop FTS_TABLE and FTS_STATE too:
# the full-text index points at rows by rowid (see below); `arcus audit index` builds it again.
UPGRADES: dict[int, list[str]] = {
    1: ["DROP INDEX events_user", USER_INDEX],
    2: ["DROP INDEX IF EXISTS events_time"],
    3: ['ALTER TABLE events ADD COLUMN "sni" TEXT'],
    4: ['ALTER TABLE events ADD COLUMN "protocol" TEXT'],
    5: ['ALTER TABLE events ADD COLUMN "icap" TEXT'],
    6: ['ALTER TABLE events ADD COLUMN "detail" TEXT'],
    7: [
        f"CREATE TABLE {HOST_MAP_8} (lo INTEGER PRIMARY KEY, hi INTEGER NOT NULL, hosts TEXT NOT NULL) STRICT",
        HOST_MAP_BACKFILL,
        "DROP INDEX IF EXISTS events_host",
    ],
    8: [
        f"ALTER TABLE {HOST_MAP_8} RENAME TO {BATCH_MAP}",
        f"ALTER TABLE {BATCH_MAP} ADD COLUMN users TEXT",
        USERS_BACKFILL,
        "DROP INDEX IF EXISTS events_user",
    ],
    9: ["DROP INDEX IF EXISTS events_tenant", TENANT_INDEX],
}
"""Statements that take a file from schema ``n`` to ``n + 1``, run by the writer on open. Every
event is kept; only indexes and columns change (an index dropped or a column added is a quick write,
however large the file: the new column reads NULL in old rows). The batch map's backfills (7 -> 8
hosts, 8 -> 9 users) read every event once each: about a second per million events here; the
tenant's index (9 -> 10) is built again, 0.7 s per million."""

_ROW = "(" + ", ".join("?" * len(FIELDS)) + ")"
INSERT = "INSERT INTO events (" + ", ".join(f'"{n}"' for n in FIELDS) + ") VALUES " + _ROW
"""One event. Ids are left to AUTOINCREMENT (the writer knows which it gets: AuditSink._insert)."""
ROWS_PER_INSERT = (500, 50)
"""Events per statement in the writer's batches, largest first, the rest one by one: a full
batch (audit.batch, 500 by default) is one statement of 10,500 parameters (SQLite allows
32,766), one VDBE run and one GIL release. Measured CPU per event with 500-event transactions:
one row per statement 6.1 us, 50 rows 4.5 us, 500 rows 4.4 us."""
INSERT_MANY = {n: INSERT + (", " + _ROW) * (n - 1) for n in ROWS_PER_INSERT}
SELECT_COLUMNS = "id, " + ", ".join(f'"{n}"' for n in FIELDS)
ADDED_IN = {"sni": 4, "protocol": 5, "icap": 6, "detail": 7}
"""Columns a file of an older schema lacks (a reader may open a file no daemon has upgraded yet)."""


FTS_TABLE = "events_fts"
FTS_STATE = "events_fts_state"
CREATE_FTS = [
    # The statement sqlite-utils' Table.enable_fts writes (so its detect_fts, search and
    # disable_fts know the table), without its populate step: that is one INSERT of every event,
    # which would hold the write lock for the whole table. arcus.audit.fulltext fills it in chunks.
    "CREATE VIRTUAL TABLE [events_fts] USING FTS5 (\n    [host], [path],\n    content=[events]\n)",
    "CREATE TABLE events_fts_state (last_id INTEGER NOT NULL)",
    "INSERT INTO events_fts_state (last_id) VALUES (0)",
]
"""The optional full-text index over hosts and paths (``arcus audit index`` creates it; no schema
version: a file without it is a complete schema-4 file, and an arcus that knows nothing of it
ignores it). An FTS5 table with external content (the events table holds the text, the index
only the tokens) and the id of the last event indexed: events above it are indexed later, in
chunks, by whoever searches (:mod:`arcus.audit.fulltext`); events at or below it that retention
deletes leave the index in the same transaction (:mod:`arcus.audit.retention`)."""


def fts_indexed_upto(conn: sqlite3.Connection) -> int | None:
    """The id of the last event in the full-text index, or None when the file has no index."""
    try:
        row = conn.execute(f"SELECT last_id FROM {FTS_STATE}").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return int(row[0]) if row else 0


def select_columns(version: int) -> str:
    """``SELECT_COLUMNS`` for a file of schema ``version``: a column it lacks reads NULL."""
    return "id, " + ", ".join("NULL" if ADDED_IN.get(n, 0) > version else f'"{n}"' for n in FIELDS)


def audit_path(data_dir: Path) -> Path:
    return Path(data_dir) / AUDIT_FILE


def _uri(path: Path, mode: str) -> str:
    return f"file:{urllib.parse.quote(str(Path(path).absolute()))}?mode={mode}"


def _cannot(path: Path, what: str, exc: BaseException) -> OperatorError:
    text = getattr(exc, "strerror", None) or str(exc)
    if "not a database" in text or "malformed" in text:
        return OperatorError(
            f"audit log {path} is not a usable arcus audit database: {text}",
            code="invalid",
            hint="move the file away; the daemon starts a new one",
        )
    return OperatorError(
        f"cannot {what} audit log {path}: {text}",
        code="invalid",
        hint="choose a data dir this user can write (--data-dir, ARCUS_DATA_DIR), or set audit.enabled: false",
    )


def open_writer(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the audit database for the writer thread.

    Raises OperatorError with a hint when the file cannot be created or is not an audit
    database, so the daemon refuses to start rather than silently audit nothing.
    """
    path = Path(path)
    try:
        make_private_dirs(path.parent)
        create_private_file(path)
    except OSError as exc:
        raise _cannot(path, "create", exc) from None
    try:
        conn = sqlite3.connect(
            _uri(path, "rw"), uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
        )
    except sqlite3.Error as exc:
        raise _cannot(path, "open", exc) from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OperatorError(
                f"audit log {path} was written by a newer arcus (schema {version}, this one knows {SCHEMA_VERSION})",
                code="invalid",
                hint="run the newer arcus, or move the file away",
            )
        if version == 0:
            # auto_vacuum must be chosen before the first table exists.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OperatorError(
                f"cannot open audit log {path}: WAL mode unavailable (journal mode is {mode})",
                hint="put the data dir on a local file system (WAL needs shared memory)",
            )
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]  # not raced by another opener
                if version == 0:
                    for statement in SCHEMA:
                        conn.execute(statement)
                else:
                    for step in range(version, SCHEMA_VERSION):
                        for statement in UPGRADES[step]:
                            conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:
        conn.close()
        raise _cannot(path, "open", exc) from None
    except BaseException:
        conn.close()
        raise
    tighten_sqlite_modes(path)
    return conn


def begin_write(conn: sqlite3.Connection, timeout: float = BUSY_TIMEOUT) -> None:
    """``BEGIN IMMEDIATE`` for the daemon's writer thread, tried every :data:`LOCK_RETRY` for
    ``timeout`` seconds; raises SQLite's "database is locked" after that.

    Not SQLite's own wait (``busy_timeout``), which sleeps longer and longer between tries -- 100
    ms apart after the first quarter of a second: the operator's maintainer (``arcus audit index``,
    ``search --text``) writes in chunks and lets go of the lock for :data:`MAINTAINER_GAP` between
    them, a gap that wait kept missing, so the writer waited for the whole build and the daemon
    dropped what came meanwhile (half of its events beside the index of a 20 M-event log). This
    one takes the lock within a millisecond or two of the maintainer's commit: it waits one chunk.
    """
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(LOCK_RETRY)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")


ID_RANGE = "SELECT (SELECT min(id) FROM events), (SELECT max(id) FROM events)"
"""The lowest and highest id, two lookups at the ends of the key (``SELECT min(id), max(id)``
in one select would read the whole table: SQLite's min/max shortcut takes one aggregate only)."""


def is_strict(conn: sqlite3.Connection) -> bool:
    """Whether the events table is STRICT (created at schema 3 or later; see CREATE_TABLE)."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()
    return bool(row) and str(row[0]).rstrip().upper().endswith("STRICT")


def batch_map(conn: sqlite3.Connection) -> tuple[str, bool] | None:
    """The file's batch map (see BATCH_MAP): its table and whether it maps users (schema 9), or
    None for a file of schema 7 or older (indexes on hosts and users instead)."""
    names = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)", (BATCH_MAP, HOST_MAP_8))}
    if BATCH_MAP in names:
        return BATCH_MAP, True
    if HOST_MAP_8 in names:
        return HOST_MAP_8, False
    return None


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction on ``conn``: every read inside it sees the same events, whatever the
    daemon's writer commits meanwhile (WAL)."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def ids_from(conn: sqlite3.Connection, when: float) -> int:
    """The first id whose event happened at ``when`` or later; one above the last id if
    none (0 when there are no events).

    Events are numbered in the order they were emitted, and each one's ``time`` is taken when
    it is emitted, so times grow with ids: a bisection on the primary key finds the boundary in
    O(log n) row lookups, without an index on time. Only a wall clock stepped back breaks the
    order; callers keep their ``time`` condition, so the answer is then approximate at the edge,
    never wrong inside the range.
    """
    lo, top = conn.execute(ID_RANGE).fetchone()
    if lo is None:
        return 0  # no events: any bound will do
    hi = top + 1  # the answer lies in [lo, hi]
    probe = "SELECT id, time FROM events WHERE id >= ? ORDER BY id LIMIT 1"
    while lo < hi:
        mid = (lo + hi) // 2
        found, at = conn.execute(probe, (mid,)).fetchone()  # mid <= top: a row exists
        if at >= when:
            hi = mid
        else:
            lo = found + 1
    return lo


def open_reader(path: Path) -> sqlite3.Connection:
    """Open the audit database read-only (the CLI, the daemon's tail stream).

    Works with or without a running daemon. Raises NotFound when there is no audit log yet.
    """
    path = Path(path)
    if not path.exists():
        raise NotFound(
            f"no audit log at {path}",
            hint="the daemon writes it while it serves (profile audit.enabled); pass --data-dir if it uses another one",
        )
    try:
        conn = sqlite3.connect(_uri(path, "ro"), uri=True, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise _cannot(path, "read", exc) from None
    if version not in READABLE_VERSIONS:
        conn.close()
        if version == 0:
            raise NotFound(f"the audit log at {path} is empty (being created?)", hint="try again in a moment")
        raise OperatorError(
            f"audit log {path} has schema {version}; this arcus reads schema {SCHEMA_VERSION}",
            hint="use the arcus that wrote it",
        )
    return conn


def open_maintainer(path: Path) -> sqlite3.Connection:
    """Open the audit database read-write for the operator's upkeep (the full-text index), beside
    the daemon's writer: never created here, never migrated (the daemon does that), refused at a
    schema this arcus does not read, as :func:`open_reader` refuses it. Its write transactions are
    short (the callers chunk them) and wait up to BUSY_TIMEOUT for the writer's, and the writer
    for theirs. A file the operating system write-protects opens read-only: writing then raises
    ``sqlite3.OperationalError`` ("readonly database"), which callers turn into a note."""
    conn = open_reader(path)  # the checks and errors of a reader: missing, empty, unknown schema
    conn.close()
    try:
        conn = sqlite3.connect(_uri(Path(path), "rw"), uri=True, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
    except sqlite3.Error as exc:
        raise _cannot(Path(path), "open", exc) from None
    tighten_sqlite_modes(Path(path))
    return conn


def file_bytes(path: Path) -> int:
    """Bytes on disk of the database and its -wal file (what `audit stats` reports)."""
    total = 0
    for candidate in (Path(path), Path(str(path) + "-wal")):
        try:
            total += os.stat(candidate).st_size
        except OSError:
            pass
    return total
