"""Opening the SQLite file safely, and the one transaction shape every write uses.

Why the standard library's ``sqlite3`` and not sqlite-utils: the store needs exact control of
transactions (``BEGIN IMMEDIATE`` ... ``COMMIT`` around a tenant *and* its ranges *and* the
history row, so a ``kill -9`` leaves all or nothing), of the file's creation (mode 0600 before
SQLite ever touches it) and of connection flags (``check_same_thread=False``, autocommit mode
so the module never opens transactions behind our back). sqlite-utils is built for convenient
ad-hoc tables and manages transactions and schema its own way; it would be one more dependency
in the frozen binary to work around rather than to use.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from arcus.errors import OperatorError
from arcus.privfiles import create_private_file, make_private_dirs, tighten_sqlite_modes

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a writer waits for another writer before giving up


def utc_now() -> str:
    """Current time as ISO-8601 UTC with a ``Z`` suffix, to the second."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def connect(path: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open (creating if needed) the store file with Arcus' settings.

    - autocommit mode (``isolation_level=None``): transactions are explicit, see
      :func:`transaction`;
    - ``check_same_thread=False``: the daemon calls the store from a worker thread; the
      :class:`~arcus.store.store.Store` serializes calls with a lock;
    - WAL (readers never block the writer), ``synchronous=FULL`` (a commit the CLI reported
      survives a power cut, not only a crash), foreign keys on, a busy timeout.
    """
    try:
        make_private_dirs(path.parent)
        create_private_file(path)
    except OSError as exc:
        raise OperatorError(
            f"cannot create store {path}: {exc.strerror or exc}",
            code="invalid",
            hint="choose a data dir this user can write (--data-dir, ARCUS_DATA_DIR)",
        ) from None
    # mode=rw: if the file vanished between creation and here, fail instead of letting
    # SQLite create one with the umask's mode.
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=rw"
    try:
        conn = sqlite3.connect(
            uri, uri=True, isolation_level=None, check_same_thread=False, timeout=busy_timeout
        )
    except sqlite3.Error as exc:
        raise OperatorError(
            f"cannot open store {path}: {exc}",
            code="invalid",
            hint="choose a data dir this user can write (--data-dir, ARCUS_DATA_DIR)",
        ) from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = _enable_wal(conn, busy_timeout)
        if mode.lower() != "wal":
            raise OperatorError(
                f"cannot open store {path}: WAL mode unavailable (journal mode is {mode})",
                hint="put the data dir on a local file system (WAL needs shared memory)",
            )
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise translate(exc, path) from None
    except BaseException:
        conn.close()
        raise
    tighten_sqlite_modes(path)
    return conn


def _enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> str:
    """Switch ``conn`` to WAL mode; return the journal mode SQLite reports.

    Switching writes the file header: SQLite reads it (a read transaction), then upgrades to a
    write. When several processes open a new store at once, one holds the write lock while
    another already holds its read lock, and SQLite fails that upgrade with SQLITE_BUSY at
    once, without calling the busy handler (waiting while holding a read lock could
    deadlock). So this statement, alone of the ones run on open, is retried here, within the
    same bound as the busy timeout; a retry usually finds the header already switched by the
    other process and writes nothing. (``BEGIN IMMEDIATE`` cannot help: the journal mode
    cannot change inside a transaction.)
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.001
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            remaining = deadline - time.monotonic()
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or remaining <= 0:
                raise
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)


def translate(exc: sqlite3.Error, path: Path) -> OperatorError:
    """Turn an SQLite failure an operator can act on into an OperatorError with a hint."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return OperatorError(
            f"store {path} is busy: {text}",
            code="busy",
            hint="another arcus process is writing to it; retry in a moment",
        )
    if "not a database" in text or "malformed" in text:
        return OperatorError(
            f"store {path} is not a usable arcus store: {text}",
            code="invalid",
            hint="move the file away or point --data-dir at another directory",
        )
    return OperatorError(
        f"store {path}: {text}",
        code="internal",
        hint="run with ARCUS_DEBUG=1 for details",
    )


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any exception.

    IMMEDIATE takes the write lock up front, so two writers never both read, then both try
    to upgrade and one fails with SQLITE_BUSY half-way through. Either everything inside
    the block is committed, or nothing is (also when the process is killed: WAL only makes
    a transaction visible with its commit record).
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise translate(exc, path) from None
    try:
        yield conn
    except sqlite3.Error as exc:
        _rollback(conn)
        raise translate(exc, path) from exc
    except BaseException:
        _rollback(conn)
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        raise translate(exc, path) from None


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (e.g. on SQLITE_FULL).
    if conn.in_transaction:
        conn.execute("ROLLBACK")


@contextmanager
def snapshot(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """A read transaction: several SELECTs see one consistent state of the store."""
    try:
        conn.execute("BEGIN")
    except sqlite3.Error as exc:
        raise translate(exc, path) from None
    try:
        yield conn
    except sqlite3.Error as exc:
        _rollback(conn)
        raise translate(exc, path) from exc
    finally:
        _rollback(conn)
