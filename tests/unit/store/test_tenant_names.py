"""Migration 4: locked source ranges, and tenant names unique regardless of case.

A store that already holds two names differing only in case (possible before) is upgraded
with both kept, every row intact; from then on a name that clashes is refused, and a lookup
that misses only by case says which name was meant.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from arcus.errors import AlreadyExists, NotFound
from arcus.store import SCHEMA_VERSION, Store
from tests.unit.store.old_store import migrate_to


def make_v3_store(path: Path, monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...]) -> None:
    """A store as Arcus with migrations 1-3 wrote it, holding ``names`` (each with a user)."""
    migrate_to(path, 3, monkeypatch)
    conn = sqlite3.connect(path)
    try:
        for i, name in enumerate(names):
            tid = conn.execute(
                "INSERT INTO tenants (name, display_name, suspended, created_at) VALUES (?, ?, 0, 'then')", (name, name)
            ).lastrowid
            conn.execute("INSERT INTO tenant_sources (tenant_id, cidr) VALUES (?, ?)", (tid, f"10.{i}.0.0/16"))
            conn.execute("INSERT INTO users (tenant_id, name, secret, created_at) VALUES (?, 'alice', ?, 'then')",
                         (tid, "$scrypt$ln=15,r=8,p=1$c2FsdA$a2V5"))
        conn.commit()
    finally:
        conn.close()


def test_a_v3_store_with_a_case_clash_is_upgraded_keeping_both(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_v3_store(db_path, monkeypatch, ("ACME", "acme", "beta"))
    with Store.open(db_path) as s:
        assert [t.name for t in s.list_tenants()] == ["ACME", "acme", "beta", "default"]
        assert [t.sources for t in s.list_tenants()][:2] == [("10.0.0.0/16",), ("10.1.0.0/16",)]
        assert [u.name for u in s.list_users("ACME")] == ["alice"] and [u.name for u in s.list_users("acme")] == ["alice"]
        assert all(t.lock_sources is False for t in s.list_tenants())
        clash = [h for h in s.history() if h["action"] == "store.name_clash"]
        assert [h["detail"] for h in clash] == [{"kept": ["ACME, acme"]}]
        with pytest.raises(AlreadyExists, match="'Acme' clashes with tenant 'ACME'"):
            s.add_tenant("Acme")
        assert s.get_tenant("acme").name == "acme"  # exact lookups still tell them apart
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    finally:
        conn.close()


def test_a_v3_store_without_a_clash_upgrades_with_nothing_recorded(db_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    make_v3_store(db_path, monkeypatch, ("acme",))
    with Store.open(db_path) as s:
        assert not [h for h in s.history() if h["action"] == "store.name_clash"]
        assert s.get_tenant("acme").lock_sources is False


@pytest.mark.parametrize("spelling", ["ACME", "Acme", "aCmE"])
def test_a_name_differing_only_in_case_is_refused(store: Store, spelling: str) -> None:
    store.add_tenant("acme", None, ["10.20.0.0/16"])
    with pytest.raises(AlreadyExists) as caught:
        store.add_tenant(spelling, None, ["10.30.0.0/16"])
    assert caught.value.message == f"tenant {spelling!r} clashes with tenant 'acme'"
    assert caught.value.hint == "tenant names are unique regardless of case; use 'acme' or choose another name"
    assert [t.name for t in store.list_tenants()] == ["acme", "default"]
    assert store.history(1)[0]["action"] == "tenant.add"  # the refusal wrote nothing


def test_the_schema_refuses_a_clash_the_code_did_not_check(store: Store) -> None:
    """The triggers are the backstop: a writer that skips arcus.store.tenants.insert is refused too."""
    store.add_tenant("acme")
    conn = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="unique regardless of case"):
            conn.execute("INSERT INTO tenants (name, display_name, created_at) VALUES ('ACME', 'x', 'now')")
        beta = conn.execute("INSERT INTO tenants (name, display_name, created_at) VALUES ('beta', 'b', 'now')").lastrowid
        with pytest.raises(sqlite3.IntegrityError, match="unique regardless of case"):
            conn.execute("UPDATE tenants SET name = 'Acme' WHERE id = ?", (beta,))
        conn.execute("UPDATE tenants SET name = 'Beta' WHERE id = ?", (beta,))  # its own name in another case
    finally:
        conn.rollback()
        conn.close()


def test_lookups_are_exact_and_a_miss_by_case_names_the_tenant(store: Store) -> None:
    store.add_tenant("acme")
    for call in (lambda: store.get_tenant("ACME"), lambda: store.list_users("Acme"), lambda: store.set_suspended("ACME", True)):
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.hint == "did you mean 'acme'? tenant names are matched exactly (and unique regardless of case)"
    with pytest.raises(NotFound) as caught:
        store.get_tenant("ghost")
    assert caught.value.hint == "see `arcus tenant list`"


def test_lock_sources_is_a_setting(store: Store) -> None:
    store.add_tenant("acme", None, ["10.20.0.0/16"])
    assert store.set_tenant("acme", lock_sources=True).lock_sources is True
    assert store.history(1)[0]["detail"] == {"lock_sources": True}
    assert store.load_all().tenants[0].lock_sources is True
    assert store.set_tenant("acme", lock_sources=False).to_dict()["lock_sources"] is False
    with pytest.raises(Exception, match="lock_sources"):
        store.set_tenant("acme", lock_sources="yes")
