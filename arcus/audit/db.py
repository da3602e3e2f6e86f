"""The audit database file: ``audit.db`` in the data dir, apart from the tenant store.

Why a file of its own: the audit log is written all the time, in big batches, and pruned by
age and size; the store is written rarely and must never wait behind an audit batch for its
write lock, nor share its size limit. Two files, two locks, two retention stories.

The file is created 0600 with ``os.open`` before SQLite touches it (events name users and the
hosts they visit), in WAL mode (readers -- the CLI -- never block the writer thread), with
``auto_vacuum = INCREMENTAL`` so pages freed by retention can be given back to the file system
(see :mod:`arcus.audit.retention`). ``synchronous = NORMAL``: in WAL mode a power cut may lose
the last batches but never corrupts the file, and a commit does not wait for an fsync -- an
audit log trades the last second of events for throughput, the tenant store does not.

Event ids come from an ``AUTOINCREMENT`` key so they are never reused, even after retention
emptied the table: ``audit tail -f`` polls for ids above the last one it printed.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path

from arcus.audit.events import FIELDS
from arcus.privfiles import create_private_file, make_private_dirs, tighten_sqlite_modes
from arcus.errors import NotFound, OperatorError

AUDIT_FILE = "audit.db"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Schemas a reader can read: 2 differs from 1 only in the user index (see UPGRADES)."""
BUSY_TIMEOUT = 5.0
WAL_LIMIT = 64 * 1024 * 1024
"""After a checkpoint the -wal file is truncated to this (it never shrinks otherwise)."""

_COLUMN_TYPES = {
    "time": "REAL NOT NULL", "kind": "TEXT NOT NULL", "tenant": "TEXT NOT NULL", "user": "TEXT",
    "client": "TEXT", "server": "TEXT", "escaper": "TEXT", "host": "TEXT", "port": "INTEGER",
    "method": "TEXT", "path": "TEXT", "status": "INTEGER", "bytes_up": "INTEGER",
    "bytes_down": "INTEGER", "duration": "REAL", "decision": "TEXT", "rule": "TEXT",
    "error_side": "TEXT", "error_code": "TEXT", "request_id": "TEXT", "conn_id": "INTEGER",
}
assert tuple(_COLUMN_TYPES) == FIELDS, "the table's columns follow AuditEvent's fields"

SCHEMA = [
    "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f'"{name}" {kind}' for name, kind in _COLUMN_TYPES.items())
    + ")",
    # Every filter of `audit search` is "this value, within this time range": a composite
    # (value, time) index answers both; time alone serves --since/--until and retention.
    "CREATE INDEX events_time ON events(time)",
    "CREATE INDEX events_tenant ON events(tenant, time)",
    # Anonymous events (no user) are never searched by user: they take no entry here, which
    # spares an index insert per request on a box without authentication.
    'CREATE INDEX events_user ON events("user", time) WHERE "user" IS NOT NULL',
    "CREATE INDEX events_host ON events(host, time)",
]

UPGRADES: dict[int, list[str]] = {
    1: ["DROP INDEX events_user", SCHEMA[3]],
}
"""Statements that take a file from schema ``n`` to ``n + 1``, run by the writer on open."""
assert SCHEMA[3].startswith("CREATE INDEX events_user")

_ROW = "(" + ", ".join("?" * len(FIELDS)) + ")"
INSERT = "INSERT INTO events (" + ", ".join(f'"{n}"' for n in FIELDS) + ") VALUES " + _ROW
"""One event. Ids are left to AUTOINCREMENT (the writer knows which it gets: AuditSink._insert)."""
ROWS_PER_INSERT = 50
"""Events per statement in the writer's batches (1,050 parameters, SQLite allows 32,766)."""
INSERT_MANY = INSERT + (", " + _ROW) * (ROWS_PER_INSERT - 1)
"""ROWS_PER_INSERT events in one statement: one VDBE run and one GIL release per 50 rows instead
of per row, 4.5-4.7 us of CPU per event instead of 5.7-6.1 (500-row transactions, measured)."""
SELECT_COLUMNS = "id, " + ", ".join(f'"{n}"' for n in FIELDS)


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


def file_bytes(path: Path) -> int:
    """Bytes on disk of the database and its -wal file (what `audit stats` reports)."""
    total = 0
    for candidate in (Path(path), Path(str(path) + "-wal")):
        try:
            total += os.stat(candidate).st_size
        except OSError:
            pass
    return total
