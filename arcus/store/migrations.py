"""Numbered schema migrations, run on open.

The schema version is SQLite's own ``PRAGMA user_version`` (a field of the file header, so no
extra table can disagree with it). Migration *n* takes the store from version n-1 to n; each
runs inside its own ``BEGIN IMMEDIATE`` transaction together with the version bump, so a crash
mid-migration leaves the previous version intact and the next open simply retries. Later
issues append to :data:`MIGRATIONS` (users, policies, limits, audit events); never edit a
migration that has shipped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from arcus.errors import OperatorError
from arcus.store.db import transaction, utc_now

DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None]


def _m1_tenants(conn: sqlite3.Connection) -> None:
    # No STRICT tables: Debian 11's SQLite (3.34) predates them; CHECKs carry the types.
    conn.execute(
        """
        CREATE TABLE tenants (
            id           INTEGER PRIMARY KEY,
            name         TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL,
            suspended    INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
            created_at   TEXT NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE tenant_sources (
            tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            cidr      TEXT NOT NULL UNIQUE
        )
        """
    )
    conn.execute("CREATE INDEX tenant_sources_tenant ON tenant_sources(tenant_id)")
    conn.execute(
        """
        CREATE TABLE changes (
            id     INTEGER PRIMARY KEY AUTOINCREMENT,
            time   TEXT NOT NULL,
            action TEXT NOT NULL,
            object TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    now = utc_now()
    conn.execute(
        "INSERT INTO tenants (name, display_name, suspended, created_at) VALUES (?, ?, 0, ?)",
        (DEFAULT_TENANT, "Default", now),
    )
    conn.execute(
        "INSERT INTO changes (time, action, object, detail) VALUES (?, ?, ?, ?)",
        (now, "tenant.add", DEFAULT_TENANT, json.dumps({"display_name": "Default", "sources": []})),
    )


def _m2_tenancy(conn: sqlite3.Connection) -> None:
    # Tenant settings are columns with defaults, so existing tenants keep working unchanged
    # (no auth, allow by default, no limits). auth_exempt is a JSON list of normalized CIDRs:
    # unlike tenant_sources, the same range may be exempt in several tenants.
    for column in (
        "auth TEXT NOT NULL DEFAULT 'none' CHECK (auth IN ('none', 'optional', 'required'))",
        "auth_exempt TEXT NOT NULL DEFAULT '[]'",
        "realm TEXT",
        "default_action TEXT NOT NULL DEFAULT 'allow' CHECK (default_action IN ('allow', 'deny'))",
        "block_page TEXT",
        "max_conns INTEGER CHECK (max_conns IS NULL OR max_conns > 0)",
        "rps REAL CHECK (rps IS NULL OR rps > 0)",
        "bandwidth REAL CHECK (bandwidth IS NULL OR bandwidth > 0)",
        "log_query INTEGER NOT NULL DEFAULT 0 CHECK (log_query IN (0, 1))",
    ):
        conn.execute(f"ALTER TABLE tenants ADD COLUMN {column}")
    conn.execute(
        """
        CREATE TABLE users (
            id         INTEGER PRIMARY KEY,
            tenant_id  INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name       TEXT NOT NULL,
            secret     TEXT NOT NULL,
            blocked    INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
            expires_at TEXT,
            max_conns  INTEGER CHECK (max_conns IS NULL OR max_conns > 0),
            rps        REAL CHECK (rps IS NULL OR rps > 0),
            bandwidth  REAL CHECK (bandwidth IS NULL OR bandwidth > 0),
            created_at TEXT NOT NULL,
            UNIQUE (tenant_id, name)
        )
        """
    )
    # Rules keep their operator-given id (unique per tenant, user rules included) and a dense
    # 1-based position; the body is the JSON of arcus.policy.Rule's fields. The store does not
    # interpret it: the runtime compiles it (and refuses a bad rule before it is stored).
    conn.execute(
        """
        CREATE TABLE policy_rules (
            id        INTEGER PRIMARY KEY,
            tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            rule_id   TEXT NOT NULL,
            user_name TEXT,
            position  INTEGER NOT NULL CHECK (position > 0),
            body      TEXT NOT NULL,
            UNIQUE (tenant_id, rule_id)
        )
        """
    )
    conn.execute("CREATE INDEX policy_rules_order ON policy_rules(tenant_id, position)")


def _m3_proxy_hosts(conn: sqlite3.Connection) -> None:
    # Host names under which a tenant's clients reach the proxy itself over TLS (the SNI they
    # send to an https listener): a JSON list of patterns, "acme.proxy.example" or "*.acme.example".
    conn.execute("ALTER TABLE tenants ADD COLUMN proxy_hosts TEXT NOT NULL DEFAULT '[]'")


def _m4_locked_sources_and_names(conn: sqlite3.Connection) -> None:
    # lock_sources: from the tenant's source ranges only its own users are admitted (a client
    # there presenting another tenant's credentials is refused).
    conn.execute(
        "ALTER TABLE tenants ADD COLUMN lock_sources INTEGER NOT NULL DEFAULT 0 CHECK (lock_sources IN (0, 1))"
    )
    # Tenant names are unique without regard to ASCII case (names are [A-Za-z0-9._-], which
    # NOCASE folds entirely). A store may already hold two names differing only in case: they
    # are both kept (no data is lost, the store opens), so the rule is a trigger and not a
    # UNIQUE index, which could not be created over them. New clashes are refused by
    # arcus.store.tenants.insert with a message and, as a backstop, by these triggers.
    conn.execute("CREATE INDEX tenants_name_nocase ON tenants(name COLLATE NOCASE)")
    for event in ("INSERT", "UPDATE OF name"):
        table_ref = "" if event == "INSERT" else " AND id != NEW.id"
        conn.execute(
            f"""
            CREATE TRIGGER tenants_name_unique_nocase_{event.split()[0].lower()}
            BEFORE {event} ON tenants
            WHEN EXISTS (SELECT 1 FROM tenants WHERE name = NEW.name COLLATE NOCASE{table_ref})
            BEGIN SELECT RAISE(ABORT, 'tenant name clash: names are unique regardless of case'); END
            """
        )
    clashes = conn.execute(
        "SELECT group_concat(name, ', ') FROM tenants GROUP BY name COLLATE NOCASE HAVING count(*) > 1"
    ).fetchall()
    if clashes:
        conn.execute(
            "INSERT INTO changes (time, action, object, detail) VALUES (?, ?, ?, ?)",
            (utc_now(), "store.name_clash", "tenants", json.dumps({"kept": [c[0] for c in clashes]})),
        )


def _m5_icap(conn: sqlite3.Connection) -> None:
    # Which ICAP service of the profile a tenant's bodies go to (NULL: none), what happens when
    # no server answers, the share of exchanges sent, the largest body held for a scan and what
    # happens to a larger one (arcus.icap.stage).
    for column in (
        "icap_service TEXT",
        "icap_fail TEXT NOT NULL DEFAULT 'open' CHECK (icap_fail IN ('open', 'closed'))",
        "icap_sample REAL NOT NULL DEFAULT 1.0 CHECK (icap_sample >= 0 AND icap_sample <= 1)",
        "icap_max_body INTEGER NOT NULL DEFAULT 8388608 CHECK (icap_max_body > 0)",
        "icap_oversize TEXT NOT NULL DEFAULT 'pass' CHECK (icap_oversize IN ('pass', 'refuse'))",
    ):
        conn.execute(f"ALTER TABLE tenants ADD COLUMN {column}")


def _m6_intercept(conn: sqlite3.Connection) -> None:
    # The tenant's TLS interception switch (arcus tenant set --intercept on|off|default): 1 or 0
    # overrides the profile's intercept: enabled for that tenant; NULL follows the profile.
    conn.execute("ALTER TABLE tenants ADD COLUMN intercept INTEGER CHECK (intercept IN (0, 1))")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tenants, their source ranges, change history; the default tenant", _m1_tenants),
    Migration(2, "tenant auth, policy and limit settings; users; policy rules", _m2_tenancy),
    Migration(3, "tenant proxy host names (identification by SNI on TLS listeners)", _m3_proxy_hosts),
    Migration(4, "locked source ranges; tenant names unique regardless of case", _m4_locked_sources_and_names),
    Migration(5, "tenant ICAP settings: service, fail mode, sampling, body bound", _m5_icap),
    Migration(6, "tenant TLS interception switch (NULL: as the profile says)", _m6_intercept),
)

SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the store at ``path`` to :data:`SCHEMA_VERSION`; return the version found.

    Safe to run from several processes at once: the version is re-read under the write lock
    before each step.
    """
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    found = schema_version(conn)
    _refuse_newer(found, path)
    for migration in MIGRATIONS[found:]:
        with transaction(conn, path):
            current = schema_version(conn)
            _refuse_newer(current, path)
            if current >= migration.version:
                continue  # another process got here first
            migration.apply(conn)
            conn.execute(f"PRAGMA user_version = {migration.version}")
    return found


def _refuse_newer(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise OperatorError(
            f"store {path} has schema version {version}, newer than this arcus knows "
            f"({SCHEMA_VERSION})",
            code="invalid",
            hint="upgrade arcus to the version that last wrote this store, "
            "or point --data-dir at another directory",
        )
