"""Numbered migrations: idempotent, transactional, refusing newer stores."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from arcus.errors import OperatorError
from arcus.store import SCHEMA_VERSION, Store, migrations
from arcus.store.migrations import MIGRATIONS, Migration


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {r[0] for r in rows if not r[0].startswith("sqlite_")}
    finally:
        conn.close()


def test_numbered_from_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 1


def test_first_open_reaches_current_version(db_path: Path) -> None:
    Store.open(db_path).close()
    assert user_version(db_path) == SCHEMA_VERSION
    assert {"tenants", "tenant_sources", "changes"} <= tables(db_path)


def test_opening_twice_is_idempotent(db_path: Path) -> None:
    Store.open(db_path).close()
    with Store.open(db_path) as s:
        assert [t.name for t in s.list_tenants()] == ["default"]
        assert len(s.history()) == 1
    assert user_version(db_path) == SCHEMA_VERSION


def test_concurrent_first_opens_migrate_once(db_path: Path) -> None:
    stores: list[Store] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def opener() -> None:
        try:
            barrier.wait(timeout=10)
            stores.append(Store.open(db_path))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert errors == []
        assert [t.name for t in stores[0].list_tenants()] == ["default"]
        assert len(stores[0].history()) == 1
    finally:
        for s in stores:
            s.close()


OPENER = """
import sys, time
from pathlib import Path
from arcus.store import Store
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every process opens at the same instant
Store.open(Path(sys.argv[1])).close()
"""


def test_concurrent_first_opens_from_processes_migrate_once(db_path: Path) -> None:
    # A daemon and a CLI opening a new store together: separate processes, separate locks.
    start_at = time.time() + 1.0
    procs = [
        subprocess.Popen([sys.executable, "-c", OPENER, str(db_path), str(start_at)], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        if p.stderr:
            p.stderr.close()
    assert [rc for rc, _ in results] == [0, 0, 0, 0], [err for _, err in results]
    with Store.open(db_path) as s:
        assert [t.name for t in s.list_tenants()] == ["default"]
        assert len(s.history()) == 1
    assert user_version(db_path) == SCHEMA_VERSION


def test_newer_schema_refused(db_path: Path) -> None:
    Store.open(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(OperatorError) as info:
        Store.open(db_path)
    assert info.value.code == "invalid"
    assert str(info.value) == (
        f"store {db_path} has schema version {SCHEMA_VERSION + 1}, newer than this arcus knows "
        f"({SCHEMA_VERSION})"
    )
    assert info.value.hint == (
        "upgrade arcus to the version that last wrote this store, "
        "or point --data-dir at another directory"
    )


def test_later_migration_appends_and_runs_once(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db_path).close()
    runs: list[int] = []

    def m_next(conn: sqlite3.Connection) -> None:
        runs.append(1)
        conn.execute("CREATE TABLE later_things (id INTEGER PRIMARY KEY)")

    extended = MIGRATIONS + (Migration(SCHEMA_VERSION + 1, "later things", m_next),)
    monkeypatch.setattr(migrations, "MIGRATIONS", extended)
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", len(extended))
    Store.open(db_path).close()
    Store.open(db_path).close()
    assert runs == [1]
    assert user_version(db_path) == SCHEMA_VERSION + 1
    assert "later_things" in tables(db_path)


def test_failing_migration_leaves_previous_version_whole(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db_path).close()

    def m_broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE later_things (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO tenants (name) VALUES ('violates not null')")

    extended = MIGRATIONS + (Migration(SCHEMA_VERSION + 1, "broken", m_broken),)
    monkeypatch.setattr(migrations, "MIGRATIONS", extended)
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", len(extended))
    with pytest.raises(OperatorError):
        Store.open(db_path)
    assert user_version(db_path) == SCHEMA_VERSION
    assert "later_things" not in tables(db_path)
    monkeypatch.undo()
    with Store.open(db_path) as s:  # still opens at the old version
        assert [t.name for t in s.list_tenants()] == ["default"]
