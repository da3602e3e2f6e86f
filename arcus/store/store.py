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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from arcus.errors import OperatorError
from arcus.names import validate_name
from arcus.privfiles import tighten_sqlite_modes
from arcus.store import db, history, rules, tenants, users, values
from arcus.store.migrations import migrate
from arcus.store.tenants import NewTenant, Tenant
from arcus.store.users import User

MAX_HISTORY = 10_000


@dataclass(frozen=True, slots=True)
class StoreData:
    """Everything a Snapshot needs from the store, read in one transaction (one consistent view).

    ``users`` and ``rules`` have a key for every tenant (an empty list when it has none); rules
    are dicts of :class:`arcus.policy.Rule` fields in policy order, lists where Rule has tuples.
    """

    tenants: list[Tenant]
    users: dict[str, list[User]]
    rules: dict[str, list[dict[str, Any]]]


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
        tighten_sqlite_modes(path)  # the first write created -wal and -shm
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

    def set_tenant(self, name: str, /, **changes: Any) -> Tenant:
        """Change a tenant's settings (auth, auth_exempt, realm, default_action, block_page,
        max_conns, rps, bandwidth, log_query); None resets one. Only what differs is written
        and recorded; no change at all writes nothing."""
        checked = tenants.check_settings(changes)
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                tenants.update_settings(conn, name, checked)
                return tenants.select_one(conn, name)

    # -- users ---------------------------------------------------------------------------

    def add_user(self, tenant: str, name: str, secret: str, *, expires_at: str | None = None) -> User:
        """Add a user with an already hashed ``secret``; AlreadyExists, NotFound(tenant)."""
        validate_name("user", name)
        values.secret_scheme(secret, users.who(tenant, name))
        expires = values.expiry(expires_at)
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                users.insert(conn, tenant, name, secret, expires)
                return users.select_one(conn, tenant, name)

    def get_user(self, tenant: str, name: str) -> User:
        with self._lock:
            conn = self._connection()
            with db.snapshot(conn, self.path):
                return users.select_one(conn, tenant, name)

    def list_users(self, tenant: str) -> list[User]:
        """A tenant's users sorted by name; NotFound if the tenant does not exist."""
        with self._lock:
            conn = self._connection()
            with db.snapshot(conn, self.path):
                return users.select_all(conn, tenant)

    def remove_user(self, tenant: str, name: str) -> None:
        """Remove a user together with the policy rules written for that user."""
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                users.delete(conn, tenant, name)

    def set_user(self, tenant: str, name: str, /, **changes: Any) -> User:
        """Change secret, blocked, expires_at, max_conns, rps or bandwidth; None resets the
        last four. A new secret is always written (and recorded without its value)."""
        checked = users.check_settings(tenant, name, changes)
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                users.update(conn, tenant, name, checked)
                return users.select_one(conn, tenant, name)

    def import_users(
        self,
        tenant: str,
        entries: Iterable[tuple[str, str, str | None]],
        *,
        replace: bool = False,
    ) -> int:
        """Add many ``(name, hashed secret, expires_at)`` users in one transaction; return how
        many were imported. An existing name refuses the whole import, unless ``replace``:
        then that user's secret and expiry are overwritten (blocked flag and limits stay)."""
        checked = users.check_entries(tenant, entries)
        replace = values.flag("replace", replace)
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                return users.import_many(conn, tenant, checked, replace)

    # -- policy rules --------------------------------------------------------------------

    def add_rule(self, tenant: str, rule: dict[str, Any], *, position: int | None = None) -> int:
        """Store ``rule`` (fields of arcus.policy.Rule) at ``position`` (1-based, None appends);
        return its position. The caller has compiled the policy with it (the store does not)."""
        body, text = rules.check_rule(rule)
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                return rules.insert(conn, tenant, body, text, position)

    def add_rules(self, tenant: str, new: list[dict[str, Any]]) -> int:
        """Append ``new`` (in order) in one transaction: all of them or none; return the first
        one's position. The caller has compiled the policy with them (the store does not)."""
        checked = [rules.check_rule(rule) for rule in new]
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                positions = [rules.insert(conn, tenant, body, text, None) for body, text in checked]
        return positions[0] if positions else 0

    def list_rules(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's rules in policy order, user rules included (their ``user`` set)."""
        with self._lock:
            conn = self._connection()
            with db.snapshot(conn, self.path):
                return rules.select_all(conn, tenant)

    def remove_rule(self, tenant: str, rule_id: str) -> None:
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                rules.delete(conn, tenant, rule_id)

    def move_rule(self, tenant: str, rule_id: str, position: int) -> None:
        """Move a rule to ``position`` (1 to the number of rules); the others keep their order."""
        with self._lock:
            conn = self._connection()
            with db.transaction(conn, self.path):
                rules.move(conn, tenant, rule_id, position)

    # -- everything at once --------------------------------------------------------------

    def load_all(self) -> StoreData:
        """Tenants, users and rules from one read transaction, for building a Snapshot."""
        with self._lock:
            conn = self._connection()
            with db.snapshot(conn, self.path):
                return StoreData(
                    tenants=tenants.select_all(conn),
                    users=users.select_every(conn),
                    rules=rules.select_every(conn),
                )

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
