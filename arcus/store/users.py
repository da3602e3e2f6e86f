"""Users of a tenant: the rows, and the statements that read and write them.

A user belongs to exactly one tenant; the same name in two tenants is two unrelated users.
The secret is stored as given (already hashed: by the CLI, or converted from an import file)
and never leaves this module in a repr, a dict, a history row or an error message.

Functions take an open connection and assume the caller's transaction (see
:mod:`arcus.store.tenants`); :class:`arcus.store.store.Store` composes them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.names import validate_name
from arcus.store import history, rules, values
from arcus.store.db import utc_now
from arcus.store.tenants import select_one as select_tenant
from arcus.store.tenants import tenant_id

SETTINGS = ("secret", "blocked", "expires_at", "max_conns", "rps", "bandwidth")
MAX_IMPORT = 100_000


@dataclass(frozen=True, slots=True)
class User:
    tenant: str
    name: str
    secret: str = field(repr=False)  # a hashed secret; never shown, never logged
    blocked: bool
    expires_at: str | None  # ISO-8601 UTC "2027-01-31T00:00:00Z"; None: never
    max_conns: int | None
    rps: float | None
    bandwidth: float | None  # bytes/s, each direction
    created_at: str

    @property
    def secret_scheme(self) -> str:
        return values.known_scheme(self.secret)

    def expired(self, now: datetime) -> bool:
        """Whether the account has expired at ``now`` (timezone-aware; naive is read as UTC)."""
        if self.expires_at is None:
            return False
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        return now >= datetime.fromisoformat(self.expires_at)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the secret: its scheme ("scrypt", "md5-crypt"...) instead."""
        return {
            "tenant": self.tenant,
            "name": self.name,
            "secret_scheme": self.secret_scheme,
            "blocked": self.blocked,
            "expires_at": self.expires_at,
            "max_conns": self.max_conns,
            "rps": self.rps,
            "bandwidth": self.bandwidth,
            "created_at": self.created_at,
        }


def who(tenant: str, name: str) -> str:
    return f"user {name!r} of tenant {tenant!r}"


def not_found(tenant: str, name: str) -> NotFound:
    return NotFound(f"{who(tenant, name)} does not exist", hint=f"see `arcus user list {tenant}`")


def exists(tenant: str, name: str) -> AlreadyExists:
    return AlreadyExists(
        f"{who(tenant, name)} already exists",
        hint=f"choose another name, or change it with `arcus user passwd {tenant} {name}`",
    )


def check_settings(tenant: str, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalize ``user set`` changes (before any transaction starts)."""
    values.check_keys("user", changes, SETTINGS)
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "secret":
            values.secret_scheme(value, who(tenant, name))
            out[key] = value
        elif key == "blocked":
            out[key] = values.flag("blocked", value)
        elif key == "expires_at":
            out[key] = values.expiry(value)
        elif key == "max_conns":
            out[key] = values.count_limit("max_conns", value)
        elif key == "rps":
            out[key] = values.rate_limit("rps", value, "requests")
        else:  # bandwidth
            out[key] = values.rate_limit("bandwidth", value, "bytes")
    return out


_COLUMNS = "u.name, u.secret, u.blocked, u.expires_at, u.max_conns, u.rps, u.bandwidth, u.created_at"


def _build(tenant: str, row: tuple[Any, ...]) -> User:
    name, secret, blocked, expires_at, max_conns, rps, bandwidth, created_at = row
    return User(tenant, name, secret, bool(blocked), expires_at, max_conns, rps, bandwidth, created_at)


def select_one(conn: sqlite3.Connection, tenant: str, name: str) -> User:
    tid = tenant_id(conn, tenant)
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM users u WHERE u.tenant_id = ? AND u.name = ?", (tid, name)
    ).fetchone()
    if row is None:
        raise not_found(tenant, name)
    return _build(tenant, row)


def select_all(conn: sqlite3.Connection, tenant: str) -> list[User]:
    tid = tenant_id(conn, tenant)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM users u WHERE u.tenant_id = ? ORDER BY u.name", (tid,)
    ).fetchall()
    return [_build(tenant, row) for row in rows]


def select_every(conn: sqlite3.Connection) -> dict[str, list[User]]:
    """Every tenant's users (a tenant without users maps to an empty list)."""
    out: dict[str, list[User]] = {
        name: [] for (name,) in conn.execute("SELECT name FROM tenants ORDER BY name")
    }
    rows = conn.execute(
        f"SELECT t.name, {_COLUMNS} FROM users u JOIN tenants t ON t.id = u.tenant_id "
        "ORDER BY t.name, u.name"
    ).fetchall()
    for row in rows:
        out[row[0]].append(_build(row[0], row[1:]))
    return out


def insert(conn: sqlite3.Connection, tenant: str, name: str, secret: str, expires_at: str | None) -> None:
    tid = tenant_id(conn, tenant)
    try:
        conn.execute(
            "INSERT INTO users (tenant_id, name, secret, blocked, expires_at, created_at) "
            "VALUES (?, ?, ?, 0, ?, ?)",
            (tid, name, secret, expires_at, utc_now()),
        )
    except sqlite3.IntegrityError:
        raise exists(tenant, name) from None
    history.record(conn, "user.add", f"{tenant}/{name}", {"expires_at": expires_at})


def _detail(changes: dict[str, Any]) -> dict[str, Any]:
    """What a history row says about user changes: never the secret itself."""
    return {k: ("changed" if k == "secret" else v) for k, v in changes.items()}


def update(conn: sqlite3.Connection, tenant: str, name: str, changes: dict[str, Any]) -> None:
    """Apply checked ``changes``; a history row names what changed (a new secret always counts)."""
    current = select_one(conn, tenant, name)
    changed = {k: v for k, v in changes.items() if k == "secret" or getattr(current, k) != v}
    if not changed:
        return
    assignments = ", ".join(f"{key} = ?" for key in changed)  # keys are from SETTINGS only
    params = [int(v) if k == "blocked" else v for k, v in changed.items()]
    conn.execute(
        f"UPDATE users SET {assignments} WHERE tenant_id = ? AND name = ?",
        params + [tenant_id(conn, tenant), name],
    )
    history.record(conn, "user.set", f"{tenant}/{name}", _detail(changed))


def delete(conn: sqlite3.Connection, tenant: str, name: str) -> None:
    """Remove a user and the policy rules written for that user (a later user of the same
    name must not inherit them)."""
    select_one(conn, tenant, name)
    tid = tenant_id(conn, tenant)
    removed = [
        r for (r,) in conn.execute(
            "SELECT rule_id FROM policy_rules WHERE tenant_id = ? AND user_name = ? ORDER BY position",
            (tid, name),
        )
    ]
    for rule_id in removed:
        rules.unlink(conn, tid, rule_id)
    conn.execute("DELETE FROM users WHERE tenant_id = ? AND name = ?", (tid, name))
    history.record(conn, "user.remove", f"{tenant}/{name}", {"rules_removed": removed})


def check_entries(
    tenant: str, entries: Iterable[tuple[str, str, str | None]]
) -> list[tuple[str, str, str | None]]:
    """Validate import entries (1-based numbers in errors); no secret is ever quoted."""
    out: list[tuple[str, str, str | None]] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        if number > MAX_IMPORT:
            raise values.invalid(f"too many users to import (more than {MAX_IMPORT})",
                                 "split the file and import it in parts")
        if not isinstance(entry, (tuple, list)) or len(entry) != 3:
            raise values.invalid(f"user import entry {number}: expected (name, secret, expires_at)",
                                 "give each entry as a (name, hashed secret, expiry or None) triple")
        name, secret, expires_at = entry
        try:
            validate_name("user", name)
            values.secret_scheme(secret, who(tenant, name))
            expires = values.expiry(expires_at)
        except OperatorError as exc:
            raise values.invalid(f"user import entry {number}: {exc.message}", exc.hint) from None
        if name in seen:
            raise values.invalid(
                f"user import entry {number}: user {name!r} already given as entry {seen[name]}",
                "give each user once",
            )
        seen[name] = number
        out.append((name, secret, expires))
    return out


def import_many(
    conn: sqlite3.Connection, tenant: str, entries: list[tuple[str, str, str | None]], replace: bool
) -> int:
    """Insert checked entries; with ``replace``, users that exist get the entry's secret and
    expiry (their blocked flag and limits stay); without it an existing name refuses all."""
    select_tenant(conn, tenant)
    tid = tenant_id(conn, tenant)
    existing = {n for (n,) in conn.execute("SELECT name FROM users WHERE tenant_id = ?", (tid,))}
    now = utc_now()
    added = updated = 0
    for number, (name, secret, expires_at) in enumerate(entries, start=1):
        if name in existing:
            if not replace:
                raise AlreadyExists(
                    f"user import entry {number}: {who(tenant, name)} already exists",
                    hint="import with replace to overwrite existing users' secrets and expiry, "
                    "or remove the entry",
                )
            conn.execute(
                "UPDATE users SET secret = ?, expires_at = ? WHERE tenant_id = ? AND name = ?",
                (secret, expires_at, tid, name),
            )
            updated += 1
        else:
            conn.execute(
                "INSERT INTO users (tenant_id, name, secret, blocked, expires_at, created_at) "
                "VALUES (?, ?, ?, 0, ?, ?)",
                (tid, name, secret, expires_at, now),
            )
            added += 1
    history.record(
        conn, "user.import", tenant, {"added": added, "updated": updated, "replace": replace}
    )
    return added + updated
