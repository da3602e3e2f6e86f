"""Migration 6: the tenant's TLS interception switch, a nullable column; a version-5 store file
is upgraded in place with every tenant, setting, user, rule and history row kept, and every
tenant left at "default" (the profile decides, as before the upgrade)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from arcus.errors import OperatorError
from arcus.store import SCHEMA_VERSION, Store
from tests.unit.store.old_store import migrate_to

SECRET = "$scrypt$ln=15,r=8,p=1$c2FsdA$a2V5"


def make_v5_store(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store as Arcus with migrations 1 to 5 wrote it, with data in every table."""
    migrate_to(path, 5, monkeypatch)
    conn = sqlite3.connect(path)
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(tenants)")}
        assert "intercept" not in columns and "icap_service" in columns
        now = "2026-01-01T00:00:00Z"
        tid = conn.execute(
            "INSERT INTO tenants (name, display_name, suspended, created_at, auth, rps, log_query, icap_service, "
            "icap_fail, icap_sample) VALUES ('acme', 'Acme Corp', 0, ?, 'required', 20, 1, 'av', 'closed', 0.5)",
            (now,),
        ).lastrowid
        conn.execute("INSERT INTO tenant_sources (tenant_id, cidr) VALUES (?, '10.20.0.0/16')", (tid,))
        conn.execute("INSERT INTO users (tenant_id, name, secret, created_at) VALUES (?, 'alice', ?, ?)",
                     (tid, SECRET, now))
        conn.execute("INSERT INTO policy_rules (tenant_id, rule_id, position, body) VALUES (?, 'r1', 1, ?)",
                     (tid, '{"id": "r1", "action": "deny", "hosts": [".casino.example"]}'))
        conn.execute("INSERT INTO changes (time, action, object, detail) VALUES (?, 'tenant.add', 'acme', '{}')", (now,))
        conn.commit()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    finally:
        conn.close()


def test_a_v5_store_is_upgraded_with_its_data_and_every_tenant_at_default(db_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_v5_store(db_path, monkeypatch)
    with Store.open(db_path) as s:
        acme = s.get_tenant("acme")
        assert (acme.display_name, acme.sources, acme.auth, acme.rps, acme.log_query) == (
            "Acme Corp", ("10.20.0.0/16",), "required", 20, True)
        assert (acme.icap_service, acme.icap_fail, acme.icap_sample) == ("av", "closed", 0.5)
        assert acme.intercept is None and s.get_tenant("default").intercept is None
        assert [u.name for u in s.list_users("acme")] == ["alice"]
        assert [r["id"] for r in s.list_rules("acme")] == ["r1"]
        history = len(s.history())
        # the new column works on the upgraded file, and only a real change is recorded
        assert s.set_tenant("acme", intercept=True).intercept is True
        assert s.set_tenant("acme", intercept=True).intercept is True
        assert s.set_tenant("acme", intercept=False).intercept is False
        assert s.set_tenant("acme", intercept=None).intercept is None
        assert len(s.history()) == history + 3
        assert s.history()[0]["detail"] == {"intercept": None}
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        with pytest.raises(sqlite3.IntegrityError):  # the schema's own check, the last line
            conn.execute("UPDATE tenants SET intercept = 2")
    finally:
        conn.close()


def test_the_switch_survives_reopen_and_is_in_to_dict(db_path: Path) -> None:
    with Store.open(db_path) as s:
        s.add_tenant("acme", None, [])
        s.set_tenant("acme", intercept=False)
    with Store.open(db_path) as s:
        assert s.get_tenant("acme").intercept is False
        assert s.get_tenant("acme").to_dict()["intercept"] is False
        assert [t.to_dict()["intercept"] for t in s.list_tenants()] == [False, None]


@pytest.mark.parametrize("value", ["on", 1, 0, "default", [True]])
def test_a_bad_switch_is_refused_and_nothing_changes(db_path: Path, value: object) -> None:
    with Store.open(db_path) as s:
        s.add_tenant("acme", None, [])
        s.set_tenant("acme", intercept=True)
        with pytest.raises(OperatorError) as exc:
            s.set_tenant("acme", intercept=value, rps=5)
        assert exc.value.message.startswith(f"invalid intercept {value!r}: expected true, false or null")
        assert (s.get_tenant("acme").intercept, s.get_tenant("acme").rps) == (True, None)
