"""File creation and modes, connection settings, unusable files."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arcus.errors import OperatorError
from arcus.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_created_dirs_0700_and_files_0600_even_with_umask_0(
    tmp_path: Path, permissive_umask: None
) -> None:
    path = tmp_path / "a" / "b" / "arcus.db"
    with Store.open(path) as s:
        s.add_tenant("acme", sources=["10.0.0.0/8"])
        assert mode(tmp_path / "a") == 0o700
        assert mode(tmp_path / "a" / "b") == 0o700
        assert mode(path) == 0o600
        # WAL mode: the companions exist while the connection is open
        for suffix in ("-wal", "-shm"):
            companion = path.with_name(path.name + suffix)
            assert companion.exists()
            assert mode(companion) == 0o600


def test_existing_directory_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o750)
    Store.open(data / "arcus.db").close()
    assert mode(data) == 0o750


def test_loosened_store_file_is_tightened(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "arcus.db"
    Store.open(path).close()
    os.chmod(path, 0o644)
    with Store.open(path):
        assert mode(path) == 0o600


def test_connection_settings(store: Store) -> None:
    conn = store._conn
    assert conn is not None
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_foreign_keys_cascade(store: Store) -> None:
    store.add_tenant("acme", sources=["10.0.0.0/8", "10.1.0.0/16"])
    raw = sqlite3.connect(store.path)
    try:
        raw.execute("PRAGMA foreign_keys = ON")
        raw.execute("DELETE FROM tenants WHERE name = 'acme'")
        raw.commit()
        assert raw.execute("SELECT count(*) FROM tenant_sources").fetchone()[0] == 0
    finally:
        raw.close()


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "arcus.db"
    path.write_bytes(b"this is not sqlite, just some text that is long enough" * 40)
    with pytest.raises(OperatorError) as info:
        Store.open(path)
    assert info.value.code == "invalid"
    assert str(info.value) == (
        f"store {path} is not a usable arcus store: file is not a database"
    )
    assert info.value.hint == "move the file away or point --data-dir at another directory"


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    path = blocker / "arcus.db"
    with pytest.raises(OperatorError) as info:
        Store.open(path)
    assert info.value.code == "invalid"
    assert str(info.value) == f"cannot create store {path}: Not a directory"
    assert info.value.hint == "choose a data dir this user can write (--data-dir, ARCUS_DATA_DIR)"


@pytest.fixture
def writer_on_new_file(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another opener of a new store, holding the write lock (as while it migrates)."""
    db_path.parent.mkdir(mode=0o700, parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def test_first_open_waits_out_the_busy_timeout_before_saying_busy(
    db_path: Path, writer_on_new_file: sqlite3.Connection
) -> None:
    # Switching a new file to WAL upgrades a read lock to a write lock, which SQLite fails at
    # once without calling the busy handler; the open must still wait its full busy timeout.
    started = time.monotonic()
    with pytest.raises(OperatorError) as info:
        Store.open(db_path, busy_timeout=0.3)
    assert info.value.code == "busy"
    assert 0.3 <= time.monotonic() - started < 5


def test_first_open_proceeds_when_the_other_opener_commits(
    db_path: Path, writer_on_new_file: sqlite3.Connection
) -> None:
    opened: list[Store] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            opened.append(Store.open(db_path, busy_timeout=10))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    opener = threading.Thread(target=open_store)
    opener.start()
    # The other opener holds its lock for a while: that is the situation under test.
    time.sleep(0.2)
    writer_on_new_file.execute("COMMIT")
    opener.join(timeout=15)
    assert errors == []
    with opened[0] as s:
        assert [t.name for t in s.list_tenants()] == ["default"]
        check = sqlite3.connect(db_path)
        try:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            check.close()
