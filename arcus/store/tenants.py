"""Tenants and their source ranges: the rows, and the statements that read and write them.

Functions here take an open connection and assume the caller holds the right transaction
(:func:`arcus.store.db.transaction` for writes, :func:`arcus.store.db.snapshot` for reads);
:class:`arcus.store.store.Store` composes them.
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.names import validate_name
from arcus.store import history, values
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
    auth: str = "none"  # "none" | "optional" | "required"
    auth_exempt: tuple[str, ...] = ()  # source CIDRs never asked for credentials
    realm: str | None = None  # Proxy-Authenticate realm; None: "arcus <tenant>"
    default_action: str = "allow"  # "allow" | "deny" when no policy rule decided
    block_page: str | None = None  # 403 template; fields {tenant} {rule} {reason} {request_id} {host}
    max_conns: int | None = None
    rps: float | None = None
    bandwidth: float | None = None  # bytes/s, each direction
    log_query: bool = False  # the audit log keeps URL query strings only when True
    proxy_hosts: tuple[str, ...] = ()  # names (SNI) its clients use to reach the proxy over TLS
    lock_sources: bool = False  # from its source ranges, only its own users are admitted
    icap_service: str | None = None  # the profile's ICAP service its bodies go to; None: no ICAP
    icap_fail: str = "open"  # open | closed: when no ICAP server answers
    icap_sample: float = 1.0  # the share of exchanges sent to ICAP
    icap_max_body: int = 8 << 20  # the largest body held for a scan (bytes)
    icap_oversize: str = "pass"  # pass | refuse: a larger body
    intercept: bool | None = None  # TLS interception on/off, overriding the profile's enabled:; None: the profile's

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "sources": list(self.sources),
            "suspended": self.suspended,
            "created_at": self.created_at,
            "auth": self.auth,
            "auth_exempt": list(self.auth_exempt),
            "realm": self.realm,
            "default_action": self.default_action,
            "block_page": self.block_page,
            "max_conns": self.max_conns,
            "rps": self.rps,
            "bandwidth": self.bandwidth,
            "log_query": self.log_query,
            "proxy_hosts": list(self.proxy_hosts),
            "lock_sources": self.lock_sources,
            "icap_service": self.icap_service,
            "icap_fail": self.icap_fail,
            "icap_sample": self.icap_sample,
            "icap_max_body": self.icap_max_body,
            "icap_oversize": self.icap_oversize,
            "intercept": self.intercept,
        }


SETTINGS = (
    "display_name",
    "sources",
    "auth",
    "auth_exempt",
    "realm",
    "default_action",
    "block_page",
    "max_conns",
    "rps",
    "bandwidth",
    "log_query",
    "proxy_hosts",
    "lock_sources",
    "icap_service",
    "icap_fail",
    "icap_sample",
    "icap_max_body",
    "icap_oversize",
    "intercept",
)


def check_settings(changes: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalize ``tenant set`` changes (before any transaction starts)."""
    values.check_keys("tenant", changes, SETTINGS)
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "display_name":
            out[key] = None if value is None else validate_display_name(value, "")  # None, "": the tenant's name
        elif key == "sources":
            if value is not None and (isinstance(value, str) or not isinstance(value, (list, tuple))):
                raise values.invalid(f"invalid sources {value!r}: expected a list of ranges",
                                     "give a list of CIDRs, e.g. [\"10.20.0.0/16\"], or [] for none")
            out[key] = normalize_sources(value or ())
        elif key == "auth":
            out[key] = values.choice("auth mode", value, values.AUTH_MODES)
        elif key == "auth_exempt":
            if value is not None and (isinstance(value, str) or not isinstance(value, (list, tuple))):
                raise values.invalid(
                    f"invalid auth_exempt {value!r}: expected a list of ranges",
                    "give a list of CIDRs, e.g. [\"10.0.0.0/8\"], or null for none",
                )
            out[key] = normalize_sources(value or ())
        elif key == "realm":
            out[key] = values.realm(value)
        elif key == "default_action":
            out[key] = values.choice("default action", value, values.DEFAULT_ACTIONS)
        elif key == "block_page":
            out[key] = values.block_page(value)
        elif key == "max_conns":
            out[key] = values.count_limit("max_conns", value)
        elif key == "rps":
            out[key] = values.rate_limit("rps", value, "requests")
        elif key == "bandwidth":
            out[key] = values.rate_limit("bandwidth", value, "bytes")
        elif key == "proxy_hosts":
            out[key] = values.host_patterns("proxy_hosts", value)
        elif key.startswith("icap_"):
            out[key] = values.icap_setting(key, value)
        elif key == "intercept":
            out[key] = values.switch(key, value)
        else:  # log_query, lock_sources
            out[key] = values.flag(key, value)
    return out


def _column(key: str, value: Any) -> Any:
    if key in ("auth_exempt", "proxy_hosts"):
        return json.dumps(list(value))
    if key in ("log_query", "lock_sources"):
        return int(value)
    if key == "intercept":
        return None if value is None else int(value)
    return value


def update_settings(conn: sqlite3.Connection, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply checked ``changes``; record only what differs; return what changed."""
    current = select_one(conn, name)
    if "display_name" in changes and not changes["display_name"]:
        changes = {**changes, "display_name": name}  # none given: the tenant's name, as at add
    changed = {k: v for k, v in changes.items() if getattr(current, k) != v}
    if not changed:
        return {}
    if "sources" in changed:
        _replace_sources(conn, current, changed["sources"])
    columns = {k: v for k, v in changed.items() if k != "sources"}
    if columns:
        assignments = ", ".join(f"{key} = ?" for key in columns)  # keys are from SETTINGS only
        conn.execute(
            f"UPDATE tenants SET {assignments} WHERE name = ?",
            [_column(k, v) for k, v in columns.items()] + [name],
        )
    history.record(
        conn,
        "tenant.set",
        name,
        {k: list(v) if isinstance(v, tuple) else v for k, v in changed.items()},
    )
    return changed


def _replace_sources(conn: sqlite3.Connection, current: Tenant, sources: tuple[str, ...]) -> None:
    """The tenant's source ranges become ``sources`` (inside the caller's transaction: a range
    another tenant holds rolls everything back)."""
    if current.name == DEFAULT_TENANT and sources:
        raise OperatorError(
            "the default tenant has no source ranges",
            code="invalid",
            hint="it serves every client no other tenant's range holds; add a tenant for a range",
        )
    tid = tenant_id(conn, current.name)
    conn.execute("DELETE FROM tenant_sources WHERE tenant_id = ?", (tid,))
    _insert_sources(conn, tid, sources)


def _insert_sources(conn: sqlite3.Connection, tid: int | None, sources: Iterable[str]) -> None:
    for cidr in sources:
        try:
            conn.execute("INSERT INTO tenant_sources (tenant_id, cidr) VALUES (?, ?)", (tid, cidr))
        except sqlite3.IntegrityError:
            owner = _source_owner(conn, cidr)
            raise AlreadyExists(
                f"source range {cidr!r} already belongs to tenant {owner!r}",
                hint=f"a range identifies one tenant: remove it from {owner!r} first "
                f"(`arcus tenant set {owner} --source ...` with the ranges it keeps, or --no-sources), "
                "or give a more specific range (the longest prefix wins)",
            ) from None


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


def not_found(name: str, spelled: str | None = None) -> NotFound:
    """``spelled``: the tenant whose name differs from ``name`` only in case, if there is one."""
    if spelled is not None:
        return NotFound(
            f"tenant {name!r} does not exist",
            hint=f"did you mean {spelled!r}? tenant names are matched exactly (and unique regardless of case)",
        )
    return NotFound(f"tenant {name!r} does not exist", hint=LIST_HINT)


def same_but_case(conn: sqlite3.Connection, name: str) -> str | None:
    """The stored name that equals ``name`` regardless of ASCII case (the exact one first)."""
    row = conn.execute(
        "SELECT name FROM tenants WHERE name = ? COLLATE NOCASE ORDER BY name = ? DESC, name LIMIT 1",
        (name, name),
    ).fetchone()
    return None if row is None else str(row[0])


def _missing(conn: sqlite3.Connection, name: str) -> NotFound:
    return not_found(name, same_but_case(conn, name))


def tenant_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM tenants WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise _missing(conn, name)
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
    (_, name, display_name, suspended, created_at, auth, auth_exempt, realm, default_action,
     block_page, max_conns, rps, bandwidth, log_query, proxy_hosts, lock_sources,
     icap_service, icap_fail, icap_sample, icap_max_body, icap_oversize, intercept) = row
    return Tenant(
        name=name,
        display_name=display_name,
        sources=tuple(sorted(sources, key=source_sort_key)),
        suspended=bool(suspended),
        created_at=created_at,
        auth=auth,
        auth_exempt=tuple(json.loads(auth_exempt)),
        realm=realm,
        default_action=default_action,
        block_page=block_page,
        max_conns=max_conns,
        rps=rps,
        bandwidth=bandwidth,
        log_query=bool(log_query),
        proxy_hosts=tuple(json.loads(proxy_hosts)),
        lock_sources=bool(lock_sources),
        icap_service=icap_service,
        icap_fail=icap_fail,
        icap_sample=float(icap_sample),
        icap_max_body=int(icap_max_body),
        icap_oversize=icap_oversize,
        intercept=None if intercept is None else bool(intercept),
    )


_COLUMNS = (
    "id, name, display_name, suspended, created_at, auth, auth_exempt, realm, default_action, "
    "block_page, max_conns, rps, bandwidth, log_query, proxy_hosts, lock_sources, "
    "icap_service, icap_fail, icap_sample, icap_max_body, icap_oversize, intercept"
)


def select_all(conn: sqlite3.Connection) -> list[Tenant]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM tenants ORDER BY name").fetchall()
    grouped = _sources_by_tenant(conn, None)
    return [_build(row, grouped.get(int(row[0]), [])) for row in rows]


def select_one(conn: sqlite3.Connection, name: str) -> Tenant:
    row = conn.execute(f"SELECT {_COLUMNS} FROM tenants WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise _missing(conn, name)
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
    Names are unique regardless of case: ``ACME`` is refused while ``acme`` exists.
    """
    existing = same_but_case(conn, new.name)
    if existing is not None and existing != new.name:
        raise AlreadyExists(
            f"tenant {new.name!r} clashes with tenant {existing!r}",
            hint=f"tenant names are unique regardless of case; use {existing!r} or choose another name",
        )
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
    _insert_sources(conn, cursor.lastrowid, new.sources)
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
    tid = tenant_id(conn, name)
    users = conn.execute("SELECT count(*) FROM users WHERE tenant_id = ?", (tid,)).fetchone()[0]
    rules = conn.execute("SELECT count(*) FROM policy_rules WHERE tenant_id = ?", (tid,)).fetchone()[0]
    # ranges, users and rules go by ON DELETE CASCADE
    conn.execute("DELETE FROM tenants WHERE id = ?", (tid,))
    history.record(
        conn, "tenant.remove", name, {"sources": list(tenant.sources), "users": users, "rules": rules}
    )


def update_suspended(conn: sqlite3.Connection, name: str, suspended: bool) -> bool:
    """Set the flag; return whether it changed (no history row when it did not)."""
    tid = tenant_id(conn, name)
    cursor = conn.execute(
        "UPDATE tenants SET suspended = ? WHERE id = ? AND suspended != ?",
        (int(suspended), tid, int(suspended)),
    )
    if cursor.rowcount == 0:
        return False
    history.record(conn, "tenant.suspend" if suspended else "tenant.resume", name, {})
    return True
