"""Tenants and their source ranges: the rows, and the statements that read and write them.

Functions here take an open connection and assume the caller holds the right transaction
(:func:`arcus.store.db.transaction` for writes, :func:`arcus.store.db.snapshot` for reads);
:class:`arcus.store.store.Store` composes them.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.names import validate_name
from arcus.store import history
from arcus.store.db import utc_now
from arcus.store.migrations import DEFAULT_TENANT
from arcus.store.sources import normalize_sources, source_sort_key

MAX_DISPLAY_NAME = 200
LIST_HINT = "see `arcus tenant list`"


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    display_name: str
    sources: tuple[str, ...]  # normalized CIDRs, IPv4 first, then by address
    suspended: bool
    created_at: str  # ISO-8601 UTC

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "sources": list(self.sources),
            "suspended": self.suspended,
            "created_at": self.created_at,
        }


def validate_display_name(value: str | None, name: str) -> str:
    """The display name, defaulting to the tenant's name; printable, at most 200 characters."""
    if value is None:
        return name
    if not isinstance(value, str):
        raise OperatorError(f"invalid display name {value!r}", hint="give a short text")
    text = value.strip()
    if not text:
        return name
    if len(text) > MAX_DISPLAY_NAME or any(unicodedata.category(c)[0] == "C" for c in text):
        raise OperatorError(
            f"invalid display name {value!r}",
            hint=f"use at most {MAX_DISPLAY_NAME} printable characters (no control characters)",
        )
    return text


def not_found(name: str) -> NotFound:
    return NotFound(f"tenant {name!r} does not exist", hint=LIST_HINT)


def _tenant_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM tenants WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise not_found(name)
    return int(row[0])


def _source_owner(conn: sqlite3.Connection, cidr: str) -> str | None:
    row = conn.execute(
        "SELECT t.name FROM tenant_sources s JOIN tenants t ON t.id = s.tenant_id WHERE s.cidr = ?",
        (cidr,),
    ).fetchone()
    return None if row is None else str(row[0])


def _sources_by_tenant(conn: sqlite3.Connection, tenant_id: int | None) -> dict[int, list[str]]:
    if tenant_id is None:
        rows = conn.execute("SELECT tenant_id, cidr FROM tenant_sources").fetchall()
    else:
        rows = conn.execute(
            "SELECT tenant_id, cidr FROM tenant_sources WHERE tenant_id = ?", (tenant_id,)
        ).fetchall()
    grouped: dict[int, list[str]] = {}
    for tid, cidr in rows:
        grouped.setdefault(int(tid), []).append(str(cidr))
    return grouped


def _build(row: tuple[Any, ...], sources: list[str]) -> Tenant:
    _, name, display_name, suspended, created_at = row
    return Tenant(
        name=name,
        display_name=display_name,
        sources=tuple(sorted(sources, key=source_sort_key)),
        suspended=bool(suspended),
        created_at=created_at,
    )


_COLUMNS = "id, name, display_name, suspended, created_at"


def select_all(conn: sqlite3.Connection) -> list[Tenant]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM tenants ORDER BY name").fetchall()
    grouped = _sources_by_tenant(conn, None)
    return [_build(row, grouped.get(int(row[0]), [])) for row in rows]


def select_one(conn: sqlite3.Connection, name: str) -> Tenant:
    row = conn.execute(f"SELECT {_COLUMNS} FROM tenants WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise not_found(name)
    return _build(row, _sources_by_tenant(conn, int(row[0])).get(int(row[0]), []))


@dataclass(frozen=True, slots=True)
class NewTenant:
    """A tenant checked and normalized before any transaction starts."""

    name: str
    display_name: str
    sources: tuple[str, ...]

    @classmethod
    def check(cls, name: str, display_name: str | None, sources: Iterable[str]) -> NewTenant:
        validate_name("tenant", name)
        return cls(name, validate_display_name(display_name, name), normalize_sources(sources))


def insert(conn: sqlite3.Connection, new: NewTenant) -> None:
    """Insert a tenant, its ranges and the history row (inside the caller's transaction).

    Ranges are inserted one by one and a conflict is detected by the UNIQUE constraint on
    the very insert that hits it: the caller's transaction must roll the earlier inserts back.
    """
    try:
        cursor = conn.execute(
            "INSERT INTO tenants (name, display_name, suspended, created_at) VALUES (?, ?, 0, ?)",
            (new.name, new.display_name, utc_now()),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists(
            f"tenant {new.name!r} already exists",
            hint=f"choose another name, or see `arcus tenant show {new.name}`",
        ) from None
    tenant_id = cursor.lastrowid
    for cidr in new.sources:
        try:
            conn.execute(
                "INSERT INTO tenant_sources (tenant_id, cidr) VALUES (?, ?)", (tenant_id, cidr)
            )
        except sqlite3.IntegrityError:
            owner = _source_owner(conn, cidr)
            raise AlreadyExists(
                f"source range {cidr!r} already belongs to tenant {owner!r}",
                hint=f"a range identifies one tenant: remove it from {owner!r} first, "
                "or give a more specific range (the longest prefix wins)",
            ) from None
    history.record(
        conn,
        "tenant.add",
        new.name,
        {"display_name": new.display_name, "sources": list(new.sources)},
    )


def delete(conn: sqlite3.Connection, name: str) -> None:
    if name == DEFAULT_TENANT:
        raise OperatorError(
            "tenant 'default' cannot be removed",
            code="invalid",
            hint="it holds every client outside all tenants' ranges; "
            "`arcus tenant suspend default` refuses those clients instead",
        )
    tenant = select_one(conn, name)
    conn.execute("DELETE FROM tenants WHERE name = ?", (name,))  # ranges go by ON DELETE CASCADE
    history.record(conn, "tenant.remove", name, {"sources": list(tenant.sources)})


def update_suspended(conn: sqlite3.Connection, name: str, suspended: bool) -> bool:
    """Set the flag; return whether it changed (no history row when it did not)."""
    tenant_id = _tenant_id(conn, name)
    cursor = conn.execute(
        "UPDATE tenants SET suspended = ? WHERE id = ? AND suspended != ?",
        (int(suspended), tenant_id, int(suspended)),
    )
    if cursor.rowcount == 0:
        return False
    history.record(conn, "tenant.suspend" if suspended else "tenant.resume", name, {})
    return True
