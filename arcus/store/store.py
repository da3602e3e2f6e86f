"""The Store: one SQLite connection, one lock, one transaction per change.

The daemon calls it from worker threads (``asyncio.to_thread``), the CLI directly when no
daemon runs. Every method holds ``_lock`` for its whole duration, so calls from several
threads are serialized on the single connection; several *processes* are serialized by
SQLite's own write lock (``BEGIN IMMEDIATE`` with a busy timeout).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from arcus.errors import OperatorError
from arcus.store import db, history, tenants
from arcus.store.migrations import migrate
from arcus.store.tenants import NewTenant, Tenant

MAX_HISTORY = 10_000


class Store:
    """The tenant store at ``path``. Create with :meth:`open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, busy_timeout: float = db.DEFAULT_BUSY_TIMEOUT) -> Store:
        """Open the store, creating its directory (0700) and file (0600) on first use.

        Runs any pending migration; refuses a store written by a newer Arcus.
        """
        path = Path(path)
        conn = db.connect(path, busy_timeout=busy_timeout)
        try:
            migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        db.tighten_modes(path)  # the first write created -wal and -shm
        return cls(path, conn)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"store {self.path} is closed")
        return self._conn

    # -- tenants -------------------------------------------------------------------------

    def add_tenant(
        self, name: str, display_name: str | None = None, sources: Iterable[str] = ()
    ) -> Tenant:
        """Add a tenant with its source ranges, all in one transaction."""
        new = NewTenant.check(name, display_name, sources)
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                tenants.insert(conn, new)
                return tenants.select_one(conn, new.name)

    def list_tenants(self) -> list[Tenant]:
        """Every tenant, ``default`` included, sorted by name."""
        with self._lock:
            conn = self._connection()
            with db.snapshot(conn, self.path):
                return tenants.select_all(conn)

    def get_tenant(self, name: str) -> Tenant:
        with self._lock:
            conn = self._connection()
            with db.snapshot(conn, self.path):
                return tenants.select_one(conn, name)

    def remove_tenant(self, name: str) -> None:
        """Remove a tenant and its ranges; ``default`` cannot be removed."""
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                tenants.delete(conn, name)

    def set_suspended(self, name: str, suspended: bool) -> Tenant:
        """Suspend (clients refused) or resume a tenant; a no-op if already so."""
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                tenants.update_suspended(conn, name, bool(suspended))
                return tenants.select_one(conn, name)

    # -- history -------------------------------------------------------------------------

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent changes, newest first: ``{id, time, action, object, detail}``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
            raise OperatorError(
                f"invalid history limit {limit!r}", hint=f"give a number from 1 to {MAX_HISTORY}"
            )
        with self._lock:
            conn = self._connection()
            with db.snapshot(conn, self.path):
                return history.recent(conn, limit)
