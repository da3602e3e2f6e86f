from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arcus.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "arcus.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store.open(db_path)
    try:
        yield s
    finally:
        s.close()
