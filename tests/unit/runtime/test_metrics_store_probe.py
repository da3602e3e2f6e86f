"""The readiness probe's store check: a fresh read-only connection, whatever the path holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from arcus.runtime.metrics import _read_store


def test_reads_a_store_whose_path_has_uri_characters(tmp_path: Path) -> None:
    odd = tmp_path / "a ?b#c%20"
    odd.mkdir()
    db = odd / "arcus.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    _read_store(str(db))
    assert sorted(p.name for p in odd.iterdir()) == ["arcus.db"]  # read-only: nothing created


def test_a_missing_or_unreadable_store_raises(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.Error):
        _read_store(str(tmp_path / "missing.db"))
    (tmp_path / "junk.db").write_bytes(b"not a database, not at all" * 200)
    with pytest.raises(sqlite3.Error):
        _read_store(str(tmp_path / "junk.db"))
    assert not (tmp_path / "missing.db").exists()
