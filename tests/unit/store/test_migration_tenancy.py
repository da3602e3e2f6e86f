"""Migration 2 upgrades a version-1 store in place: every tenant, range and history row kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from arcus.errors import OperatorError
from arcus.store import SCHEMA_VERSION, Store
from tests.unit.store.old_store import migrate_to


def make_v1_store(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store as Arcus with only migration 1 wrote it (rows as its add/suspend wrote them)."""
    migrate_to(path, 1, monkeypatch)
    conn = sqlite3.connect(path)
    try:
        now = "2025-01-01T00:00:00Z"
        for name, display, suspended, sources in (
            ("acme", "Acme Corp", 0, ["10.20.0.0/16", "2001:db8::/48"]),
            ("beta", "beta", 1, ["192.168.1.0/24"]),
        ):
            tid = conn.execute(
                "INSERT INTO tenants (name, display_name, suspended, created_at) VALUES (?, ?, ?, ?)",
                (name, display, suspended, now),
            ).lastrowid
            for cidr in sources:
                conn.execute("INSERT INTO tenant_sources (tenant_id, cidr) VALUES (?, ?)", (tid, cidr))
            conn.execute(
                "INSERT INTO changes (time, action, object, detail) VALUES (?, 'tenant.add', ?, '{}')", (now, name)
            )
        conn.execute("INSERT INTO changes (time, action, object, detail) VALUES (?, 'tenant.suspend', 'beta', '{}')",
                     (now,))
        conn.commit()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = {r[1] for r in conn.execute("PRAGMA table_info(tenants)")}
        assert "auth" not in columns
    finally:
        conn.close()


def test_v1_store_upgraded_with_data_intact(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_v1_store(db_path, monkeypatch)
    with Store.open(db_path) as s:
        acme = s.get_tenant("acme")
        beta = s.get_tenant("beta")
        assert (acme.display_name, acme.sources, acme.suspended) == (
            "Acme Corp", ("10.20.0.0/16", "2001:db8::/48"), False
        )
        assert (beta.sources, beta.suspended) == (("192.168.1.0/24",), True)
        # the new settings take their defaults: existing tenants behave as before
        for t in (acme, beta, s.get_tenant("default")):
            assert (t.auth, t.auth_exempt, t.realm, t.default_action, t.block_page) == (
                "none", (), None, "allow", None
            )
            assert (t.max_conns, t.rps, t.bandwidth, t.log_query) == (None, None, None, False)
        assert [h["action"] for h in s.history()] == ["tenant.suspend", "tenant.add", "tenant.add", "tenant.add"]
        # and the new tables work on the upgraded file
        s.set_tenant("acme", auth="required", rps=10)
        s.add_user("acme", "alice", "$scrypt$ln=15,r=8,p=1$c2FsdA$a2V5")
        s.add_rule("acme", {"id": "r1", "action": "deny"})
        assert s.get_tenant("acme").auth == "required"
        assert [u.name for u in s.list_users("acme")] == ["alice"]
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    finally:
        conn.close()


def test_failed_upgrade_leaves_version_1_whole(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_v1_store(db_path, monkeypatch)
    # a table the migration wants to create already exists: migration 2 fails half-way
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE policy_rules (x INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(OperatorError):
        Store.open(db_path)
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = {r[1] for r in conn.execute("PRAGMA table_info(tenants)")}
        assert "auth" not in columns  # the ALTERs before the failure were rolled back
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "users" not in tables
        assert conn.execute("SELECT count(*) FROM tenants").fetchone()[0] == 3
    finally:
        conn.close()


def test_checks_in_the_schema_refuse_bad_rows(store: Store) -> None:
    """The store's own checks run first; the schema is the last line (e.g. a hand edit)."""
    conn = sqlite3.connect(store.path)
    try:
        for sql in (
            "UPDATE tenants SET auth = 'sometimes'",
            "UPDATE tenants SET default_action = 'maybe'",
            "UPDATE tenants SET max_conns = 0",
            "UPDATE tenants SET rps = -1",
            "UPDATE tenants SET log_query = 2",
        ):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(sql)
    finally:
        conn.close()
